"""The server entry point: `gunicorn -k gateway.server.GatewayWorker gateway.asgi:app`."""

import logging

from core.logs import configure_logging
from core.settings import get_settings
from gateway.app import RequestIdFilter, create_app
from gateway.finished_listener import FinishedListener
from gateway.front import GatewayFront

settings = get_settings()
configure_logging(settings.log_level)
for handler in logging.getLogger().handlers:
    handler.addFilter(RequestIdFilter())
app = GatewayFront(create_app(), settings, FinishedListener(settings.shared_redis_url, settings.queue_name))
