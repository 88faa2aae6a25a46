"""One image at a time: load -> split Y/CbCr -> tiled inference -> merge -> save -> report row.

``process`` never raises for bad input: every failure becomes a Row with
``status=error`` and a one-line reason. ``run`` drives a whole folder job:
it holds OUTPUT's lock, skips what earlier runs finished, and writes one
report row per discovered input.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from batchsr import atomic, formats, resume
from batchsr.choice import Choice, as_choice
from batchsr.config import ASSETS_NAME, HTML_NAME, RunConfig
from batchsr.discover import Job, Skip, discover
from batchsr.distribute import LocalDistributor
from batchsr.lock import LOCK_NAME, Locked, RunLock
from batchsr.models import Model
from batchsr.process import Stopped
from batchsr.report import ERROR, OK, SKIPPED, CsvReport, Row, Summary
from batchsr.runner import ImageRunner
from batchsr.tuning import single_threaded_blas

log = logging.getLogger("batchsr")


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT, SIGTERM or SIGHUP, raised once everything finished is recorded.

    ``exit_code`` is the shell's convention, 128 + the signal's number (130, 143, 129).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
        self.exit_code = 128 + signum
        try:
            self.name = signal.Signals(signum).name
        except ValueError:
            self.name = f"signal {signum}"


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


def _key(job: Job, choice: Choice, cfg: RunConfig) -> str | None:
    quality = cfg.quality if job.format in formats.LOSSY else None
    return resume.job_key(job.input_rel.as_posix(), job.src, choice.digest, choice.scale, job.format, quality)


def _skip_row(item: Skip, choice: Choice) -> Row:
    row = Row(input=str(item.path), status=item.status, model=choice.label, scale=choice.scale)
    if item.status == ERROR:
        row.error = item.reason
    else:
        row.notes = item.reason
    return row


def _recorded(row: Row) -> dict:
    """What the resume state keeps of a finished row, so a rerun's row can repeat it."""
    return {k: getattr(row, k) for k in (*resume.COUNTS, *resume.FIGURES, *resume.TEXTS)}


def _up_to_date_row(job: Job, output: Path, choice: Choice, entry: dict) -> Row:
    """A skipped row that keeps the figures, model and notes of the run that wrote the output."""
    carried = resume.figures(entry)
    notes = "; ".join(
        ["up to date: same input, model and settings (--overwrite redoes it)"]
        + ([carried.pop("notes")] if "notes" in carried else [])
    )
    return Row(
        input=str(job.src),
        output=str(output / job.rel),
        status=SKIPPED,
        scale=choice.scale,
        model=carried.pop("model", choice.label),
        providers=choice.clean.session.ran_on,
        notes=notes,
        **carried,
    )


def _remove_stale_temporaries(output: Path, input_path: Path) -> None:
    """Delete temporary files a killed run left in OUTPUT (only ever batchsr's own names).

    An INPUT inside OUTPUT is not entered: INPUT is never modified.
    """
    inp = os.path.realpath(input_path)
    for folder, dirs, files in os.walk(output):
        dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(folder, d)) != inp]
        for name in files:
            if name.startswith(".") and name.endswith(atomic.TMP_SUFFIX):
                try:
                    os.unlink(os.path.join(folder, name))
                except OSError:
                    pass


def _found(item: Job | Skip) -> bool:
    """Whether ``item`` is an image INPUT holds (processed or not), for the empty-INPUT check."""
    return isinstance(item, Job) or item.image


