"""What the tests share: where the repository and ../shared are, a photo-like test image, and
modules for the rest: images (inputs built by hand), processes (a real batchsr process),
pages (an HTML report read back), onnx_models (tiny ONNX models), browser (headless
Chromium), writes (whole images through batchsr's writer)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent.parent
SHARED = ROOT.parent / "shared"


def photo(seed: int, w: int, h: int, mode: str = "RGB", grain: float = 0.05) -> Image.Image:
    """A smooth, photo-like test image (gradients + blobs + texture), reproducible by seed.

    ``grain`` is the standard deviation of its white noise (of the full range): the default
    reads as damaged to the noise estimate (about 13 levels), 0 as a clean image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = []
    for c in range(3):
        a = 0.5 + 0.3 * np.sin(xx / (7 + 5 * c + rng.uniform(0, 5)) + rng.uniform(0, 6))
        a += 0.2 * np.cos(yy / (5 + 3 * c + rng.uniform(0, 5)) + rng.uniform(0, 6))
        a += grain * rng.standard_normal((h, w))
        chans.append(a)
    arr = np.clip(np.stack(chans, -1), 0, 1)
    im = Image.fromarray((arr * 255).round().astype(np.uint8), "RGB")
    return im if mode == "RGB" else im.convert(mode)
