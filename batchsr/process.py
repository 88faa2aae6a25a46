"""One image through the runner: load, choose the model, upscale, save atomically, and its row.

:func:`process` never raises for bad input: every failure becomes a Row with
``status=error`` and a one-line reason.
"""

from __future__ import annotations

import logging
import os
import stat as stat_mode
import threading
import time
import traceback
from pathlib import Path
from typing import Callable, Iterator

from batchsr import decode, encode, formats
from batchsr.choice import Choice, as_choice
from batchsr.config import RunConfig
from batchsr.discover import Job
from batchsr.experiment import damage_columns, damage_of, psnr_columns
from batchsr.models import Model
from batchsr.report import ERROR, Row
from batchsr.upscaling import OutputError, upscale_bands

log = logging.getLogger("batchsr")


class DestinationError(Exception):
    """An output path that must not be written: through a link, or onto an INPUT file."""


class Stopped(Exception):
    """The run was asked to stop (a signal): this image is abandoned, nothing of it left on disk."""


def prepare_folder(output_root: Path, rel_folder: Path) -> None:
    """Create ``output_root / rel_folder`` one component at a time, never through a link.

    Raises DestinationError when a component is a symbolic link (it may lead
    anywhere: nothing is written through it) or is not a folder.
    """
    here = Path(output_root)
    for part in Path(rel_folder).parts:
        here = here / part
        try:
            st = os.lstat(here)
        except FileNotFoundError:
            try:
                os.mkdir(here)
            except FileExistsError:  # made by another thread meanwhile
                pass
            st = os.lstat(here)
        if stat_mode.S_ISLNK(st.st_mode):
            raise DestinationError(
                f"output folder {here} is a symbolic link: nothing is written through it "
                "(replace it with a real folder)"
            )
        if not stat_mode.S_ISDIR(st.st_mode):
            raise DestinationError(f"output folder {here} exists and is not a folder")


def process(
    job: Job,
    output_root: Path,
    choice: Choice | Model,
    cfg: RunConfig,
    on_commit: Callable[[Row, os.stat_result], None] | None = None,
    slot: ComputeSlot | None = None,
    stop: threading.Event | None = None,
) -> Row:
    """Upscale one image and write it atomically. Never raises for a bad input: returns an error row.

    ``choice`` picks the model from the input's damage estimates (``--model auto``), or
    is one model that runs every image; the row names the model that ran.
    ``on_commit(row, stat)`` runs once the output is complete in its
    temporary file, just before it is renamed into place (resume records it).
    ``slot``, held by the caller, is let go while the output is fsynced and
    taken again for the PSNR experiment. Once ``stop`` is set the image is
    abandoned (raises Stopped, its temporary file removed) unless its output
    was already committed.
    """
    choice = as_choice(choice)
    dst = Path(output_root) / job.rel
    clean = choice.clean
    row = Row(
        input=str(job.src), output=str(dst), scale=choice.scale, model=choice.label, providers=clean.session.ran_on
    )
    notes = list(job.notes)
    t0 = time.perf_counter()
    try:
        prepare_folder(output_root, job.rel.parent)
        pic = decode.load(job.src, cfg.max_pixels)
        row.width, row.height = pic.width, pic.height
        notes += pic.notes
        model, damaged = _choose(choice, pic, row, notes, cfg.psnr)
        fmt = job.format
        s = model.scale
        row.out_width, row.out_height = pic.width * s, pic.height * s
        if fmt != pic.format and not (fmt == "JPEG" and pic.format == "MPO"):
            notes.append(f"{pic.format} written as {fmt}")
        notes += encode.save_notes(pic.pixels, pic.bits, fmt)
        # Same print size: the pixels grew by the scale, so must the resolution.
        dpi = (pic.dpi[0] * s, pic.dpi[1] * s) if pic.dpi else None

        def commit(st: os.stat_result) -> None:
            if stop is not None and stop.is_set():
                raise Stopped()  # before the record and the rename: nothing of this image stays
            if on_commit is not None:
                on_commit(row, st)

        if stop is not None and stop.is_set():
            raise Stopped()
        # Inference runs as the encoder pulls bands: memory is one band plus
        # what the format's encoder must hold (nothing more for PNG and TIFF).
        # 16-bit only where the input had it and the format keeps it; else the 8-bit merge.
        bits = 16 if pic.bits == 16 and fmt in formats.DEEP_FORMATS else 8
        encode.save_bands(
            _until(stop, upscale_bands(pic.pixels, model, cfg.tile, bits)),
            (row.out_height, row.out_width, pic.pixels.shape[2]),
            pic.bits,
            dst,
            encode.Encoding(fmt, cfg.quality, cfg.compression),
            encode.Metadata(pic.exif, pic.icc, dpi),
            before_commit=commit,
            before_sync=slot.release if slot else None,
        )
        if cfg.psnr and damaged:
            # Measured (docs/notebook-real-photos.md): on inputs the rule judges damaged the
            # experiment's gain does not predict the true one, so no number is printed.
            said = model is choice.damaged  # auto's "chosen for" note named the damage already
            notes.append("no PSNR figure for a damaged input" + ("" if said else f" ({damaged})"))
        elif cfg.psnr:
            if slot:
                slot.acquire()
            # The output is written by now: a failing side experiment must not make it an error row.
            try:
                row.psnr_bicubic, row.psnr_model = psnr_columns(pic.pixels, model, cfg.tile)
                if row.psnr_bicubic is None:
                    notes.append(f"too small for the PSNR experiment at x{model.scale}")
            except Exception as exc:
                notes.append(f"PSNR experiment failed ({type(exc).__name__})")
    except Stopped:
        raise
    except Exception as exc:  # a batch must survive anything one file can do
        row.status, row.error = ERROR, _error_line(exc)
        if log.isEnabledFor(logging.DEBUG):  # --verbose: how it failed, whatever the kind of failure
            log.debug("%s failed:\n%s", job.src, traceback.format_exc().rstrip())
    if row.status == ERROR:
        row.output = ""
        row.out_width = row.out_height = None
    row.notes = "; ".join(notes)
    row.seconds = time.perf_counter() - t0
    return row


