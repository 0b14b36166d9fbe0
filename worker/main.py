"""Celery entry point for workers and beat: `celery -A worker.main worker` (or `beat`)."""

from core.celery_app import create_celery_app

# The worker imports its task modules at start, before it sets up logging and loads the model.
app = create_celery_app(include=["worker.tasks"])
# Prefork, replacing a killed pool process within half a second (worker.prefork). `--pool solo` overrides it;
# `--pool prefork` cannot (Celery takes it for its default), Celery's own is `--pool processes`.
app.conf.worker_pool = "worker.prefork:PromptPrefork"
