"""Reward jobs on daemon threads under a deadline, for callers on any thread or inside an event loop.

Trainers call rewards from worker threads (verl's reward loop, TRL's async loop, Ray actors), where signal-based
timeouts (SIGALRM) cannot be set. Here a job that outlives its deadline is abandoned on its daemon thread: its slot
reads None, it takes no further jobs, and the trainer's exit never waits for it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

_PENDING = object()


def _start(jobs: Sequence[Callable[[], Any]], workers: int, deliver: Callable[[int, Any], None],
           stop: threading.Event) -> None:
    """Up to `workers` daemon threads take the jobs in order and `deliver(index, value)` each one's result, or
    the exception it raised; once `stop` is set they take no further job."""
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(jobs)):
        todo.put(index)

    def work() -> None:
        while not stop.is_set():
            try:
                index = todo.get_nowait()
            except queue.Empty:
                return
            try:
                value: Any = jobs[index]()
            except Exception as exc:
                value = exc
            deliver(index, value)

    for _ in range(max(1, min(workers, len(jobs)))):
        threading.Thread(target=work, name="snsdata-reward", daemon=True).start()


def run_with_deadline(jobs: Sequence[Callable[[], Any]], workers: int, timeout_s: float) -> list[Any]:
    """Each job's result (or the exception it raised); None for a job unfinished `timeout_s` after the call."""
    results: list[Any] = [_PENDING] * len(jobs)
    if not jobs:
        return results
    lock = threading.Lock()
    finished = threading.Event()
    stop = threading.Event()
    remaining = [len(jobs)]

    def deliver(index: int, value: Any) -> None:
        with lock:
            if not stop.is_set():
                results[index] = value
            remaining[0] -= 1
            if remaining[0] == 0:
                finished.set()

    _start(jobs, workers, deliver, stop)
    finished.wait(timeout_s)
    with lock:
        stop.set()
        return [None if r is _PENDING else r for r in results]


async def gather_with_deadline(jobs: Sequence[Callable[[], Any]], workers: int, timeout_s: float) -> list[Any]:
    """`run_with_deadline` for a coroutine: the event loop keeps running other work while the jobs run."""
    if not jobs:
        return []
    loop = asyncio.get_running_loop()
    futures: list[asyncio.Future[Any]] = [loop.create_future() for _ in jobs]
    stop = threading.Event()

    def settle(index: int, value: Any) -> None:
        if not futures[index].done():
            futures[index].set_result(value)

    def deliver(index: int, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(settle, index, value)
        except RuntimeError:  # the loop has closed: nobody waits for this result any more
            return

    _start(jobs, workers, deliver, stop)
    try:
        await asyncio.wait(futures, timeout=timeout_s)
    finally:
        stop.set()
        for future in futures:
            if not future.done():
                future.cancel()
    return [future.result() if not future.cancelled() else None for future in futures]
