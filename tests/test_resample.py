"""The matrix bicubic equals Pillow's BICUBIC on mode "F", whole and in bands."""

import numpy as np
import pytest
from PIL import Image

from batchsr import resample


def _pillow(plane, width, height, box=None):
    return np.asarray(Image.fromarray(plane).resize((width, height), Image.BICUBIC, box=box), np.float32)


@pytest.mark.parametrize("shape", [(107, 160), (160, 107), (1, 1), (2, 3), (7, 5), (50, 1), (300, 700)])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_upscale_equals_pillow(shape, scale):
    h, w = shape
    # Values like chroma in merge units: hundreds, of either sign.
    plane = np.random.default_rng(h * w + scale).uniform(-150, 250, shape).astype(np.float32)
    ours = resample.resize(plane, w * scale, h * scale)
    assert ours.dtype == np.float32 and ours.shape == (h * scale, w * scale)
    # float32 weights here, double in Pillow: a few float32 steps at these magnitudes.
    np.testing.assert_allclose(ours, _pillow(plane, w * scale, h * scale), rtol=0, atol=1e-4)


@pytest.mark.parametrize("size", [(37, 29), (12, 80), (160, 107)])
def test_any_size_equals_pillow(size):
    """Also downscales and odd ratios (antialiased like Pillow's, support grows with the ratio)."""
    plane = np.random.default_rng(1).uniform(0, 1, (61, 83)).astype(np.float32)
    np.testing.assert_allclose(resample.resize(plane, *size), _pillow(plane, *size), rtol=0, atol=1e-6)


@pytest.mark.parametrize("step", [1, 5, 13, 48, 49])
def test_any_rows_equal_those_of_the_whole_resize(step):
    plane = np.random.default_rng(step).uniform(0, 1, (97, 41)).astype(np.float32)
    whole = resample.resize(plane, 123, 291)
    parts = [resample.resize_rows(plane, 123, 291, r, min(r + step, 291)) for r in range(0, 291, step)]
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=0, atol=1e-6)
    # and the same rows as Pillow's own banded resize (box = the LR rows of the band)
    np.testing.assert_allclose(whole[30:60], _pillow(plane, 123, 30, box=(0, 10, 41, 20)), rtol=0, atol=1e-6)


def test_interior_column_chunks_share_one_matrix():
    """A wide image does not cost a matrix per chunk: equal blocks are stored once."""
    plan = resample._column_plan(2000, 6000)
    assert len(plan) == 6000 // resample.CHUNK + (6000 % resample.CHUNK > 0)
    assert len({id(mt) for *_, mt in plan}) <= 4  # first, interior, the last one or two


def test_bad_rows_are_refused():
    with pytest.raises(ValueError):
        resample.resize_rows(np.zeros((4, 4), np.float32), 12, 12, 5, 5)
