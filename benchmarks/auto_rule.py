"""Fit the rule that picks `default` or `photo` per image from the damage estimates, or score
the shipped one (``batchsr.estimate.DamageRule``, what ``--model auto`` runs).

    python benchmarks/auto_rule.py fit [--scale 3] [--sets B100] [--seed 1] [--limit 0]
    python benchmarks/auto_rule.py score [--scale 3] [--sets Set5 Set14 B100] [--seed 0]

Sets made from the evaluation images (``fit`` on a validation seed, 1 by
default; ``score`` at seed 0, the seed the benchmark tables report), three
kinds: the realistic LRs saved as the JPEG files users have
(``honest_gain.as_file``); the clean bicubic LRs, half of them saved as
high-quality JPEGs (quality 85-98: what a camera or scanner writes) and half
as PNG; and the clean bicubic LRs as PNG (the benchmark protocol's own
inputs). For every image: its estimates (``jpeg_quality``, ``noise_sigma``)
and the PSNR-Y of both models against the original. ``fit`` finds the rule
"photo when jpeg_quality <= Q or noise_sigma >= S" by grid search, the
highest mean PSNR over the first two kinds together; ``score`` applies the
shipped rule unchanged (nothing is chosen by those scores). The table
compares the rule with each model alone, per set and kind.
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
from honest_gain import as_file, quality_seen  # noqa: E402
from realistic import cpu_name, pairs  # noqa: E402

from batchsr import color, metrics  # noqa: E402
from batchsr.estimate import Damage, DamageRule, jpeg_quality, noise_sigma  # noqa: E402
from batchsr.upscaling import upscale_u8  # noqa: E402

QUALITIES = [None, 50, 60, 70, 75, 80, 85, 88, 90, 92, 94, 96]
SIGMAS = [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, float("inf")]


def clean_file(lr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    if rng.random() < 0.5:
        buf = io.BytesIO()
        Image.fromarray(lr).save(buf, "JPEG", quality=int(rng.integers(85, 99)))
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            return np.asarray(im.convert("RGB")), jpeg_quality(im)
    return lr, None


KINDS = ("realistic", "clean, half JPEG", "clean PNG")  # the last: the benchmark protocol's own LRs


def measure(set_name: str, scale: int, seed: int, limit: int, models: dict) -> dict[str, list[dict]]:
    out = {}
    for kind in KINDS:
        rng = np.random.default_rng(seed)
        rows = []
        for _, gt, lr in pairs(set_name, scale, "realistic" if kind == "realistic" else "bicubic", seed, limit):
            if kind == "realistic":
                lr, q = as_file(lr, rng)
            else:
                lr, q = clean_file(lr, rng) if kind == "clean, half JPEG" else (lr, None)
            row = {"q": quality_seen(lr, q), "sigma": noise_sigma(color.y_metric(lr))}
            for name, m in models.items():
                row[name] = metrics.psnr_y(gt, upscale_u8(lr, m), scale)
            rows.append(row)
        out[kind] = rows
    return out


def picks_photo(row: dict, q_max, s_min: float) -> bool:
    """The rule with its thresholds (q_max None: never by quality), as DamageRule writes it."""
    rule = DamageRule(float("-inf") if q_max is None else q_max, s_min)
    return rule.seen(Damage(row["q"], row["sigma"])) is not None


def table(data: dict[str, list[dict]], q_max, s_min: float, set_name: str) -> list[str]:
    lines = []
    for kind, rows in data.items():
        auto = [x["photo" if picks_photo(x, q_max, s_min) else "default"] for x in rows]
        share = np.mean([picks_photo(x, q_max, s_min) for x in rows])
        lines.append(
            f"| {set_name} | {kind} | {len(rows)} | {np.mean([x['default'] for x in rows]):.2f} | "
            f"{np.mean([x['photo'] for x in rows]):.2f} | {np.mean(auto):.2f} | {share:.0%} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/auto_rule.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("mode", choices=("fit", "score"))
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--sets", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=None, help="default: 1 to fit, 0 to score")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(argv)
    from batchsr.models import load

    seed = a.seed if a.seed is not None else (1 if a.mode == "fit" else 0)
    sets = a.sets or (["B100"] if a.mode == "fit" else ["Set5", "Set14", "B100"])
    if a.mode == "fit" and seed == 0:
        ap.error("fit on a validation seed (not 0, the seed the benchmark tables report)")
    models = {n: load(n, a.scale) for n in ("default", "photo")}
    data = {s: measure(s, a.scale, seed, a.limit, models) for s in sets}
    shipped = DamageRule()
    q_max, s_min = shipped.max_jpeg_quality, shipped.min_noise_sigma
    if a.mode == "fit":
        every = [x for d in data.values() for kind in KINDS[:2] for x in d[kind]]
        q_max, s_min = max(
            itertools.product(QUALITIES, SIGMAS),
            key=lambda r: np.mean([x["photo" if picks_photo(x, *r) else "default"] for x in every]),
        )
    print(f"x{a.scale}, seed {seed}; CPU: {cpu_name()}")
    what = "fitted" if a.mode == "fit" else "shipped (batchsr.estimate.DamageRule)"
    print(f"rule {what}: photo when jpeg_quality <= {q_max} or noise_sigma >= {s_min}\n")
    print("| set | inputs | images | default | photo | auto | auto picks photo |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for set_name, d in data.items():
        print("\n".join(table(d, q_max, s_min, set_name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
