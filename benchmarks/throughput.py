"""Throughput benchmark: batchsr's shipped models side by side with Pillow bicubic
and OpenCV dnn_superres (ESPCN, FSRCNN), each run the way its users run it.

    python benchmarks/throughput.py [--images 100] [--large 2] [--scale 3] [--repeat 3] [--csv PATH]

Data: B100 (``../shared/data/bsds500/val``) degraded by the scale with the
shared ``degrade()`` (the LR folder every method reads), and ``--large``
big LR images (B100 photos enlarged to 1350x1000, i.e. 4050x3000 output at
x3). Every method runs in a fresh process that reads the folder, upscales
and writes PNGs; wall time and peak RSS are measured from outside
(``os.wait4``), so imports and I/O count the same for everyone; batchsr
is byte-compiled first, as an installed copy is.
"model only" times just the onnxruntime calls on the already-decoded Y.

OpenCV needs ``opencv-contrib-python-headless`` (``pip install '.[bench]'``);
without it those rows say so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SELF = str(Path(__file__).resolve())  # children run this file again
SHARED = ROOT.parent / "shared"
PEERS = SHARED / "peers" / "opencv_dnn_superres"


def prepare(workdir: Path, images: int, large: int, scale: int) -> dict[str, Path]:
    """LR folders: ``b100`` (B100 degraded by ``scale``) and ``large``."""
    from PIL import Image

    from batchsr.degrade import degrade

    src = sorted((SHARED / "data/bsds500/val").glob("*.jpg"))[:images]
    b100 = workdir / "in_b100"
    b100.mkdir(parents=True)
    for p in src:
        with Image.open(p) as im:
            _, lr = degrade(im.convert("RGB"), scale)
        lr.save(b100 / (p.stem + ".png"), compress_level=1)
    folders = {"b100": b100}
    if large:
        big = workdir / "in_large"
        big.mkdir()
        for p in src[:large]:
            with Image.open(p) as im:
                im.convert("RGB").resize((1350, 1000), Image.BICUBIC).save(big / (p.stem + ".png"), compress_level=1)
        folders["large"] = big
    return folders


def _measure(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stdout) of a child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    # The child is a _wrap process that reports its own child's peak RSS (from wait4) as JSON.
    if proc.returncode not in (0, 1):
        raise RuntimeError(
            f"{' '.join(cmd)} failed: {err.strip().splitlines()[-1] if err.strip() else proc.returncode}"
        )
    try:
        info = json.loads(out.strip().splitlines()[-1])
        rss = info.get("peak_rss_mib", float("nan"))
    except (ValueError, IndexError):
        rss = float("nan")
    return wall, rss, out


def _wrapped(args: list[str]) -> list[str]:
    """Run ``args`` under this module's ``_wrap``, which reports the child's own peak RSS."""
    return [sys.executable, SELF, "_wrap", "--", *args]


def _batchsr(folder: Path, out: Path, model: str, scale: int, *extra: str) -> list[str]:
    """The command line of a batchsr run, as its users type it."""
    return [sys.executable, "-m", "batchsr", str(folder), str(out), "--model", model, "--scale", str(scale), *extra]


def _output_pixels(folder: Path, scale: int) -> int:
    from PIL import Image

    total = 0
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            total += im.width * im.height * scale * scale
    return total


def run_bench(images: int, large: int, scale: int, threads: int | None, repeat: int = 3) -> list[dict]:
    """Every method on every folder, ``repeat`` interleaved rounds; each time is the median round.

    Interleaving (round 1 of every method, then round 2, ...) spreads a slow
    stretch of a shared machine over all methods instead of one, and the
    median drops the outlier. The ratios ("vs OpenCV ESPCN", "vs own model
    only") are paired: taken within each round, whose odd rounds run the
    methods in reverse order, then the median over rounds, so that a drift
    in the machine's speed cancels out of them.
    """
    import statistics

    from batchsr.models import shipped

    results = []
    with tempfile.TemporaryDirectory(prefix="batchsr-bench-") as tmp:
        work = Path(tmp)
        folders = prepare(work, images, large, scale)
        # One row per distinct model file (an alias such as default -> fast_x3.onnx is measured once).
        entries, files = [], set()
        for e in shipped():
            if e.scale == scale and e.sha256 not in files:
                files.add(e.sha256)
                entries.append(e)
        tflag = ["--threads", str(threads)] if threads else []
        for name, folder in folders.items():
            mp = _output_pixels(folder, scale) / 1e6
            n = len(list(folder.glob("*.png")))
            out = work / f"out_{name}"
            # (label, note, command, reads the model-only time from the child's stdout)
            methods: list[tuple[str, str, list[str], bool]] = []
            for e in entries:
                label = f"batchsr {e.name} x{e.scale}"
                methods.append(
                    (
                        label + " end to end",
                        "",
                        _wrapped(_batchsr(folder, out, e.name, e.scale, "--no-psnr", "--quiet", *tflag)),
                        False,
                    )
                )
                methods.append(
                    (
                        label + " model only",
                        "onnxruntime calls only",
                        _wrapped(
                            [
                                sys.executable,
                                SELF,
                                "_model_only",
                                str(folder),
                                e.name,
                                str(e.scale),
                                str(threads or 0),
                            ]
                        ),
                        True,
                    )
                )
            methods.append(
                (
                    "Pillow bicubic",
                    "",
                    _wrapped([sys.executable, SELF, "_pillow", str(folder), str(out), str(scale)]),
                    False,
                )
            )
            for peer in ("ESPCN", "FSRCNN"):
                pb = PEERS / f"{peer}_x{scale}.pb"
                methods.append(
                    (
                        f"OpenCV dnn_superres {peer} x{scale}",
                        "",
                        _wrapped(
                            [
                                sys.executable,
                                SELF,
                                "_opencv",
                                str(folder),
                                str(out),
                                peer.lower(),
                                str(scale),
                                str(pb),
                            ]
                        ),
                        False,
                    )
                )
            # Per round, every method's (seconds, RSS), None where it failed. Odd rounds run the
            # methods in reverse: a machine slowing down over a round then weighs on both sides
            # of each comparison alike (ABBA), and the ratios are taken within each round.
            rounds: dict[str, list[tuple[float, float] | None]] = {m[0]: [] for m in methods}
            for r in range(repeat):
                for label, _, cmd, inner in methods if r % 2 == 0 else methods[::-1]:
                    if r and not any(rounds[label]):
                        rounds[label].append(None)
                        continue  # failed in round 1 (OpenCV not installed): said once
                    try:
                        wall, rss, stdout = _measure(cmd)
                    except RuntimeError as exc:
                        print(f"  {label}: {exc}", flush=True)
                        rounds[label].append(None)
                        continue
                    finally:
                        shutil.rmtree(out, ignore_errors=True)
                    seconds = json.loads(stdout.strip().splitlines()[-2])["seconds"] if inner else wall
                    rounds[label].append((seconds, rss))
                    print(
                        f"  {name:6s} round {r + 1} {label:38s} {seconds:7.2f} s {mp / seconds:7.2f} MP/s "
                        f"{rss:7.0f} MiB",
                        flush=True,
                    )
            espcn = next((m[0] for m in methods if m[0].startswith("OpenCV dnn_superres ESPCN")), None)
            for label, note, _, _ in methods:
                got = [g for g in rounds[label] if g]
                if not got:
                    continue
                secs = [t for t, _ in got]
                wall = statistics.median(secs)
                own = label.replace(" end to end", " model only") if label.endswith(" end to end") else None
                results.append(
                    {
                        "set": name,
                        "method": label,
                        "images": n,
                        "output_mp": mp,
                        "seconds": wall,
                        "mp_per_s": mp / wall if wall > 0 else float("nan"),
                        "peak_rss_mib": max(r for _, r in got),
                        "rounds": len(got),
                        "spread": f"{min(secs):.2f}-{max(secs):.2f}",
                        "note": note,
                        "vs_espcn": _paired(rounds[espcn], rounds[label]) if espcn else (float("nan"),) * 3,
                        "vs_model_only": _paired(rounds[own], rounds[label]) if own else (float("nan"),) * 3,
                    }
                )
    return results


def _paired(reference: list, method: list) -> tuple[float, float, float]:
    """(median, lowest, highest) over rounds of reference seconds / method seconds, each round's
    pair run back to back (the method's throughput relative to the reference's); NaNs if no
    round has both."""
    import statistics

    ratios = [a[0] / b[0] for a, b in zip(reference, method, strict=True) if a and b and b[0] > 0]
    return (statistics.median(ratios), min(ratios), max(ratios)) if ratios else (float("nan"),) * 3


# ---- child processes -------------------------------------------------------------------------------


def _child_wrap(args: list[str]) -> int:
    """Run a command, then print its exit status and peak RSS (from wait4) as JSON."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    sys.stdout.write(out)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status), "peak_rss_mib": usage.ru_maxrss / 1024}))
    return 0


def _child_model_only(folder: str, model: str, scale: str, threads: str) -> int:
    import numpy as np
    from PIL import Image

    from batchsr import color
    from batchsr.models import load
    from batchsr.session import SessionOptions
    from batchsr.tiling import upscale_tiled
    from batchsr.upscaling import effective_tile

    m = load(model, int(scale), SessionOptions(threads=int(threads)))
    ys = []
    for p in sorted(Path(folder).glob("*.png")):
        with Image.open(p) as im:
            ys.append(color.rgb_to_y(np.asarray(im.convert("RGB"), np.float32) / 255.0))
    m.session.run(ys[0][:32, :32])  # warm-up: first-call allocations are not throughput
    t0 = time.perf_counter()
    for y in ys:
        upscale_tiled(y, m.scale, effective_tile(None, *y.shape), m.radius, m.session.run)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
    return 0


def _child_pillow(folder: str, out: str, scale: str) -> int:
    from PIL import Image

    s = int(scale)
    Path(out).mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(folder).glob("*.png")):
        with Image.open(p) as im:
            im.resize((im.width * s, im.height * s), Image.BICUBIC).save(Path(out) / p.name, compress_level=1)
    return 0


