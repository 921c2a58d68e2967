"""An order-keeping thread map over batches: both cores busy, output independent of scheduling."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

_In = TypeVar("_In")
_Out = TypeVar("_Out")


def ordered_map(function: Callable[[_In], _Out], items: Iterable[_In], workers: int) -> Iterator[tuple[_In, _Out]]:
    """(item, function(item)) in input order, computed on `workers` threads, at most 2 x workers in flight.

    numpy and Polars release the GIL in their array work, so threads share the cores; keeping the input order
    makes every result the same as a sequential run.
    """
    if workers <= 1:
        for item in items:
            yield item, function(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[_In, Future[_Out]]] = deque()
        for item in items:
            pending.append((item, pool.submit(function, item)))
            if len(pending) > 2 * workers:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
