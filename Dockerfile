# One image for every role: gateway (gunicorn), worker and redrive (celery), migrate (alembic).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY core ./core
COPY gateway ./gateway
COPY worker ./worker
COPY client ./client
COPY admin ./admin
RUN pip install --no-cache-dir .
COPY artifacts ./artifacts
ENV ARTIFACTS_DIR=/app/artifacts
RUN useradd --create-home service
USER service
EXPOSE 8000
CMD ["gunicorn", "--workers", "2", "--bind", "0.0.0.0:8000", "--config", "python:gateway.server.gunicorn_conf", "gateway.server.asgi:app"]