def _choose(choice: Choice, pic: decode.Picture, row: Row, notes: list[str], columns: bool) -> tuple[Model, str | None]:
    """The model for ``pic`` and why the choice's rule judges it damaged (None: clean, or not
    estimated), whichever model runs; the damage columns filled in when the choice or
    ``columns`` asks for the estimates; a note says why auto chose the damaged-input model,
    or that the estimate failed (the clean-input model then runs)."""
    damage = None
    if choice.auto or columns:
        try:
            damage = damage_of(pic)
            row.jpeg_quality, row.noise_sigma = damage_columns(damage)
            if damage.jpeg_from_pixels:
                again = "" if pic.jpeg_quality is None else f" (saved again at {pic.jpeg_quality:.0f})"
                notes.append(f"JPEG quality {damage.jpeg_quality:.0f} read from the pixels{again}")
        except Exception as exc:  # an estimate must never cost the image
            notes.append(f"damage estimate failed ({type(exc).__name__})")
    model, seen = choice.pick(damage)
    row.model, row.providers = model.label, model.session_for(pic.height, pic.width).ran_on
    if seen:
        notes.append(f"{model.name} chosen for {seen}")
    if model.note:
        notes.append(model.note)
    if choice.auto or damage is None:
        return model, seen
    return model, choice.rule.seen(damage)


def _error_line(exc: Exception) -> str:
    """The report's one-line error for what ``process`` caught."""
    if isinstance(exc, (decode.ImageError, OutputError, DestinationError)):
        return str(exc)  # already a sentence for the user
    if isinstance(exc, MemoryError):
        return "out of memory (try a smaller --tile)"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unexpected error'}"


def _until(stop: threading.Event | None, bands: Iterator) -> Iterator:
    """``bands``, raising Stopped between two of them once ``stop`` is set."""
    for band in bands:
        if stop is not None and stop.is_set():
            raise Stopped()
        yield band


class ComputeSlot:
    """One image's hold on one of ``--jobs`` compute slots (a shared semaphore).

    Held from decode to the last encoded byte; let go while the output file
    is fsynced (a wait on the disk: 2-5 ms an image here, during which the
    core would idle), so a spare worker thread can start the next image.
    Idempotent both ways, so error paths may release it again.
    """

    def __init__(self, slots: threading.Semaphore):
        self._slots, self._held = slots, False

    def acquire(self) -> None:
        if not self._held:
            self._slots.acquire()
            self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()
