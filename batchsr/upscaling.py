"""The upscale kernel: float or 8-bit pixels in, the upscaled image out band by band.

The model sees luma only; chroma and alpha are upscaled bicubically, each band equal to the
same rows of a whole-image resize. Exact halo tiling (:mod:`batchsr.tiling`) bounds memory
by one tile row, not the image.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np

from batchsr import color, tiling
from batchsr.models import Model

# Images up to this many LR pixels run whole (fastest); larger ones run in
# fixed tiles so memory stays bounded by the tile, not the image.
AUTO_WHOLE_MAX_PIXELS = 512 * 512


# Output pixels merged (chroma resize, YCbCr -> RGB, quantisation) at a time:
# a B100 photo in one go, a 4050-wide row of tiles in bands of about 43 LR
# rows; each float temporary is at most 2 MB.
MERGE_PIXELS = 1 << 19


def effective_tile(tile: int | None, height: int, width: int) -> int:
    """The tile size to use (0 = whole image) for a --tile value (None = auto) on a session that
    takes any shape (a pinned one tiles at its own window, :meth:`Model.session_for`)."""
    if tile is None:
        return 0 if height * width <= AUTO_WHOLE_MAX_PIXELS else tiling.AUTO_TILE
    return tile


class OutputError(Exception):
    """The model produced something that must not be written (NaN, wrong size, ...)."""


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
    session = model.session_for(h, w)
    window = session.window
    # A pinned session tiles at its own window, whatever ``tile`` says (the output is the same).
    t = window[1] - 2 * model.radius if window else effective_tile(tile, h, w)
    merge_rows = max(1, MERGE_PIXELS // (w * s * s))  # LR rows per merged sub-band
    lo, hi = np.inf, -np.inf
    parts: list[np.ndarray] = []
    current = None
    batch = session.run_batch if session.batches or window else None
    tiles = tiling.iter_tiles(y, s, t, model.radius, session.run, batch, window[0] if window else None)
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
