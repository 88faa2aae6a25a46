"""Train a model and export it to ONNX in one command.

    python -m train --scale 3 --arch skip4x32 --steps 20000 --name fast --out models/fast_x3.onnx

The checkpoint folder (default ``train/checkpoints/NAME_xSCALE``) makes the
command resumable: run it again, with the same or a larger ``--steps``, and it
continues where it stopped. ``--no-export`` trains only (e.g. on a GPU machine
with the JAX backend, where TensorFlow for tf2onnx is absent); ``export``
exports an existing checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    argv = list(sys.argv[1:] if argv is None else argv)
    export_only = bool(argv) and argv[0] == "export"
    if export_only:
        argv = argv[1:]
    from train.archs import ARCHS  # after KERAS_BACKEND is settled

    ap = argparse.ArgumentParser(
        prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--name", required=True, help="model name in the registry, e.g. default, fast, paper")
    ap.add_argument("--scale", type=int, choices=(2, 3, 4))
    ap.add_argument("--arch", choices=sorted(ARCHS))
    ap.add_argument("--steps", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--patch", type=int, help="LR patch size")
    ap.add_argument("--lr", type=float)
    ap.add_argument("--loss", choices=("l1", "l2", "l1_ssim"), help="l1_ssim: L1 + W (1 - SSIM), W = --ssim-weight")
    ap.add_argument("--ssim-weight", type=float, help="the weight W of l1_ssim's SSIM term (default 0.1)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--ckpt-every", type=int)
    ap.add_argument("--max-images", type=int, help="train on the first N images only (tests)")
    ap.add_argument(
        "--degradation",
        choices=("bicubic", "realistic"),
        help="how LR training images are made (batchsr.degrade); default bicubic",
    )
    ap.add_argument("--variants", type=int, help="realistic LRs per training image (default 1)")
    ap.add_argument(
        "--precision",
        choices=("float32", "mixed_bfloat16"),
        help="training compute precision (weights stay float32); mixed_bfloat16 pays on AMX CPUs and GPUs",
    )
    ap.add_argument("--init", type=Path, help="a new run starts from this checkpoint's weights (fine-tune)")
    ap.add_argument("--data", nargs="+", help="training image folders (default: BSDS500 train+test)")
    ap.add_argument("--ckpt", type=Path, help="checkpoint folder (default train/checkpoints/NAME_xSCALE)")
    ap.add_argument(
        "--max-minutes", type=float, help="stop (checkpointed) after this long, counted from the command's start"
    )
    ap.add_argument(
        "--fit",
        action="store_true",
        help="with --max-minutes: lower --steps to what fits in the time, so the schedule "
        "completes (for a fixed-length GPU lease)",
    )
    ap.add_argument("--out", type=Path, help="ONNX file to write (default models/NAME_xSCALE.onnx)")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--no-validate", action="store_true", help="skip the B100 validation PSNR at export")
    ap.add_argument(
        "--alias",
        action="append",
        default=[],
        help="also register the model under this name (e.g. default), repeatable",
    )
    ap.add_argument("--manifest", type=Path, help="manifest to register the model in (default: beside --out)")
    a = ap.parse_args(argv)
    if a.fit and not a.max_minutes:
        ap.error("--fit needs --max-minutes (the time to fit the steps into)")
    if a.max_minutes is not None and a.max_minutes <= 0:
        ap.error("--max-minutes must be positive")

    from train.data import portable
    from train.loop import TrainConfig, config_from_state, load_state, train

    ckpt = a.ckpt
    if ckpt is None:
        if a.scale is None:
            found = sorted((ROOT / "train" / "checkpoints").glob(f"{a.name}_x[234]"))
            if len(found) != 1:
                ap.error("--scale is required unless --ckpt is given or NAME has exactly one checkpoint")
            ckpt = found[0]
        else:
            ckpt = ROOT / "train" / "checkpoints" / f"{a.name}_x{a.scale}"
    state = load_state(ckpt)
    overrides = dict(
        steps=a.steps,
        batch=a.batch,
        patch=a.patch,
        lr=a.lr,
        loss=a.loss,
        ssim_weight=a.ssim_weight,
        seed=a.seed,
        ckpt_every=a.ckpt_every,
        max_images=a.max_images,
        degradation=a.degradation,
        variants=a.variants,
        precision=a.precision,
        init=portable(a.init) if a.init else None,
        data_dirs=tuple(portable(d) for d in a.data) if a.data else None,
    )
    if state is not None:
        cfg = config_from_state(state, **overrides)
        if a.arch and a.arch != cfg.arch or a.scale and a.scale != cfg.scale:
            ap.error(f"{ckpt} holds {cfg.arch} x{cfg.scale}; use another --ckpt for a new model")
    else:
        if export_only:
            ap.error(f"no checkpoint in {ckpt}")
        if not (a.arch and a.scale and a.steps):
            ap.error("a new training run needs --arch, --scale and --steps")
        cfg = TrainConfig(
            arch=a.arch,
            scale=a.scale,
            steps=a.steps,
            **{k: v for k, v in overrides.items() if v is not None and k != "steps"},
        )

    if not export_only:
        deadline = started + a.max_minutes * 60 if a.max_minutes else None
        state = train(cfg, ckpt, deadline=deadline, fit=a.fit, log=lambda m: print(m, flush=True))
        cfg = config_from_state(state)
        if state["step"] < cfg.steps:
            print(f"stopped at step {state['step']} of {cfg.steps}: not exported", flush=True)
            return 0
    if a.no_export:
        return 0
    from train.export import export_checkpoint

    out = a.out or ROOT / "models" / f"{a.name}_x{cfg.scale}.onnx"
    meta = export_checkpoint(
        ckpt,
        out,
        a.name,
        manifest=a.manifest,
        validate=not a.no_validate,
        aliases=a.alias,
        log=lambda m: print(m, flush=True),
    )
    print(f"wrote {out}: " + ", ".join(f"{k}={v}" for k, v in meta.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
