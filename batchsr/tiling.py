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


def iter_tiles(image: np.ndarray, scale: int, tile: int, radius: int,
               model: Callable[[np.ndarray], np.ndarray]) -> Iterator[tuple[Tile, np.ndarray]]:
    """Run ``model`` tile by tile; yield each tile with its cropped output (its core, upscaled).

    ``image`` is 2-D (H, W); ``model`` maps an (h, w) window to (h*scale, w*scale).
    """
    h, w = image.shape
    for t in plan(h, w, tile, radius):
        r, c = t.rows, t.cols
        out = model(image[r.win0:r.win1, c.win0:c.win1])
        expected = ((r.win1 - r.win0) * scale, (c.win1 - c.win0) * scale)
        if out.shape != expected:
            raise ValueError(f"model returned {out.shape[1]}x{out.shape[0]} for a window that needs "
                             f"{expected[1]}x{expected[0]} (scale {scale})")
        y0, x0 = (r.core0 - r.win0) * scale, (c.core0 - c.win0) * scale
        yield t, out[y0:y0 + (r.core1 - r.core0) * scale, x0:x0 + (c.core1 - c.core0) * scale]


def upscale_tiled(image: np.ndarray, scale: int, tile: int, radius: int,
                  model: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """The whole upscaled image assembled from tiles; equals ``model(image)`` for exact models."""
    h, w = image.shape
    out = np.empty((h * scale, w * scale), dtype=np.float32)
    for t, part in iter_tiles(image, scale, tile, radius, model):
        out[t.rows.core0 * scale:t.rows.core1 * scale, t.cols.core0 * scale:t.cols.core1 * scale] = part
    return out
