"""Does the report's per-image gain predict the true gain? Sign agreement and means.

    python benchmarks/honest_gain.py [--model default] [--scale 3] [--set B100] [--seed 1] [--limit 0]

Validation sets (made from the evaluation images with their own seed, never
used for the benchmark tables, which use seed 0): the LR inputs of
``make_pair`` with ``--degradation realistic`` and bicubic. For each input
the true gain is PSNR-Y(model, original) - PSNR-Y(bicubic, original); the
reported gain is what the report computes from the input alone:

- ``paper``: today's experiment (``experiment.paper_experiment``): the input
  shrunk by bicubic, restored, compared with the input.
- ``matched``: the shrunk input is first given back the damage the
  estimator found in the input (Gaussian luma noise of its ``noise_sigma``,
  then a JPEG at its ``jpeg_quality``), so a model that sharpens noise and
  blocks meets fresh noise, not the reference's own.
- ``r2r``: ``matched``, but the input's own noise is first split in two
  independent halves (recorrupted-to-recorrupted, Pang et al. 2021: with
  ``z`` Gaussian of the estimated sigma, ``input + z`` is shrunk, damaged and
  restored, and compared with ``input - z``), so that what the restoration
  keeps of the input's noise cannot match the reference's.

- ``withheld``: ``paper``, but only on the inputs that ``DamageRule`` judges
  clean; the others get no figure (what the report does since issue 14's
  measurements showed ``paper`` uncorrelated with the truth on damaged
  inputs). Its row counts the images with a figure.

``--model auto`` runs on each input the model ``--model auto`` would
(``batchsr.estimate.DamageRule``). ``--figures`` picks the kinds to compute.

Prints the share of images where the reported gain has the sign of the true
gain, and the mean of each, per set and method.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic import cpu_name, pairs  # noqa: E402

from batchsr import color, metrics  # noqa: E402
from batchsr.degrade import degrade  # noqa: E402
from batchsr.estimate import Damage, DamageRule, jpeg_quality, noise_sigma  # noqa: E402
from batchsr.experiment import jpeg_quality_seen  # noqa: E402
from batchsr.upscaling import upscale_u8  # noqa: E402


def as_file(lr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float | None]:
    """The LR as the user's file would hold it: the realistic chain ends in a JPEG (85 %), whose
    tables the estimator reads; re-saved at the chain's own quality range, else kept as PNG pixels."""
    if rng.random() < 0.85:
        q = int(rng.integers(30, 96))
        buf = io.BytesIO()
        Image.fromarray(lr).save(buf, "JPEG", quality=q)
        with Image.open(io.BytesIO(buf.getvalue())) as im:
            return np.asarray(im.convert("RGB")), jpeg_quality(im)
    return lr, None


def quality_seen(lr: np.ndarray, q: float | None) -> float | None:
    """The ``jpeg_quality`` the runtime finds (``experiment.damage_of``) in a file of pixels
    ``lr`` whose tables say ``q`` (None: a PNG)."""
    return jpeg_quality_seen(np.asarray(lr, np.float32) / np.float32(255.0), q)[0]


def grey_noise(shape, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Noise of ``sigma`` luma levels (studio range) as the same offset in R, G and B."""
    return rng.standard_normal(shape[:2] + (1,)) * sigma * 255 / 219


def reported(inp: np.ndarray, model, scale: int, quality: float | None, kind: str) -> float:
    sigma = noise_sigma(color.y_metric(inp))
    source = reference = inp
    if kind == "r2r" and np.isfinite(sigma) and sigma > 0.5:
        z = grey_noise(inp.shape, sigma, np.random.default_rng(1))
        source = np.clip(inp + z, 0, 255).round().astype(np.uint8)
        reference = np.clip(inp - z, 0, 255).round().astype(np.uint8)
    gt, lr = degrade(Image.fromarray(source), scale)
    gt, lr = np.asarray(degrade(Image.fromarray(reference), scale)[0]), np.asarray(lr)
    if kind != "paper":
        rng = np.random.default_rng(0)
        if np.isfinite(sigma) and sigma > 0.5:
            lr = np.clip(lr + grey_noise(lr.shape, sigma, rng), 0, 255).round().astype(np.uint8)
        if quality is not None:
            buf = io.BytesIO()
            Image.fromarray(lr).save(buf, "JPEG", quality=int(quality))
            with Image.open(io.BytesIO(buf.getvalue())) as im:
                lr = np.asarray(im.convert("RGB"))
    bic = np.asarray(Image.fromarray(lr).resize((gt.shape[1], gt.shape[0]), Image.BICUBIC))
    return metrics.psnr_y(gt, upscale_u8(lr, model), scale) - metrics.psnr_y(gt, bic, scale)


FIGURES = ("paper", "withheld", "matched", "r2r")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/honest_gain.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="default")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--set", default="B100")
    ap.add_argument("--seed", type=int, default=1, help="validation seed (the benchmark tables use 0)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--figures", nargs="+", default=list(FIGURES), choices=FIGURES)
    a = ap.parse_args(argv)
    from batchsr.models import load

    names = ("default", "photo") if a.model == "auto" else (a.model,)
    models = {n: load(n, a.scale) for n in names}
    rule = DamageRule()

    def judged_damaged(lr: np.ndarray, q: float | None) -> bool:
        return rule.seen(Damage(q, noise_sigma(color.y_metric(lr)))) is not None

    def model_for(damaged: bool):
        if a.model != "auto":
            return models[a.model]
        return models["photo" if damaged else "default"]

    print(f"{a.model} x{a.scale}, {a.set} (seed {a.seed}); CPU: {cpu_name()}\n")
    print("| inputs | images | figure | sign agrees | mean reported dB | mean true dB |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for degradation in ("realistic", "bicubic"):
        rng = np.random.default_rng(a.seed)
        true, rep = [], {kind: [] for kind in a.figures}
        for _, gt, lr in pairs(a.set, a.scale, degradation, a.seed, a.limit):
            lr, q = as_file(lr, rng) if degradation == "realistic" else (lr, None)
            damaged = judged_damaged(lr, quality_seen(lr, q))
            model = model_for(damaged)
            bic = np.asarray(Image.fromarray(lr).resize((gt.shape[1], gt.shape[0]), Image.BICUBIC))
            true.append(metrics.psnr_y(gt, upscale_u8(lr, model), a.scale) - metrics.psnr_y(gt, bic, a.scale))
            paper = None
            for kind in rep:
                if kind == "withheld" and damaged:
                    rep[kind].append(np.nan)  # no figure: the paper experiment need not run for it
                elif kind in ("paper", "withheld"):
                    paper = reported(lr, model, a.scale, q, "paper") if paper is None else paper
                    rep[kind].append(paper)
                else:
                    rep[kind].append(reported(lr, model, a.scale, q, kind))
        for kind, r in rep.items():
            r = np.array(r)
            has = ~np.isnan(r)
            r, t = r[has], np.array(true)[has]
            agree = f"{np.mean(np.sign(r) == np.sign(t)):.0%}" if len(t) else "-"
            means = f"{r.mean():+.2f} | {t.mean():+.2f}" if len(t) else "- | -"
            print(f"| {degradation} | {len(t)} | {kind} | {agree} | {means} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
