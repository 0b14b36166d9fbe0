"""The server entry point: `gunicorn -k gateway.server.protocol.GatewayWorker gateway.server.asgi:app`."""

import gc
import logging

from core.logs import configure_logging
from core.settings import get_settings
from gateway.app import RequestIdFilter, create_app
from gateway.server.finished_listener import FinishedListener
from gateway.server.front import GatewayFront

settings = get_settings()
configure_logging(settings.log_level)
for handler in logging.getLogger().handlers:
    handler.addFilter(RequestIdFilter())
app = GatewayFront(create_app(), settings, FinishedListener(settings.shared_redis_url, settings.queue_name))

# What is loaded by now lives as long as the process. Frozen, the collector's full passes leave it out:
# under a sustained load they took up to 310 ms each (six in 30 s), stalling this process's event loop and
# every request on it; frozen, the longest was 14 ms. Each gunicorn worker imports this module and freezes
# its own.
gc.freeze()
