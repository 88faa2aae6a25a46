"""batchsr.estimate: JPEG quality from quantisation tables, noise sigma on real photos.

Run as a script for the table of noise-estimator errors quoted in the module docstring:
``python tests/test_estimate.py`` (B100 at 481x321) or ``python tests/test_estimate.py small``
(their x3 bicubic LR, 160x107) or ``python tests/test_estimate.py mosaic`` (2x2 mosaics of them,
962x642, which the estimator measures on every fourth patch row and column).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchsr import estimate as E
from batchsr.color import y_metric
from batchsr.degrade import degrade

SIGMAS = (2, 5, 10, 15)
# The 100 B100 photos ranked by mean absolute neighbour difference of Y: the two smoothest, and the
# four most textured but the three whose clean estimate is 2 levels or more (86016: gravel and soil
# everywhere; 175032; 33039, 2.1 on every other patch, 1.8 on every patch), tested on their own.
SMOOTH = ("3096", "45096")
TEXTURED = ("167083", "291000", "55073", "58060")
NOISE_LIKE = ("86016", "175032", "33039")


def mosaic_y(shared: Path, names) -> np.ndarray:
    """Four B100 photos' luma side by side, 2 x 2 (portrait ones turned): 962x642, a scan's size."""
    ys = []
    for name in names:
        y = b100_y(shared, name)
        ys.append(y.T if y.shape[0] > y.shape[1] else y)
    return np.block([[ys[0], ys[1]], [ys[2], ys[3]]])


def reopen(im: Image.Image, **save) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", **save)
    buf.seek(0)
    return Image.open(buf)


def sample_image(mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    im = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB")
    return im if mode == "RGB" else im.convert(mode)


def b100_y(shared: Path, name: str, small: bool = False) -> np.ndarray:
    im = Image.open(shared / "data" / "bsds500" / "val" / f"{name}.jpg").convert("RGB")
    if small:
        im = degrade(im, 3)[1]
    return y_metric(np.asarray(im))


def white(shape, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


# --- JPEG quality -------------------------------------------------------------------------------


def test_pillow_gives_tables_in_natural_order():
    q = reopen(sample_image(), quality=50).quantization
    assert list(q[0]) == list(E._K1) and list(q[1]) == list(E._K2)
    t = [list(range(1, 65)), list(range(65, 129))]  # and qtables= takes them in that same order
    q = reopen(sample_image(), qtables=t).quantization
    assert [list(q[0]), list(q[1])] == t


@pytest.mark.parametrize("quality", range(1, 101))
def test_ijg_scaling_is_libjpegs(quality):
    q = reopen(sample_image(), quality=quality).quantization
    assert list(q[0]) == E._ijg_table(E._K1, quality).tolist()
    assert list(q[1]) == E._ijg_table(E._K2, quality).tolist()
    assert E.jpeg_quality(reopen(sample_image(), quality=quality)) == quality


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("quality", range(30, 96, 5))
def test_quality_of_pillow_jpegs(mode, quality):
    im = reopen(sample_image(mode), quality=quality)
    assert len(im.quantization) == (2 if mode == "RGB" else 1)
    assert E.jpeg_quality(im) == quality  # exact, well inside the +-3 asked for


def test_quality_100_and_subsampling_do_not_matter():
    assert E.jpeg_quality(reopen(sample_image(), quality=100)) == 100
    assert E.jpeg_quality(reopen(sample_image(), quality=100, subsampling=0)) == 100
    assert E.jpeg_quality(reopen(sample_image("L"), quality=100)) == 100


@pytest.mark.parametrize("quality", [30, 50, 70, 90])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perturbed_tables_are_within_3(quality, seed):
    rng = np.random.default_rng(seed)
    tables = []
    for base in (E._K1, E._K2):
        t = E._ijg_table(base, quality).copy()
        at = rng.choice(64, size=8, replace=False)
        t[at] = np.clip(t[at] + rng.choice([-1, 1], size=8), 1, 255)
        tables.append(t.tolist())
    im = reopen(sample_image(), qtables=tables)
    assert [list(v) for v in im.quantization.values()] == tables  # not an IJG table any more
    assert abs(E.jpeg_quality(im) - quality) <= 3
    grey = reopen(sample_image("L"), qtables=tables[:1])
    assert abs(E.jpeg_quality(grey) - quality) <= 3


def test_foreign_tables_give_a_monotone_best_fit():
    # flat tables, as some encoders write: coarser steps must read as lower qualities
    found = [E.jpeg_quality(reopen(sample_image(), qtables=[[v] * 64, [v] * 64])) for v in (1, 2, 4, 8, 16, 32)]
    assert found[0] == 100 and all(1 <= f <= 100 for f in found)
    assert all(a > b for a, b in itertools.pairwise(found))


def test_not_a_jpeg_is_none(tmp_path):
    assert E.jpeg_quality(sample_image()) is None
    sample_image().save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert E.jpeg_quality(im) is None
    im = reopen(sample_image(), quality=80)
    im.quantization = {}
    assert E.jpeg_quality(im) is None


# --- noise --------------------------------------------------------------------------------------


def test_chi2_constants():
    from scipy import stats  # an independent oracle (scikit-image, of the test extra, brings scipy)

    assert E._T == pytest.approx(stats.chi2.ppf(0.99, E._D), rel=1e-12)
    assert E._KAPPA == pytest.approx(stats.chi2.cdf(E._T, E._D + 2) / stats.chi2.cdf(E._T, E._D), rel=1e-12)


def test_basis_is_orthonormal_and_mean_free():
    q = E._Q.astype(np.float64)
    assert q.shape == (16, 15)
    np.testing.assert_allclose(q.T @ q, np.eye(15), atol=1e-6)
    np.testing.assert_allclose(q.sum(axis=0), 0, atol=1e-6)


# relative spread (one sd over 40 seeds) measured 2.6% at 64x64, 0.95% at 107x160, 0.33% at 321x481:
# each bound is about 4 sd
@pytest.mark.parametrize("shape, rel", [((64, 64), 0.10), ((107, 160), 0.04), ((321, 481), 0.015)])
@pytest.mark.parametrize("sigma", [1, 5, 20])
def test_pure_noise(shape, rel, sigma):
    for seed in (1, 2, 3):
        assert E.noise_sigma(sigma * white(shape, seed)) == pytest.approx(sigma, rel=rel)


def test_pure_noise_is_unbiased():
    """The split halves remove the low bias of a sample's least eigenvalue (about -4% in sigma here)."""
    found = [E.noise_sigma(white((107, 160), seed)) for seed in range(10)]
    assert np.mean(found) == pytest.approx(1.0, abs=0.01)  # sd of the mean: 0.3%


