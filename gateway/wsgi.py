"""The gunicorn entry point: `gunicorn gateway.wsgi:app`."""

import logging

from core.logs import configure_logging
from core.settings import get_settings
from gateway.app import RequestIdFilter, create_app

configure_logging(get_settings().log_level)
for handler in logging.getLogger().handlers:
    handler.addFilter(RequestIdFilter())
app = create_app()
