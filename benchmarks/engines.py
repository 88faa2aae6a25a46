"""The local engine against the Ray engine on the same machine and the same folder.

    python benchmarks/engines.py [--images 60] [--rounds 2] [--jobs 2] [--model default]
    python benchmarks/engines.py --dispatch     # Ray Data vs plain actors, per-item cost

Data: the first ``--images`` B100 photos degraded by the scale (the LR folder
of ``python benchmarks/throughput.py``). Each run is a fresh process doing what
``batchsr IN OUT --engine E --no-psnr --quiet`` does (the Ray engine starts
its own local Ray, as the CLI does without ``--ray-address``; with
``--ray-address`` it joins that running cluster instead), and the runs
alternate local, ray, ray, local, ... so that a background load drifting over
time weighs on both engines alike.

Per run: the process's wall time (imports, Ray start and stop included), and
the steady throughput from the first finished image to the last, which is
what a long archive run sees once the workers are up. The ratio of the two
engines' steady throughputs is the Ray engine's overhead per image.

``--dispatch`` measures only the engines' bookkeeping: no-op items that sleep
30 ms, through Ray Data (``map_batches`` with an actor pool, ordered,
``batch_size=1``) and through plain actors fed with ``ray.wait``
(``ActorPool``), 60 and 300 items each; the difference divided by 240 is the
cost per item. It needs ``ray[data]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELF = str(Path(__file__).resolve())  # children run this file again


def _child(engine: str, inp: str, out: str, jobs: str, model_name: str, address: str = "") -> int:
    """One run in this process, like the CLI; prints its timings as JSON."""
    t0 = time.perf_counter()
    from batchsr import models, pipeline
    from batchsr.config import RunConfig
    from batchsr.session import SessionOptions, threads_per_job

    # As the CLI does: local jobs share the cores; Ray's actors size their own sessions.
    threads = threads_per_job(int(jobs)) if engine == "local" else 0
    model = models.load(model_name, 3, SessionOptions(threads=threads))
    cfg = RunConfig(
        input=Path(inp),
        output=Path(out),
        scale=model.scale,
        model=model_name,
        psnr=False,
        quiet=True,
        jobs=int(jobs),
        engine=engine,
        ray_address=address or None,
    )
    stamps, pixels = [], []

    def on_row(row):
        stamps.append(time.perf_counter())
        pixels.append((row.out_width or 0) * (row.out_height or 0))

    t_run = time.perf_counter()
    summary = pipeline.run(cfg, model, on_row=on_row)
    t_end = time.perf_counter()
    assert summary.ok == len(stamps), summary.line()
    print(
        json.dumps(
            {
                "run_s": t_end - t_run,
                "since_start_s": t_end - t0,
                "n": len(stamps),
                "steady_s": stamps[-1] - stamps[0],
                "steady_mp": sum(pixels[1:]) / 1e6,
                "mp": sum(pixels) / 1e6,
            }
        )
    )
    return 0


def run_engines(
    images: int, rounds: int, scale: int, jobs: int, address: str | None = None, model: str = "default"
) -> list[dict]:
    from throughput import prepare

    results = []
    with tempfile.TemporaryDirectory(prefix="batchsr-engines-") as tmp:
        folder = prepare(Path(tmp), images, 0, scale)["b100"]
        order = []
        for r in range(rounds):
            order += [("local", r), ("ray", r)] if r % 2 == 0 else [("ray", r), ("local", r)]
        for i, (engine, r) in enumerate(order):
            out = Path(tmp) / f"out{i}"
            t0 = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    SELF,
                    "_child",
                    engine,
                    str(folder),
                    str(out),
                    str(jobs),
                    model,
                    address or "",
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(f"{engine} run failed: {proc.stderr.strip()[-2000:]}")
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            res = {
                "engine": engine,
                "round": r + 1,
                "images": info["n"],
                "output_mp": info["mp"],
                "process_s": wall,
                "run_s": info["run_s"],
                "steady_img_s": (info["n"] - 1) / info["steady_s"],
                "steady_mp_s": info["steady_mp"] / info["steady_s"],
            }
            results.append(res)
            print(
                f"  {engine:5s} round {r + 1}: process {wall:6.2f} s, run {info['run_s']:6.2f} s, steady "
                f"{res['steady_img_s']:5.2f} images/s {res['steady_mp_s']:5.2f} MP/s",
                flush=True,
            )
            shutil.rmtree(out)
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| engine | round | images | output MP | process wall s | steady images/s | steady output MP/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['round']} | {r['images']} | {r['output_mp']:.1f} | {r['process_s']:.1f} | "
            f"{r['steady_img_s']:.2f} | {r['steady_mp_s']:.2f} |"
        )
    mean = {
        e: {
            k: statistics.mean(r[k] for r in results if r["engine"] == e)
            for k in ("process_s", "steady_img_s", "steady_mp_s")
        }
        for e in ("local", "ray")
    }
    for e in ("local", "ray"):
        m = mean[e]
        lines.append(
            f"| **{e}, mean** | | | | {m['process_s']:.1f} | {m['steady_img_s']:.2f} | {m['steady_mp_s']:.2f} |"
        )
    ratio = mean["ray"]["steady_mp_s"] / mean["local"]["steady_mp_s"]
    lines.append(
        f"\nRay / local steady throughput: {ratio:.3f} (overhead {100 * (1 - ratio):+.1f} %); "
        f"process wall time: {mean['ray']['process_s'] - mean['local']['process_s']:+.1f} s for Ray"
    )
    return "\n".join(lines)


def dispatch(n_small: int = 60, n_large: int = 300, work_s: float = 0.03) -> None:
    """Per-item bookkeeping of Ray Data's actor pool against plain actors (see the module's docstring)."""
    import ray
    import ray.data
    from ray.util import ActorPool

    class Sleeper:  # the Ray Data UDF: one batch of one item
        def __call__(self, batch):
            time.sleep(work_s * len(batch["i"]))
            return {"i": batch["i"]}

    class PlainSleeper:
        def run(self, i):
            time.sleep(work_s)
            return i

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        times = {}
        for n in (n_small, n_large):
            t0 = time.perf_counter()
            ds = ray.data.from_items([{"i": i} for i in range(n)], override_num_blocks=n)
            ds = ds.map_batches(Sleeper, batch_size=1, compute=ray.data.ActorPoolStrategy(size=2), num_cpus=1)
            assert [r["i"] for r in ds.iter_rows()] == list(range(n))
            times[("Ray Data map_batches, actor pool of 2", n)] = time.perf_counter() - t0
        actor_cls = ray.remote(num_cpus=1)(PlainSleeper)
        actors = [actor_cls.remote() for _ in range(2)]
        ray.get([a.run.remote(0) for a in actors])  # started, as batchsr's probe leaves them
        for n in (n_small, n_large):
            t0 = time.perf_counter()
            assert list(ActorPool(actors).map(lambda a, v: a.run.remote(v), range(n))) == list(range(n))
            times[("plain actors (2), ray.wait", n)] = time.perf_counter() - t0
    finally:
        ray.shutdown()
    print(
        f"| dispatch ({work_s * 1000:.0f} ms no-op items, 2 workers) | {n_small} items s | {n_large} items s | "
        f"per extra item ms | ideal per item ms |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in dict.fromkeys(k[0] for k in times):
        a, b = times[(name, n_small)], times[(name, n_large)]
        print(f"| {name} | {a:.2f} | {b:.2f} | {1000 * (b - a) / (n_large - n_small):.1f} | {1000 * work_s / 2:.1f} |")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_child":
        return _child(*argv[1:])
    ap = argparse.ArgumentParser(
        prog="benchmarks/engines.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--images", type=int, default=60, help="B100 images to use (default 60)")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each engine, alternating (default 2)")
    ap.add_argument("--scale", type=int, default=3, choices=(3,), help="the shipped models are x3")
    ap.add_argument("--jobs", type=int, default=2, help="images in flight per session (default 2)")
    ap.add_argument("--model", default="default", help="shipped x3 model to run (default: default)")
    ap.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the Ray runs join this running cluster instead of starting Ray themselves",
    )
    ap.add_argument("--dispatch", action="store_true", help="only compare Ray Data and plain actors' dispatch")
    a = ap.parse_args(argv)
    if a.dispatch:
        dispatch()
        return 0
    from batchsr.models import ModelError, resolve

    try:
        resolve(a.model, a.scale)
    except ModelError as exc:
        ap.error(str(exc))
    joins = f", Ray joining {a.ray_address}" if a.ray_address else ", Ray started by each run"
    print(
        f"batchsr engines on {os.cpu_count()} CPUs: model {a.model}, {a.images} B100 images, x{a.scale}, "
        f"--jobs {a.jobs}, "
        f"{a.rounds} rounds{joins}",
        flush=True,
    )
    results = run_engines(a.images, a.rounds, a.scale, a.jobs, a.ray_address, a.model)
    print()
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
