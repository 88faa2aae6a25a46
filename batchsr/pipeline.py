"""One image at a time: load -> split Y/CbCr -> tiled inference -> merge -> save -> report row.

``process`` never raises for bad input: every failure becomes a Row with
``status=error`` and a one-line reason. ``run`` drives a whole folder job:
it holds OUTPUT's lock, skips what earlier runs finished, and writes one
report row per discovered input.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable

from batchsr import resume
from batchsr.choice import Choice, as_choice
from batchsr.config import ASSETS_NAME, HTML_NAME, RunConfig
from batchsr.discover import Job, Skip
from batchsr.distribute import LocalDistributor
from batchsr.lock import LOCK_NAME, Locked, RunLock
from batchsr.models import Model
from batchsr.report import ERROR, OK, SKIPPED, CsvReport, Row, Summary
from batchsr.stopping import Interrupted, StopOnSignal
from batchsr.tuning import single_threaded_blas
from batchsr.work import FolderWork, found, plan, remove_stale_temporaries, skip_row

log = logging.getLogger("batchsr")


class SetupError(Exception):
    """The run cannot start (OUTPUT, its lock or the report cannot be written); one line, CLI rc 2."""


class UsageError(ValueError):
    """INPUT and OUTPUT cannot make a run (missing INPUT, OUTPUT a file or INPUT itself); one line, CLI rc 2."""


def check_paths(input_path: Path, output: Path) -> None:
    """Raise UsageError for an INPUT/OUTPUT pair that cannot make a run (the CLI's own checks)."""
    inp, out = Path(input_path), Path(output)
    if not inp.exists():
        raise UsageError(f"input not found: {inp}")
    if out.exists() and not out.is_dir():
        raise UsageError(f"output exists and is not a folder: {out}")
    if inp.is_dir() and inp.resolve() == out.resolve():
        raise UsageError("OUTPUT must differ from INPUT (batchsr never overwrites its inputs)")


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


# OUTPUT's own files: refused up front when they are links (see check_output_links).
def _bookkeeping(cfg: RunConfig) -> list[Path]:
    output = Path(cfg.output)
    paths = [output / LOCK_NAME, output / resume.STATE_NAME, cfg.report_path]
    if cfg.html:
        paths += [output / HTML_NAME, output / ASSETS_NAME]
    return paths


def check_output_links(cfg: RunConfig) -> None:
    """Raise SetupError if the report, lock, state file or (with --html) page or assets folder is a link.

    Refused rather than replaced: the link is the user's, and may be deliberate;
    writing through it would touch a file outside OUTPUT.
    """
    for p in _bookkeeping(cfg):
        if os.path.islink(p):
            raise SetupError(
                f"{p} is a symbolic link: batchsr never writes through links; remove it or choose another OUTPUT"
            )


class _Progress:
    """The progress bar on a terminal (failures so far beside it, each error printed above it);
    elsewhere, one log line per image."""

    def __init__(self, cfg: RunConfig, total: int):
        self.cfg, self.failed = cfg, 0
        self.bar = None
        if not cfg.quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", dynamic_ncols=True)

    def show(self, row: Row) -> None:
        if self.bar is None:
            _log_row(row, self.cfg)
            return
        if row.status == ERROR:
            self.failed += 1
            self.bar.write(f"batchsr: error {row.input}: {row.error}", file=sys.stderr)
            self.bar.set_postfix(failed=self.failed, refresh=False)
        self.bar.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_distributor(cfg: RunConfig, choice: Choice | None = None, todo: list[Job] | None = None):
    """The engine that runs the per-image work: this machine (``--jobs`` images in flight) or Ray.

    ``todo`` are the jobs that need the models; the Ray engine sizes its pool by
    them and checks that its workers can read the first. With nothing to do, no
    cluster is started: every row is the driver's own.
    """

    if cfg.engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {cfg.engine!r} (local or ray)")
    if cfg.engine == "ray" and todo:
        from batchsr.ray_engine import RayDistributor

        return RayDistributor(cfg, as_choice(choice), todo)
    # Twice --jobs threads: --jobs compute (ImageRunner's slots), the others
    # start the next images while finished ones wait for their fsync.
    return LocalDistributor(cfg.jobs, threads=2 * cfg.jobs if cfg.jobs > 1 else 1)


def _say(text: str) -> None:
    # File names need not be valid in stdout's encoding: escape, never crash.
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(enc, "backslashreplace").decode(enc, "replace"))


def dry_run(cfg: RunConfig, choice: Choice | Model, out: Callable[[str], None] = _say) -> Summary:
    """Say on stdout (or to ``out``) what a run would do, one line per input, writing nothing.

    The Summary counts images to process as ok.
    """
    t0 = time.perf_counter()
    choice = as_choice(choice)
    summary = Summary(dry_run=True)
    output = Path(cfg.output)
    summary.found = 0
    for item, entry in plan(cfg, choice):
        summary.found += found(item)
        if isinstance(item, Skip):
            out(f"{item.status:7s} {item.path}: {item.reason}")
            summary.add(skip_row(item, choice))
        elif entry is not None:
            out(f"skip    {item.src}: up to date")
            summary.skipped += 1
        else:
            why = f" ({'; '.join(item.notes)})" if item.notes else ""
            out(f"process {item.src} -> {output / item.rel}{why}")
            summary.ok += 1
    summary.seconds = time.perf_counter() - t0
    return summary


