"""Several bundle versions in one process: loaded verified on first use, LRU-evicted, broken ones refused."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.feature_spec import METADATA_FILE, PIPELINE_FILE, current_version
from tests.bundles import add_version, flip_one_byte
from tests.factories import observation
from worker.bundle import ModelBundle, load_bundle
from worker.bundle_shelf import BundleShelf, BundleUnavailable

OBSERVATIONS = [
    observation(),
    observation(SubjectAge=67, hour=23, day_of_week="Saturday", SearchAuthorizationCode="C"),
    observation(SubjectSexCode="F", ResidentIndicator=False, InterventionReasonCode="E"),
]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SpyLoader:
    """load_bundle, recording the versions asked for; `slow` versions take delay_s longer."""

    def __init__(self, slow: str = "", delay_s: float = 0.0) -> None:
        self.calls: list[str] = []
        self.slow, self.delay_s = slow, delay_s
        self.slow_started = threading.Event()

    def __call__(self, artifacts_dir: Path, version: str = "", *, pinned_sha256: str = "") -> ModelBundle:
        self.calls.append(version)
        if version == self.slow:
            self.slow_started.set()
            time.sleep(self.delay_s)
        return load_bundle(artifacts_dir, version, pinned_sha256=pinned_sha256)


def test_two_versions_load_and_predict_the_same_probabilities(bundle_copy: Path) -> None:
    first = current_version(bundle_copy)
    add_version(bundle_copy, "2099.01.01")
    shelf = BundleShelf(bundle_copy)

    old, new = shelf.get(first), shelf.get("2099.01.01")

    assert (old.version, new.version) == (first, "2099.01.01")
    assert shelf.loaded_versions == [first, "2099.01.01"]
    np.testing.assert_array_equal(
        old.predict_observations(OBSERVATIONS), new.predict_observations(OBSERVATIONS)
    )
    assert shelf.get(first) is old, "a loaded version is served from the shelf, not loaded again"


def test_changed_pipeline_byte_is_refused_naming_the_checksum_while_the_other_keeps_predicting(
    bundle_copy: Path,
) -> None:
    serving = current_version(bundle_copy)
    flip_one_byte(add_version(bundle_copy, "2099.01.01") / PIPELINE_FILE)
    shelf = BundleShelf(bundle_copy)
    before = shelf.get(serving).predict_observations(OBSERVATIONS)

    with pytest.raises(BundleUnavailable, match=rf"'2099.01.01'.*{PIPELINE_FILE}: SHA-256 .* does not match"):
        shelf.get("2099.01.01")

    assert shelf.loaded_versions == [serving]
    np.testing.assert_array_equal(shelf.get(serving).predict_observations(OBSERVATIONS), before)


def test_missing_version_is_refused_naming_it(bundle_copy: Path) -> None:
    shelf = BundleShelf(bundle_copy)

    with pytest.raises(
        BundleUnavailable, match=r"'2099.01.01' unavailable: .*metadata.json is missing"
    ) as info:
        shelf.get("2099.01.01")

    assert info.value.version == "2099.01.01"
    assert shelf.loaded_versions == []


@pytest.mark.parametrize("version", ["", "../artifacts", "a/b"])
def test_empty_or_path_like_version_is_refused(bundle_copy: Path, version: str) -> None:
    with pytest.raises(BundleUnavailable, match="version"):
        BundleShelf(bundle_copy).get(version)


def test_folder_whose_metadata_names_another_version_is_refused(bundle_copy: Path) -> None:
    # Predictions are stored under the bundle's own version: a copied folder must not pass for another.
    add_version(bundle_copy, "2099.01.01", metadata_version=current_version(bundle_copy))

    with pytest.raises(BundleUnavailable, match=r"'2099.01.01'.*metadata.json names version"):
        BundleShelf(bundle_copy).get("2099.01.01")


def test_version_pinned_to_another_metadata_checksum_is_refused(bundle_copy: Path) -> None:
    add_version(bundle_copy, "2099.01.01")
    serving = current_version(bundle_copy)
    serving_sha = hashlib.sha256((bundle_copy / serving / METADATA_FILE).read_bytes()).hexdigest()
    shelf = BundleShelf(bundle_copy, pinned={serving: serving_sha, "2099.01.01": serving_sha})

    assert shelf.get(serving).version == serving
    with pytest.raises(BundleUnavailable, match="does not match MODEL_SHA256"):
        shelf.get("2099.01.01")


def test_least_recently_used_version_is_evicted_beyond_keep(bundle_copy: Path) -> None:
    first = current_version(bundle_copy)
    for version in ("v2", "v3"):
        add_version(bundle_copy, version)
    loader = SpyLoader()
    shelf = BundleShelf(bundle_copy, keep=2, loader=loader)

    shelf.get(first)
    shelf.get("v2")
    shelf.get(first)  # now v2 is the least recently used
    shelf.get("v3")

    assert shelf.loaded_versions == [first, "v3"]
    shelf.get("v2")  # evicted, so loaded again; it evicts `first`, never itself
    assert shelf.loaded_versions == ["v3", "v2"]
    assert loader.calls == [first, "v2", "v3", "v2"]


def test_keep_of_one_still_serves_the_version_asked_for(bundle_copy: Path) -> None:
    add_version(bundle_copy, "v2")
    shelf = BundleShelf(bundle_copy, keep=1)

    shelf.get(current_version(bundle_copy))

    assert shelf.get("v2").version == "v2"
    assert shelf.loaded_versions == ["v2"]
    with pytest.raises(ValueError, match="keep"):
        BundleShelf(bundle_copy, keep=0)


def test_failed_version_is_not_read_again_within_the_backoff_and_is_retried_after_it(
    bundle_copy: Path,
) -> None:
    pipeline = add_version(bundle_copy, "2099.01.01") / PIPELINE_FILE
    original = flip_one_byte(pipeline)
    loader, clock = SpyLoader(), Clock()
    shelf = BundleShelf(bundle_copy, backoff_s=30, loader=loader, clock=clock)
    serving = shelf.get(current_version(bundle_copy))

    with pytest.raises(BundleUnavailable, match=r"SHA-256 .* does not match"):
        shelf.get("2099.01.01")
    for _ in range(5):  # one per batch of a queue full of work for the broken version
        clock.now += 5
        with pytest.raises(BundleUnavailable, match=r"SHA-256 .* does not match.*not tried again for 30 s"):
            shelf.get("2099.01.01")
    assert loader.calls.count("2099.01.01") == 1
    assert shelf.get(serving.version) is serving

    pipeline.write_bytes(original)  # the bundle is repaired; the shelf notices after the back-off
    clock.now += 5
    assert shelf.get("2099.01.01").version == "2099.01.01"
    assert loader.calls.count("2099.01.01") == 2


def test_concurrent_first_requests_load_a_version_once(bundle_copy: Path) -> None:
    add_version(bundle_copy, "2099.01.01")
    loader = SpyLoader(slow="2099.01.01", delay_s=0.5)
    shelf = BundleShelf(bundle_copy, loader=loader)
    served = shelf.get(current_version(bundle_copy))
    got: list[ModelBundle] = []
    threads = [threading.Thread(target=lambda: got.append(shelf.get("2099.01.01"))) for _ in range(4)]

    for thread in threads:
        thread.start()
    # While the new version loads, the one already held is served without waiting for it.
    assert loader.slow_started.wait(timeout=10)
    started = time.perf_counter()
    assert shelf.get(served.version) is served
    assert time.perf_counter() - started < 0.25
    for thread in threads:
        thread.join(timeout=10)

    assert len(got) == 4 and all(bundle is got[0] for bundle in got)
    assert loader.calls.count("2099.01.01") == 1