def _child_opencv(folder: str, out: str, algo: str, scale: str, pb: str) -> int:
    import cv2

    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(pb)
    sr.setModel(algo, int(scale))
    Path(out).mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(folder).glob("*.png")):
        cv2.imwrite(str(Path(out) / p.name), sr.upsample(cv2.imread(str(p))))
    return 0


def memory_bench(scale: int, jobs: int) -> list[dict]:
    """Peak RSS of `batchsr` (defaults, PSNR included) on one 2700x2000 photo and on one of twice its
    pixels, as JPEG, PNG and TIFF (the output keeps the format)."""
    from PIL import Image

    src = sorted((SHARED / "data/bsds500/val").glob("*.jpg"))[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="batchsr-mem-") as tmp:
        for suffix in (".jpg", ".png", ".tif"):
            for w, h in ((2700, 2000), (3818, 2828)):
                folder = Path(tmp) / f"in_{w}x{h}{suffix}"
                folder.mkdir()
                with Image.open(src) as im:
                    big = im.convert("RGB").resize((w, h), Image.BICUBIC)
                    big.save(folder / f"scan{suffix}", **({"quality": 92} if suffix == ".jpg" else {}))
                out = Path(tmp) / f"out_{w}x{h}{suffix}"
                wall, rss, _ = _measure(_wrapped(_batchsr(folder, out, "auto", scale, "--jobs", str(jobs), "--quiet")))
                rows.append(
                    {
                        "format": suffix[1:].upper(),
                        "input": f"{w}x{h}",
                        "output": f"{w * scale}x{h * scale}",
                        "seconds": wall,
                        "peak_rss_mib": rss,
                    }
                )
                print(f"  memory {suffix} {w}x{h}: {wall:.1f} s, peak RSS {rss:.0f} MiB", flush=True)
                shutil.rmtree(out)
    return rows


