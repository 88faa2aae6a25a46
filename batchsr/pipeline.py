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
import traceback
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from batchsr import color, images, metrics, resume, tiling
from batchsr.config import RunConfig
from batchsr.degrade import degrade
from batchsr.discover import Job, Skip, discover
from batchsr.lock import RunLock
from batchsr.models import Model
from batchsr.report import ERROR, OK, SKIPPED, CsvReport, Row, Summary

log = logging.getLogger("batchsr")

# Images up to this many LR pixels run whole (fastest); larger ones run in
# fixed tiles so memory stays bounded by the tile, not the image.
AUTO_WHOLE_MAX_PIXELS = 512 * 512
AUTO_TILE = 256


def effective_tile(tile: int | None, height: int, width: int) -> int:
    """The tile size to use (0 = whole image) for a --tile value (None = auto)."""
    if tile is None:
        return 0 if height * width <= AUTO_WHOLE_MAX_PIXELS else AUTO_TILE
    return tile


class OutputError(Exception):
    """The model produced something that must not be written (NaN, wrong size, ...)."""


def _run_y(y: np.ndarray, model: Model, tile: int | None) -> np.ndarray:
    h, w = y.shape
    t = effective_tile(tile, h, w)
    out = tiling.upscale_tiled(y, model.scale, t, model.radius, model.engine.run)
    if not np.isfinite(out).all():
        raise OutputError("model output contains NaN or infinity")
    if out.size > 1 and float(out.max() - out.min()) == 0.0 and float(y.max() - y.min()) > 0.0:
        raise OutputError("model output is constant for a non-constant image")
    return out


def upscale_pixels(pixels: np.ndarray, model: Model, tile: int | None = None) -> np.ndarray:
    """Float (H, W, C) in [0, 1] -> float (sH, sW, C) in [0, 1].

    The model sees luma only: Y for colour, the grey level (as Y) for grey.
    Chroma and alpha are upscaled bicubically.
    """
    h, w, c = pixels.shape
    s = model.scale
    alpha = None
    if c in (2, 4):
        alpha = np.clip(color.resize_plane(pixels[..., -1], w * s, h * s), 0.0, 1.0)
        pixels = pixels[..., :-1]
        c -= 1
    if c == 1:
        y_sr = _run_y(color.gray_to_y(pixels[..., 0]), model, tile)
        out = color.y_to_gray(y_sr)[..., None]
    else:
        ycc = color.rgb_to_ycbcr(pixels)
        y_sr = _run_y(ycc[..., 0], model, tile)
        out = color.merge(y_sr, ycc)
    np.clip(out, 0.0, 1.0, out=out)
    if out.shape[:2] != (h * s, w * s):
        raise OutputError(f"model output is {out.shape[1]}x{out.shape[0]}, expected {w * s}x{h * s}")
    if alpha is not None:
        out = np.concatenate([out, alpha[..., None]], axis=-1)
    return out


def upscale_u8(image_u8: np.ndarray, model: Model, tile: int | None = None) -> np.ndarray:
    """8-bit RGB (H, W, 3) or grey (H, W) -> the 8-bit upscaled image batchsr would write."""
    a = image_u8.astype(np.float32) / 255.0
    if a.ndim == 2:
        a = a[..., None]
    out = color.to_uint(upscale_pixels(a, model, tile), 8)
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


