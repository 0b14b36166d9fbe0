"""PredictionClient: submit, poll, wait and bulk operations over HTTP, with timeouts and retries on 503."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry


class ServiceError(Exception):
    """The service answered with an error envelope."""

    def __init__(self, status: int, error: dict[str, Any], *, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {error.get('code')}: {error.get('message')}")
        self.status = status
        self.error = error
        # Seconds the service asked to wait before trying again (429 rate limited, 503 busy), if it said.
        self.retry_after = retry_after


class RetryOnlyUnavailable(Retry):
    """urllib3's Retry, waiting out a Retry-After on 503 only: not on a 429, which may ask for an hour."""

    RETRY_AFTER_STATUS_CODES = frozenset([503])


class PredictionClient:
    """Talk to one service; every call has a timeout and 503s are retried with backoff.

    api_key is sent as Authorization: Bearer on every call. A 401 (no key, unknown or revoked), 403 (the key
    lacks the scope) or 429 (over the key's rate limit; see ServiceError.retry_after) is raised at once.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:5000",
        *,
        timeout: float = 30,
        retries: int = 5,
        api_key: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"
        # Every call is safe to repeat: submissions are idempotent by id, the rest only read.
        retry = RetryOnlyUnavailable(
            total=retries,
            status_forcelist=[503],
            allowed_methods=None,
            backoff_factor=0.2,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))

    def close(self) -> None:
        """Release the connection pool."""
        self.session.close()

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        response = self.session.request(method, f"{self.base_url}{path}", **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200]}
            raise ServiceError(response.status_code, error, retry_after=_retry_after(response))
        return response

    def submit(self, observation_id: str, observation: dict[str, Any]) -> dict[str, Any]:
        """Submit one observation; return the acceptance (or the stored state of a replay)."""
        body: dict[str, Any] = self._call(
            "POST", "/predict", json={"id": observation_id, "observation": observation}
        ).json()
        return body

    def get(self, observation_id: str, *, wait: float = 0) -> dict[str, Any]:
        """Return the current state of one observation, holding up to wait seconds for the result."""
        params = {"wait": wait} if wait else None
        timeout = self.timeout + wait
        # Quoted, so an id holding '?', '#' or '%' reads back as itself; '/' stays, as in the server's paths.
        path = f"/predictions/{quote(observation_id, safe='/')}"
        body: dict[str, Any] = self._call("GET", path, params=params, timeout=timeout).json()
        return body

    def wait(self, observation_id: str, *, timeout: float = 60) -> dict[str, Any]:
        """Long-poll until the observation is done or failed; raise TimeoutError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            state = self.get(observation_id, wait=max(0.0, min(30.0, remaining)))
            if state["status"] != "queued":
                return state
            if remaining <= 0:
                raise TimeoutError(f"{observation_id} still queued after {timeout}s")

    def update(self, observation_id: str, true_class: bool) -> dict[str, Any]:
        """Send the true outcome of an observation."""
        body: dict[str, Any] = self._call(
            "POST", "/update", json={"id": observation_id, "true_class": true_class}
        ).json()
        return body

    def submit_batch(self, items: Iterable[dict[str, Any]], *, atomic: bool = False) -> dict[str, Any]:
        """Submit {"id", "observation"} items as one NDJSON batch; return the receipt."""
        # A body in memory, not a generator, so a retry after a 503 can send it again.
        body = b"".join(json.dumps(item).encode() + b"\n" for item in items)
        return self._submit_body(body, "application/x-ndjson", atomic=atomic)

    def submit_csv(self, data: bytes, *, atomic: bool = False) -> dict[str, Any]:
        """Submit CSV text (header with id and the feature columns) as one batch; return the receipt."""
        return self._submit_body(data, "text/csv", atomic=atomic)

    def _submit_body(self, data: bytes, content_type: str, *, atomic: bool) -> dict[str, Any]:
        params = {"atomic": "true"} if atomic else None
        body: dict[str, Any] = self._call(
            "POST", "/batches", data=data, params=params, headers={"Content-Type": content_type}
        ).json()
        return body

    def batch(self, batch_id: str) -> dict[str, Any]:
        """Return a batch's counts, progress and times."""
        body: dict[str, Any] = self._call("GET", f"/batches/{batch_id}").json()
        return body

    def iter_results(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Yield a batch's results in submission order, streamed."""
        response = self._call("GET", f"/batches/{batch_id}/results", params={"format": "ndjson"}, stream=True)
        with response:
            for line in response.iter_lines():
                if line:
                    yield json.loads(line)


def _retry_after(response: requests.Response) -> float | None:
    """Return the Retry-After of an answer in seconds, when it gives a number."""
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
