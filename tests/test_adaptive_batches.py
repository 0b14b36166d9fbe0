"""The worker's batching rule: the flush timer waits while every pool process is busy, so batches grow; and
while messages come fast, a free process waits a moment for the next ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import celery_batches
import pytest
from celery import Celery

import worker.adaptive_batches
from worker.adaptive_batches import AdaptiveBatches


@dataclass
class BufferedRequest:
    """What celery-batches reads of a received message."""

    id: str
    acked: bool = False
    requeued: bool = False
    eta: None = None
    name: str = "predict"
    _payload: tuple[Any, ...] = ((), {}, {})
    delivery_info: dict[str, Any] = field(default_factory=dict)
    hostname: str = "test"
    reply_to: None = None
    correlation_id: None = None
    request_dict: dict[str, Any] = field(default_factory=dict)
    task: Any = None

    def acknowledge(self) -> None:
        self.acked = True

    def reject(self, requeue: bool = False) -> None:
        self.requeued = requeue


@dataclass
class RecordingPool:
    """A pool of num_processes that records the batches handed to it and finishes them on demand."""

    num_processes: int
    batches: list[list[str]] = field(default_factory=list)
    running: list[dict[str, Any]] = field(default_factory=list)

    def apply_async(self, _target: Any, args: tuple[Any, ...], **callbacks: Any) -> None:
        self.batches.append([r.id for r in args[1][0]])
        self.running.append(callbacks)

    def finish_oldest(self, *, lost: bool = False) -> None:
        callbacks = self.running.pop(0)
        callbacks["error_callback"](None) if lost else callbacks["callback"](None)

    def take_newest(self) -> None:
        """A pool process takes the batch handed out last."""
        self.running[-1]["accept_callback"](4242, 0.0)

    def lose_oldest_unread(self) -> None:
        """The batch handed out first goes down with its pool process before the process read it: the pool
        reports nothing about it (AsynPool calls none of its callbacks)."""
        self.running.pop(0)


def batching_task(
    processes: int, flush_every: int = 10, hold_for_more_s: float = 0.0, flush_interval: float = 0.01
) -> tuple[Any, RecordingPool]:
    app = Celery(set_as_current=False)

    @app.task(
        base=AdaptiveBatches,
        flush_every=flush_every,
        flush_interval=flush_interval,
        hold_for_more_s=hold_for_more_s,
        acks_late=True,
        shared=False,
    )
    def predict(requests: list[Any]) -> None:
        return None

    pool = RecordingPool(num_processes=processes)
    predict._pool = pool
    return predict, pool


def arrive_then_tick(task: Any, *ids: str) -> list[BufferedRequest]:
    """Messages arrive in the buffer, then the flush timer ticks once."""
    requests = [BufferedRequest(id=i, task=task) for i in ids]
    for request in requests:
        task._buffer.put(request)
    task._do_flush()
    return requests


def test_while_the_only_process_is_busy_arrivals_merge_into_one_batch() -> None:
    task, pool = batching_task(processes=1)
    arrive_then_tick(task, "a")
    arrive_then_tick(task, "b")
    arrive_then_tick(task, "c")
    assert pool.batches == [["a"]]
    pool.finish_oldest()
    task._do_flush()
    assert pool.batches == [["a"], ["b", "c"]]


def test_a_full_buffer_is_flushed_even_when_every_process_is_busy() -> None:
    task, pool = batching_task(processes=1, flush_every=3)
    arrive_then_tick(task, "a")
    arrive_then_tick(task, "b", "c", "d")
    assert pool.batches == [["a"], ["b", "c", "d"]]


def test_each_free_process_takes_a_batch_at_once() -> None:
    task, pool = batching_task(processes=2)
    arrive_then_tick(task, "a")
    arrive_then_tick(task, "b")
    assert pool.batches == [["a"], ["b"]]


def test_late_acks_wait_for_the_batch_and_a_lost_process_requeues_it_and_frees_its_slot() -> None:
    task, pool = batching_task(processes=1)
    first = arrive_then_tick(task, "a")
    assert not first[0].acked
    pool.finish_oldest(lost=True)
    assert not first[0].acked and first[0].requeued
    second = arrive_then_tick(task, "b")
    pool.finish_oldest()
    assert pool.batches == [["a"], ["b"]] and second[0].acked


def test_a_message_never_waits_longer_than_the_longest_hold() -> None:
    task, pool = batching_task(processes=1)
    arrive_then_tick(task, "a")
    arrive_then_tick(task, "b")
    assert pool.batches == [["a"]]  # the process is busy: b waits
    task.longest_hold_s = 0.0  # as if the hold had run out
    task._do_flush()
    assert pool.batches == [["a"], ["b"]]


def test_a_batch_lost_unread_with_its_process_stops_counting_once_a_later_batch_is_taken() -> None:
    task, pool = batching_task(processes=1)
    arrive_then_tick(task, "a")
    pool.lose_oldest_unread()
    arrive_then_tick(task, "b")
    assert pool.batches == [["a"]]  # the pool still looks busy with a
    task.longest_hold_s = 0.0  # the hold runs out once
    task._do_flush()
    task.longest_hold_s = 1.0
    pool.take_newest()  # b is taken: a, handed out before it and never taken, is gone
    pool.finish_oldest()
    arrive_then_tick(task, "c")
    assert pool.batches == [["a"], ["b"], ["c"]]  # c leaves at once, not after the longest hold


class Clock:
    """The batching rule's clock, set by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(worker.adaptive_batches, "monotonic", clock)
    return clock


