"""What the Celery workers run: the prediction lanes (main.py, tasks.py: micro-batching, predicting, bundles)
and the redrive's process (periodic_main.py, periodic_tasks.py: the redrive, the purge, the model monitor).

The request schemas (schemas.py) are generated here from the bundle; the gateway and admin/ import them too.
"""
