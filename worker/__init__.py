"""What the Celery worker runs: the tasks, micro-batching, predicting, the bundle loader, the periodic jobs.

The request schemas (schemas.py) are generated here from the bundle; the gateway and admin/ import them too.
"""
