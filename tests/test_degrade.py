import io

import numpy as np
import pytest
from PIL import Image

from batchsr import degrade as d
from batchsr.degrade import Realistic, degrade, degrade_realistic, mod_crop

# A realistic chain with every stage switched off but the final resize: the
# baseline each stage test switches one thing on against.
NOTHING = Realistic(
    bicubic_share=0.0, second_stage=0.0, shuffle=0.0, blur=0.0, noise=0.0, jpeg=0.0, resamplers=("bicubic",)
)


def _photo(h=96, w=120, seed=0):
    """A smooth colour gradient with some texture: what a photo has, and deterministic."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * np.sin(6 * xx * yy)], axis=-1)
    tex = rng.normal(0, 0.03, (h // 4 + 1, w // 4 + 1, 1)).repeat(4, 0).repeat(4, 1)[:h, :w]
    return (np.clip(base + tex, 0, 1) * 255).astype(np.uint8)


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
    with pytest.raises(ValueError, match="smaller than the scale"):
        degrade_realistic(Image.new("RGB", (2, 5)), 3, 0)


# --- the stages ---


@pytest.mark.parametrize("sx,sy,theta", [(1.0, 1.0, 0.0), (2.0, 0.8, 0.0), (2.0, 0.8, np.pi / 2), (1.5, 0.9, 0.6)])
def test_gaussian_kernel_has_the_sigmas_it_says(sx, sy, theta):
    k = d.gaussian_kernel(sx, sy, theta).astype(np.float64)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
    assert k.sum() == pytest.approx(1.0, abs=1e-6)
    r = k.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    assert (k * xx).sum() == pytest.approx(0, abs=1e-6) and (k * yy).sum() == pytest.approx(0, abs=1e-6)  # centred
    # Variance along the rotated axes (a 3-sigma kernel keeps ~99 % of it; below ~0.8 px
    # a sampled Gaussian is narrower than its sigma, as every sampled kernel is).
    u = np.cos(theta) * xx + np.sin(theta) * yy
    v = -np.sin(theta) * xx + np.cos(theta) * yy
    assert np.sqrt((k * u * u).sum()) == pytest.approx(sx, rel=0.05)
    assert np.sqrt((k * v * v).sum()) == pytest.approx(sy, rel=0.05)


def test_blur_of_an_impulse_is_the_kernel_and_keeps_the_mean():
    k = d.gaussian_kernel(1.7, 0.9, 0.4)
    r = k.shape[0] // 2
    img = np.zeros((41, 37, 3), np.float32)
    img[20, 18] = 1.0
    out = d.blur(img, k)
    assert out.shape == img.shape
    np.testing.assert_allclose(out[20 - r : 20 + r + 1, 18 - r : 18 + r + 1, 1], k[::-1, ::-1], atol=1e-6)
    flat = np.full((30, 30, 3), 0.6, np.float32)
    np.testing.assert_allclose(d.blur(flat, k), flat, atol=1e-5)  # mirrored borders: no dark frame


def test_a_kernel_wider_than_the_image_still_blurs():
    out = d.blur(np.random.default_rng(0).random((5, 6, 3)).astype(np.float32), d.gaussian_kernel(3.0, 3.0))
    assert out.shape == (5, 6, 3) and np.isfinite(out).all()


@pytest.mark.parametrize("sigma", [2.0, 8.0, 15.0])
def test_gaussian_noise_has_its_sigma_in_levels(sigma):
    rng = np.random.default_rng(1)
    img = np.full((200, 200, 3), 0.5, np.float32)
    n = (d.gaussian_noise(img, sigma, rng) - img) * 255
    assert n.std() == pytest.approx(sigma, rel=0.03)
    assert abs(np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]) < 0.05  # colour noise
    g = (d.gaussian_noise(img, sigma, rng, grey=True) - img) * 255
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 0], g[..., 2])


def test_poisson_noise_grows_with_the_level():
    rng = np.random.default_rng(2)
    dark, bright = np.full((200, 200, 3), 0.1, np.float32), np.full((200, 200, 3), 0.9, np.float32)
    gain = 1.0
    for img, level in ((dark, 25.5), (bright, 229.5)):
        n = (d.poisson_noise(img, gain, rng) - img) * 255
        assert n.std() == pytest.approx(np.sqrt(gain * level), rel=0.05)


def test_jpeg_is_pillows_420_jpeg_at_that_quality():
    img = _photo().astype(np.float32) / 255
    out = d.jpeg(img, 40)
    buf = io.BytesIO()
    Image.fromarray(d.to_u8(img)).save(buf, "JPEG", quality=40, subsampling=2)
    assert np.array_equal(d.to_u8(out), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    assert not np.array_equal(d.to_u8(out), d.to_u8(img))
    # Lower quality loses more.
    err = lambda q: np.abs(d.jpeg(img, q) - img).mean()  # noqa: E731
    assert err(20) > err(60) > err(95)


def test_resize_gives_the_size_asked():
    out = d.resize(_photo().astype(np.float32) / 255, (41, 29), "lanczos")
    assert out.shape == (29, 41, 3)


# --- the chain ---


def test_realistic_is_reproducible_by_seed_and_has_the_lr_size():
    im = Image.fromarray(_photo(100, 131))
    gt1, lr1 = degrade_realistic(im, 3, 7)
    gt2, lr2 = degrade_realistic(im, 3, 7)
    assert gt1.size == (129, 99) and lr1.size == (43, 33) and lr1.mode == "RGB"
    assert np.array_equal(np.asarray(lr1), np.asarray(lr2))
    assert any(not np.array_equal(np.asarray(degrade_realistic(im, 3, s)[1]), np.asarray(lr1)) for s in range(8, 12))


def test_with_every_stage_off_it_is_bicubic():
    im = Image.fromarray(_photo())
    _, lr = degrade_realistic(im, 4, 0, NOTHING)
    _, ref = degrade(im, 4)
    assert np.abs(np.asarray(lr).astype(int) - np.asarray(ref)).max() <= 1  # float vs 8-bit resize


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("seed", range(6))
def test_lr_and_hr_stay_aligned_through_any_chain(scale, seed):
    """A bright dot's centroid lands where pixel-centre geometry says, whatever the blur,
    the intermediate size and the resampler: no fractional drift between the pair."""
    r = Realistic(
        bicubic_share=0.0, second_stage=1.0 if seed % 2 else 0.0, noise=0.0, jpeg=0.0, jpeg_first=0.0, shuffle=1.0
    )
    h, w = 36 * scale, 48 * scale
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = 17.3 * scale, 25.8 * scale
    dot = 20 + 200 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (1.5 * scale) ** 2))
    gt = np.repeat(dot[..., None], 3, axis=2).astype(np.uint8)
    lr = d.realistic_lr(gt, scale, np.random.default_rng(seed), r)[..., 0].astype(np.float64) - 20
    lr = np.clip(lr, 0, None)
    ly, lx = np.mgrid[0 : lr.shape[0], 0 : lr.shape[1]]
    got = ((ly * lr).sum() / lr.sum(), (lx * lr).sum() / lr.sum())
    want = ((cy + 0.5) / scale - 0.5, (cx + 0.5) / scale - 0.5)
    assert got == pytest.approx(want, abs=0.08)


def test_each_kind_of_damage_shows_in_the_lr():
    """Switched on alone, each stage moves the LR away from plain bicubic the way it should."""
    im = Image.fromarray(_photo(192, 240))
    _, clean = degrade(im, 3)
    clean = np.asarray(clean).astype(np.float64)

    def lr(**on):
        return np.asarray(degrade_realistic(im, 3, 3, Realistic(**{**NOTHING.__dict__, **on}))[1]).astype(np.float64)

    def detail(a):  # high-frequency energy of the luma
        y = a.mean(axis=2)
        return np.abs(np.diff(y, axis=0)).mean() + np.abs(np.diff(y, axis=1)).mean()

    blurred = lr(blur=1.0, blur_sigma=(1.8, 2.0))
    assert detail(blurred) < 0.8 * detail(clean)
    noisy = lr(noise=1.0, poisson=0.0, noise_sigma=(10.0, 10.0), grey_noise=0.0)
    assert np.std(noisy - clean) == pytest.approx(10.0, rel=0.15)
    chroma = noisy[..., 0] - noisy[..., 1] - (clean[..., 0] - clean[..., 1])
    assert chroma.std() > 5  # colour noise reaches the chroma
    jpg = lr(jpeg=1.0, jpeg_quality=(30, 30))
    assert 0 < np.abs(jpg - clean).mean() < 10


def test_a_grey_photo_stays_grey():
    g = _photo()[..., :1].repeat(3, axis=2)
    _, lr = degrade_realistic(
        Image.fromarray(g), 3, 5, Realistic(bicubic_share=0.0, noise=1.0, jpeg=0.0, jpeg_first=0.0)
    )
    a = np.asarray(lr)
    assert np.array_equal(a[..., 0], a[..., 1]) and np.array_equal(a[..., 0], a[..., 2])
