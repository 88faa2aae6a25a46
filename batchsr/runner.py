"""The per-image part of a run, as each engine's worker holds it: a shared memory budget,
``--jobs`` compute slots, and the session with every core for an image that runs alone."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path
from typing import Callable

from batchsr import decode
from batchsr.choice import Choice, as_choice
from batchsr.config import RunConfig
from batchsr.discover import Job
from batchsr.distribute import MemoryBudget
from batchsr.models import Model
from batchsr.process import ComputeSlot, Stopped, process
from batchsr.report import Row

# Output pixels of the images in flight at once (--jobs > 1): about 0.5 GB of
# output bytes and bands. A bigger image runs alone.
MEMORY_BUDGET_PIXELS = 64_000_000


def _output_pixels(src: Path, scale: int) -> int:
    """Output pixels of an image from its header alone (0 when unreadable: process reports it)."""
    size = decode.declared_size(src)  # any size, no warnings: a corrupt header is process()'s to report
    return size[0] * size[1] * scale * scale if size else 0


class ImageRunner:
    """:func:`process` for one engine's worker threads: a shared memory budget and
    the right session per image. The local engine and each Ray actor hold one.

    Images whose outputs together exceed the budget do not run side by side,
    so ``--jobs`` never multiplies big scans' memory. The model's own session
    gives each of the ``--jobs`` images in flight its share of the cores; an
    image that runs alone (too big to share the budget, or the only one to
    do) would leave the other cores idle, so it gets a second session with a
    thread per core (``cores``), built on first need. Not with an explicit
    ``--threads`` or off the CPU. At most ``cfg.jobs`` images compute at once
    (:class:`ComputeSlot`), however many threads call it.
    """

    def __init__(
        self,
        cfg: RunConfig,
        choice: Choice | Model,
        todo: int | None = None,
        cores: int | None = None,
        adapt: bool | None = None,
    ):
        self.cfg, self.choice, self.todo = cfg, as_choice(choice), todo
        self.cores = cores or os.cpu_count() or 1
        # Locally an explicit --threads is the user's word; a Ray actor's --threads is its CPU count.
        self.adapt = not cfg.threads if adapt is None else adapt
        self.budget = MemoryBudget(MEMORY_BUDGET_PIXELS)
        self.slots = threading.Semaphore(max(1, cfg.jobs))
        self._wide: Choice | None = None
        self._wide_lock = threading.Lock()
        self.stop: threading.Event | None = None  # set by the driver on SIGINT/SIGTERM/SIGHUP

    def choice_for(self, cost: int) -> Choice:
        """The models to run an image of ``cost`` output pixels with."""
        session = self.choice.clean.session
        if not self.adapt or not session.on_cpu or (session.options.threads or self.cores) >= self.cores:
            return self.choice
        if not (2 * cost > MEMORY_BUDGET_PIXELS or self.todo == 1):
            return self.choice
        with self._wide_lock:
            if self._wide is None:  # built on first need; both models of auto at once (small sessions)
                self._wide = self.choice.map(lambda m: replace(m, session=m.session.with_threads(self.cores)))
            return self._wide

    def __call__(
        self, job: Job, output_root: Path, on_commit: Callable[[Row, os.stat_result], None] | None = None
    ) -> Row:
        cost = _output_pixels(job.src, self.choice.scale)
        # Budget first, then a slot; a slot is only ever taken with budget held, so
        # the two cannot wait on each other.
        self.budget.acquire(cost)
        slot = ComputeSlot(self.slots)
        try:
            slot.acquire()
            if self.stop is not None and self.stop.is_set():
                raise Stopped()
            return process(job, output_root, self.choice_for(cost), self.cfg, on_commit, slot, self.stop)
        finally:
            slot.release()
            self.budget.release(cost)
