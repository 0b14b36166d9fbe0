"""The gunicorn entry point: `gunicorn gateway.wsgi:app`."""

from gateway.app import create_app
from worker.logs import configure_logging
from worker.settings import get_settings

configure_logging(get_settings().log_level)
app = create_app()
