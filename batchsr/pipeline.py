"""One image at a time: load -> split Y/CbCr -> tiled inference -> merge -> save -> report row.

``process`` never raises for bad input: every failure becomes a Row with
``status=error`` and a one-line reason. ``run`` drives a whole folder job:
it holds OUTPUT's lock, skips what earlier runs finished, and writes one
report row per discovered input.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import stat as stat_mode
import sys
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from PIL import Image

from batchsr import color, images, metrics, resume, tiling
from batchsr.choice import Choice, as_choice
from batchsr.config import ASSETS_NAME, HTML_NAME, RunConfig
from batchsr.degrade import degrade
from batchsr.discover import Job, Skip, discover
from batchsr.distribute import MemoryBudget
from batchsr.estimate import Damage, estimate
from batchsr.lock import LOCK_NAME, Locked, RunLock
from batchsr.models import Model
from batchsr.report import ERROR, OK, SKIPPED, CsvReport, Row, Summary
from batchsr.tuning import single_threaded_blas

log = logging.getLogger("batchsr")

# Images up to this many LR pixels run whole (fastest); larger ones run in
# fixed tiles so memory stays bounded by the tile, not the image.
AUTO_WHOLE_MAX_PIXELS = 512 * 512
AUTO_TILE = 256
# Output pixels of the images in flight at once (--jobs > 1): about 0.5 GB of
# output bytes and bands. A bigger image runs alone.
MEMORY_BUDGET_PIXELS = 64_000_000
# Output pixels merged (chroma resize, YCbCr -> RGB, quantisation) at a time:
# a B100 photo in one go, a 4050-wide row of tiles in bands of about 43 LR
# rows; each float temporary is at most 2 MB.
MERGE_PIXELS = 1 << 19


def effective_tile(tile: int | None, height: int, width: int) -> int:
    """The tile size to use (0 = whole image) for a --tile value (None = auto)."""
    if tile is None:
        return 0 if height * width <= AUTO_WHOLE_MAX_PIXELS else AUTO_TILE
    return tile


class OutputError(Exception):
    """The model produced something that must not be written (NaN, wrong size, ...)."""


class DestinationError(Exception):
    """An output path that must not be written: through a link, or onto an INPUT file."""


class Stopped(Exception):
    """The run was asked to stop (a signal): this image is abandoned, nothing of it left on disk."""


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


def _check_band(y_sr: np.ndarray) -> None:
    if not np.isfinite(y_sr).all():
        raise OutputError("model output contains NaN or infinity")


def upscale_bands(
    pixels: np.ndarray, model: Model, tile: int | None = None, bits: int | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Upscale float (H, W, C) pixels in [0, 1] band by band, top to bottom.

    Yields ``(row0, row1, band)``: output rows ``row0:row1`` as float
    (rows, sW, C) in [0, 1], or with ``bits=8`` as the uint8 values an 8-bit
    output stores (merged and quantised in one go: see :func:`color.merge_u8`).
    Bands are the tile rows of the exact halo tiling,
    so memory beyond the input and the caller's output buffer is bounded by
    one band, not the image. The model sees luma only (Y for colour, the grey
    level as Y for grey); chroma and alpha are upscaled bicubically, each band
    so that it equals the same rows of a whole-image resize (:mod:`batchsr.resample`).
    """
    h, w, c = pixels.shape
    s = model.scale
    u8 = bits == 8
    has_alpha = c in (2, 4)
    colour = c - has_alpha == 3
    if colour:
        # One plane at a time: a full YCbCr copy of a big scan is 12 bytes a pixel.
        rgb = pixels[..., :3]
        planes = color.chroma_for_merge_u8(rgb) if u8 else (color.rgb_to_plane(rgb, 1), color.rgb_to_plane(rgb, 2))
        y = color.rgb_to_plane(rgb, 0)
    else:
        y = color.gray_to_y(pixels[..., 0])
        planes = ()
    alpha = np.ascontiguousarray(pixels[..., -1], dtype=np.float32) if has_alpha else None
    t = effective_tile(tile, h, w)
    merge_rows = max(1, MERGE_PIXELS // (w * s * s))  # LR rows per merged sub-band
    lo, hi = np.inf, -np.inf
    parts: list[np.ndarray] = []
    current = None
    batch = model.engine.run_batch if model.engine.batches else None
    tiles = tiling.iter_tiles(y, s, t, model.radius, model.engine.run, batch)
    for tl, part in itertools.chain(tiles, [(None, None)]):  # lazily: one tile row in memory
        if current is not None and (tl is None or tl.rows != current):
            y_sr = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
            _check_band(y_sr)
            lo, hi = min(lo, float(y_sr.min())), max(hi, float(y_sr.max()))
            if y_sr.shape[1] != w * s:
                raise OutputError(f"model output is {y_sr.shape[1]} wide, expected {w * s}")
            # Merge in sub-bands: the float temporaries of a whole tile row of a
            # wide image would cost several times the output's own bytes.
            for r0 in range(current.core0, current.core1, merge_rows):
                r1 = min(r0 + merge_rows, current.core1)
                y_rows = y_sr[(r0 - current.core0) * s : (r1 - current.core0) * s]
                # What the model does not see, bicubically, for these rows.
                if colour:
                    cb, cr = (color.resize_plane_rows(p, w * s, r0, r1, s) for p in planes)
                a = color.resize_plane_rows(alpha, w * s, r0, r1, s) if alpha is not None else None
                if u8:
                    band = np.empty((y_rows.shape[0], w * s, c), np.uint8)
                    if colour:
                        color.merge_u8(y_rows, cb, cr, band[..., :3])
                    else:
                        color.y_to_gray_u8(y_rows, band[..., 0])
                    if a is not None:
                        color.unit_to_u8(a, band[..., -1])
                else:
                    band = color.planes_to_rgb(y_rows, cb, cr) if colour else color.y_to_gray(y_rows)[..., None]
                    if a is not None:
                        band = np.concatenate([band, a[..., None]], -1)
                    np.clip(band, 0.0, 1.0, out=band)
                yield r0 * s, r1 * s, band
            parts = []
        if tl is None:
            break
        current = tl.rows
        parts.append(part)
    if h * w > 1 and hi - lo == 0.0 and float(y.max() - y.min()) > 0.0:
        raise OutputError("model output is constant for a non-constant image")


def upscale_pixels(pixels: np.ndarray, model: Model, tile: int | None = None) -> np.ndarray:
    """Float (H, W, C) in [0, 1] -> float (sH, sW, C) in [0, 1] (see :func:`upscale_bands`)."""
    h, w, c = pixels.shape
    s = model.scale
    out = np.empty((h * s, w * s, c), np.float32)
    for r0, r1, band in upscale_bands(pixels, model, tile):
        out[r0:r1] = band
    return out


def upscale_to_uint8(pixels: np.ndarray, model: Model, tile: int | None = None) -> np.ndarray:
    """Float (H, W, C) in [0, 1] -> uint8 (sH, sW, C), never holding the float output whole.

    Equal to ``to_uint(upscale_pixels(...), 8)`` but for rare one-level
    rounding flips (:func:`color.merge_u8`); a 8100x6000 output costs
    its 146 MB of bytes plus one band, instead of 0.6 GB of floats.
    """
    h, w, c = pixels.shape
    s = model.scale
    out = np.empty((h * s, w * s, c), np.uint8)
    for r0, r1, band in upscale_bands(pixels, model, tile, bits=8):
        out[r0:r1] = band
    return out


def upscale_u8(image_u8: np.ndarray, model: Model, tile: int | None = None) -> np.ndarray:
    """8-bit RGB (H, W, 3) or grey (H, W) -> the 8-bit upscaled image batchsr would write."""
    a = image_u8.astype(np.float32) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    out = upscale_to_uint8(a, model, tile)
    return out[..., 0] if image_u8.ndim == 2 else out


def paper_experiment(truth_u8: np.ndarray, model: Model, tile: int | None = None):
    """The original paper's per-image experiment on an 8-bit RGB or grey image.

    The image is its own ground truth: mod-crop it, degrade it by the model's
    scale (the shared ``degrade``), upscale that with bicubic and with the
    model. Returns ``(truth, bicubic, model_output)`` as 8-bit arrays of equal size.
    """
    s = model.scale
    gt, lr = degrade(Image.fromarray(truth_u8), s)
    bicubic = np.asarray(lr.resize(gt.size, Image.BICUBIC))
    return np.asarray(gt), bicubic, upscale_u8(np.asarray(lr), model, tile)


def psnr_columns(pixels: np.ndarray, model: Model, tile: int | None) -> tuple[float | None, float | None]:
    """(psnr_bicubic, psnr_model) of the paper's experiment, or (None, None) if too small."""
    s = model.scale
    h, w = pixels.shape[:2]
    if min(h // s, w // s) < 1 or min(h - h % s, w - w % s) <= 2 * s:
        return None, None
    colour = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., 0]
    truth, bicubic, sr = paper_experiment(color.to_uint(colour, 8), model, tile)
    return metrics.psnr_y(truth, bicubic, s), metrics.psnr_y(truth, sr, s)


def damage_of(pic: images.Picture) -> Damage:
    """What the input's file and luma say of its damage (the report's jpeg_quality and noise_sigma)."""
    colour = pic.pixels[..., :3] if pic.pixels.shape[2] >= 3 else None
    y = color.rgb_to_y(colour) if colour is not None else color.gray_to_y(pic.pixels[..., 0])
    return estimate(y * np.float32(255.0), pic.jpeg_quality)


def damage_columns(found: Damage) -> tuple[float | None, float | None]:
    """(jpeg_quality, noise_sigma) of the report: a NaN sigma (an image too small to tell) left empty."""
    return found.jpeg_quality, (None if math.isnan(found.noise_sigma) else found.noise_sigma)


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
        input=str(job.src), output=str(dst), scale=choice.scale, model=choice.label, providers=clean.engine.ran_on
    )
    notes = list(job.notes)
    t0 = time.perf_counter()
    try:
        prepare_folder(output_root, job.rel.parent)
        pic = images.load(job.src, cfg.max_pixels)
        row.width, row.height = pic.width, pic.height
        notes += pic.notes
        model = _choose(choice, pic, row, notes, cfg.psnr)
        fmt = job.format
        s = model.scale
        row.out_width, row.out_height = pic.width * s, pic.height * s
        if fmt != pic.format and not (fmt == "JPEG" and pic.format == "MPO"):
            notes.append(f"{pic.format} written as {fmt}")
        notes += images.save_notes(pic.pixels, pic.bits, fmt)
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
        bits = 16 if pic.bits == 16 and fmt in images.DEEP_FORMATS else 8
        images.save_bands(
            _until(stop, upscale_bands(pic.pixels, model, cfg.tile, bits)),
            row.out_width,
            row.out_height,
            pic.pixels.shape[2],
            pic.bits,
            dst,
            fmt,
            exif=pic.exif,
            icc=pic.icc,
            dpi=dpi,
            quality=cfg.quality,
            png_level=cfg.compression,
            before_commit=commit,
            before_sync=slot.release if slot else None,
        )
        if cfg.psnr:
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


