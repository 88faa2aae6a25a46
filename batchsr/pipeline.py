"""One image at a time: load -> split Y/CbCr -> tiled inference -> merge -> save -> report row.

``process`` never raises for bad input: every failure becomes a Row with
``status=error`` and a one-line reason. ``run`` drives a whole folder job.
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

from batchsr import color, images, metrics, tiling
from batchsr.config import RunConfig
from batchsr.degrade import degrade
from batchsr.discover import Job, Skip, discover
from batchsr.models import Model
from batchsr.report import ERROR, OK, CsvReport, Row, Summary

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
            row.psnr_bicubic, row.psnr_model = psnr_columns(pic.pixels, model, cfg.tile)
            if row.psnr_bicubic is None:
                notes.append(f"too small for the PSNR experiment at x{model.scale}")
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


def _progress(jobs: list[Job], cfg: RunConfig) -> Iterable[Job]:
    if not cfg.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(jobs, unit="img", dynamic_ncols=True)
    return jobs


def run(cfg: RunConfig, model: Model, on_row: Callable[[Row], None] | None = None) -> Summary:
    """Upscale every image under ``cfg.input`` into ``cfg.output``; write the CSV report.

    Returns the Summary (its ``exit_code`` is the CLI's). One bad file never
    stops the batch.
    """
    t0 = time.perf_counter()
    output = Path(cfg.output)
    jobs: list[Job] = []
    for item in discover(Path(cfg.input), output, cfg.format):
        if isinstance(item, Skip):
            log.debug("skip %s: %s", item.path, item.reason)
        else:
            jobs.append(item)
    summary = Summary()
    output.mkdir(parents=True, exist_ok=True)
    log.info("%d images; model %s (%s); providers %s", len(jobs), model.label,
             model.metadata.get("arch", "?"), ", ".join(model.engine.providers))
    interactive = not cfg.quiet and sys.stderr.isatty()
    with CsvReport(cfg.report_path) as report:
        for job in _progress(jobs, cfg):
            row = process(job, output, model, cfg)
            report.write(row)
            summary.add(row)
            if on_row:
                on_row(row)
            if not interactive and not cfg.quiet:
                if row.status == OK:
                    g = row.gain
                    gain = f", {g:+.2f} dB over bicubic" if g is not None else ""
                    log.info("ok %s (%.2f s%s)", job.src, row.seconds, gain)
                else:
                    log.info("%s %s: %s", row.status, job.src, row.error)
            elif row.status == ERROR and not cfg.quiet:
                log.warning("error %s: %s", job.src, row.error)
    summary.seconds = time.perf_counter() - t0
    return summary
