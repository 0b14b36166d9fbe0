"""The worker's batching rule: the flush timer waits while every pool process is busy, so batches grow."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery

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


def batching_task(processes: int, flush_every: int = 10) -> tuple[Any, RecordingPool]:
    app = Celery(set_as_current=False)

    @app.task(
        base=AdaptiveBatches, flush_every=flush_every, flush_interval=0.01, acks_late=True, shared=False
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
