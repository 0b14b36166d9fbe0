"""Hold several model bundle versions in one process: each loaded once and checksum-verified, LRU-evicted."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from core.feature_spec import METADATA_FILE, BundleError
from worker.bundle import ModelBundle, load_bundle

log = logging.getLogger(__name__)


class BundleUnavailable(BundleError):
    """A bundle version cannot serve: missing, refused by its checksums or pin, or failed to load."""

    def __init__(self, version: str, reason: str) -> None:
        super().__init__(f"model bundle {version!r} unavailable: {reason}")
        self.version = version
        self.reason = reason


class BundleLoader(Protocol):
    """What loads one version (load_bundle's signature); it must verify before it unpickles."""

    def __call__(self, artifacts_dir: Path, version: str = "", *, pinned_sha256: str = "") -> ModelBundle: ...


class BundleShelf:
    """Load bundle versions on first use and keep the `keep` most recently used.

    pinned: version -> SHA-256 of its metadata.json (as MODEL_SHA256), for versions that must be exactly
    that bundle. A failed load is remembered for `backoff_s`: within it, get() refuses without reading
    the files again, so a broken bundle costs one read per back-off, not one per batch.
    """

    def __init__(
        self,
        artifacts_dir: Path,
        *,
        keep: int = 4,
        pinned: Mapping[str, str] | None = None,
        backoff_s: float = 30.0,
        loader: BundleLoader = load_bundle,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self._artifacts_dir = artifacts_dir
        self._keep = keep
        self._pinned = dict(pinned or {})
        self._backoff_s = backoff_s
        self._loader = loader
        self._clock = clock
        self._bundles: OrderedDict[str, ModelBundle] = OrderedDict()  # least recently used first
        self._failures: dict[str, tuple[float, str]] = {}  # version -> (when, reason)
        # Guards the two dicts above; never held while a bundle loads, so loaded versions keep serving.
        self._lock = threading.Lock()
        # One per version being loaded: threads asking for it wait for one load instead of each loading it.
        self._loading: dict[str, threading.Lock] = {}

    @property
    def loaded_versions(self) -> list[str]:
        """Return the versions held, least recently used first."""
        with self._lock:
            return list(self._bundles)

    def get(self, version: str) -> ModelBundle:
        """Return the bundle of version, loading and verifying it on first use; raise BundleUnavailable."""
        if not version:
            # "" means whatever `current` names at load time: the shelf would keep serving a stale one.
            raise BundleUnavailable(version, "name a bundle version, not the current pointer")
        with self._lock:
            bundle = self._held_or_refused(version)
            if bundle is not None:
                return bundle
            loading = self._loading.setdefault(version, threading.Lock())
        with loading:
            try:
                with self._lock:
                    bundle = self._held_or_refused(version)  # the thread waited for may have done it
                    if bundle is not None:
                        return bundle
                bundle = self._load(version)
                with self._lock:  # stored before `loading` is released: waiting threads find it
                    self._bundles[version] = bundle
                    self._evict_beyond_keep()
                return bundle
            finally:
                with self._lock:
                    if self._loading.get(version) is loading:
                        del self._loading[version]

    def _held_or_refused(self, version: str) -> ModelBundle | None:
        """Return the held bundle (now the most recently used), or None; refuse one in back-off."""
        bundle = self._bundles.get(version)
        if bundle is not None:
            self._bundles.move_to_end(version)
            return bundle
        failure = self._failures.get(version)
        if failure is None:
            return None
        failed_at, reason = failure
        waited = self._clock() - failed_at
        if waited < self._backoff_s:
            raise BundleUnavailable(
                version, f"{reason} (failed {waited:.0f} s ago; not tried again for {self._backoff_s:.0f} s)"
            )
        return None

    def _load(self, version: str) -> ModelBundle:
        started = time.perf_counter()
        try:
            bundle = self._loader(self._artifacts_dir, version, pinned_sha256=self._pinned.get(version, ""))
            if bundle.version != version:
                # Predictions are stored under bundle.version: it must be the version asked for.
                raise BundleError(f"its {METADATA_FILE} names version {bundle.version!r}")
        except Exception as exc:  # any failure refuses this version only; the others keep serving
            reason = str(exc) if isinstance(exc, BundleError) else f"{type(exc).__name__}: {exc}"
            with self._lock:
                self._failures[version] = (self._clock(), reason)
            log.error("model bundle refused", extra={"model_version": version, "reason": reason})
            raise BundleUnavailable(version, reason) from exc
        with self._lock:
            self._failures.pop(version, None)
        log.info(
            "model bundle shelved",
            extra={"model_version": version, "load_ms": round((time.perf_counter() - started) * 1000, 1)},
        )
        return bundle

    def _evict_beyond_keep(self) -> None:
        # The version just stored is the most recently used, at the end: never the one evicted.
        while len(self._bundles) > self._keep:
            evicted, _ = self._bundles.popitem(last=False)
            log.info("model bundle evicted", extra={"model_version": evicted, "keep": self._keep})
