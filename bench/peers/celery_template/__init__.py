"""The usual Flask + Celery template (Flask's examples/celery): one task per request, results in Redis."""
