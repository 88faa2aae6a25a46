"""``batchsr eval``: a model against bicubic on folders of ground-truth images.

Two ways to make the LR input from each ground truth (``batchsr.degrade``):

- ``bicubic``: the standard protocol (engineering notes, section 1), the
  literature's numbers.
- ``realistic``: ``degrade_realistic`` seeded per image from ``(seed, scale,
  file name)``, so a folder always gives the same damaged inputs, whatever
  the order or the other images: a fixed realistic version of the set.

Both are measured end to end through the same code path the runner uses
(chroma merge and 8-bit output included). Besides PSNR-Y and SSIM, the
colour figure is PSNR on Cb/Cr (``metrics.psnr_cbcr``), where colour noise
and JPEG chroma blocks show.
"""

from __future__ import annotations

import csv
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from batchsr import metrics
from batchsr.degrade import Realistic, degrade, degrade_realistic
from batchsr.formats import IMAGE_SUFFIXES
from batchsr.models import Model
from batchsr.tuning import single_threaded_blas
from batchsr.upscaling import upscale_u8

DEGRADATIONS = ("bicubic", "realistic")
# Every image of a realistic set is damaged: the clean share of training pairs is a
# training choice, and clean inputs are what the bicubic sets measure.
REALISTIC_SETS = Realistic(bicubic_share=0.0)
CSV_COLUMNS = [
    "folder",
    "image",
    "width",
    "height",
    "scale",
    "model",
    "degradation",
    "psnr_bicubic",
    "ssim_bicubic",
    "psnr_model",
    "ssim_model",
    "cpsnr_bicubic",
    "cpsnr_model",
]


class EvalError(Exception):
    """A folder or ground-truth image that cannot be evaluated; the message is one line."""


@dataclass(frozen=True)
class ImageScore:
    folder: str
    image: str
    width: int
    height: int
    psnr_bicubic: float
    ssim_bicubic: float
    psnr_model: float
    ssim_model: float
    cpsnr_bicubic: float | None  # None for a grey image
    cpsnr_model: float | None


@dataclass(frozen=True)
class FolderScore:
    folder: str
    images: int
    psnr_bicubic: float
    ssim_bicubic: float
    psnr_model: float
    ssim_model: float
    cpsnr_bicubic: float  # mean over the colour images (nan when there are none)
    cpsnr_model: float
    colour_images: int


@dataclass(frozen=True)
class Quality:
    """What one output scores against its ground truth."""

    psnr: float
    ssim: float
    cpsnr: float | None


def score(truth_u8: np.ndarray, out_u8: np.ndarray, scale: int) -> Quality:
    """PSNR-Y, SSIM and chroma PSNR of an 8-bit RGB output under the protocol (shave ``scale``)."""
    return Quality(
        metrics.psnr_y(truth_u8, out_u8, scale),
        metrics.ssim_y(truth_u8, out_u8, scale),
        metrics.psnr_cbcr(truth_u8, out_u8, scale),
    )


def image_seed(seed: int, scale: int, name: str) -> int:
    """The realistic degradation's seed for one image: stable across runs, orders and machines."""
    return zlib.crc32(f"{seed}:{scale}:{name}".encode())


def make_pair(
    truth: Image.Image, scale: int, degradation: str = "bicubic", seed: int = 0, name: str = ""
) -> tuple[np.ndarray, np.ndarray]:
    """``(ground_truth, low_res)`` as 8-bit RGB arrays: the LR every method of a comparison reads."""
    if degradation == "bicubic":
        gt, lr = degrade(truth.convert("RGB"), scale)
    elif degradation == "realistic":
        gt, lr = degrade_realistic(truth, scale, image_seed(seed, scale, name), REALISTIC_SETS)
    else:
        raise ValueError(f"unknown degradation {degradation!r}; choose from {', '.join(DEGRADATIONS)}")
    return np.asarray(gt), np.asarray(lr)


def ground_truths(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in Path(folder).iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise EvalError(f"no images in {folder}")
    return files


def evaluate_image(
    path: Path, model: Model, tile: int | None = None, folder: str = "", degradation: str = "bicubic", seed: int = 0
) -> ImageScore:
    s = model.scale
    try:
        with Image.open(path) as im:
            gt, lr = make_pair(im, s, degradation, seed, path.name)
        bicubic = np.asarray(Image.fromarray(lr).resize((gt.shape[1], gt.shape[0]), Image.BICUBIC))
        b, m = score(gt, bicubic, s), score(gt, upscale_u8(lr, model, tile), s)
    except (OSError, ValueError) as exc:  # unreadable, corrupt, or smaller than the scale
        raise EvalError(
            f"cannot evaluate {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return ImageScore(folder, path.name, gt.shape[1], gt.shape[0], b.psnr, b.ssim, m.psnr, m.ssim, b.cpsnr, m.cpsnr)


def mean_colour(values: list[float | None]) -> tuple[float, int]:
    """Mean of the colour images' chroma PSNR, and how many there were."""
    finite = [v for v in values if v is not None]
    return (float(np.mean(finite)) if finite else math.nan), len(finite)


def evaluate_folder(
    folder: Path, model: Model, tile: int | None = None, name: str = "", degradation: str = "bicubic", seed: int = 0
) -> tuple[FolderScore, list[ImageScore]]:
    """Mean PSNR/SSIM over a folder (the literature's mean over images)."""

    name = name or Path(folder).name
    with single_threaded_blas():
        rows = [evaluate_image(p, model, tile, name, degradation, seed) for p in ground_truths(folder)]
    mean = lambda attr: float(np.mean([getattr(r, attr) for r in rows]))  # noqa: E731
    cb, n = mean_colour([r.cpsnr_bicubic for r in rows])
    cm, _ = mean_colour([r.cpsnr_model for r in rows])
    return FolderScore(
        name, len(rows), mean("psnr_bicubic"), mean("ssim_bicubic"), mean("psnr_model"), mean("ssim_model"), cb, cm, n
    ), rows


def table(scores: list[FolderScore], model: Model, degradation: str = "bicubic") -> str:
    """A Markdown table, ready for models/README.md."""
    lines = [
        f"model {model.label} ({model.metadata.get('arch', '?')}), {degradation} LR, PSNR-Y dB / SSIM, "
        f"shave {model.scale}, BT.601 studio-range Y; colour: PSNR on Cb/Cr of the colour images",
        "",
        "| set | images | bicubic PSNR | bicubic SSIM | model PSNR | model SSIM | gain dB "
        "| bicubic colour | model colour |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in scores:
        lines.append(
            f"| {s.folder} | {s.images} | {s.psnr_bicubic:.2f} | {s.ssim_bicubic:.4f} | "
            f"{s.psnr_model:.2f} | {s.ssim_model:.4f} | {s.psnr_model - s.psnr_bicubic:+.2f} | "
            f"{s.cpsnr_bicubic:.2f} | {s.cpsnr_model:.2f} |"
        )
    return "\n".join(lines)


def _f(v: float | None, digits: int) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def write_csv(path: Path, rows: list[ImageScore], model: Model, degradation: str = "bicubic") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r.folder,
                    r.image,
                    r.width,
                    r.height,
                    model.scale,
                    model.label,
                    degradation,
                    f"{r.psnr_bicubic:.4f}",
                    f"{r.ssim_bicubic:.5f}",
                    f"{r.psnr_model:.4f}",
                    f"{r.ssim_model:.5f}",
                    _f(r.cpsnr_bicubic, 4),
                    _f(r.cpsnr_model, 4),
                ]
            )
