import numpy as np
import pytest

from batchsr import tiling
from batchsr.upscaling import upscale_pixels


@pytest.mark.parametrize(
    "length,tile,radius", [(1, 4, 2), (10, 4, 2), (100, 16, 5), (17, 1, 3), (64, 64, 5), (9, 3, 0)]
)
def test_spans_cover_exactly_with_context(length, tile, radius):
    spans = tiling.spans(length, tile, radius)
    covered = []
    for s in spans:
        covered += list(range(s.core0, s.core1))
        assert 0 <= s.win0 <= s.core0 < s.core1 <= s.win1 <= length
        # R real pixels of context on every side that is not the image border
        assert s.core0 - s.win0 >= radius or s.win0 == 0
        assert s.win1 - s.core1 >= radius or s.win1 == length
    assert covered == list(range(length))
    shapes = {s.win1 - s.win0 for s in spans}
    assert shapes == {min(length, tile + 2 * radius)} or len(spans) == 1


def test_whole_image_when_tile_is_zero():
    assert tiling.spans(37, 0, 5) == [tiling.Span(0, 37, 0, 37)]


@pytest.mark.parametrize("h,w", [(1, 1), (1, 7), (13, 1), (31, 47), (64, 40)])
@pytest.mark.parametrize("tile", [1, 5, 16, 33])
def test_tiled_equals_whole_image(random_model, h, w, tile):
    rng = np.random.default_rng(h * 100 + w)
    y = rng.uniform(0.06, 0.92, (h, w)).astype(np.float32)
    s, r = random_model.scale, random_model.radius
    whole = random_model.session.run(y)
    tiled = tiling.upscale_tiled(y, s, tile, r, random_model.session.run)
    assert tiled.shape == (h * s, w * s)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-5)


def test_too_little_halo_is_visibly_wrong(random_model):
    # The check above can fail: a halo one pixel short of the radius breaks exactness.
    rng = np.random.default_rng(3)
    y = rng.uniform(0.06, 0.92, (40, 40)).astype(np.float32)
    whole = random_model.session.run(y)
    short = tiling.upscale_tiled(y, 3, 8, random_model.radius - 1, random_model.session.run)
    assert np.abs(short - whole).max() > 1e-3


def test_colour_image_tiles_exactly(random_model):
    rng = np.random.default_rng(4)
    px = rng.uniform(0, 1, (45, 38, 3)).astype(np.float32)
    a = upscale_pixels(px, random_model, tile=0)
    b = upscale_pixels(px, random_model, tile=7)
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_wrong_model_output_size_is_reported():
    def bad(window):
        return np.zeros((window.shape[0] * 2, window.shape[1] * 2), np.float32)

    with pytest.raises(ValueError, match="scale 3"):
        tiling.upscale_tiled(np.zeros((5, 5), np.float32), 3, 0, 1, bad)


def test_batched_tile_rows_equal_single_tiles(random_model):
    # What a GPU or CoreML session gets: each tile row's same-shaped windows in one call.
    rng = np.random.default_rng(5)
    y = rng.uniform(0.06, 0.92, (50, 61)).astype(np.float32)
    calls = []

    def batch(windows):
        calls.append(windows.shape)
        return random_model.session.run_batch(windows)

    single = list(tiling.iter_tiles(y, 3, 16, random_model.radius, random_model.session.run))
    batched = list(tiling.iter_tiles(y, 3, 16, random_model.radius, random_model.session.run, batch))
    assert [t for t, _ in single] == [t for t, _ in batched]
    for (_, a), (_, b) in zip(single, batched, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert calls and all(n == 4 for n, *_ in calls)  # 4 windows per tile row, one call each
    assert len({shape[1:] for shape in calls}) == 1  # one fixed window shape


def test_engine_batches_only_on_accelerators(random_model):
    assert random_model.session.batches is False  # the CPU


def test_a_fixed_batch_pads_the_last_group_and_keeps_one_shape(random_model):
    """Providers that compile per shape get every call as (batch, window, window)."""
    rng = np.random.default_rng(6)
    y = rng.uniform(0.06, 0.92, (50, 61)).astype(np.float32)  # 4 windows a row at tile 16
    calls = []

    def batch(windows):
        calls.append(windows.shape)
        return random_model.session.run_batch(windows)

    single = list(tiling.iter_tiles(y, 3, 16, random_model.radius, random_model.session.run))
    fixed = list(tiling.iter_tiles(y, 3, 16, random_model.radius, random_model.session.run, batch, 3))
    assert [t for t, _ in single] == [t for t, _ in fixed]
    for (_, a), (_, b) in zip(single, fixed, strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    assert len(set(calls)) == 1 and calls[0][0] == 3 and len(calls) == 2 * 4  # 4 rows, 2 calls each
