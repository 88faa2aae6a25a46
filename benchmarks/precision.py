"""float32 against int8, side by side in one run: quality and speed of every shipped model.

    python benchmarks/precision.py quality [--sets Set5 Set14 B100] [--models default_x3 ...]
    python benchmarks/precision.py speed [--images 30] [--repeat 3] [--models default_x3 ...]

``quality``: ``batchsr.evaluate.evaluate_folder`` (the ``batchsr eval``
protocol: bicubic LR, PSNR-Y / SSIM) with each model's fp32 and int8 build.

``speed``: end to end on one folder of bicubic B100 LR PNGs (read, upscale,
write PNG), each build through the CLI in its own process (``--precision
fp32|int8 --no-psnr``), interleaved rounds, odd ones in reverse order, the
median round per build. Says which CPU it ran on and whether ``auto`` picks
int8 there.

From a clone with ``../shared`` beside it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic import SETS, cpu_name, pairs  # noqa: E402

from batchsr import models  # noqa: E402
from batchsr.precision import choose_precision, cpu_flags  # noqa: E402

ALL = [f"{e.name}_x{e.scale}" for e in models.shipped()]


def _split(label: str) -> tuple[str, int]:
    name, _, scale = label.rpartition("_x")
    return name, int(scale)


def quality(labels: list[str], sets: list[str]) -> str:
    from batchsr.evaluate import evaluate_folder

    out = [
        f"PSNR-Y dB / SSIM, bicubic LR (the `batchsr eval` protocol); CPU: {cpu_name()}",
        "",
        "| model | set | fp32 | int8 | int8 - fp32 dB |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for label in labels:
        name, scale = _split(label)
        built = {p: models.load(name, scale, precision=p) for p in ("fp32", "int8")}
        for s in sets:
            score = {p: evaluate_folder(SETS[s], m)[0] for p, m in built.items()}
            f, q = score["fp32"], score["int8"]
            out.append(
                f"| {label} | {s} | {f.psnr_model:.2f} / {f.ssim_model:.4f} | "
                f"{q.psnr_model:.2f} / {q.ssim_model:.4f} | {q.psnr_model - f.psnr_model:+.2f} |"
            )
    return "\n".join(out)


def speed(labels: list[str], images: int, repeat: int) -> str:
    rows = []
    with tempfile.TemporaryDirectory(prefix="batchsr-precision-") as tmp:
        folders = {}
        for scale in sorted({_split(label)[1] for label in labels}):
            src = Path(tmp) / f"lr_x{scale}"
            src.mkdir()
            for stem, _, lr in pairs("B100", scale, "bicubic", limit=images):
                Image.fromarray(lr).save(src / f"{stem}.png")
            folders[scale] = src
        runs = [(label, p) for label in labels for p in ("fp32", "int8")]
        times: dict[tuple, list[float]] = {r: [] for r in runs}
        for rnd in range(repeat):
            for label, p in runs if rnd % 2 == 0 else runs[::-1]:
                name, scale = _split(label)
                cmd = [
                    sys.executable,
                    "-m",
                    "batchsr",
                    str(folders[scale]),
                    str(Path(tmp) / f"out_{label}_{p}"),
                    "--model",
                    name,
                    "--scale",
                    str(scale),
                    "--precision",
                    p,
                    "--no-psnr",
                    "--quiet",
                    "--overwrite",
                ]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    raise RuntimeError(f"{label} {p}: {proc.stderr.strip().splitlines()[-1:]}")
                times[(label, p)].append(time.perf_counter() - t0)
        for label in labels:
            f, q = (statistics.median(times[(label, p)]) for p in ("fp32", "int8"))
            rows.append(f"| {label} | {f:.2f} | {q:.2f} | {f / q:.2f}x |")
    auto = choose_precision("auto", ["CPUExecutionProvider"], cpu_flags())
    return "\n".join(
        [
            f"{images} bicubic B100 LR images per model, end to end (read, upscale, write PNG), median "
            f"of {repeat} rounds; CPU: {cpu_name()}; --precision auto picks {auto} here",
            "",
            "| model | fp32 s | int8 s | int8 speed-up |",
            "| --- | ---: | ---: | ---: |",
            *rows,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/precision.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--sets", nargs="+", default=["Set5", "Set14", "B100"], choices=sorted(SETS))
    q.add_argument("--models", nargs="+", default=ALL, choices=ALL)
    s = sub.add_parser("speed")
    s.add_argument("--images", type=int, default=30)
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument("--models", nargs="+", default=ALL, choices=ALL)
    a = ap.parse_args(argv)
    print(quality(a.models, a.sets) if a.cmd == "quality" else speed(a.models, a.images, a.repeat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
