"""The JPEG quality an image was once saved at, read from its decoded pixels.

For inputs that are no longer JPEG files (a PNG or TIFF made from a JPEG), so
they carry no quantisation tables: after Fan & de Queiroz (2003). A decoded
JPEG's luma, cut on the encoder's 8x8 grid, has DCT coefficients close to
multiples of the quantisation steps.

- The grid's offset is the one of the 64 where the (0,1) and (1,0)
  coefficients of a central 96x96 crop sit best on the multiples of some step
  (the phase of the largest luma steps, the block edges, misses it where
  texture dominates).
- For seven low-frequency coefficients, the step is the q whose multiples the
  coefficients sit on best: the largest mean cos(2 pi c / q) over the
  coefficients that are not zero, if above 0.6.
- A quality is returned only when those steps are the IJG luminance table at
  one quality, each within one step of it (the decoder's rounding blurs a step
  by a fraction): content that merely looks periodic matches no table.

Steps of 2-3 (quality above about 85) drown in the rounding, so such images
read as None, as do JPEGs resized or re-damaged since (the grid is gone):
None means "no trace found", not "never a JPEG". numpy only.
"""

from __future__ import annotations

import numpy as np

from batchsr.estimate import ijg_luminance_table

# Steps of 2-3 (quality above this) drown in the decoder's rounding, and a quality read is
# within READ_ERROR of the one saved at (tests/test_jpeg_pixels.py).
HIGHEST_READ = 85
READ_ERROR = 3

_N = 8
_K = np.arange(_N)
_DCT = np.cos(np.pi * (2 * _K[None] + 1) * _K[:, None] / (2 * _N)) * np.sqrt(2.0 / _N)
_DCT[0] /= np.sqrt(2.0)  # orthonormal: JPEG's FDCT on 8x8 blocks
_DCT = _DCT.astype(np.float32)
_POSITIONS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1))
_ROWS, _COLS = (np.array(p) for p in zip(*_POSITIONS, strict=True))
# (64, 7): the 2-D DCT basis vectors of the seven positions, so a block's coefficients are one product
_BASIS = np.stack([np.outer(_DCT[u], _DCT[v]).ravel() for u, v in _POSITIONS], axis=1)
_QUALITIES = np.arange(1, 101)
_TABLES = np.stack([ijg_luminance_table(int(q)).reshape(_N, _N)[_ROWS, _COLS] for q in _QUALITIES])
_STEPS = np.arange(2, 61, dtype=np.float32)  # quality 10 and up (IJG table at positions 2-14)
_MIN_FOUND = 5  # of the seven positions: fewer is too little to tell a table from chance
_AGREE = 0.6  # mean cosine at the true step: about exp(-2 pi^2 0.4^2 / q^2) with rounding noise
_MIN_COEFFICIENTS = 50
_MAX_BLOCKS = 4096  # blocks sampled: at a low quality most coefficients are zero ...
_MAX_COEFFICIENTS = 512  # ... and of the others at most this many are tested
_CROP = 96  # the grid offset is found on a central crop of this side
_OFFSET_INVERSE = 1 / np.arange(2, 41, dtype=np.float32)  # the steps the grid offset is tried with
_TWO_PI = np.float32(2 * np.pi)


