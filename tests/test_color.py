import numpy as np
import pytest

from batchsr import color


def test_studio_range_endpoints():
    y = color.rgb_to_y(np.array([[0, 0, 0], [1, 1, 1]], np.float32)) * 255
    assert y == pytest.approx([16.0, 235.0], abs=1e-4)
    assert color.y_metric(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)).ravel() == pytest.approx([16, 235])


def ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.stack([color.rgb_to_plane(rgb, c) for c in range(3)], -1)


def rgb(ycc: np.ndarray) -> np.ndarray:
    return color.planes_to_rgb(ycc[..., 0], ycc[..., 1], ycc[..., 2])


def test_known_colour_matches_formula():
    r, g, b = 0.2, 0.6, 0.9
    ycc = ycbcr(np.array([r, g, b], np.float32)) * 255
    assert ycc[0] == pytest.approx(16 + 65.481 * r + 128.553 * g + 24.966 * b, abs=1e-3)
    assert ycc[1] == pytest.approx(128 - 37.797 * r - 74.203 * g + 112.0 * b, abs=1e-3)
    assert ycc[2] == pytest.approx(128 + 112.0 * r - 93.786 * g - 18.214 * b, abs=1e-3)


def test_round_trip_is_lossless_in_8_bit():
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (64, 64, 3)).astype(np.uint8)
    back = color.to_uint(rgb(ycbcr(u8 / 255.0)))
    assert np.array_equal(back, u8)


def test_round_trip_16_bit():
    rng = np.random.default_rng(1)
    u16 = rng.integers(0, 65536, (32, 32, 3)).astype(np.uint16)
    back = color.to_uint(rgb(ycbcr(u16 / 65535.0)), 16)
    assert np.abs(back.astype(int) - u16).max() <= 1


def test_grey_is_consistent_with_rgb():
    g = np.linspace(0, 1, 11, dtype=np.float32)
    assert color.gray_to_y(g) == pytest.approx(color.rgb_to_y(np.stack([g, g, g], -1)), abs=1e-6)
    assert color.y_to_gray(color.gray_to_y(g)) == pytest.approx(g, abs=1e-6)
    g8 = (g * 255).round().astype(np.uint8)[None, :]
    assert color.y_metric(g8) == pytest.approx(color.y_metric(np.repeat(g8[..., None], 3, -1)))


def test_merge_with_unchanged_luma_is_bicubic_colour():
    # Upscaling Y bicubically too must give (almost) a plain bicubic RGB upscale.
    rng = np.random.default_rng(2)
    px = rng.uniform(0.1, 0.9, (10, 12, 3)).astype(np.float32)
    ycc = ycbcr(px)
    up = [color.resize_plane_rows(np.ascontiguousarray(ycc[..., c]), 36, 0, 10, 3) for c in range(3)]
    merged = color.planes_to_rgb(*up)
    direct = np.stack([color.resize_plane_rows(np.ascontiguousarray(px[..., c]), 36, 0, 10, 3) for c in range(3)], -1)
    assert merged.shape == (30, 36, 3)
    assert np.abs(merged - direct).max() < 1e-4


def test_planes_to_rgb_is_the_inverse_matrix():
    ycc = np.random.default_rng(3).uniform(0, 1, (7, 9, 3)).astype(np.float32)
    reference = (ycc.astype(np.float64) * 255 - [16, 128, 128]) @ np.linalg.inv(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]
    ).T
    b = color.planes_to_rgb(ycc[..., 0], ycc[..., 1], ycc[..., 2])
    assert np.abs(reference - b).max() < 1e-5


def test_the_8bit_merge_returns_every_8bit_colour_exactly():
    """All 2^24 colours: their own Y and chroma, merged in 8 bits, give the colour back."""
    u = np.arange(256, dtype=np.uint8)
    u8 = np.stack(np.meshgrid(u, u, u, indexing="ij"), -1).reshape(4096, 4096, 3)
    rgb = u8.astype(np.float32) / 255
    cb, cr = color.chroma_for_merge_u8(rgb)
    out = np.empty_like(u8)
    color.merge_u8(color.rgb_to_plane(rgb, 0), cb, cr, out)
    assert np.array_equal(out, u8)


def test_the_8bit_merge_agrees_with_the_float_path_out_of_gamut_too():
    rng = np.random.default_rng(4)
    rgb = rng.uniform(0, 1, (60, 70, 3)).astype(np.float32)
    y = color.rgb_to_plane(rgb, 0) * 1.6 - 0.25  # a model output overshooting both ends
    cb, cr = color.rgb_to_plane(rgb, 1), color.rgb_to_plane(rgb, 2)
    want = color.to_uint(np.clip(color.planes_to_rgb(y, cb, cr), 0, 1), 8)
    got = np.empty_like(want)
    color.merge_u8(y, *color.chroma_for_merge_u8(rgb), got)
    diff = np.abs(got.astype(int) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    assert (got == 0).any() and (got == 255).any()  # the clipping was exercised


def test_8bit_grey_and_alpha_quantise_like_to_uint():
    x = np.linspace(-0.1, 1.1, 5001, dtype=np.float32)
    out = np.empty(x.shape, np.uint8)
    color.unit_to_u8(x, out)
    assert np.abs(out.astype(int) - color.to_uint(np.clip(x, 0, 1), 8)).max() <= 1
    g = np.arange(256, dtype=np.float32) / 255
    color.y_to_gray_u8(color.gray_to_y(g), out[:256])
    assert np.array_equal(out[:256], np.arange(256))
