"""The one degradation model shared by training and evaluation.

Evaluation protocol (shared/docs/engineering-notes.md, section 1): the ground
truth is mod-cropped to a multiple of the scale and downscaled with Pillow's
bicubic filter (which antialiases like MATLAB ``imresize``). Training LR
patches are cut from images degraded by this same function, so training and
evaluation can never disagree.
"""

from __future__ import annotations

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