def _grid_offset(y: np.ndarray) -> tuple[int, int]:
    """Where the 8x8 grid starts (rows, columns): the offset whose (0,1) and (1,0)
    coefficients agree best with some step of 2-40, on a central crop of at most
    _CROP x _CROP that starts on the image's own 8-pixel phase."""
    top, left = ((max(0, (n - _CROP) // 2) // _N) * _N for n in y.shape)
    y = y[top : top + _CROP, left : left + _CROP]
    h, w = y.shape
    rows_n, cols_n = (h - 2 * _N + 1) // _N + 1, (w - 2 * _N + 1) // _N + 1  # blocks every offset has
    samples = []
    for u, v in ((0, 1), (1, 0)):
        rows = sum(_DCT[u, i] * y[i : h - _N + 1 + i] for i in range(_N))
        coef = sum(_DCT[v, j] * rows[:, j : w - _N + 1 + j] for j in range(_N))  # at every pixel
        grid = [coef[oy::_N, ox::_N][:rows_n, :cols_n].ravel() for oy in range(_N) for ox in range(_N)]
        samples.append(np.stack(grid))
    c = np.concatenate(samples, axis=1)  # (64 offsets, coefficients)
    used = (np.abs(c) > 0.5).astype(np.float32)  # zeros fit every step
    # How far each coefficient is from a multiple of each step, in steps (0 to 1/2): a triangle
    # wave where _step uses a cosine, as it ranks the offsets alike at a third of the cost; a few
    # steps at a time, as one (64, 39, n) temporary costs more in page faults than in arithmetic.
    misfit = np.empty((len(c), len(_OFFSET_INVERSE)), np.float32)  # (64 offsets, steps)
    for k in range(0, len(_OFFSET_INVERSE), 8):
        t = c[:, None, :] * _OFFSET_INVERSE[None, k : k + 8, None]
        t -= np.rint(t)
        misfit[:, k : k + 8] = np.matmul(np.abs(t, out=t), used[:, :, None])[..., 0]
    best = int(np.argmin(misfit.min(axis=1) / np.maximum(used.sum(axis=1), 1)))
    return divmod(best, _N)


def _step(c: np.ndarray) -> int:
    """The quantisation step the coefficients ``c`` sit on the multiples of best; 1 if none fits."""
    c = c[np.abs(c) > 0.5][:_MAX_COEFFICIENTS]  # zeros fit every step
    if len(c) < _MIN_COEFFICIENTS:
        return 1
    agree = np.cos(_TWO_PI * c[None] / _STEPS[:, None]).mean(axis=1)
    # The true step agrees best: its divisors fit the same multiples but meet the decoder's
    # rounding noise at a smaller scale, and a step one above fits its first multiple only roughly.
    best = len(agree) - 1 - int(np.argmax(agree[::-1]))  # the largest among equals
    return int(_STEPS[best]) if agree[best] > _AGREE else 1


def jpeg_quality_of_pixels(y: np.ndarray) -> float | None:
    """The IJG quality whose luminance table the luma ``y`` (H, W; full-range JFIF Y,
    0-255, not rounded) was quantised with, as a whole number in a float; None when no
    table fits (no JPEG trace, one at quality above about 85, or the image under 32 pixels
    a side). Deterministic."""
    y = np.asarray(y, np.float32)
    if y.ndim != 2 or min(y.shape) < 4 * _N:
        return None
    oy, ox = _grid_offset(y)
    y = y[oy:, ox:]
    rows, cols = y.shape[0] // _N, y.shape[1] // _N
    grid = y[: rows * _N, : cols * _N].reshape(rows, _N, cols, _N)  # a view: (block row, i, block col, j)
    # a fixed, evenly spaced sample of the blocks: the steps are the same everywhere
    pick = np.linspace(0, rows * cols - 1, min(rows * cols, _MAX_BLOCKS)).astype(int)
    blocks = grid[pick // cols, :, pick % cols, :].reshape(len(pick), _N * _N)
    coefficients = (blocks - np.float32(128)) @ _BASIS
    steps = np.array([_step(coefficients[:, k]) for k in range(len(_POSITIONS))])
    found = steps > 1
    if found.sum() < _MIN_FOUND:
        return None
    fits = np.all(np.abs(_TABLES[:, found] - steps[found]) <= 1, axis=1)
    if not fits.any():
        return None
    err = (np.log(_TABLES[:, found]) - np.log(steps[found])) ** 2
    best = np.flatnonzero(fits)[np.argmin(err[fits].sum(axis=1))]
    return float(_QUALITIES[best])
