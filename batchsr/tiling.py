"""Exact halo tiling (pure numpy).

A model made only of stride-1 convolutions with receptive radius R (in LR
pixels) computes each output pixel from the R-neighbourhood of its LR pixel,
with zero padding at the image border. Running it on a window that holds R
real pixels of context around the region it is responsible for (or reaches
the true image border there, where the same zero padding applies) and
cropping the rest therefore reproduces a whole-image run exactly
(shared/docs/engineering-notes.md, section 3).

Windows have one fixed shape, ``tile + 2R`` per side, wherever the image is
large enough: edge windows are shifted inwards instead of shrunk. Fixed
shapes let runtimes that compile per shape (CoreML) or that keep a memory
arena (onnxruntime) reuse their work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

# The tile of images too large to run whole, in LR pixels: 256 + 2R a window.
AUTO_TILE = 256
# Windows per call on a session pinned to one shape (CoreML, TensorRT): a 4050-wide scan's
# tile row at 256 is 16 windows, 4 calls; a row's last call is padded to 4.
FIXED_BATCH = 4


@dataclass(frozen=True)
class Span:
    """One dimension of a tile: the window fed to the model and the core it owns."""

    win0: int
    win1: int
    core0: int
    core1: int


@dataclass(frozen=True)
class Tile:
    rows: Span
    cols: Span


def spans(length: int, tile: int, radius: int) -> list[Span]:
    """Cover ``[0, length)`` with cores of ``tile`` pixels and windows of ``tile + 2*radius``.

    ``tile <= 0`` (or a tile that covers everything) gives one span for the
    whole length. Every core is contained in its window with at least
    ``radius`` pixels of context on each side that is not the image border.
    """
    if length <= 0:
        raise ValueError("cannot tile an empty dimension")
    if radius < 0:
        raise ValueError("radius must be >= 0")
    window = tile + 2 * radius
    if tile <= 0 or window >= length:
        return [Span(0, length, 0, length)]
    out = []
    for c0 in range(0, length, tile):
        c1 = min(c0 + tile, length)
        w0 = min(max(c0 - radius, 0), length - window)
        out.append(Span(w0, w0 + window, c0, c1))
    return out


def plan(height: int, width: int, tile: int, radius: int) -> list[Tile]:
    """Tiles in raster order covering a ``height`` x ``width`` LR image."""
    return [Tile(r, c) for r in spans(height, tile, radius) for c in spans(width, tile, radius)]


def iter_tiles(
    image: np.ndarray,
    scale: int,
    tile: int,
    radius: int,
    model: Callable[[np.ndarray], np.ndarray],
    model_batch: Callable[[np.ndarray], np.ndarray] | None = None,
    batch_size: int | None = None,
) -> Iterator[tuple[Tile, np.ndarray]]:
    """Run ``model`` tile by tile; yield each tile with its cropped output (its core, upscaled).

    ``image`` is 2-D (H, W); ``model`` maps an (h, w) window to (h*scale, w*scale).
    With ``model_batch`` ((n, h, w) -> (n, h*scale, w*scale)), the windows of
    one tile row, which all have the same shape, run in one call: a GPU or
    the Neural Engine is fed a batch instead of one small window at a time.
    With ``batch_size`` too, every call gets exactly that many windows (the
    last group of a row padded with copies of its last window, whose outputs
    are dropped), so a runtime that compiles per shape sees one shape.
    """
    h, w = image.shape
    col_spans = spans(w, tile, radius)
    for r_span in spans(h, tile, radius):
        row = [Tile(r_span, c) for c in col_spans]
        windows = [image[t.rows.win0 : t.rows.win1, t.cols.win0 : t.cols.win1] for t in row]
        if model_batch is not None and batch_size:
            outs = []
            for g in range(0, len(windows), batch_size):
                group = windows[g : g + batch_size]
                padded = group + [group[-1]] * (batch_size - len(group))
                outs += list(model_batch(np.stack(padded)))[: len(group)]
        elif model_batch is not None and len(row) > 1:
            outs = list(model_batch(np.stack(windows)))
        else:
            outs = [model(win) for win in windows]
        for t, win, out in zip(row, windows, outs, strict=True):
            r, c = t.rows, t.cols
            expected = (win.shape[0] * scale, win.shape[1] * scale)
            if out.shape != expected:
                raise ValueError(
                    f"model returned {out.shape[1]}x{out.shape[0]} for a window that needs "
                    f"{expected[1]}x{expected[0]} (scale {scale})"
                )
            y0, x0 = (r.core0 - r.win0) * scale, (c.core0 - c.win0) * scale
            yield t, out[y0 : y0 + (r.core1 - r.core0) * scale, x0 : x0 + (c.core1 - c.core0) * scale]


def upscale_tiled(
    image: np.ndarray, scale: int, tile: int, radius: int, model: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The whole upscaled image assembled from tiles; equals ``model(image)`` for exact models."""
    h, w = image.shape
    out = np.empty((h * scale, w * scale), dtype=np.float32)
    for t, part in iter_tiles(image, scale, tile, radius, model):
        out[t.rows.core0 * scale : t.rows.core1 * scale, t.cols.core0 * scale : t.cols.core1 * scale] = part
    return out