def run(cfg: RunConfig, choice: Choice | Model, on_row: Callable[[Row], None] | None = None) -> Summary:
    """Upscale every image under ``cfg.input`` into ``cfg.output``; write the CSV report.

    Returns the Summary (its ``exit_code`` is the CLI's). One bad file never
    stops the batch. Outputs that an earlier run finished and that are up to
    date are skipped unless ``cfg.overwrite``. Raises ``lock.Locked`` if
    another run is writing into the same OUTPUT. With ``cfg.dry_run`` nothing
    is written (see :func:`dry_run`). Raises UsageError (see :func:`check_paths`) and
    SetupError before any image, as the CLI's exit code 2.
    """
    check_paths(cfg.input, cfg.output)
    choice = as_choice(choice)
    if cfg.dry_run:
        return dry_run(cfg, choice)
    t0 = time.perf_counter()
    output = Path(cfg.output)
    check_output_links(cfg)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SetupError(f"cannot write to OUTPUT {output}: {_mkdir_reason(output, exc)}") from None
    try:
        held = RunLock(output).acquire()
    except Locked:
        raise
    except OSError as exc:
        raise SetupError(f"cannot write to OUTPUT {output}: {_reason(exc)} ({output / LOCK_NAME})") from None
    try:
        summary, signum = _locked_run(cfg, choice, on_row, held)
    finally:
        held.release()
    summary.seconds = time.perf_counter() - t0
    if signum is not None:
        # Raised only now: every output on disk has its row and its record, the lock is released.
        raise Interrupted(signum)
    return summary


def _locked_run(cfg: RunConfig, choice: Choice, on_row, held: RunLock) -> tuple[Summary, int | None]:
    output = Path(cfg.output)
    with single_threaded_blas():
        if held.stale:
            log.warning(
                "took over the lock of %s left by %s, which did not finish", output, RunLock.describe(held.stale)
            )
        remove_stale_temporaries(output, Path(cfg.input))
        items = plan(cfg, choice)
        state = resume.State(output)
        try:
            state.compact()
        except OSError as exc:
            raise SetupError(f"cannot write to OUTPUT {output}: {_reason(exc)} ({state.path})") from None
        n_jobs = sum(isinstance(i, Job) for i, _ in items)
        models = (
            f"auto: {choice.clean.label} for clean inputs, {choice.damaged.label} for damaged ones"
            if choice.damaged is not None
            else choice.clean.label
        )
        log.info(
            "%d images; model %s (%s); providers %s",
            n_jobs,
            models,
            choice.clean.metadata.get("arch", "?"),
            choice.clean.session.ran_on,
        )
        summary = Summary(found=sum(found(i) for i, _ in items), model=choice.label)

        todo = [item for item, entry in items if isinstance(item, Job) and entry is None]
        work = FolderWork(cfg, choice, state, len(todo))

        try:
            # The engine starts first: one that cannot run (a Ray worker that cannot
            # see INPUT) fails before the previous report is replaced by an empty one.
            # The signal handlers come after the engine: ray.init installs its own for SIGTERM.
            with (
                make_distributor(cfg, choice, todo) as dist,
                StopOnSignal(work.stop) as signals,
                _open_report(cfg.report_path) as report,
                _Progress(cfg, len(items)) as progress,
            ):
                for _, row in dist.map(work, items):
                    if row is None:  # abandoned on a signal: nothing of it on disk
                        continue
                    report.write(row)
                    summary.add(row)
                    if on_row:
                        on_row(row)
                    progress.show(row)
        finally:
            state.close()
    return summary, signals.signum


def _mkdir_reason(output: Path, exc: OSError) -> str:
    for parent in (output, *output.parents):  # the usual cause: a file where a folder should be
        if parent.exists() and not parent.is_dir():
            return f"{parent} is not a directory"
    return _reason(exc)


def _open_report(path: Path) -> CsvReport:
    try:
        return CsvReport(path)
    except OSError as exc:
        why = (
            _mkdir_reason(path.parent, exc) if isinstance(exc, (FileExistsError, NotADirectoryError)) else _reason(exc)
        )
        raise SetupError(f"cannot write the report {path}: {why}") from None


def _log_row(row: Row, cfg: RunConfig) -> None:
    if cfg.quiet:
        return
    if row.status == OK:
        g = row.gain
        gain = f", {g:+.2f} dB over bicubic" if g is not None else ""
        log.info("ok %s (%.2f s%s)", row.input, row.seconds, gain)
    elif row.status == SKIPPED:
        log.info("skipped %s: %s", row.input, row.notes)
    else:
        log.info("error %s: %s", row.input, row.error)
