"""The degradations shared by training and evaluation: the one place an LR image is made.

Two models of how a low-resolution image came to be:

- ``degrade`` (bicubic): the evaluation protocol of the literature. The ground
  truth is mod-cropped to a multiple of the scale and downscaled with Pillow's
  bicubic filter (which antialiases like MATLAB ``imresize``).
- ``degrade_realistic``: what old photos went through. A seeded random chain
  of blur, resizing, noise and JPEG, applied in one or two stages, in RGB so
  that chroma gets real JPEG 4:2:0 damage and colour noise. It follows the
  ideas of Real-ESRGAN's second-order pipeline (each kind of damage may happen
  twice) and BSRGAN's shuffle (the order of blur, resize and noise may
  change); the ranges are ``Realistic``'s fields.

Training LR patches and the evaluation sets are made by these same functions,
so training and evaluation can never disagree. Every resize maps pixel
centres onto pixel centres (Pillow's convention) and the last one lands on
exactly ``size / scale``, so LR and HR stay aligned to the pixel whatever the
intermediate sizes were.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image


def mod_crop(image: Image.Image, scale: int) -> Image.Image:
    """Crop right/bottom so width and height are multiples of ``scale``."""
    w, h = image.size
    w2, h2 = w - w % scale, h - h % scale
    if (w2, h2) == (w, h):
        return image
    return image.crop((0, 0, w2, h2))


def degrade(hr: Image.Image, scale: int) -> tuple[Image.Image, Image.Image]:
    """Return ``(ground_truth, low_res)`` for a high-resolution image.

    ``ground_truth`` is ``hr`` mod-cropped; ``low_res`` is it downscaled by
    ``scale`` with ``Image.BICUBIC``. Raises ValueError when the image is
    smaller than ``scale`` in either dimension.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    gt = mod_crop(hr, scale)
    if gt.width == 0 or gt.height == 0:
        raise ValueError(f"image {hr.width}x{hr.height} is smaller than the scale {scale}")
    lr = gt.resize((gt.width // scale, gt.height // scale), Image.BICUBIC)
    return gt, lr


# --- the stages of the realistic degradation, each on float RGB in [0, 1] (H, W, 3) ---


def gaussian_kernel(sigma_x: float, sigma_y: float, theta: float = 0.0) -> np.ndarray:
    """A normalised 2-D Gaussian blur kernel, odd-sized (radius ceil(3 sigma)), centred.

    ``sigma_x`` and ``sigma_y`` are the standard deviations (pixels) along the
    axes rotated by ``theta`` radians: equal sigmas give an isotropic blur.
    """
    radius = max(1, math.ceil(3 * max(sigma_x, sigma_y)))
    ax = np.arange(-radius, radius + 1, dtype=np.float64)
    xx, yy = np.meshgrid(ax, ax)
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).astype(np.float32)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``img`` convolved with a centred odd-sized ``kernel``, borders mirrored; same size."""
    r = kernel.shape[0] // 2
    h, w = img.shape[:2]
    if r >= min(h, w):  # a kernel wider than the image: mirror padding cannot reach
        r = min(h, w) - 1
        kernel = kernel[
            kernel.shape[0] // 2 - r : kernel.shape[0] // 2 + r + 1,
            kernel.shape[1] // 2 - r : kernel.shape[1] // 2 + r + 1,
        ]
        kernel = kernel / kernel.sum()
    p = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    ph, pw = p.shape[:2]
    spectrum = np.fft.rfft2(p, axes=(0, 1)) * np.fft.rfft2(kernel, s=(ph, pw))[..., None]
    out = np.fft.irfft2(spectrum, s=(ph, pw), axes=(0, 1))
    # Circular convolution with the kernel at the origin: output i is centred on
    # padded pixel i - r, so the image's pixels are the rows/columns from 2r on.
    return out[2 * r : 2 * r + h, 2 * r : 2 * r + w].astype(np.float32)


RESAMPLERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "box": Image.BOX, "lanczos": Image.LANCZOS}


def resize(img: np.ndarray, size: tuple[int, int], method: str = "bicubic") -> np.ndarray:
    """``img`` resized to ``size`` = (width, height) with a Pillow filter, in float."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    f = RESAMPLERS[method]
    planes = [np.asarray(Image.fromarray(img[..., c]).resize(size, f)) for c in range(img.shape[2])]
    return np.stack(planes, axis=-1)


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator, grey: bool = False) -> np.ndarray:
    """Add white Gaussian noise of ``sigma`` 8-bit levels; ``grey``: the same noise in R, G and B."""
    shape = img.shape[:2] + (1,) if grey else img.shape
    return img + rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma / 255.0)