def smooth_planes(h=107, w=160):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    return {
        "ramp": 16 + 219 * xx / (w - 1),
        "diagonal": 16 + 219 * (xx + yy) / (w + h - 2),
        "radial": 30 + 180 * np.hypot(xx - w / 3, yy - h / 2) / np.hypot(w, h),
        "waves": 128 + 60 * np.sin(xx / 9) * np.cos(yy / 13),
    }


@pytest.mark.parametrize("name", list(smooth_planes()))
def test_noise_on_smooth_content(name):
    y = smooth_planes()[name]
    assert E.noise_sigma(y) < 0.5
    for s in SIGMAS:
        assert abs(E.noise_sigma(y + s * white(y.shape)) - s) <= 0.5  # tighter than the 1.5 asked for


@pytest.mark.parametrize("name", SMOOTH + TEXTURED)
def test_noise_on_photos(shared, name):
    """Within 1.5 levels of the added sigma, and of sqrt(added^2 + own^2), own being the clean photo's
    estimate (the photos are JPEG-derived and not noise-free); own is under 2 levels."""
    y = b100_y(shared, name)
    own = E.noise_sigma(y)
    assert own < 2
    for s in SIGMAS:
        est = E.noise_sigma(y + s * white(y.shape))
        assert abs(est - s) <= 1.5 and abs(est - np.hypot(s, own)) <= 1.5, (s, est, own)