def process(job: Job, output_root: Path, model: Model, cfg: RunConfig,
            on_commit: Callable[[Row, os.stat_result], None] | None = None) -> Row:
    """Upscale one image and write it atomically. Never raises for a bad input: returns an error row.

    ``on_commit(row, stat)`` runs once the output is complete in its
    temporary file, just before it is renamed into place (resume records it).
    """
    dst = Path(output_root) / job.rel
    row = Row(input=str(job.src), output=str(dst), scale=model.scale, model=model.label,
              providers=",".join(model.engine.providers))
    notes = list(job.notes)
    t0 = time.perf_counter()
    try:
        pic = images.load(job.src, cfg.max_pixels)
        row.width, row.height = pic.width, pic.height
        notes += pic.notes
        out = upscale_pixels(pic.pixels, model, cfg.tile)
        row.out_width, row.out_height = out.shape[1], out.shape[0]
        fmt = job.format
        if fmt != pic.format and not (fmt == "JPEG" and pic.format == "MPO"):
            notes.append(f"{pic.format} written as {fmt}")
        notes += images.save_notes(out, pic.bits, fmt)
        # Same print size: the pixels grew by the scale, so must the resolution.
        dpi = (pic.dpi[0] * model.scale, pic.dpi[1] * model.scale) if pic.dpi else None
        commit = (lambda st: on_commit(row, st)) if on_commit else None
        images.save_pixels(out, pic.bits, dst, fmt, exif=pic.exif, icc=pic.icc, dpi=dpi,
                           quality=cfg.quality, before_commit=commit)
        if cfg.psnr:
            # The output is written by now: a failing side experiment must not make it an error row.
            try:
                row.psnr_bicubic, row.psnr_model = psnr_columns(pic.pixels, model, cfg.tile)
                if row.psnr_bicubic is None:
                    notes.append(f"too small for the PSNR experiment at x{model.scale}")
            except Exception as exc:
                notes.append(f"PSNR experiment failed ({type(exc).__name__})")
    except (images.ImageError, OutputError) as exc:
        row.status, row.error = ERROR, str(exc)
    except MemoryError:
        row.status, row.error = ERROR, "out of memory (try a smaller --tile)"
    except Exception as exc:  # a batch must survive anything one file can do
        row.status = ERROR
        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'unexpected error'}"
        log.debug("%s", traceback.format_exc())
    if row.status == ERROR:
        row.output = ""
        row.out_width = row.out_height = None
    row.notes = "; ".join(notes)
    row.seconds = time.perf_counter() - t0
    return row


def _progress(rows: Iterable, cfg: RunConfig, total: int) -> Iterable:
    if not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(rows, total=total, unit="img", dynamic_ncols=True)
    return rows


def make_distributor(cfg: RunConfig, model: Model | None = None, todo: list[Job] | None = None):
    """The engine that runs the per-image work: this machine (``--jobs`` images in flight) or Ray.

    ``todo`` are the jobs that need the model; the Ray engine sizes its pool by
    them and checks that its workers can read the first. With nothing to do, no
    cluster is started: every row is the driver's own.
    """
    from batchsr.distribute import LocalDistributor

    if cfg.engine not in ("local", "ray"):
        raise ValueError(f"unknown engine {cfg.engine!r} (local or ray)")
    if cfg.engine == "ray" and todo:
        from batchsr.ray_engine import RayDistributor

        return RayDistributor(cfg, model, todo)
    return LocalDistributor(cfg.jobs)


def _key(job: Job, model: Model, cfg: RunConfig) -> str | None:
    quality = cfg.quality if job.format in images.LOSSY else None
    return resume.job_key(job.input_rel.as_posix(), job.src, model.sha256, model.scale, job.format, quality)


def _skip_row(item: Skip, model: Model) -> Row:
    row = Row(input=str(item.path), status=item.status, model=model.label, scale=model.scale)
    if item.status == ERROR:
        row.error = item.reason
    else:
        row.notes = item.reason
    return row


def _up_to_date_row(job: Job, output: Path, model: Model, entry: dict) -> Row:
    return Row(input=str(job.src), output=str(output / job.rel), status=SKIPPED, width=entry.get("width"),
               height=entry.get("height"), out_width=entry.get("out_width"),
               out_height=entry.get("out_height"), scale=model.scale, model=model.label,
               providers=",".join(model.engine.providers),
               notes="up to date: same input, model and settings (--overwrite redoes it)")


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


def plan(cfg: RunConfig, model: Model) -> list[tuple[Job | Skip, dict | None]]:
    """Discovery plus resume: each reportable item with its up-to-date state entry (or None)."""
    output = Path(cfg.output)
    state = resume.State(output) if not cfg.overwrite else None
    out: list[tuple[Job | Skip, dict | None]] = []
    for item in discover(Path(cfg.input), output, cfg.format):
        if isinstance(item, Skip):
            log.debug("skip %s: %s", item.path, item.reason)
            if item.report:
                out.append((item, None))
            continue
        if os.path.realpath(output / item.rel) == os.path.realpath(item.src):
            # e.g. `batchsr photo.jpg .` run beside the photo: INPUT is never modified.
            out.append((Skip(item.src, "its output path is the input file itself; choose another OUTPUT",
                             report=True, status=ERROR), None))
            continue
        entry = state.done(item.rel.as_posix(), _key(item, model, cfg)) if state else None
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

    def __init__(self, cfg: RunConfig, model: Model, state: resume.State):
        self.cfg, self.model, self.state = cfg, model, state
        self.output = Path(cfg.output)

    def ready_row(self, pair: tuple[Job | Skip, dict | None]) -> Row | None:
        """The row of an item settled without the model (skipped, refused, up to date), else None."""
        item, entry = pair
        if isinstance(item, Skip):
            return _skip_row(item, self.model)
        if entry is not None:
            return _up_to_date_row(item, self.output, self.model, entry)
        return None

    def key(self, job: Job) -> str | None:
        """The resume key of ``job``'s output, taken before it is processed."""
        return _key(job, self.model, self.cfg)

    def record(self, job: Job, key: str | None, row: Row, stat: os.stat_result) -> None:
        """Note in the resume state that ``job``'s output (whose finished file has ``stat``) is done."""
        self.state.record(job.rel.as_posix(), key, stat, width=row.width, height=row.height,
                          out_width=row.out_width, out_height=row.out_height)

    def __call__(self, pair: tuple[Job | Skip, dict | None]) -> Row:
        row = self.ready_row(pair)
        if row is not None:
            return row
        job = pair[0]
        key = self.key(job)
        return process(job, self.output, self.model, self.cfg, lambda r, st: self.record(job, key, r, st))


