"""Read every setting of the service from the environment, once, with safe local defaults."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from limits import parse
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.feature_spec import VERSION_RULE, is_version_name

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCAL_DATABASE_URL = f"sqlite:///{PROJECT_ROOT / 'var' / 'predictions.db'}"
LOCAL_BROKER_URL = "redis://127.0.0.1:6379/0"
REDIS_SCHEMES = ("redis://", "rediss://")
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


class Settings(BaseSettings):
    """Service configuration; every field maps to an upper-case environment variable."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True, protected_namespaces=())

    app_env: Literal["local", "production"] = "local"
    database_url: str = LOCAL_DATABASE_URL
    # Redis (redis://) or RabbitMQ (amqp://); see README, "RabbitMQ".
    broker_url: str = LOCAL_BROKER_URL
    # Redis for what is not a queue: the workers' notices that wake long-polls, and the rate-limit counters
    # every gateway process shares. Empty: the broker, when the broker is Redis.
    redis_url: str = ""
    # RabbitMQ's management API (http://user:password@host:15672), read by the redrive for the messages
    # workers hold unacknowledged, which AMQP does not tell. Empty with RabbitMQ: the redrive takes connected
    # workers as holding some, and publishes rows again only past REDRIVE_BACKLOG_CAP_S.
    broker_management_url: str = ""
    artifacts_dir: Path = PROJECT_ROOT / "artifacts"
    # Empty: the version named in artifacts/current.
    model_version: str = ""
    # SHA-256 of the served bundle's metadata.json (which holds every file's checksum); empty: not pinned.
    model_sha256: str = ""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # The interactive lane: single submissions (and their redrive). Bulk slices travel on the bulk lane,
    # <QUEUE_NAME>.bulk, served by worker processes of their own (see bulk_queue).
    queue_name: str = "predictions"
    # Native threads per worker process for predict_proba; parallelism comes from processes.
    model_threads: int = Field(default=1, ge=1, le=64)
    batch_size: int = Field(default=100, ge=1, le=10_000)
    batch_flush_ms: int = Field(default=5, ge=1, le=10_000)
    # While messages arrive faster than this, a micro-batch waits up to this long for more (0: never waits).
    batch_hold_ms: int = Field(default=20, ge=0, le=10_000)
    max_attempts: int = Field(default=3, ge=1, le=20)
    # A model version that failed to load in a worker process is not tried again for this long; its rows stay
    # queued meanwhile (the redrive publishes them again), and the other versions keep serving.
    bundle_retry_s: float = Field(default=30.0, gt=0, le=3600)
    # Longer than the slowest batch; a message not acked by then is redelivered to another worker.
    visibility_timeout_s: int = Field(default=300, ge=10)

    redrive_after_s: int = Field(default=30, ge=1)
    redrive_interval_s: int = Field(default=10, ge=1)
    redrive_limit: int = Field(default=10_000, ge=1, le=30_000)
    # Behind a backlog the redrive still publishes rows whose last publish is this old (a lost message waits
    # no longer, however long the backlog); copies of rows that were only waiting cost one prediction each.
    redrive_backlog_cap_s: int = Field(default=300, ge=1)

    # Finished observations and batches older than this are deleted (0 keeps everything); queued ones never.
    retention_days: int = Field(default=90, ge=0)
    retention_interval_s: int = Field(default=3600, ge=1)
    retention_chunk_rows: int = Field(default=5_000, ge=1, le=100_000)
    retention_budget_s: float = Field(default=60.0, gt=0)

    # Model monitoring: every interval the drift of each input feature over the last window is stored; a
    # feature with fewer observations than the minimum in the window gets no figure (it would be noise).
    monitor_interval_s: int = Field(default=300, ge=10)
    monitor_window_s: int = Field(default=86_400, ge=60)
    monitor_min_observations: int = Field(default=500, ge=1)
    # A worker node serves its own Prometheus metrics on this port (0: none); one port per node.
    worker_metrics_port: int = Field(default=0, ge=0, le=65_535)

    # Threads per gateway process running Flask; connections and long-polls wait on its event loop instead.
    gateway_threads: int = Field(default=8, ge=1, le=256)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A request's head (request line and headers) is refused past any of these, before the app sees it: its
    # bytes (431), one header line (431) or the URL (414), its header count (431). A gateway process holds no
    # more than MAX_HEADER_BYTES of a head it has not refused.
    max_header_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    max_header_line_bytes: int = Field(default=8_192, ge=256)
    max_headers: int = Field(default=100, ge=1, le=1_000)
    # A connection is closed when a request's head has not arrived this long after it connected or after its
    # last response (an idle connection quietly; a head begun, with 408).
    header_timeout_s: float = Field(default=15.0, gt=0, le=300)
    # Past either bound the gateway refuses submissions (503, Retry-After) until the workers catch up.
    backlog_max_queued: int = Field(default=2_000_000, ge=1)
    backlog_max_age_s: int = Field(default=3600, ge=1)
    backlog_check_s: float = Field(default=2.0, gt=0, le=60)
    # Each gateway process reads the model rollout (which version serves which ids) this often, in a thread
    # of its own; workers read it as often (the stable version for rows naming none, the shadow). A change
    # reaches all within it.
    rollout_check_s: float = Field(default=2.0, gt=0, le=60)
    poll_retry_after_s: int = Field(default=1, ge=1)
    max_wait_s: int = Field(default=30, ge=0, le=300)

    bulk_max_items: int = Field(default=1_000_000, ge=1)
    bulk_max_body_bytes: int = Field(default=512 * 1_048_576, ge=1024)
    bulk_chunk_rows: int = Field(default=2_000, ge=1)
    # Rejected items listed in the answer to an upload; all of them are stored, at /batches/<id>/rejections.
    bulk_rejections_listed: int = Field(default=100, ge=0, le=10_000)
    # Observations per Celery message for bulk work: the worker's main process costs ~1.6 ms per message.
    bulk_rows_per_message: int = Field(default=500, ge=1)
    # Bulk lane messages waiting in the broker at most; the rest of every upload waits in the database for its
    # turn (core/bulk_feeder.py), so a small upload is never behind all of a large one.
    bulk_feed_window: int = Field(default=16, ge=1)
    # Set under gunicorn with several workers so /metrics adds up all of them.
    prometheus_multiproc_dir: Path | None = None

    # API keys (Authorization: Bearer) are required on every endpoint but health, readiness, metrics and the
    # API description. Default: on with APP_ENV=production (which refuses it off), off with APP_ENV=local.
    auth_required: bool = False
    # Each gateway process keeps key lookups this long: a revoked key is refused within this many seconds.
    api_key_cache_s: float = Field(default=5.0, ge=0, le=60)
    # Per API key, counted in Redis (the broker) across every gateway process; empty: no limit. A request to
    # POST /predict or POST /batches counts one submission; the items of batches are counted on their own.
    rate_limit_submissions: str = "100/second"
    rate_limit_batch_items: str = "2000000/hour"

    @property
    def bulk_queue(self) -> str:
        """Return the bulk lane's queue: batch slices wait there, never in front of a single submission."""
        return f"{self.queue_name}.bulk"

    @property
    def lane_queues(self) -> tuple[str, str]:
        """Return the queues of prediction work: the interactive lane, then the bulk lane."""
        return (self.queue_name, self.bulk_queue)

    @property
    def redrive_queue(self) -> str:
        """Return the queue of the redrive task: its own, so that no backlog of predictions delays it."""
        return f"{self.queue_name}.redrive"

    @property
    def broker_is_amqp(self) -> bool:
        """Return whether the broker is RabbitMQ (AMQP) rather than Redis."""
        return self.broker_url.startswith(AMQP_SCHEMES)

    @property
    def shared_redis_url(self) -> str | None:
        """Return the Redis that carries finished notices and rate-limit counters, if there is one."""
        if self.redis_url:
            return self.redis_url
        return self.broker_url if self.broker_url.startswith(REDIS_SCHEMES) else None

    @model_validator(mode="before")
    @classmethod
    def _auth_default_follows_app_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("auth_required") in (None, ""):
            data = {**data, "auth_required": data.get("app_env", "local") == "production"}
        return data

    @field_validator("rate_limit_submissions", "rate_limit_batch_items")
    @classmethod
    def _rate_limit_is_readable(cls, limit: str) -> str:
        if limit.strip():
            try:
                parse(limit)
            except ValueError:
                raise ValueError(
                    f"{limit!r} is not a rate limit: write it as 100/second, 1000/minute or 5 per hour"
                ) from None
        return limit.strip()

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_redis(cls, url: str) -> str:
        if url and not url.startswith(REDIS_SCHEMES):
            raise ValueError("REDIS_URL must be empty or a redis:// (rediss://) URL")
        return url

    @field_validator("broker_management_url")
    @classmethod
    def _management_url_is_http(cls, url: str) -> str:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError("BROKER_MANAGEMENT_URL must be empty or RabbitMQ's management API, http(s)://…")
        return url.rstrip("/")

    @field_validator("model_version")
    @classmethod
    def _version_is_a_plain_name(cls, version: str) -> str:
        if version and not is_version_name(version):
            raise ValueError(f"MODEL_VERSION must be empty or {VERSION_RULE}")
        return version

    @field_validator("model_sha256")
    @classmethod
    def _sha256_is_hex(cls, digest: str) -> str:
        if digest and not re.fullmatch(r"[0-9A-Fa-f]{64}", digest):
            raise ValueError(
                "MODEL_SHA256 must be empty or 64 hex digits: sha256sum of the bundle's metadata.json"
            )
        return digest.lower()

    @model_validator(mode="after")
    def _worker_metrics_have_a_folder(self) -> Settings:
        if self.worker_metrics_port and self.prometheus_multiproc_dir is None:
            raise ValueError(
                "WORKER_METRICS_PORT needs PROMETHEUS_MULTIPROC_DIR: pool processes write their figures there"
            )
        return self

    @model_validator(mode="after")
    def _header_line_within_the_head(self) -> Settings:
        if self.max_header_line_bytes > self.max_header_bytes:
            raise ValueError("MAX_HEADER_LINE_BYTES must be at most MAX_HEADER_BYTES")
        return self

    @model_validator(mode="after")
    def _redrive_cap_not_below_its_age(self) -> Settings:
        if self.redrive_backlog_cap_s < self.redrive_after_s:
            raise ValueError("REDRIVE_BACKLOG_CAP_S must be at least REDRIVE_AFTER_S")
        return self

    @model_validator(mode="after")
    def _no_local_defaults_in_production(self) -> Settings:
        if self.app_env == "production":
            missing = [
                name
                for name, local in (
                    ("DATABASE_URL", LOCAL_DATABASE_URL),
                    ("BROKER_URL", LOCAL_BROKER_URL),
                )
                if getattr(self, name.lower()) == local
            ]
            if missing:
                raise ValueError(f"APP_ENV=production needs {', '.join(missing)} set explicitly")
            if self.shared_redis_url is None:
                raise ValueError(
                    "APP_ENV=production with a broker that is not Redis needs REDIS_URL: long-polls are "
                    "woken and rate limits counted there"
                )
            if not self.auth_required:
                raise ValueError("APP_ENV=production needs AUTH_REQUIRED on: API keys guard every endpoint")
        return self

    @model_validator(mode="after")
    def _batch_items_limit_holds_a_whole_batch(self) -> Settings:
        if self.rate_limit_batch_items and parse(self.rate_limit_batch_items).amount < self.bulk_max_items:
            raise ValueError("RATE_LIMIT_BATCH_ITEMS must allow at least BULK_MAX_ITEMS items per window")
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read from the environment on first use."""
    return Settings()


def child_environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """Return this process's environment with overrides, for the service processes a launcher starts."""
    return {**os.environ, **overrides}
