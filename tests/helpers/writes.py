"""Whole images written through batchsr's own band writer (the runtime streams bands; tests that
check the writers' formats and metadata write a whole array at once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from batchsr import encode


def save_whole(pixels: np.ndarray, bits: int, dst: Path, fmt: str, **metadata) -> None:
    """Float (H, W, C) pixels in [0, 1] written to ``dst`` as ``fmt`` by :func:`encode.save_bands`
    in one band (16-bit stays 16-bit in PNG and TIFF); ``metadata``: exif, icc, dpi."""
    encode.save_bands(
        [(0, pixels.shape[0], pixels)], pixels.shape, bits, Path(dst), encode.Encoding(fmt), encode.Metadata(**metadata)
    )