@pytest.mark.parametrize("name", NOISE_LIKE)
def test_texture_that_reads_as_noise_still_adds_in_quadrature(shared, name):
    """The known limit: texture finer than a 4x4 patch can tell reads as a few levels of noise."""
    y = b100_y(shared, name)
    own = E.noise_sigma(y)
    assert 1 < own < 6
    for s in SIGMAS:
        assert abs(E.noise_sigma(y + s * white(y.shape)) - np.hypot(s, own)) <= 1.5


@pytest.mark.parametrize("names", [TEXTURED, SMOOTH + TEXTURED[:2]])
def test_noise_on_photo_mosaics_measured_on_every_fourth_patch(shared, names):
    """Planes of a scan's size take a sixteenth of the patches: the same tolerances hold."""
    y = mosaic_y(shared, names)
    assert y.size >= 16 * E._PATCHES
    own = E.noise_sigma(y)
    assert own < 2
    for s in SIGMAS:
        est = E.noise_sigma(y + s * white(y.shape))
        assert abs(est - s) <= 1.5 and abs(est - np.hypot(s, own)) <= 1.5, (s, est, own)


@pytest.mark.parametrize("name", SMOOTH + TEXTURED)
def test_noise_on_lr_photos(shared, name):
    """At LR size (x3 bicubic, 160x107) texture is denser: only the quadrature form is asserted."""
    y = b100_y(shared, name, small=True)
    own = E.noise_sigma(y)
    assert own < 5
    for s in SIGMAS:
        assert abs(E.noise_sigma(y + s * white(y.shape)) - np.hypot(s, own)) <= 1.5


def test_flat_tiny_and_wrong_planes():
    assert E.noise_sigma(np.full((50, 70), 120.0)) < 1e-6  # 0 but for float rounding
    assert np.isnan(E.noise_sigma(np.zeros((3, 100))))
    assert np.isnan(E.noise_sigma(np.zeros((8, 8))))
    with pytest.raises(ValueError):
        E.noise_sigma(np.zeros((10, 10, 3)))


def test_big_planes_are_sampled_deterministically(monkeypatch):
    h, w = 1500, 1600  # 2.4 Mpixel: over the limit, so a fixed-seed sample of 61 tiles (1 Mpixel)
    y = smooth_planes(h, w)["radial"] + 4 * white((h, w))
    assert len(E._tiles(y)) == E._SAMPLE // E._TILE**2
    sampled = E.noise_sigma(y)
    assert sampled == E.noise_sigma(y.copy()) and abs(sampled - 4) < 0.1
    monkeypatch.setattr(E, "_MAX_PIXELS", h * w)
    assert len(E._tiles(y)) == 1 and abs(E.noise_sigma(y) - sampled) < 0.05


def test_the_damage_of_a_decoded_file(shared, tmp_path):
    from batchsr import decode, experiment

    with Image.open(shared / "data" / "bsds500" / "val" / f"{SMOOTH[0]}.jpg") as src:
        src.convert("RGB").save(tmp_path / "q60.jpg", quality=60)
        src.convert("RGB").save(tmp_path / "q60.png")
    pic = decode.load(tmp_path / "q60.jpg")
    d = experiment.damage_of(pic)
    y = y_metric(np.asarray(Image.open(tmp_path / "q60.jpg").convert("RGB")))
    assert d.jpeg_quality == 60.0 and d.noise_sigma == pytest.approx(E.noise_sigma(y), abs=0.01) and d.noise_sigma < 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.noise_sigma = 0.0
    assert experiment.damage_of(decode.load(tmp_path / "q60.png")).jpeg_quality is None


