"""Celery entry point for workers and beat: `celery -A worker.main worker` (or `beat`)."""

from worker.celery_app import create_celery_app

app = create_celery_app()
import worker.tasks  # noqa: E402,F401  (registers the tasks on the app)
