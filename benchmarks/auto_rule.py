"""Fit the rule that picks `default` or `photo` per image from the damage estimates.

    python benchmarks/auto_rule.py [--scale 3] [--set B100] [--seed 1] [--limit 0]

Validation sets made from the evaluation images with their own seed (the
benchmark tables use seed 0; nothing here is scored on them): the realistic
LRs, saved as the JPEG files users have (``honest_gain.as_file``), and the
clean bicubic LRs, half of them saved as high-quality JPEGs (quality
85-98: what a camera or scanner writes), half as PNG. For every image: its
estimates (``jpeg_quality``, ``noise_sigma``) and the PSNR-Y of both models
against the original. The rule "photo when jpeg_quality <= Q or noise_sigma
>= S" is fitted by grid search to the highest mean PSNR over both sets
together; the table compares it with each model alone, per set.
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from honest_gain import as_file  # noqa: E402
from realistic import cpu_name, pairs  # noqa: E402

from batchsr import color, metrics  # noqa: E402
from batchsr.estimate import jpeg_quality, noise_sigma  # noqa: E402
from batchsr.pipeline import upscale_u8  # noqa: E402

QUALITIES = [None, 50, 60, 70, 75, 80, 85, 88, 90, 92, 94, 96]
SIGMAS = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, float("inf")]


def clean_file(lr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    if rng.random() < 0.5:
        buf = io.BytesIO()
        Image.fromarray(lr).save(buf, "JPEG", quality=int(rng.integers(85, 99)))
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            return np.asarray(im.convert("RGB")), jpeg_quality(im)
    return lr, None


def measure(set_name: str, scale: int, seed: int, limit: int, models: dict) -> dict[str, list[dict]]:
    out = {}
    for degradation in ("realistic", "bicubic"):
        rng = np.random.default_rng(seed)
        rows = []
        for _, gt, lr in pairs(set_name, scale, degradation, seed, limit):
            lr, q = as_file(lr, rng) if degradation == "realistic" else clean_file(lr, rng)
            row = {"q": q, "sigma": noise_sigma(color.y_metric(lr))}
            for name, m in models.items():
                row[name] = metrics.psnr_y(gt, upscale_u8(lr, m), scale)
            rows.append(row)
        out[degradation] = rows
    return out


def picks_photo(row: dict, q_max, s_min: float) -> bool:
    return (q_max is not None and row["q"] is not None and row["q"] <= q_max) or row["sigma"] >= s_min


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/auto_rule.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--set", default="B100")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(argv)
    from batchsr.models import load

    models = {n: load(n, a.scale) for n in ("default", "photo")}
    data = measure(a.set, a.scale, a.seed, a.limit, models)
    every = data["realistic"] + data["bicubic"]
    best = max(
        itertools.product(QUALITIES, SIGMAS),
        key=lambda r: np.mean([x["photo" if picks_photo(x, *r) else "default"] for x in every]),
    )
    q_max, s_min = best
    print(f"x{a.scale}, {a.set} validation (seed {a.seed}); CPU: {cpu_name()}")
    print(f"rule: photo when jpeg_quality <= {q_max} or noise_sigma >= {s_min}\n")
    print("| inputs | images | default | photo | auto | auto picks photo |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind, rows in data.items():
        auto = [x["photo" if picks_photo(x, q_max, s_min) else "default"] for x in rows]
        share = np.mean([picks_photo(x, q_max, s_min) for x in rows])
        print(
            f"| {kind} | {len(rows)} | {np.mean([x['default'] for x in rows]):.2f} | "
            f"{np.mean([x['photo'] for x in rows]):.2f} | {np.mean(auto):.2f} | {share:.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
