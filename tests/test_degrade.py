import numpy as np
import pytest
from PIL import Image

from batchsr.degrade import degrade, mod_crop


def test_mod_crop_right_and_bottom():
    im = Image.fromarray(np.arange(7 * 11 * 3, dtype=np.uint8).reshape(7, 11, 3))
    c = mod_crop(im, 3)
    assert c.size == (9, 6)
    assert np.array_equal(np.asarray(c), np.asarray(im)[:6, :9])


def test_degrade_is_pil_bicubic_of_the_crop():
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (50, 43, 3)).astype(np.uint8))
    gt, lr = degrade(im, 4)
    assert gt.size == (40, 48) and lr.size == (10, 12)
    assert np.array_equal(np.asarray(lr), np.asarray(gt.resize((10, 12), Image.BICUBIC)))


def test_too_small_is_an_error():
    with pytest.raises(ValueError, match="smaller than the scale"):
        degrade(Image.new("RGB", (2, 5)), 3)
