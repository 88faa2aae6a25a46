import math

import numpy as np
import pytest
from PIL import Image

from batchsr import metrics
from batchsr.degrade import degrade


def test_psnr_known_value():
    a = np.full((10, 10), 100, np.uint8)
    b = a.copy()
    b[5, 5] = 110  # one grey pixel off by 10 -> Y off by 10*219/255
    mse = (10 * 219 / 255) ** 2 / 100
    assert metrics.psnr_y(a, b, 0) == pytest.approx(10 * math.log10(255**2 / mse))
    assert metrics.psnr_y(a, a, 2) == math.inf


def test_shave_ignores_the_border():
    a = np.full((12, 12, 3), 80, np.uint8)
    b = a.copy()
    b[:3, :] = 0  # damage only inside the shaved band
    assert metrics.psnr_y(a, b, 3) == math.inf
    assert metrics.psnr_y(a, b, 2) < 30


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (60, 70, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    from batchsr.color import y_metric

    ref = structural_similarity(
        y_metric(a)[3:-3, 3:-3],
        y_metric(b)[3:-3, 3:-3],
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )
    assert metrics.ssim_y(a, b, 3) == pytest.approx(ref, abs=1e-6)
    assert metrics.ssim_y(a, a, 3) == pytest.approx(1.0)


def test_bicubic_baseline_reproduces_the_reference_on_set5(shared):
    # shared/README.md: x3 PIL bicubic on Set5 is 30.40 dB under the protocol.
    scores = []
    for p in sorted((shared / "data/benchmarks/Set5").glob("*.png")):
        gt, lr = degrade(Image.open(p).convert("RGB"), 3)
        up = lr.resize(gt.size, Image.BICUBIC)
        scores.append(metrics.psnr_y(np.asarray(gt), np.asarray(up), 3))
    assert np.mean(scores) == pytest.approx(30.40, abs=0.02)