def test_a_big_scan_is_measured_without_its_whole_luma(monkeypatch):
    """Over 2 Mpixel only the sampled 128x128 tiles are ever turned into luma."""
    from batchsr import color, decode, experiment

    rng = np.random.default_rng(3)
    h, w = 1500, 1600
    base = np.linspace(0.2, 0.8, w, dtype=np.float32)[None, :, None].repeat(h, 0).repeat(3, 2)
    px = np.clip(base + rng.normal(0, 4 / 219, (h, w, 1)).astype(np.float32), 0, 1)
    whole = E.noise_sigma(color.rgb_to_y(px) * np.float32(255.0))
    sizes = []
    real = color.rgb_to_y
    monkeypatch.setattr(color, "rgb_to_y", lambda rgb: sizes.append(rgb.shape[:2]) or real(rgb))
    d = experiment.damage_of(decode.Picture(px, 8, "PNG"))
    assert sizes and max(a * b for a, b in sizes) == E._TILE**2 and len(sizes) == len(E.sample_boxes(h, w))
    assert d.noise_sigma == pytest.approx(whole, rel=1e-5) and abs(d.noise_sigma - 4) < 0.3


# --- the error table (not a test) ----------------------------------------------------------------


def immerkaer_edges(y: np.ndarray, keep: float = 0.9) -> float:
    """Immerkaer's Laplacian-difference estimator over the 90% lowest-Sobel pixels (Tai & Yang)."""

    def conv(k):
        h, w = y.shape
        return sum(k[i][j] * y[i : h - 2 + i, j : w - 2 + j] for i in range(3) for j in range(3) if k[i][j])

    r = conv([[1, -2, 1], [-2, 4, -2], [1, -2, 1]])
    g = np.abs(conv([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])) + np.abs(conv([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]))
    return float(np.sqrt(np.pi / 2) / 6 * np.abs(r[g <= np.quantile(g, keep)]).mean())


def donoho_mad(y: np.ndarray) -> float:
    """Donoho's median absolute deviation of the finest diagonal (Haar HH) wavelet band / 0.6745."""
    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    hh = (y[:h:2, :w:2] - y[:h:2, 1:w:2] - y[1:h:2, :w:2] + y[1:h:2, 1:w:2]) / 2
    return float(np.median(np.abs(hh)) / 0.6744897501960817)


def error_table(shared: Path, small: bool = False, mosaic: bool = False) -> None:
    methods = {
        "estimate.noise_sigma": E.noise_sigma,
        "Immerkaer, edges excluded": immerkaer_edges,
        "Donoho MAD, Haar HH": donoho_mad,
    }
    rows = {m: [] for m in methods}
    names = [p.stem for p in sorted((shared / "data" / "bsds500" / "val").glob("*.jpg"))]
    planes = (
        (mosaic_y(shared, names[i : i + 4]) for i in range(0, len(names), 4))
        if mosaic
        else (b100_y(shared, n, small) for n in names)
    )
    for y in planes:
        noise = white(y.shape)
        for m, f in methods.items():
            rows[m].append([f(y)] + [f(y + s * noise) for s in SIGMAS])
    print(
        f"{len(rows[m])} {'mosaics' if mosaic else 'photos'}, {'x3 LR' if small else 'full size'}; "
        "own: median p90 max (#>=2); "
        "max |est - hypot(s, own)|; worst est - s at s =",
        SIGMAS,
    )
    for m, r in rows.items():
        r = np.array(r)
        own, est = r[:, 0], r[:, 1:]
        quad = np.abs(est - np.hypot(np.array(SIGMAS), own[:, None])).max()
        err = est - np.array(SIGMAS)
        worst = err[np.abs(err).argmax(axis=0), range(len(SIGMAS))]
        print(
            f"{m:28s} {np.median(own):5.2f} {np.quantile(own, 0.9):5.2f} {own.max():5.2f} ({(own >= 2).sum():2d})"
            f"  {quad:5.2f}  " + " / ".join(f"{v:+.1f}" for v in worst)
        )


if __name__ == "__main__":
    error_table(
        Path(__file__).resolve().parent.parent.parent / "shared",
        small="small" in sys.argv[1:],
        mosaic="mosaic" in sys.argv[1:],
    )