def arrive_at(task: Any, clock: Clock, at_ms: float, observation_id: str) -> None:
    """A message arrives at at_ms (as the worker's message handler sees it: timed, then buffered)."""
    clock.now = 1000.0 + at_ms / 1000
    task._note_arrival()
    task._buffer.put(BufferedRequest(id=observation_id, task=task))


def tick_at(task: Any, clock: Clock, at_ms: float) -> None:
    clock.now = 1000.0 + at_ms / 1000
    task._do_flush()


def holding_task(processes: int = 1) -> tuple[Any, RecordingPool]:
    """A task that holds for 20 ms, its timer ticking every 5 ms (the service's defaults)."""
    return batching_task(processes, flush_every=100, hold_for_more_s=0.020, flush_interval=0.005)


def test_while_messages_come_fast_a_free_process_waits_for_more_within_the_hold(clock: Clock) -> None:
    task, pool = holding_task()
    ids = [f"m{n}" for n in range(10)]
    for n, observation_id in enumerate(ids):  # one every 2 ms
        arrive_at(task, clock, 2 * n, observation_id)
        if n in (3, 5):
            tick_at(task, clock, 2 * n + 1)  # the oldest waited 7 and 11 ms; the next tick comes in 5
        if n == 8:
            assert pool.batches == []
            tick_at(task, clock, 17)  # 17 ms, and the next tick would be past the 20 ms hold: flush now
    assert pool.batches == [ids[:9]]


def test_at_a_light_rate_nothing_waits_for_a_next_message(clock: Clock) -> None:
    task, pool = holding_task()
    arrive_at(task, clock, 0, "a")  # the first: no next one expected
    tick_at(task, clock, 5)
    pool.finish_oldest()
    arrive_at(task, clock, 50, "b")  # one every 50 ms: the next is not due within the hold
    tick_at(task, clock, 55)
    assert pool.batches == [["a"], ["b"]]


def test_a_pause_after_fast_messages_ends_the_wait(clock: Clock) -> None:
    task, pool = holding_task()
    for n, observation_id in enumerate(["a", "b", "c"]):
        arrive_at(task, clock, 2 * n, observation_id)
    tick_at(task, clock, 6)
    assert pool.batches == []  # still coming every 2 ms, as far as the worker knows
    tick_at(task, clock, 13)  # quiet for 9 ms: the next is at least that far off, past the hold
    assert pool.batches == [["a", "b", "c"]]


def test_a_message_after_a_gap_longer_than_the_hold_does_not_wait(clock: Clock) -> None:
    task, pool = holding_task()
    for n, observation_id in enumerate(["a", "b", "c"]):  # a burst, one every 2 ms
        arrive_at(task, clock, 2 * n, observation_id)
    tick_at(task, clock, 17)
    pool.finish_oldest()
    arrive_at(task, clock, 40, "d")  # 36 ms after the burst
    tick_at(task, clock, 45)
    assert pool.batches == [["a", "b", "c"], ["d"]]


def test_the_message_handler_times_each_message_before_handling_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task, _ = batching_task(processes=1)
    timed_when_handled: list[float] = []

    def celery_batches_strategy(self: Any, *_: Any) -> Any:
        return lambda *args, **kwargs: timed_when_handled.append(task._last_arrival)

    monkeypatch.setattr(celery_batches.Batches, "Strategy", celery_batches_strategy)
    handle = task.Strategy(task, task.app, consumer=None)
    handle("message")
    handle("message")
    assert len(timed_when_handled) == 2 and all(at > 0 for at in timed_when_handled)
