"""What the report measures of one image besides its output: the damage estimates of the
input and the original paper's PSNR experiment (the image as its own ground truth)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from batchsr import color, decode, metrics
from batchsr.degrade import degrade
from batchsr.estimate import Damage, noise_sigma_of
from batchsr.jpeg_pixels import HIGHEST_READ, READ_ERROR, jpeg_quality_of_pixels
from batchsr.models import Model
from batchsr.upscaling import upscale_u8


def paper_experiment(truth_u8: np.ndarray, model: Model, tile: int | None = None):
    """The original paper's per-image experiment on an 8-bit RGB or grey image.

    The image is its own ground truth: mod-crop it, degrade it by the model's
    scale (the shared ``degrade``), upscale that with bicubic and with the
    model. Returns ``(truth, bicubic, model_output)`` as 8-bit arrays of equal size.
    """
    s = model.scale
    gt, lr = degrade(Image.fromarray(truth_u8), s)
    bicubic = np.asarray(lr.resize(gt.size, Image.BICUBIC))
    return np.asarray(gt), bicubic, upscale_u8(np.asarray(lr), model, tile)


def psnr_columns(pixels: np.ndarray, model: Model, tile: int | None) -> tuple[float | None, float | None]:
    """(psnr_bicubic, psnr_model) of the paper's experiment, or (None, None) if too small."""
    s = model.scale
    h, w = pixels.shape[:2]
    if min(h // s, w // s) < 1 or min(h - h % s, w - w % s) <= 2 * s:
        return None, None
    colour = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., 0]
    truth, bicubic, sr = paper_experiment(color.to_uint(colour, 8), model, tile)
    return metrics.psnr_y(truth, bicubic, s), metrics.psnr_y(truth, sr, s)


def damage_of(pic: decode.Picture) -> Damage:
    """What the input's file and luma say of its damage (the report's jpeg_quality and noise_sigma).

    The luma is made only of the regions the noise estimate samples: a big scan's whole
    plane (8 bytes a pixel, with its temporary) never exists beside the decoded pixels.
    """
    px = pic.pixels

    def luma(box: tuple[slice, slice]) -> np.ndarray:
        part = px[box]
        y = color.rgb_to_y(part[..., :3]) if px.shape[2] >= 3 else color.gray_to_y(part[..., 0])
        return y * np.float32(255.0)

    quality, from_pixels = jpeg_quality_seen(px, pic.jpeg_quality) if pic.bits == 8 else (pic.jpeg_quality, False)
    return Damage(quality, noise_sigma_of(px.shape[:2], luma), from_pixels)


def jpeg_quality_seen(px: np.ndarray, tables: float | None) -> tuple[float | None, bool]:
    """The JPEG quality ``damage_of`` reports for 8-bit pixels (H, W, C) in [0, 1] whose file's
    tables say ``tables`` (None: not a JPEG file), and whether it was read from the pixels.

    A PNG or TIFF may have been a JPEG once: its quality is the one its pixels show. A JPEG
    file's is its tables', unless they say above ``HIGHEST_READ`` (steps too fine to hide
    an earlier save's) and the pixels show an earlier save more than ``READ_ERROR`` lower:
    a JPEG saved again at a high quality keeps the blocks of its first, worse save.
    """
    if tables is not None and tables <= HIGHEST_READ:
        return tables, False
    earlier = jpeg_quality_in_pixels(px)
    if earlier is None or (tables is not None and earlier >= tables - READ_ERROR):
        return tables, False
    return earlier, True


def jpeg_quality_in_pixels(px: np.ndarray) -> float | None:
    """``jpeg_pixels.jpeg_quality_of_pixels`` of decoded pixels (H, W, C) in [0, 1], read on
    their full-range luma: what ``damage_of`` reports for an 8-bit input without JPEG tables."""
    return jpeg_quality_of_pixels(_jfif_luma(px))


_JFIF = np.array([0.299, 0.587, 0.114], np.float32) * np.float32(255.0)
_JPEG_CROP = 1024  # pixels a side of the central crop the JPEG trace is read from


def _jfif_luma(px: np.ndarray) -> np.ndarray:
    """The full-range (JFIF) luma, 0-255, of a central crop of at most _JPEG_CROP a side that
    starts on a multiple of 8, so a JPEG grid keeps its phase; a big scan's plane is never made."""
    top, left = ((max(0, (n - _JPEG_CROP) // 2) // 8) * 8 for n in px.shape[:2])
    part = px[top : top + _JPEG_CROP, left : left + _JPEG_CROP]
    return part[..., :3] @ _JFIF if px.shape[2] >= 3 else part[..., 0] * np.float32(255.0)


def damage_columns(found: Damage) -> tuple[float | None, float | None]:
    """(jpeg_quality, noise_sigma) of the report: a NaN sigma (an image too small to tell) left empty."""
    return found.jpeg_quality, (None if math.isnan(found.noise_sigma) else found.noise_sigma)
