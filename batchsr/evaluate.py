"""``batchsr eval``: a model against bicubic on folders of ground-truth images.

Standard protocol (shared/docs/engineering-notes.md, section 1), measured end
to end through the same code path the runner uses (chroma merge and 8-bit
output included): see :func:`batchsr.pipeline.paper_experiment`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from batchsr import metrics
from batchsr.discover import IMAGE_SUFFIXES
from batchsr.models import Model
from batchsr.pipeline import paper_experiment

CSV_COLUMNS = ["folder", "image", "width", "height", "scale", "model",
               "psnr_bicubic", "ssim_bicubic", "psnr_model", "ssim_model"]


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


@dataclass(frozen=True)
class FolderScore:
    folder: str
    images: int
    psnr_bicubic: float
    ssim_bicubic: float
    psnr_model: float
    ssim_model: float


def ground_truths(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise EvalError(f"no images in {folder}")
    return files


def evaluate_image(path: Path, model: Model, tile: int | None = None, folder: str = "") -> ImageScore:
    try:
        with Image.open(path) as im:
            truth = np.asarray(im.convert("RGB"))
        gt, bicubic, sr = paper_experiment(truth, model, tile)
    except (OSError, ValueError) as exc:  # unreadable, corrupt, or smaller than the scale
        raise EvalError(f"cannot evaluate {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    s = model.scale
    return ImageScore(folder, path.name, gt.shape[1], gt.shape[0],
                      metrics.psnr_y(gt, bicubic, s), metrics.ssim_y(gt, bicubic, s),
                      metrics.psnr_y(gt, sr, s), metrics.ssim_y(gt, sr, s))


def evaluate_folder(folder: Path, model: Model, tile: int | None = None,
                    name: str = "") -> tuple[FolderScore, list[ImageScore]]:
    """Mean PSNR/SSIM over a folder (the literature's mean over images)."""
    from batchsr.tuning import single_threaded_blas

    name = name or Path(folder).name
    with single_threaded_blas():
        rows = [evaluate_image(p, model, tile, name) for p in ground_truths(folder)]
    mean = lambda attr: float(np.mean([getattr(r, attr) for r in rows]))  # noqa: E731
    return FolderScore(name, len(rows), mean("psnr_bicubic"), mean("ssim_bicubic"),
                       mean("psnr_model"), mean("ssim_model")), rows


def table(scores: list[FolderScore], model: Model) -> str:
    """A Markdown table, ready for models/README.md."""
    lines = [f"model {model.label} ({model.metadata.get('arch', '?')}), PSNR-Y dB / SSIM, "
             f"shave {model.scale}, BT.601 studio-range Y",
             "",
             "| set | images | bicubic PSNR | bicubic SSIM | model PSNR | model SSIM | gain dB |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for s in scores:
        lines.append(f"| {s.folder} | {s.images} | {s.psnr_bicubic:.2f} | {s.ssim_bicubic:.4f} | "
                     f"{s.psnr_model:.2f} | {s.ssim_model:.4f} | {s.psnr_model - s.psnr_bicubic:+.2f} |")
    return "\n".join(lines)


def write_csv(path: Path, rows: list[ImageScore], model: Model) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([r.folder, r.image, r.width, r.height, model.scale, model.label,
                        f"{r.psnr_bicubic:.4f}", f"{r.ssim_bicubic:.5f}",
                        f"{r.psnr_model:.4f}", f"{r.ssim_model:.5f}"])
