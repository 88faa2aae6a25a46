"""Side by side on the same inputs: quality on realistic (and clean) sets, and speed.

    python benchmarks/realistic.py quality [--scales 3 4] [--sets B100 Set14] [--degradation realistic]
                                           [--methods bicubic espcn realesrgan-general realesrgan-anime default photo]
    python benchmarks/realistic.py speed [--scale 3] [--images 30] [--repeat 3]
                                         [--methods realesrgan-general default photo photo:int8]

``quality``: every method reads the same LR images, made from the evaluation
sets by ``batchsr.evaluate.make_pair`` (the realistic sets are seeded per
image, ``batchsr eval --degradation realistic`` gives the same inputs), and
is scored with ``batchsr.evaluate.score``: PSNR-Y / SSIM (protocol of the
engineering notes) and PSNR on Cb/Cr of the colour images.

``speed``: end to end on one folder of realistic B100 LR PNGs, each method in
its own process reading the folder and writing PNGs (batchsr through its
CLI, with ``--no-psnr``); interleaved rounds, odd ones in reverse order, the
median round per method. Says which CPU it ran on.

From a clone with ``../shared`` beside it and ``pip install '.[bench]'``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import SHARED, methods  # noqa: E402

SETS = {
    "B100": SHARED / "data/bsds500/val",
    "Set14": SHARED / "data/benchmarks/Set14",
    "Set5": SHARED / "data/benchmarks/Set5",
}
PEER_NAMES = ("bicubic", "espcn", "realesrgan-general", "realesrgan-anime")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def pairs(set_name: str, scale: int, degradation: str, seed: int = 0, limit: int = 0):
    from batchsr.evaluate import ground_truths, make_pair

    files = ground_truths(SETS[set_name])
    for p in files[:limit] if limit else files:
        with Image.open(p) as im:
            yield p.stem, *make_pair(im, scale, degradation, seed, p.name)


def quality(scales: list[int], sets: list[str], names: list[str], degradation: str, limit: int) -> list[dict]:
    from batchsr.evaluate import mean_colour, score

    rows = []
    for scale in scales:
        ms = methods(scale, names)
        for set_name in sets:
            data = list(pairs(set_name, scale, degradation, limit=limit))
            for m in ms:
                t0 = time.perf_counter()
                q = [score(gt, m.upscale(lr), scale) for _, gt, lr in data]
                colour, _ = mean_colour([x.cpsnr for x in q])
                rows.append(
                    {
                        "scale": scale,
                        "set": set_name,
                        "method": m.label,
                        "images": len(q),
                        "psnr": float(np.mean([x.psnr for x in q])),
                        "ssim": float(np.mean([x.ssim for x in q])),
                        "colour": colour,
                        "seconds": time.perf_counter() - t0,
                    }
                )
                print(f"  x{scale} {set_name} {m.label}: {rows[-1]['psnr']:.2f} / {rows[-1]['ssim']:.4f}", flush=True)
    return rows


def quality_table(rows: list[dict], degradation: str) -> str:
    sets = list(dict.fromkeys(r["set"] for r in rows))
    head = " | ".join(f"{s} PSNR-Y / SSIM / colour" for s in sets)
    out = [
        f"{degradation} LR; PSNR-Y dB / SSIM / PSNR on Cb/Cr dB (colour images)",
        "",
        f"| x | method | {head} |",
        "| --- | --- |" + " ---: |" * len(sets),
    ]
    for scale in dict.fromkeys(r["scale"] for r in rows):
        for label in dict.fromkeys(r["method"] for r in rows if r["scale"] == scale):
            cells = []
            for s in sets:
                r = next((r for r in rows if (r["scale"], r["method"], r["set"]) == (scale, label, s)), None)
                cells.append(f"{r['psnr']:.2f} / {r['ssim']:.4f} / {r['colour']:.2f}" if r else "")
            out.append(f"| {scale} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


# ---- speed ----------------------------------------------------------------------------------------


def _child(method: str, scale: str, src: str, dst: str) -> int:
    (m,) = methods(int(scale), [method])
    Path(dst).mkdir(parents=True, exist_ok=True)
    for p in sorted(Path(src).glob("*.png")):
        with Image.open(p) as im:
            lr = np.asarray(im.convert("RGB"))
        Image.fromarray(m.upscale(lr)).save(Path(dst) / p.name, compress_level=1)
    return 0


def speed(scale: int, images: int, repeat: int, names: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="batchsr-realistic-") as tmp:
        src = Path(tmp) / "lr"
        src.mkdir()
        for stem, _, lr in pairs("B100", scale, "realistic", limit=images):
            Image.fromarray(lr).save(src / f"{stem}.png")
        cmds, outs = {}, {n: Path(tmp) / f"out_{n}" for n in names}
        for n in names:
            out = str(outs[n])
            if n in PEER_NAMES:
                cmds[n] = [sys.executable, __file__, "_child", n, str(scale), str(src), out]
            else:  # NAME or NAME:int8 (the float build unless said)
                name, _, precision = n.partition(":")
                cmds[n] = [
                    sys.executable,
                    "-m",
                    "batchsr",
                    str(src),
                    out,
                    "--model",
                    name,
                    "--scale",
                    str(scale),
                    "--precision",
                    precision or "fp32",
                    "--no-psnr",
                    "--quiet",
                    "--overwrite",
                ]
        times: dict[str, list[float]] = {n: [] for n in names}
        for r in range(repeat):
            for n in names if r % 2 == 0 else names[::-1]:
                t0 = time.perf_counter()
                proc = subprocess.run(cmds[n], capture_output=True, text=True)
                if proc.returncode:
                    raise RuntimeError(f"{n}: {proc.stderr.strip().splitlines()[-1:]}")
                times[n].append(time.perf_counter() - t0)
                made = len(list(outs[n].glob("*.png")))
                if made != images:
                    raise RuntimeError(f"{n} wrote {made} of {images} outputs")
    return [
        {"method": n, "images": images, "seconds": statistics.median(t), "low": min(t), "high": max(t)}
        for n, t in times.items()
    ]


def speed_table(rows: list[dict], scale: int, reference: str = "realesrgan-general") -> str:
    ref = next((r["seconds"] for r in rows if r["method"] == reference), None)
    out = [
        f"x{scale}, {rows[0]['images']} realistic B100 LR images, end to end (read, upscale, write PNG), "
        f"median of rounds; CPU: {cpu_name()}",
        "",
        f"| method | seconds (lowest-highest) | speed vs {reference} |",
        "| --- | ---: | ---: |",
    ]
    for r in rows:
        vs = f"{ref / r['seconds']:.1f}x" if ref else ""
        out.append(f"| {r['method']} | {r['seconds']:.2f} ({r['low']:.2f}-{r['high']:.2f}) | {vs} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        return _child(*argv[1:])
    ap = argparse.ArgumentParser(
        prog="benchmarks/realistic.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality")
    q.add_argument("--scales", type=int, nargs="+", default=[3, 4], choices=(2, 3, 4))
    q.add_argument("--sets", nargs="+", default=["B100", "Set14"], choices=sorted(SETS))
    q.add_argument("--degradation", choices=("realistic", "bicubic"), default="realistic")
    q.add_argument("--methods", nargs="+", default=[*PEER_NAMES, "default", "photo"])
    q.add_argument("--limit", type=int, default=0, help="first N images of each set (quick looks)")
    s = sub.add_parser("speed")
    s.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    s.add_argument("--images", type=int, default=30)
    s.add_argument("--repeat", type=int, default=3)
    s.add_argument(
        "--methods",
        nargs="+",
        default=["realesrgan-general", "realesrgan-anime", "espcn", "default", "photo", "photo:int8"],
    )
    a = ap.parse_args(argv)
    if a.cmd == "quality":
        rows = quality(a.scales, a.sets, a.methods, a.degradation, a.limit)
        print(quality_table(rows, a.degradation))
        print(f"CPU: {cpu_name()}")
    else:
        if a.images < 1 or a.repeat < 1:
            ap.error("--images and --repeat must be at least 1")
        print(speed_table(speed(a.scale, a.images, a.repeat, a.methods), a.scale))
    return 0


if __name__ == "__main__":
    sys.exit(main())