def memory_table(rows: list[dict]) -> str:
    lines = [
        "| format | input | output | seconds | peak RSS MiB | vs the smaller |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        first = next(x for x in rows if x["format"] == r["format"])
        lines.append(
            f"| {r['format']} | {r['input']} | {r['output']} | {r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
            f"{r['peak_rss_mib'] / first['peak_rss_mib']:.2f}x |"
        )
    return "\n".join(lines)


def table(results: list[dict]) -> str:
    """The results as Markdown. The two ratio columns are medians of per-round ratios, with
    their lowest and highest round (see run_bench)."""
    import math

    lines = [
        "| set | method | images | output MP | seconds (median; range) | output MP/s | vs OpenCV ESPCN "
        "(rounds) | vs own model only (rounds) | peak RSS MiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        mid, lo, hi = r["vs_espcn"]
        ratio = f"{mid:.2f}x ({lo:.2f}-{hi:.2f})" if not math.isnan(mid) else "-"
        mid, lo, hi = r["vs_model_only"]
        own = f"{100 * mid:.0f} % ({100 * lo:.0f}-{100 * hi:.0f})" if not math.isnan(mid) else ""
        lines.append(
            f"| {r['set']} | {r['method']} | {r['images']} | {r['output_mp']:.1f} | {r['seconds']:.2f}; "
            f"{r['spread']} | {r['mp_per_s']:.2f} | {ratio} | {own} | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    children = {
        "_wrap": lambda a: _child_wrap(a[1:] if a and a[0] == "--" else a),
        "_model_only": lambda a: _child_model_only(*a),
        "_pillow": lambda a: _child_pillow(*a),
        "_opencv": lambda a: _child_opencv(*a),
    }
    if argv and argv[0] in children:
        return children[argv[0]](argv[1:])
    ap = argparse.ArgumentParser(
        prog="benchmarks/throughput.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=100, help="B100 images to use (default all 100)")
    ap.add_argument("--large", type=int, default=2, help="large images (1350x1000 LR) to add")
    ap.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    ap.add_argument("--threads", type=int, help="batchsr inference threads (default: one per core)")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="interleaved rounds per method (odd ones in reverse order); times are medians, "
        "ratios medians of per-round ratios (default 3)",
    )
    ap.add_argument("--csv", type=Path, help="also write the results as CSV")
    ap.add_argument("--memory", action="store_true", help="only the peak-memory check on two big photos")
    a = ap.parse_args(argv)
    if a.repeat < 1:
        ap.error("--repeat must be at least 1")
    # Byte-compile batchsr first, as `pip install` does: every child process
    # then starts like an installed batchsr, also where PYTHONDONTWRITEBYTECODE
    # is set (it is on the machine these figures come from).
    import compileall

    compileall.compile_dir(ROOT / "batchsr", quiet=1)
    if a.memory:
        print(f"batchsr memory bench on {os.cpu_count()} CPUs, x{a.scale}", flush=True)
        print(memory_table(memory_bench(a.scale, 2)))
        return 0
    print(f"batchsr bench on {os.cpu_count()} CPUs, x{a.scale}", flush=True)
    results = run_bench(a.images, a.large, a.scale, a.threads, a.repeat)
    print()
    print(table(results))
    if a.csv:
        import csv

        flat = [
            {
                k2: v2
                for k, v in r.items()
                for k2, v2 in (zip((k, k + "_low", k + "_high"), v, strict=True) if isinstance(v, tuple) else [(k, v)])
            }
            for r in results
        ]
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(flat[0]))
            w.writeheader()
            w.writerows(flat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
