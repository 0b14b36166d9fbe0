"""Celery entry point for the redrive's process: `celery -A worker.periodic_main worker --beat` on the redrive
queue, with the periodic tasks only (no model, no model library)."""

from core.celery_app import create_celery_app

app = create_celery_app(include=["worker.periodic_tasks"])
