"""The RealSRSet figure of the model card: real old photos, x4, at 100 % zoom of the output.

    python benchmarks/figure_realsrset.py [--out docs/figures/realsrset_x4.png] [--models default photo]

Columns: the input (nearest-neighbour, so its pixels show), bicubic, each
batchsr model, Real-ESRGAN general x4v3 (ncnn) and BSRGAN (its own published
outputs, ``../shared/peers/bsrgan_outputs``). Rows: a crop of each photo,
the same region in every column. RealSRSet has no ground truth: this is for
looking, never for scoring or tuning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import PEERS, ROOT, SHARED, methods  # noqa: E402

REALSRSET = SHARED / "data/real/RealSRSet"
# (image, left, top) of a CROP x CROP LR region: faces and fine texture, where grain and blocks show.
CROPS = (("oldphoto2", 50, 45), ("oldphoto3", 60, 30), ("oldphoto6", 140, 95), ("Lincoln", 50, 30), ("chip", 40, 30))
CROP = 48
SCALE = 4
LABEL_H = 18


def build(models: list[str]) -> Image.Image:
    ms = methods(SCALE, ["bicubic", *models, "realesrgan-general"])
    labels = ["input"] + [m.label.replace(" (x4, resized to x4)", "") for m in ms] + ["BSRGAN"]
    labels = [lbl.replace("Real-ESRGAN general x4v3", "Real-ESRGAN x4v3") for lbl in labels]
    side = CROP * SCALE
    sheet = Image.new("RGB", (side * len(labels), LABEL_H + side * len(CROPS)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, text in enumerate(labels):
        draw.text((c * side + 4, 3), text, fill="black")
    for r, (name, x, y) in enumerate(CROPS):
        with Image.open(REALSRSET / f"{name}.png") as im:
            lr = np.asarray(im.convert("RGB"))
        with Image.open(PEERS / "bsrgan_outputs" / f"{name}_BSRGAN.png") as im:
            bsrgan = np.asarray(im.convert("RGB"))
        box = (x * SCALE, y * SCALE, (x + CROP) * SCALE, (y + CROP) * SCALE)
        tiles = [Image.fromarray(lr).crop((x, y, x + CROP, y + CROP)).resize((side, side), Image.NEAREST)]
        tiles += [Image.fromarray(m.upscale(lr)).crop(box) for m in ms]
        tiles.append(Image.fromarray(bsrgan).crop(box))
        for c, t in enumerate(tiles):
            sheet.paste(t, (c * side, LABEL_H + r * side))
    return sheet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/figure_realsrset.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", type=Path, default=ROOT / "docs/figures/realsrset_x4.png")
    ap.add_argument("--models", nargs="+", default=["default", "photo"], help="batchsr models (x4)")
    a = ap.parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    build(a.models).save(a.out, optimize=True)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
