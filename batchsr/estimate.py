"""Per-image damage estimates: the JPEG quality an input was saved at and its noise level.

Used to pick a model for an image (:class:`DamageRule`: when an input counts as damaged) and
to report its damage; numpy and Pillow only.

JPEG quality (:func:`jpeg_quality`) inverts the IJG/libjpeg scaling of the
Annex K tables (K.1 for table 0, K.2 for the others): exact for libjpeg-style
encoders at a standard quality, the least squared error in log space over the
tables present otherwise. Pillow (>= 10, as pinned) returns ``im.quantization``
in natural (row-major) order, the order ``qtables=`` takes; the tests check
both by round trips, and Pillow's tables against :func:`_ijg_table` at every quality.

Noise (:func:`noise_sigma`): the least-eigenvalue method on weakly textured
patches (after Pyatykh, Hesser & Zheng 2013; Liu, Tanaka & Okutomi 2013).
Texture spans few directions of a small patch's space, white noise all of
them equally, so along the least direction of the covariance of 4x4 patches
(patch mean removed: 15 dimensions) there is noise alone. The patches used
are those whose energy is below the 99% point of pure noise at the current
estimate, iterated to a fixed point from the smoothest 10% (never fewer than
the smoothest 1%); the truncation's own bias on pure noise, E[chi2 | chi2 < t]
/ 15, is divided out. The least direction is found on one half of the patches
(alternate bands of 8 rows) and the variance along it measured on the other,
and vice versa: this removes the low bias of a sample's least eigenvalue
(about -4% in sigma at 160x107). Planes over 2 Mpixel are measured on a
fixed-seed sample of 128x128 tiles (1 Mpixel), and planes with many patches
on every k-th patch row and column (below).

Measured on the 100 B100 photos (``/work/shared/data/bsds500/val``, luma by
``color.y_metric``) with Gaussian noise of sigma 2, 5, 10, 15 added to the
float luma (seed 1). "own": the estimate on the clean (JPEG-derived) photo,
median / p90 / max (how many >= 2); "quad": the largest |estimate -
sqrt(sigma^2 + own^2)|; "worst": the largest estimate - sigma at each sigma.
The first three rows (and their LR rows) are printed by ``python
tests/test_estimate.py [small]``; the others are exploratory variants whose
scripts were not kept::

    481x321                         own                  quad   worst at 2 / 5 / 10 / 15
    this (every other patch)        0.24 0.85  4.71 (3)  0.61   +2.9 / +1.7 / +0.8 / +1.0
    this, every patch               0.24 0.83  4.68 (2)  0.57   +3.0 / +1.6 / +0.9 / +1.0
    Immerkaer, 10% edges excluded   2.67 5.70 11.92 (68) 0.99  +10.1 / +8.0 / +5.8 / +4.4
    Donoho MAD, Haar HH band        2.53 5.82 13.37 (54) 2.76  +11.6 / +9.6 / +7.3 / +5.9
    8x8-DCT HF MAD, LF-selected     0.25 0.34 10.50 (1)  2.92   +7.9 / +5.3 / +4.2 / +3.8
    low 10% of 8x8-block Laplacian  0.53 2.75  8.37 (13) 2.30   +6.7 / +5.2 / +4.2 / +3.6
    this, selection off v (a)       0.25 0.94  5.55 (2)  1.43   +4.1 / +2.9 / +2.4 / +2.4
    160x107 (x3 bicubic LR)
    this (every patch)              0.41 1.77  3.49 (6)  1.34   +2.3 / +2.1 / +1.6 / +1.6
    this, every other patch         0.54 2.08  4.86 (12) 1.39   +3.4 / +2.1 / +2.0 / +2.0
    Immerkaer, 10% edges excluded   3.47 6.15  8.64 (83) 0.99   +6.9 / +5.3 / +3.7 / +2.8
    Donoho MAD, Haar HH band        3.11 6.39  9.92 (71) 2.36   +8.4 / +6.8 / +5.5 / +4.7
    5x5, least eigenvalue, no split 0.66 2.27  4.42 (14) 3.11   +2.9 / +1.7 / -2.1 / -2.8
    this, selection off v (a)       0.43 1.85  4.26 (10) 1.58   +3.0 / +2.3 / +2.3 / +2.1
    962x642 (25 2x2 mosaics: ``python tests/test_estimate.py mosaic``)
    this (every fourth patch)       0.10 0.25  0.31 (0)  0.29   +0.1 / +0.2 / +0.2 / +0.3
    this, every other patch         0.10 0.23  0.30 (0)  0.17   +0.1 / -0.1 / +0.2 / -0.1
    this, every patch               0.10 0.23  0.30 (0)  0.19   -0.1 / -0.1 / -0.2 / -0.2

The stride (every k-th patch row and column) is the largest that keeps at least
36,000 patches: it bounds the estimate's cost (``benchmarks/estimate_cost.py``)
while the errors stay as above. Fewer patches cost accuracy: at 160x107 every
other patch doubles the clean photos that read 2 levels or more (6 -> 12).

(a) patches selected by their energy off the least direction v, found on the
other half, so that the selection is independent of the noise along v: no
bias on noise or smooth content, but texture along v then reads as noise at
high sigma. The chosen selection by whole energy is biased low where strong
smooth signal fills patches (measured at 160x107: a full-range ramp, -0.31 at
sigma 1, -0.15 at 2; sin x cos waves of +-60 levels, -0.31 at 5), which on
photos offsets the texture along v. Photos whose texture is finer than a
4x4 patch can tell (B100 86016, gravel) read as several levels of noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

# ITU-T T.81 Annex K, natural (row-major) order.
_K1 = (
    16,
    11,
    10,
    16,
    24,
    40,
    51,
    61,
    12,
    12,
    14,
    19,
    26,
    58,
    60,
    55,
    14,
    13,
    16,
    24,
    40,
    57,
    69,
    56,
    14,
    17,
    22,
    29,
    51,
    87,
    80,
    62,
    18,
    22,
    37,
    56,
    68,
    109,
    103,
    77,
    24,
    35,
    55,
    64,
    81,
    104,
    113,
    92,
    49,
    64,
    78,
    87,
    103,
    121,
    120,
    101,
    72,
    92,
    95,
    98,
    112,
    100,
    103,
    99,
)
_K2 = (
    17,
    18,
    24,
    47,
    99,
    99,
    99,
    99,
    18,
    21,
    26,
    66,
    99,
    99,
    99,
    99,
    24,
    26,
    56,
    99,
    99,
    99,
    99,
    99,
    47,
    66,
    99,
    99,
    99,
    99,
    99,
    99,
) + (99,) * 32


def _ijg_table(base, quality: int) -> np.ndarray:
    """libjpeg's ``jpeg_set_quality(quality, force_baseline=TRUE)`` scaling of a base table (int64)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((np.asarray(base, np.int64) * scale + 50) // 100, 1, 255)