def _within(path: str, root: str) -> bool:
    """Whether resolved ``path`` is ``root`` or lies under it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def plan(cfg: RunConfig, choice: Choice | Model) -> list[tuple[Job | Skip, dict | None]]:
    """Discovery plus resume: each reportable item with its up-to-date state entry (or None).

    Unless ``cfg.overwrite``, a job whose output path holds a file batchsr did
    not write, or one changed since, becomes a skipped item: never replaced.
    """
    choice = as_choice(choice)
    output = Path(cfg.output)
    state = resume.State(output) if not cfg.overwrite else None
    out: list[tuple[Job | Skip, dict | None]] = []
    in_root = os.path.realpath(cfg.input) if Path(cfg.input).is_dir() else None
    out_root = os.path.realpath(output)
    # With OUTPUT inside INPUT every output lies in the part of INPUT the walk leaves out.
    output_in_input = in_root is not None and _within(out_root, in_root)
    for item in discover(Path(cfg.input), output, cfg.format):
        if isinstance(item, Skip):
            log.debug("skip %s: %s", item.path, item.reason)
            if item.report:
                out.append((item, None))
            continue
        if os.path.realpath(output / item.rel) == os.path.realpath(item.src):
            # e.g. `batchsr photo.jpg .` run beside the photo: INPUT is never modified.
            out.append(
                (
                    Skip(
                        item.src,
                        "its output path is the input file itself; choose another OUTPUT",
                        report=True,
                        status=ERROR,
                        image=True,
                    ),
                    None,
                )
            )
            continue
        if in_root is not None and not output_in_input and _within(os.path.realpath(output / item.rel), in_root):
            # e.g. `batchsr lib/scans lib` with lib/scans/scans/pic.png: its output would be lib/scans/pic.png.
            out.append(
                (
                    Skip(
                        item.src,
                        f"its output path {output / item.rel} lies inside INPUT, which is never "
                        "written; choose an OUTPUT that does not contain INPUT",
                        report=True,
                        status=ERROR,
                        image=True,
                    ),
                    None,
                )
            )
            continue
        entry = state.done(item.rel.as_posix(), _key(item, choice, cfg)) if state else None
        # Behind a link in OUTPUT (never written through) process() reports the link instead.
        linked = os.path.realpath((output / item.rel).parent) != os.path.join(out_root, *item.rel.parent.parts)
        why = state.foreign(item.rel.as_posix()) if state and entry is None and not linked else None
        if why:
            out.append(
                (
                    Skip(
                        item.src,
                        f"not processed: its output {output / item.rel} {why}; it is left "
                        "alone (--overwrite replaces it)",
                        report=True,
                        status=SKIPPED,
                        image=True,
                    ),
                    None,
                )
            )
            continue
        out.append((item, entry))
    return out


class FolderWork:
    """The per-item work of one folder run, in the parts a cluster engine must keep apart.

    Called on a ``(item, state entry)`` pair from :func:`plan`, it does all of
    it here and returns the item's Row (the local engine). A remote engine
    instead takes :meth:`ready_row` on the driver, ships the jobs it leaves to
    workers that run :func:`process` with the same ``cfg``, and hands each
    finished output back to :meth:`record` on the driver, which alone writes
    the resume state.
    """

    def __init__(self, cfg: RunConfig, choice: Choice | Model, state: resume.State, todo: int | None = None):
        self.cfg, self.choice, self.state = cfg, as_choice(choice), state
        self.output = Path(cfg.output)
        self.runner = ImageRunner(cfg, self.choice, todo)
        self.stop = threading.Event()
        self.runner.stop = self.stop

    def ready_row(self, pair: tuple[Job | Skip, dict | None]) -> Row | None:
        """The row of an item settled without the model (skipped, refused, up to date), else None."""
        item, entry = pair
        if isinstance(item, Skip):
            return _skip_row(item, self.choice)
        if entry is not None:
            return _up_to_date_row(item, self.output, self.choice, entry)
        return None

    def key(self, job: Job) -> str | None:
        """The resume key of ``job``'s output, taken before it is processed."""
        return _key(job, self.choice, self.cfg)

    def record(self, job: Job, key: str | None, row: Row, stat: os.stat_result) -> None:
        """Note in the resume state that ``job``'s output (whose finished file has ``stat``) is done."""
        self.state.record(job.rel.as_posix(), key, stat, **_recorded(row))

    def claim(self, job: Job) -> str | None:
        """The resume key of ``job``, noting in the state that its output is about to be written (for
        an engine that records outputs only after they are renamed into place)."""
        self.state.intend(job.rel.as_posix())
        return self.key(job)

    def __call__(self, pair: tuple[Job | Skip, dict | None]) -> Row | None:
        """The item's Row; None once the run is stopping and this item was not finished (no row:
        nothing of it is on disk)."""
        if self.stop.is_set():
            return None
        row = self.ready_row(pair)
        if row is not None:
            return row
        job = pair[0]
        key = self.key(job)
        committed: list[tuple[os.stat_result, dict]] = []

        def on_commit(r: Row, st: os.stat_result) -> None:
            self.record(job, key, r, st)  # before the rename, so no output is ever unrecorded
            committed.append((st, _recorded(r)))

        try:
            row = self.runner(job, self.output, on_commit)
        except Stopped:
            return None
        if row.status == OK and committed and _recorded(row) != committed[-1][1]:
            self.record(job, key, row, committed[-1][0])  # again, with the figures and notes found after
        return row


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
        summary.found += _found(item)
        if isinstance(item, Skip):
            out(f"{item.status:7s} {item.path}: {item.reason}")
            summary.add(_skip_row(item, choice))
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
        _remove_stale_temporaries(output, Path(cfg.input))
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
        summary = Summary(found=sum(_found(i) for i, _ in items), model=choice.label)

        todo = [item for item, entry in items if isinstance(item, Job) and entry is None]
        work = FolderWork(cfg, choice, state, len(todo))

        try:
            # The engine starts first: one that cannot run (a Ray worker that cannot
            # see INPUT) fails before the previous report is replaced by an empty one.
            # The signal handlers come after the engine: ray.init installs its own for SIGTERM.
            with (
                make_distributor(cfg, choice, todo) as dist,
                _StopOnSignal(work.stop) as signals,
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


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class _StopOnSignal:
    """While a run writes, SIGINT, SIGTERM and SIGHUP set ``stop`` instead of killing it mid-write.

    Local workers then abandon the images not yet committed (their temporary
    files removed), Ray's driver sends no more and waits for those in flight,
    the driver writes the rows of the images finished, and ``run`` raises
    :class:`Interrupted`. A second signal stops at once (KeyboardInterrupt).
    Only in the main thread (Python's rule for handlers); elsewhere nothing changes.
    """

    def __init__(self, stop: threading.Event):
        self.stop = stop
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        self.stop.set()

    def __enter__(self) -> "_StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                try:
                    if signal.getsignal(sig) is signal.SIG_IGN:
                        continue  # e.g. SIGHUP under nohup: the user asked for it to be ignored
                    self._old[sig] = signal.signal(sig, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            # None: a handler set outside Python (Ray's, in C), which Python cannot put back.
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._old = {}


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
