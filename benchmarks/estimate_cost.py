"""What the damage estimates cost beside a whole image's run with the `fast` model.

    python benchmarks/estimate_cost.py [--images 30] [--repeat 3] [--model fast] [--scale 3]

On B100 photos at three sizes, as PNG files: 2x2 mosaics of them (962x642,
a scan's size, where the noise estimate takes every fourth patch), full size
(481x321, every other patch) and their x3 bicubic LRs (160x107, a small old file). Per image, in one
process, interleaved: ``experiment.damage_of`` (the luma and both estimates,
what every run now does before choosing a model) and ``process.process``
(decode, inference, merge, PNG encode and fsync: ``--no-psnr`` with the model
forced, which estimates nothing), the median of ``--repeat`` rounds of each.
"share" is the estimates over that end-to-end time; the target (issue 14) is
under 5 %. Says which CPU it ran on.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic import SETS, cpu_name  # noqa: E402

from batchsr import decode, experiment, process  # noqa: E402
from batchsr.config import RunConfig  # noqa: E402
from batchsr.discover import Job  # noqa: E402
from batchsr.models import load  # noqa: E402


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/estimate_cost.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--images", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--model", default="fast")
    ap.add_argument("--scale", type=int, default=3)
    a = ap.parse_args(argv)
    model = load(a.model, a.scale, precision="auto")  # the build the CLI runs
    files = sorted(SETS["B100"].glob("*"))[: a.images]
    print(f"CPU: {cpu_name()}; model {model.label} ({model.session.ran_on}); {len(files)} B100 photos")
    print("| size | estimates, ms | end to end, ms | share |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = []
        for f in files:
            with Image.open(f) as im:
                im = im.convert("RGB")
                photos.append(im.transpose(Image.Transpose.TRANSPOSE) if im.height > im.width else im)
        for label, shrink in (("962x642 (2x2)", 0), ("481x321", 1), ("160x107 (x3 LR)", 3)):
            src = root / f"in{shrink}"
            src.mkdir()
            for i, im in enumerate(photos):
                if shrink == 0:
                    if i % 4:
                        continue
                    four = (photos[(i + k) % len(photos)] for k in range(4))
                    big = Image.new("RGB", (2 * im.width, 2 * im.height))
                    for k, p in enumerate(four):
                        big.paste(p, ((k % 2) * im.width, (k // 2) * im.height))
                    big.save(src / f"{i:03d}.png")
                else:
                    im.resize((im.width // shrink, im.height // shrink), Image.BICUBIC).save(src / f"{i:03d}.png")
            out = root / f"out{shrink}"
            cfg = RunConfig(input=src, output=out, psnr=False)
            est, run = [], []
            for p in sorted(src.iterdir()):
                job = Job(src=p, rel=Path(p.name), format="PNG")
                pic = decode.load(p, cfg.max_pixels)
                e, r = [], []
                for _ in range(a.repeat):
                    e.append(timed(lambda pic=pic: experiment.damage_of(pic)))
                    r.append(timed(lambda job=job, out=out, cfg=cfg: process.process(job, out, model, cfg)))
                est.append(statistics.median(e))
                run.append(statistics.median(r))
            me, mr = 1000 * statistics.median(est), 1000 * statistics.median(run)
            print(f"| {label} | {me:.1f} | {mr:.1f} | {100 * me / mr:.1f} % |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