def poisson_noise(img: np.ndarray, gain: float, rng: np.random.Generator, grey: bool = False) -> np.ndarray:
    """Add signal-dependent (shot) noise: variance ``gain * level`` in 8-bit levels.

    A pixel at level L gets noise of standard deviation ``sqrt(gain * L)``
    levels (Gaussian approximation of Poisson counts), so bright areas are
    noisier than dark ones, as on film and sensors. ``grey`` draws it once from
    the luma and adds it to R, G and B alike.
    """
    base = img.mean(axis=2, keepdims=True) if grey else img
    std = np.sqrt(np.clip(base, 0.0, 1.0) * np.float32(gain / 255.0))
    return img + rng.standard_normal(base.shape, dtype=np.float32) * std


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through Pillow's JPEG at ``quality`` (4:2:0 chroma, as cameras and scanners save)."""
    u8 = Image.fromarray(to_u8(img))
    buf = io.BytesIO()
    u8.save(buf, "JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def to_u8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class Realistic:
    """The ranges of ``degrade_realistic``. Sigmas are in pixels of the image they blur,
    noise in 8-bit levels; every range is sampled uniformly unless its comment says otherwise."""

    bicubic_share: float = 0.15  # pairs made by plain `degrade` (clean scans must still gain)
    second_stage: float = 0.5  # chance that blur / resize / noise happen a second time
    shuffle: float = 0.3  # chance that a stage's blur, resize and noise come in a random order
    blur: float = 0.8  # chance of blur in stage 1 (stage 2: half of it)
    blur_sigma: tuple[float, float] = (0.2, 2.0)  # stage 1, HR pixels, per axis
    blur_sigma2: tuple[float, float] = (0.2, 1.0)  # stage 2
    anisotropic: float = 0.5  # chance that the two axes get their own sigma and a random angle
    intermediate: tuple[float, float] = (1.0, 2.0)  # a two-stage chain's middle size, in LR sizes (log-uniform)
    resamplers: tuple[str, ...] = ("bicubic", "bilinear", "box", "lanczos")
    noise: float = 0.7  # chance of noise in each stage
    noise_sigma: tuple[float, float] = (1.0, 15.0)  # Gaussian, 8-bit levels
    poisson: float = 0.4  # share of noise that is signal-dependent instead of Gaussian
    poisson_gain: tuple[float, float] = (0.05, 1.5)  # variance per level, see poisson_noise
    grey_noise: float = 0.4  # share of noise that is the same in R, G and B
    jpeg: float = 0.85  # chance that the LR image is finally a JPEG
    jpeg_quality: tuple[int, int] = (30, 95)
    jpeg_first: float = 0.3  # chance of a first JPEG before a second stage


def _blur_kernel(rng: np.random.Generator, sigma: tuple[float, float], anisotropic: float) -> np.ndarray:
    sx = rng.uniform(*sigma)
    if rng.random() < anisotropic:
        return gaussian_kernel(sx, rng.uniform(*sigma), rng.uniform(0, math.pi))
    return gaussian_kernel(sx, sx)


def _noise(img: np.ndarray, rng: np.random.Generator, r: Realistic) -> np.ndarray:
    grey = rng.random() < r.grey_noise or r.grey_noise >= 1.0
    if rng.random() < r.poisson:
        return poisson_noise(img, rng.uniform(*r.poisson_gain), rng, grey)
    return gaussian_noise(img, rng.uniform(*r.noise_sigma), rng, grey)


def _stage(
    img: np.ndarray,
    size: tuple[int, int],
    sigma: tuple[float, float],
    p_blur: float,
    rng: np.random.Generator,
    r: Realistic,
) -> np.ndarray:
    """One stage: blur (maybe), resize to ``size``, noise (maybe), in order or shuffled."""
    ops = ["blur", "resize", "noise"]
    if rng.random() < r.shuffle:
        rng.shuffle(ops)
    for op in ops:
        if op == "blur" and rng.random() < p_blur:
            img = blur(img, _blur_kernel(rng, sigma, r.anisotropic))
        elif op == "resize":
            img = resize(img, size, r.resamplers[rng.integers(len(r.resamplers))])
        elif op == "noise" and rng.random() < r.noise:
            img = _noise(img, rng, r)
    return img


def realistic_lr(gt: np.ndarray, scale: int, rng: np.random.Generator, r: Realistic = Realistic()) -> np.ndarray:
    """The realistic LR of an 8-bit RGB ``gt`` whose sides are multiples of ``scale``: 8-bit RGB."""
    h, w = gt.shape[:2]
    if h % scale or w % scale or h < scale or w < scale:
        raise ValueError(f"{w}x{h} is not a positive multiple of the scale {scale}")
    lr_size = (w // scale, h // scale)
    if rng.random() < r.bicubic_share:
        return np.asarray(Image.fromarray(gt).resize(lr_size, Image.BICUBIC))
    img = gt.astype(np.float32) / 255.0
    if np.array_equal(gt[..., 0], gt[..., 1]) and np.array_equal(gt[..., 0], gt[..., 2]):
        r = replace(r, grey_noise=1.0)  # a black-and-white photo gets no colour noise
    if rng.random() < r.second_stage:
        f = math.exp(rng.uniform(math.log(r.intermediate[0]), math.log(r.intermediate[1])))
        mid = (max(lr_size[0], round(lr_size[0] * f)), max(lr_size[1], round(lr_size[1] * f)))
        img = _stage(img, mid, r.blur_sigma, r.blur, rng, r)
        if rng.random() < r.jpeg_first:
            img = jpeg(img, rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1))
        img = _stage(img, lr_size, r.blur_sigma2, r.blur / 2, rng, r)
    else:
        img = _stage(img, lr_size, r.blur_sigma, r.blur, rng, r)
    if rng.random() < r.jpeg:
        img = jpeg(img, rng.integers(r.jpeg_quality[0], r.jpeg_quality[1] + 1))
    return to_u8(img)


def degrade_realistic(
    hr: Image.Image, scale: int, seed: int | np.random.Generator, r: Realistic = Realistic()
) -> tuple[Image.Image, Image.Image]:
    """Return ``(ground_truth, low_res)`` like ``degrade``, with the realistic chain.

    The ground truth is ``hr`` as RGB, mod-cropped; the LR is 8-bit RGB of
    exactly its size divided by ``scale``. The same ``seed`` gives the same
    LR, byte for byte, on every machine with the same Pillow and numpy.
    """
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    gt = mod_crop(hr.convert("RGB"), scale)
    if gt.width == 0 or gt.height == 0:
        raise ValueError(f"image {hr.width}x{hr.height} is smaller than the scale {scale}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return gt, Image.fromarray(realistic_lr(np.asarray(gt), scale, rng, r))
