"""What a folder run does with each item: the plan (discovery plus the resume filter, and the
refusals of outputs that must not be written), the rows settled without the model (skipped,
up to date), and :class:`FolderWork`, the per-item work both engines take."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from batchsr import atomic, formats, resume
from batchsr.choice import Choice, as_choice
from batchsr.config import RunConfig
from batchsr.discover import Job, Skip, discover
from batchsr.models import Model
from batchsr.process import Stopped
from batchsr.report import ERROR, OK, SKIPPED, Row
from batchsr.runner import ImageRunner

log = logging.getLogger("batchsr")


def recipe_key(job: Job, choice: Choice, cfg: RunConfig) -> str | None:
    quality = cfg.quality if job.format in formats.LOSSY else None
    return resume.job_key(job.input_rel.as_posix(), job.src, choice.digest, choice.scale, job.format, quality)


def skip_row(item: Skip, choice: Choice) -> Row:
    row = Row(input=str(item.path), status=item.status, model=choice.label, scale=choice.scale)
    if item.status == ERROR:
        row.error = item.reason
    else:
        row.notes = item.reason
    return row


def recorded(row: Row) -> dict:
    """What the resume state keeps of a finished row, so a rerun's row can repeat it."""
    return {k: getattr(row, k) for k in (*resume.COUNTS, *resume.FIGURES, *resume.TEXTS)}


def up_to_date_row(job: Job, output: Path, choice: Choice, entry: dict) -> Row:
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


def remove_stale_temporaries(output: Path, input_path: Path) -> None:
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


def found(item: Job | Skip) -> bool:
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
        entry, why = state.check(item.rel.as_posix(), recipe_key(item, choice, cfg)) if state else (None, None)
        # Behind a link in OUTPUT (never written through) process() reports the link instead.
        if why and os.path.realpath((output / item.rel).parent) != os.path.join(out_root, *item.rel.parent.parts):
            why = None
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
            return skip_row(item, self.choice)
        if entry is not None:
            return up_to_date_row(item, self.output, self.choice, entry)
        return None

    def key(self, job: Job) -> str | None:
        """The resume key of ``job``'s output, taken before it is processed."""
        return recipe_key(job, self.choice, self.cfg)

    def record(self, job: Job, key: str | None, row: Row, stat: os.stat_result) -> None:
        """Note in the resume state that ``job``'s output (whose finished file has ``stat``) is done."""
        self.state.record(job.rel.as_posix(), key, stat, **recorded(row))

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
            committed.append((st, recorded(r)))

        try:
            row = self.runner(job, self.output, on_commit)
        except Stopped:
            return None
        if row.status == OK and committed and recorded(row) != committed[-1][1]:
            self.record(job, key, row, committed[-1][0])  # again, with the figures and notes found after
        return row