def _choose(choice: Choice, pic: images.Picture, row: Row, notes: list[str], columns: bool) -> Model:
    """The model for ``pic``, the damage columns filled in when the choice or ``columns`` asks
    for the estimates; a note says why auto chose the damaged-input model, or that the
    estimate failed (the clean-input model then runs)."""
    damage = None
    if choice.auto or columns:
        try:
            damage = damage_of(pic)
            row.jpeg_quality, row.noise_sigma = damage_columns(damage)
        except Exception as exc:  # an estimate must never cost the image
            notes.append(f"damage estimate failed ({type(exc).__name__})")
    model, seen = choice.pick(damage)
    row.model, row.providers = model.label, model.engine.ran_on
    if seen:
        notes.append(f"{model.name} chosen for {seen}")
    return model


def _error_line(exc: Exception) -> str:
    """The report's one-line error for what ``process`` caught."""
    if isinstance(exc, (images.ImageError, OutputError, DestinationError)):
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


def _output_pixels(src: Path, scale: int) -> int:
    """Output pixels of an image from its header alone (0 when unreadable: process reports it)."""
    size = images.declared_size(src)  # any size, no warnings: a corrupt header is process()'s to report
    return size[0] * size[1] * scale * scale if size else 0


def make_distributor(cfg: RunConfig, choice: Choice | None = None, todo: list[Job] | None = None):
    """The engine that runs the per-image work: this machine (``--jobs`` images in flight) or Ray.

    ``todo`` are the jobs that need the models; the Ray engine sizes its pool by
    them and checks that its workers can read the first. With nothing to do, no
    cluster is started: every row is the driver's own.
    """
    from batchsr.distribute import LocalDistributor

    if cfg.engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {cfg.engine!r} (local or ray)")
    if cfg.engine == "ray" and todo:
        from batchsr.ray_engine import RayDistributor

        return RayDistributor(cfg, as_choice(choice), todo)
    # Twice --jobs threads: --jobs compute (ImageRunner's slots), the others
    # start the next images while finished ones wait for their fsync.
    return LocalDistributor(cfg.jobs, threads=2 * cfg.jobs if cfg.jobs > 1 else 1)


def _key(job: Job, choice: Choice, cfg: RunConfig) -> str | None:
    quality = cfg.quality if job.format in images.LOSSY else None
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
        providers=choice.clean.engine.ran_on,
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
            if name.startswith(".") and name.endswith(images.TMP_SUFFIX):
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
        engine = self.choice.clean.engine
        if not self.adapt or not engine.on_cpu or (engine.options.threads or self.cores) >= self.cores:
            return self.choice
        if not (2 * cost > MEMORY_BUDGET_PIXELS or self.todo == 1):
            return self.choice
        with self._wide_lock:
            if self._wide is None:  # built on first need; both models of auto at once (small sessions)
                self._wide = self.choice.map(lambda m: replace(m, engine=m.engine.with_threads(self.cores)))
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
            choice.clean.engine.ran_on,
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
