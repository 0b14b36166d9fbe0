"""The gunicorn entry point: `gunicorn gateway.wsgi:app`."""

import logging

from gateway.app import RequestIdFilter, create_app
from worker.logs import configure_logging
from worker.settings import get_settings

configure_logging(get_settings().log_level)
for handler in logging.getLogger().handlers:
    handler.addFilter(RequestIdFilter())
app = create_app()