def _say(text: str) -> None:
    # File names need not be valid in stdout's encoding: escape, never crash.
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(enc, "backslashreplace").decode(enc, "replace"))


def dry_run(cfg: RunConfig, model: Model, out: Callable[[str], None] = _say) -> Summary:
    """Say on stdout (or to ``out``) what a run would do, one line per input, writing nothing.

    The Summary counts images to process as ok.
    """
    t0 = time.perf_counter()
    summary = Summary(dry_run=True)
    output = Path(cfg.output)
    for item, entry in plan(cfg, model):
        if isinstance(item, Skip):
            out(f"{item.status:7s} {item.path}: {item.reason}")
            summary.add(_skip_row(item, model))
        elif entry is not None:
            out(f"skip    {item.src}: up to date")
            summary.skipped += 1
        else:
            why = f" ({'; '.join(item.notes)})" if item.notes else ""
            out(f"process {item.src} -> {output / item.rel}{why}")
            summary.ok += 1
    summary.seconds = time.perf_counter() - t0
    return summary


def run(cfg: RunConfig, model: Model, on_row: Callable[[Row], None] | None = None) -> Summary:
    """Upscale every image under ``cfg.input`` into ``cfg.output``; write the CSV report.

    Returns the Summary (its ``exit_code`` is the CLI's). One bad file never
    stops the batch. Outputs that an earlier run finished and that are up to
    date are skipped unless ``cfg.overwrite``. Raises ``lock.Locked`` if
    another run is writing into the same OUTPUT. With ``cfg.dry_run`` nothing
    is written (see :func:`dry_run`).
    """
    if cfg.dry_run:
        return dry_run(cfg, model)
    t0 = time.perf_counter()
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    with RunLock(output) as held:
        if held.stale:
            log.warning("took over the lock of %s left by %s, which did not finish", output,
                        RunLock.describe(held.stale))
        _remove_stale_temporaries(output, Path(cfg.input))
        items = plan(cfg, model)
        state = resume.State(output)
        state.compact()
        n_jobs = sum(isinstance(i, Job) for i, _ in items)
        log.info("%d images; model %s (%s); providers %s", n_jobs, model.label,
                 model.metadata.get("arch", "?"), ", ".join(model.engine.providers))
        summary = Summary()
        interactive = not cfg.quiet and sys.stderr.isatty()

        work = FolderWork(cfg, model, state)
        todo = [item for item, entry in items if isinstance(item, Job) and entry is None]

        try:
            # The engine starts first: one that cannot run (a Ray worker that cannot
            # see INPUT) fails before the previous report is replaced by an empty one.
            with make_distributor(cfg, model, todo) as dist, CsvReport(cfg.report_path) as report:
                for _, row in _progress(dist.map(work, items), cfg, len(items)):
                    report.write(row)
                    summary.add(row)
                    if on_row:
                        on_row(row)
                    _log_row(row, cfg, interactive)
        finally:
            state.close()
    summary.seconds = time.perf_counter() - t0
    return summary


def _log_row(row: Row, cfg: RunConfig, interactive: bool) -> None:
    if cfg.quiet:
        return
    if not interactive:
        if row.status == OK:
            g = row.gain
            gain = f", {g:+.2f} dB over bicubic" if g is not None else ""
            log.info("ok %s (%.2f s%s)", row.input, row.seconds, gain)
        elif row.status == SKIPPED:
            log.info("skipped %s: %s", row.input, row.notes)
        else:
            log.info("error %s: %s", row.input, row.error)
    elif row.status == ERROR:
        log.warning("error %s: %s", row.input, row.error)
