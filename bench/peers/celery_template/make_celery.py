"""The template's entry module: `celery -A bench.peers.celery_template.make_celery worker`."""

from bench.peers.celery_template.app import create_app

flask_app = create_app()
celery_app = flask_app.extensions["celery"]
