"""Where the per-image work runs: one interface for local and cluster engines.

The driver (``pipeline.run``) owns discovery, the resume filter, the lock,
the report and the summary. It hands a distributor an iterable of work items
and a function that turns one item into its result; the distributor yields
``(item, result)`` pairs **in the items' order**, so the report is the same
whichever engine ran the work. Only a bounded number of items is in flight at
once, so memory does not grow with the size of the batch.

Both engines take the same per-item work, an :class:`ItemWork`. One that
runs elsewhere (``batchsr.ray_engine``) cannot call it on another machine: it
uses its parts instead (the rows only the driver may settle, the resume
record the driver alone writes) and ships the per-image part itself
(``runner.ImageRunner`` around ``process.process``). ``work.FolderWork``
is the one implementation.

``LocalDistributor`` runs on this machine: in the calling thread (``jobs=1``)
or in a pool of threads (``jobs>1``). Threads suffice because the heavy
parts release the GIL: onnxruntime's ``run``, Pillow's decoders and
encoders, and numpy, so one image's decode/encode overlaps another's
inference.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, TypeVar

if TYPE_CHECKING:  # for the annotations only: the modules import one way
    import os
    import threading

T = TypeVar("T")
R = TypeVar("R")


class EngineUnavailable(Exception):
    """The chosen engine cannot run this job at all (not installed, cluster unreachable,
    a worker that cannot see INPUT or OUTPUT). The message is one actionable line; nothing
    was processed."""


class ItemWork(Protocol):
    """The per-item work of a run. Called on an item it does all of it here and returns the
    item's row (None: abandoned on a stop); an engine that runs images elsewhere calls its
    parts instead."""

    stop: threading.Event  # set when the run is asked to stop: send no more items

    def __call__(self, item: Any) -> Any: ...

    def ready_row(self, item: Any) -> Any:
        """The row of an item settled without the model (skipped, up to date), else None."""
        ...

    def claim(self, job: Any) -> str | None:
        """The resume key of ``job``, noted as about to be written before it is sent elsewhere."""
        ...

    def record(self, job: Any, key: str | None, row: Any, stat: os.stat_result) -> None:
        """Note in the resume record that ``job``'s output (finished file: ``stat``) is done."""
        ...


class Distributor(Protocol):
    def map(self, work: ItemWork, items: Iterable[T]) -> Iterator[tuple[T, Any]]:
        """Do ``work`` on every item; yield ``(item, row)`` in the items' order."""
        ...

    def close(self) -> None: ...


class LocalDistributor:
    """This machine: ``threads`` worker threads (default ``jobs``; 1 = sequential, in the
    calling thread). How many of them compute at once is the work function's business
    (``runner.ImageRunner`` allows ``jobs``)."""

    def __init__(self, jobs: int = 1, window: int | None = None, threads: int | None = None):
        if jobs < 1:
            raise ValueError("jobs must be >= 1")
        self.jobs = jobs
        self.threads = threads or jobs
        # A couple of items queued per worker keeps every worker busy while the
        # driver writes report rows, without decoding the whole batch ahead.
        self.window = window or 2 * self.threads
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="batchsr") if self.threads > 1 else None

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R]]:
        if self._pool is None:
            for item in items:
                yield item, fn(item)
            return
        pending: deque = deque()
        for item in items:
            pending.append((item, self._pool.submit(fn, item)))
            if len(pending) >= self.window:
                done_item, fut = pending.popleft()
                yield done_item, fut.result()
        while pending:
            done_item, fut = pending.popleft()
            yield done_item, fut.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class MemoryBudget:
    """Bounds the output megapixels of the images in flight across worker threads.

    Several small images run side by side; an image whose cost alone exceeds
    the budget waits until it can run alone. So ``--jobs`` raises throughput
    without multiplying the peak memory of big scans.
    """

    def __init__(self, budget: int):
        import threading

        self.budget = budget
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, cost: int) -> None:
        with self._cond:
            while self.used > 0 and self.used + cost > self.budget:
                self._cond.wait()
            self.used += cost

    def release(self, cost: int) -> None:
        with self._cond:
            self.used -= cost
            self._cond.notify_all()