def ijg_luminance_table(quality: int) -> np.ndarray:
    """libjpeg's luminance quantisation table at ``quality`` (1-100), natural order, (64,) int64."""
    return _ijg_table(_K1, quality)


_QUALITIES = np.arange(1, 101)
# (100 qualities, 2 bases, 64): the candidate tables, and their logs for the fit
_IJG = np.stack([np.stack([_ijg_table(_K1, q), _ijg_table(_K2, q)]) for q in _QUALITIES])
_LOG_IJG = np.log(_IJG)


def jpeg_quality(im: Image.Image) -> float | None:
    """The IJG quality (1-100) a JPEG was saved at, from its quantisation tables; None for other formats.

    ``im`` is the image as Pillow opened it (``format`` "JPEG" or "MPO" and its
    ``quantization`` tables; an ``exif_transpose``d copy has lost them). Exact
    when the tables are libjpeg's at some quality (Pillow, most cameras' and
    editors' "quality" settings); for other tables, the quality whose IJG tables
    are nearest in squared log error over the tables present (table 0 against
    the luminance base, the others against the chrominance base). A whole
    number, as a float. Grey JPEGs (one table) and quality 100 (all ones) are
    exact too; files without usable 64-entry tables give None.
    """
    if getattr(im, "format", None) not in ("JPEG", "MPO"):
        return None
    tables = getattr(im, "quantization", None) or {}
    err = np.zeros(len(_QUALITIES))
    exact = np.ones(len(_QUALITIES), bool)
    used = 0
    for tid, table in tables.items():
        t = np.asarray(list(table), np.float64)
        if t.shape != (64,) or np.any(t < 1):
            continue
        base = 0 if tid == 0 else 1
        exact &= np.all(_IJG[:, base] == t, axis=1)
        err += ((_LOG_IJG[:, base] - np.log(t)) ** 2).sum(axis=1)
        used += 1
    if not used:
        return None
    best = np.flatnonzero(exact)[0] if exact.any() else int(np.argmin(err))
    return float(_QUALITIES[best])


