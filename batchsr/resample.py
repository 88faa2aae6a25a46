"""Pillow's bicubic resize of one float plane, as two small matrix products.

Chroma and alpha, which the model does not see, are upscaled bicubically.
Pillow's ``Image.resize(..., BICUBIC)`` on a mode "F" image did that until
it showed up as the largest cost after inference: half of its time went into
copying the result back to numpy (``tobytes``), and every band of rows paid
the filter set-up again. Here the same separable filter (Pillow's
``precompute_coeffs`` with its bicubic kernel, a = -0.5, normalised weights
at the borders) is written as matrices, built once per size and cached, and
applied with BLAS: a horizontal pass in chunks of output columns (so a wide
image never needs a width x width matrix), then a vertical pass over just
the rows a band needs. The values equal Pillow's to float32 rounding (the
weights are float32 here, double in Pillow): a few 1e-7 relative.

Any output rows can be asked for on their own and come out as the same rows
of the whole resize (the same weights; BLAS may round a sum differently in
the last float32 bit), which is what lets the pipeline merge large images
band by band.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SUPPORT = 2.0  # Pillow's bicubic filter support
# Output columns (rows) per matrix of the horizontal (vertical) pass. A block
# of the banded filter matrix costs a multiply-add per input it spans, about
# CHUNK / scale + 4, per output pixel: small blocks waste little on zeros,
# while each call costs a few microseconds. A multiple of 2, 3 and 4, so all
# interior blocks of an integer upscale are equal (one array is kept).
CHUNK = 48


def _cubic(t: np.ndarray) -> np.ndarray:
    """Pillow's bicubic kernel (a = -0.5)."""
    a = -0.5
    t = np.abs(t)
    inner = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    outer = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return np.where(t < 1.0, inner, np.where(t < 2.0, outer, 0.0))


def _coefficients(n_in: int, n_out: int, o0: int, o1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` for output positions ``o0:o1`` of an ``n_in -> n_out`` resize.

    Returns (first input index, number of inputs, weights (o1 - o0, K)) per output position.
    """
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = SUPPORT * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(o0, o1, dtype=np.float64) + 0.5) * scale
    # C's (int) truncates toward zero, as astype does; the clamps follow Pillow.
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)
    count = np.minimum((center + support + 0.5).astype(np.int64), n_in) - xmin
    k = np.arange(ksize)
    w = _cubic(((k[None, :] + xmin[:, None]) - center[:, None] + 0.5) * (1.0 / filterscale))
    w[k[None, :] >= count[:, None]] = 0.0
    total = w.sum(axis=1)
    w /= np.where(total != 0.0, total, 1.0)[:, None]
    return xmin, count, w


def _matrix(n_in: int, n_out: int, o0: int, o1: int) -> tuple[int, int, np.ndarray]:
    """``(lo, hi, M)``: output positions ``o0:o1`` = ``M @ input[lo:hi]``, M float32 (o1 - o0, hi - lo)."""
    xmin, count, w = _coefficients(n_in, n_out, o0, o1)
    lo, hi = int(xmin.min()), int((xmin + count).max())
    m = np.zeros((o1 - o0, hi - lo), np.float64)
    rows, taps = np.nonzero(np.arange(w.shape[1])[None, :] < count[:, None])
    m[rows, xmin[rows] - lo + taps] = w[rows, taps]
    m = m.astype(np.float32)
    m.flags.writeable = False  # cached and shared between threads
    return lo, hi, m


# The vertical matrices of the bands of the sizes a run meets (a few KB each).
band_matrix = lru_cache(maxsize=512)(_matrix)


@lru_cache(maxsize=16)
def _column_plan(n_in: int, n_out: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The horizontal pass in chunks: ``(lo, hi, c0, c1, Mt)`` with ``out[:, c0:c1] = in[:, lo:hi] @ Mt``.

    Chunks whose matrices are equal share one array, so an interior chunk of
    any width costs its memory once.
    """
    plan = []
    previous = None
    for c0 in range(0, n_out, CHUNK):
        c1 = min(c0 + CHUNK, n_out)
        lo, hi, m = _matrix(n_in, n_out, c0, c1)
        mt = np.ascontiguousarray(m.T)
        if previous is not None and previous.shape == mt.shape and np.array_equal(previous, mt):
            mt = previous
        mt.flags.writeable = False
        plan.append((lo, hi, c0, c1, mt))
        previous = mt
    return tuple(plan)


def resize_rows(plane: np.ndarray, width: int, height: int, row0: int, row1: int) -> np.ndarray:
    """Rows ``row0:row1`` of the bicubic resize of a float (H, W) plane to (height, width), float32.

    Equal to Pillow's ``Image.resize((width, height), BICUBIC)`` of the plane
    as a mode "F" image, rows ``row0:row1``, to float32 rounding; any split
    into row ranges gives the same rows as one whole call.
    """
    h, w = plane.shape
    if not (0 <= row0 < row1 <= height) or width < 1:
        raise ValueError(f"rows {row0}:{row1} of a {width}x{height} resize")
    # Pillow skips a pass whose size does not change; so does this (it would be the identity).
    if height == h:
        lo, hi = row0, row1
    else:
        lo = band_matrix(h, height, *_chunk_of(row0, row1, row0))[0]
        hi = band_matrix(h, height, *_chunk_of(row0, row1, row1 - 1))[1]
    src = np.asarray(plane[lo:hi], dtype=np.float32)
    if width == w:
        tmp = src
    else:
        tmp = np.empty((hi - lo, width), np.float32)
        for a, b, c0, c1, mt in _column_plan(w, width):
            np.matmul(src[:, a:b], mt, out=tmp[:, c0:c1])
    if height == h:
        return np.array(tmp, dtype=np.float32)
    out = np.empty((row1 - row0, width), np.float32)
    r = row0
    while r < row1:
        c0, c1 = _chunk_of(row0, row1, r)
        a, b, mv = band_matrix(h, height, c0, c1)
        np.matmul(mv, tmp[a - lo : b - lo], out=out[c0 - row0 : c1 - row0])
        r = c1
    return out


def _chunk_of(row0: int, row1: int, r: int) -> tuple[int, int]:
    """The vertical block holding output row ``r``: CHUNK-aligned in the whole image (so the
    blocks, and their cached matrices, are the same whatever the band), cut to ``row0:row1``."""
    c = r - r % CHUNK
    return max(c, row0), min(c + CHUNK, row1)


def resize(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """The whole bicubic resize of a float (H, W) plane to (height, width) (see :func:`resize_rows`)."""
    return resize_rows(plane, width, height, 0, height)
