"""PSNR and SSIM under the standard SR evaluation protocol.

Protocol (shared/docs/engineering-notes.md, section 1): compare on Y, BT.601
studio range (:func:`batchsr.color.y_metric`), shave ``scale`` pixels from
every border, PSNR with peak 255; SSIM with an 11x11 Gaussian window of
sigma 1.5, K1 = 0.01, K2 = 0.03 (Wang et al. 2004).
"""

from __future__ import annotations

import math

import numpy as np

from batchsr.color import cbcr_metric, y_metric


def _shave(a: np.ndarray, shave: int) -> np.ndarray:
    if shave <= 0:
        return a
    if a.shape[0] <= 2 * shave or a.shape[1] <= 2 * shave:
        raise ValueError(f"image {a.shape[1]}x{a.shape[0]} is too small to shave {shave} pixels")
    return a[shave:-shave, shave:-shave]


def psnr_y(truth_u8: np.ndarray, test_u8: np.ndarray, shave: int) -> float:
    """PSNR (dB) of two same-sized 8-bit RGB (or grey) images on shaved Y; inf when equal."""
    if truth_u8.shape != test_u8.shape:
        raise ValueError(f"size mismatch: {truth_u8.shape} vs {test_u8.shape}")
    a, b = _shave(truth_u8, shave), _shave(test_u8, shave)
    # Row blocks in float64: exact, and memory stays small for big scans.
    sse = 0.0
    for r in range(0, a.shape[0], 256):
        d = y_metric(a[r : r + 256]) - y_metric(b[r : r + 256])
        sse += float(np.sum(d * d))
    mse = sse / (a.shape[0] * a.shape[1])
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def psnr_cbcr(truth_u8: np.ndarray, test_u8: np.ndarray, shave: int) -> float | None:
    """PSNR (dB, peak 255) over both chroma planes (BT.601 studio-range Cb and Cr) of two
    same-sized 8-bit RGB images, shaved like ``psnr_y``; None for a grey ground truth,
    which has no colour to measure. Colour noise and JPEG chroma blocks show here."""
    if truth_u8.shape != test_u8.shape:
        raise ValueError(f"size mismatch: {truth_u8.shape} vs {test_u8.shape}")
    if truth_u8.ndim == 2 or (
        np.array_equal(truth_u8[..., 0], truth_u8[..., 1]) and np.array_equal(truth_u8[..., 0], truth_u8[..., 2])
    ):
        return None
    a, b = _shave(truth_u8, shave), _shave(test_u8, shave)
    sse = 0.0
    for r in range(0, a.shape[0], 256):
        d = cbcr_metric(a[r : r + 256]) - cbcr_metric(b[r : r + 256])
        sse += float(np.sum(d * d))
    mse = sse / (a.shape[0] * a.shape[1] * 2)
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


SSIM_K = (0.01, 0.03)  # the constants K1, K2 of SSIM (Wang et al. 2004), times the peak


def ssim_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """SSIM's 1-D Gaussian window (float64, sums to 1), applied separably along rows and columns."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter_valid(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with the 1-D window ``g``."""
    k = len(g)
    rows = sum(g[i] * a[i : a.shape[0] - k + 1 + i, :] for i in range(k))
    return sum(g[j] * rows[:, j : rows.shape[1] - k + 1 + j] for j in range(k))


def ssim_y(truth_u8: np.ndarray, test_u8: np.ndarray, shave: int) -> float:
    """Mean SSIM of two same-sized 8-bit images on shaved Y (Gaussian sigma 1.5, 11x11)."""
    if truth_u8.shape != test_u8.shape:
        raise ValueError(f"size mismatch: {truth_u8.shape} vs {test_u8.shape}")
    a = _shave(y_metric(truth_u8), shave)
    b = _shave(y_metric(test_u8), shave)
    if min(a.shape) < 11:
        raise ValueError("image too small for an 11x11 SSIM window")
    g = ssim_window()
    c1, c2 = (SSIM_K[0] * 255) ** 2, (SSIM_K[1] * 255) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a**2
    var_b = _filter_valid(b * b, g) - mu_b**2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())
