"""Training step time on this machine: float32 against mixed bfloat16, side by side.

    python benchmarks/train_step.py [--arch skip7x64] [--scale 3] [--batch 32] [--patch 48] [--steps 8]

Keras on TensorFlow (the train extra), random data, after two warm-up steps;
each precision is timed in alternating rounds and the median kept. mixed
bfloat16 pays where the CPU has AMX or AVX-512 BF16 (oneDNN uses them) and
is slow where it must be emulated: check before choosing ``--precision``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/train_step.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--arch", default="skip7x64")
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--steps", type=int, default=8, help="steps per round")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from realistic import cpu_name

    from train.loop import TrainConfig, build

    rng = np.random.default_rng(0)
    x = rng.random((a.batch, a.patch, a.patch, 1), dtype=np.float32)
    y = rng.random((a.batch, a.patch * a.scale, a.patch * a.scale, 1), dtype=np.float32)
    models = {
        p: build(TrainConfig(arch=a.arch, scale=a.scale, steps=1000, precision=p))
        for p in ("float32", "mixed_bfloat16")
    }
    for m in models.values():
        m.train_on_batch(x, y)
        m.train_on_batch(x, y)
    times = {p: [] for p in models}
    for r in range(a.rounds):
        for p in list(models) if r % 2 == 0 else list(models)[::-1]:
            t0 = time.perf_counter()
            for _ in range(a.steps):
                models[p].train_on_batch(x, y)
            times[p].append((time.perf_counter() - t0) / a.steps)
    print(
        f"{a.arch} x{a.scale}, batch {a.batch} of {a.patch}x{a.patch} LR; CPU: {cpu_name()}, {os.cpu_count()} cores\n"
    )
    print("| precision | s / step (median of rounds) |\n| --- | ---: |")
    for p, t in times.items():
        print(f"| {p} | {statistics.median(t):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