_P = 4  # patch side
_D = _P * _P - 1  # dimensions without the patch mean
_T = 30.57791416689249  # 99% point of chi2(15): the energy of 15 noise-only coefficients, in sigma^2
_KAPPA = 0.9874079918585122  # E[chi2(15) | chi2(15) < _T] / 15 = F17(_T) / F15(_T)
_BAND = 8  # rows of patches per band of the two-halves split
_START = 0.10  # the fraction of smoothest patches the iteration starts from
_FLOOR = 0.01  # ... and the least it may shrink to
_TOL = 1e-3  # stop when the variance changes less than this, relatively
_MAX_PIXELS = 2_000_000  # above this, a sample of tiles ...
_SAMPLE = 1_000_000  # ... of about this many pixels
_TILE = 128
# Patches measured: a plane with more uses every stride-th patch row and column, the largest
# stride keeping at least this many (module docstring: the errors at each stride).
_PATCHES = 36_000


def _basis(n: int) -> np.ndarray:
    """(n*n, n*n - 1): the orthonormal 2-D DCT basis of an n x n patch without its DC vector."""
    k = np.arange(n)
    d = np.cos(np.pi * (2 * k[None] + 1) * k[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return np.einsum("ui,vj->uvij", d, d).reshape(n * n, n * n)[1:].T.astype(np.float32)


_Q = _basis(_P)


def _patch_coefficients(y: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4x4 patches of ``y`` at every ``stride``-th row and column in the DC-free basis (n, 15),
    and each one's half (bool: odd band of patch rows)."""
    rows, cols = ((n - _P) // stride + 1 for n in y.shape)
    # One contiguous row per pixel of the patch, multiplied transposed: copying a strided window
    # view into (n, 16) is several times slower.
    pixels = np.empty((_P * _P, rows, cols), np.float32)
    for k in range(_P * _P):
        i, j = divmod(k, _P)
        pixels[k] = y[i : i + stride * rows : stride, j : j + stride * cols : stride]
    half = ((np.arange(rows) // _BAND) % 2 == 1).repeat(cols)
    return pixels.reshape(_P * _P, -1).T @ _Q, half


def _order(e: np.ndarray) -> np.ndarray:
    """``np.argsort(e, kind="stable")`` of non-negative float32 energies, sorted as one uint64 key
    (the float's bits, which order like the value when >= 0, above the index): 3x faster."""
    key = (e.view(np.uint32).astype(np.uint64) << np.uint64(32)) | np.arange(len(e), dtype=np.uint64)
    key.sort()
    return (key & np.uint64(0xFFFFFFFF)).astype(np.intp)


class _Half:
    """One half's patches in order of energy, with the Gram matrices of prefixes at every CHUNK,
    made only as far as asked (a clean image's selection stays near its smoothest 10 %)."""

    CHUNK = 1024

    def __init__(self, z: np.ndarray, e: np.ndarray, rows: np.ndarray):
        self.z, self.rows = z, rows
        self.e = e[rows]
        n = len(rows)
        self.prefix = [np.zeros((_D, _D))]
        self.start = max(2 * _D, int(np.ceil(_START * n)))
        self.floor = max(2 * _D, int(np.ceil(_FLOOR * n)))

    def count(self, s2: float) -> int:
        """How many patches have noise-like energy at variance ``s2``, but never fewer than the floor."""
        return max(self.floor, int(np.searchsorted(self.e, _T * s2, side="right")))

    def _gram(self, lo: int, hi: int) -> np.ndarray:
        """The sum of outer products of patches lo..hi in energy order (float64; float32 products
        within a chunk)."""
        part = np.take(self.z, self.rows[lo:hi], axis=0)
        return (part.T @ part).astype(np.float64)

    def covariance(self, k: int) -> np.ndarray:
        """The mean outer product of the ``k`` lowest-energy patches."""
        j = k // self.CHUNK
        while len(self.prefix) <= j:
            m = len(self.prefix) - 1
            self.prefix.append(self.prefix[m] + self._gram(m * self.CHUNK, (m + 1) * self.CHUNK))
        return (self.prefix[j] + self._gram(j * self.CHUNK, k)) / k


def _cross_least_variance(a: _Half, b: _Half, ka: int, kb: int) -> float:
    """Variance along the least direction of one half's covariance, measured on the other; both ways."""
    ca, cb = a.covariance(ka), b.covariance(kb)
    vectors = np.linalg.eigh(np.stack([ca, cb]))[1]
    va, vb = vectors[0, :, 0], vectors[1, :, 0]
    return 0.5 * float(va @ cb @ va + vb @ ca @ vb)


def sample_boxes(height: int, width: int) -> list[tuple[slice, slice]]:
    """The regions of a (height, width) plane that :func:`noise_sigma` measures: the whole plane,
    or over 2 Mpixel a fixed-seed sample of 128x128 tiles adding up to about 1 Mpixel."""
    if height * width <= _MAX_PIXELS or height < _TILE or width < _TILE:
        return [(slice(0, height), slice(0, width))]
    grid = [(i, j) for i in range(0, height - _TILE + 1, _TILE) for j in range(0, width - _TILE + 1, _TILE)]
    pick = np.random.default_rng(0).choice(len(grid), size=min(len(grid), _SAMPLE // _TILE**2), replace=False)
    return [(slice(grid[t][0], grid[t][0] + _TILE), slice(grid[t][1], grid[t][1] + _TILE)) for t in np.sort(pick)]


def _tiles(y: np.ndarray) -> list[np.ndarray]:
    return [y[box] for box in sample_boxes(*y.shape)]


def noise_sigma(y: np.ndarray) -> float:
    """Standard deviation of white additive noise in a luma plane (H, W) in 8-bit units, in those units.

    Robust to texture and edges: see the module docstring for the errors measured on photos.
    About 0 on noiseless smooth content. Deterministic; the cost is linear in pixels and
    bounded above 2 Mpixel by sampling. NaN when the plane is too small to tell (fewer than
    30 patches in either half: under 12 rows, or very narrow).
    """
    y = np.asarray(y, np.float32)
    if y.ndim != 2:
        raise ValueError(f"noise_sigma wants a 2-D plane, got shape {y.shape}")
    return noise_sigma_of(y.shape, lambda box: y[box])


def noise_sigma_of(shape: tuple[int, int], luma: Callable[[tuple[slice, slice]], np.ndarray]) -> float:
    """:func:`noise_sigma` of a plane of ``shape`` that is never made whole: ``luma(box)`` gives
    the luma (8-bit units) of each region of :func:`sample_boxes`, so a big scan's plane costs
    the sample's pixels, not its own."""
    h, w = shape
    if min(h, w) < _P:
        return float("nan")
    boxes = sample_boxes(h, w)
    measured = sum((b[0].stop - b[0].start) * (b[1].stop - b[1].start) for b in boxes)
    stride = max(1, math.isqrt(measured // _PATCHES))
    parts = [_patch_coefficients(np.asarray(luma(box), np.float32), stride) for box in boxes]
    z, half = parts[0] if len(parts) == 1 else (np.concatenate(p) for p in zip(*parts, strict=True))
    if min(np.count_nonzero(half), np.count_nonzero(~half)) < 2 * _D:
        return float("nan")
    e = np.einsum("ij,ij->i", z, z)
    order = _order(e)
    in_a = half[order]
    a, b = _Half(z, e, order[in_a]), _Half(z, e, order[~in_a])
    ka, kb = a.start, b.start
    s2 = _cross_least_variance(a, b, ka, kb)
    seen = set()
    for _ in range(50):  # to the fixed point: the selection stops changing, or the estimate does
        seen.add((ka, kb))
        ka, kb = a.count(s2), b.count(s2)
        s2, last = _cross_least_variance(a, b, ka, kb) / _KAPPA, s2
        if (ka, kb) in seen or abs(s2 - last) <= _TOL * last:
            break
    return float(np.sqrt(max(s2, 0.0)))


@dataclass(frozen=True)
class Damage:
    """What the estimates found in one image (``experiment.damage_of`` makes it).

    ``jpeg_quality``: :func:`jpeg_quality` (None: not a JPEG), or the quality the
    pixels show the image was once saved at as a JPEG (``jpeg_pixels.jpeg_quality_of_pixels``;
    ``jpeg_from_pixels`` then True): for another format, or a JPEG saved again at a
    high quality (``experiment.jpeg_quality_seen`` says when).
    ``noise_sigma``: :func:`noise_sigma` of the luma, in 8-bit levels (NaN for a tiny image).
    """

    jpeg_quality: float | None
    noise_sigma: float
    jpeg_from_pixels: bool = False


@dataclass(frozen=True)
class DamageRule:
    """When an input counts as damaged (``--model auto`` then runs ``photo``): its JPEG quality
    at most ``max_jpeg_quality``, or the noise of its luma at least ``min_noise_sigma`` levels
    (an image too small to tell is clean).

    Fitted by ``python benchmarks/auto_rule.py`` (grid search, highest mean PSNR-Y over a
    realistic and a clean validation set together: B100 at seed 1, x3; the lab notebook,
    docs/notebook-real-photos.md, has the table).
    """

    max_jpeg_quality: float = 85.0
    min_noise_sigma: float = 2.0

    def seen(self, damage: Damage) -> str | None:
        """Why the rule judges the input damaged ("JPEG quality 75", "noise 3.1"), or None if clean."""
        q, sigma = damage.jpeg_quality, damage.noise_sigma
        if q is not None and q <= self.max_jpeg_quality:
            return f"JPEG quality {q:.0f}"
        if not math.isnan(sigma) and sigma >= self.min_noise_sigma:
            return f"noise {sigma:.1f}"
        return None
