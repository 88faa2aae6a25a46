"""Does a `photo` model need the chroma planes? What plain filters of the LR chroma buy.

    python benchmarks/chroma.py [--scale 3] [--sets B100 Set14] [--degradation realistic]

batchsr's models see Y only; chroma is upscaled bicubically. This measures,
on the same LR inputs as ``benchmarks/realistic.py``, the colour figure (PSNR
on Cb/Cr of the colour images) when the LR chroma is first smoothed by a
Gaussian of a few widths: if no filter gains, colour noise and JPEG chroma
blocks cost little of the colour figure, and a learned chroma branch has
little to win; if one does, that gain is the floor of what such a branch
would bring. Luma is bicubic in every row, so only chroma differs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realistic import SETS, cpu_name, pairs  # noqa: E402

from batchsr import color, metrics  # noqa: E402
from batchsr.degrade import blur, gaussian_kernel  # noqa: E402


def chroma_smoothed(lr: np.ndarray, scale: int, sigma: float) -> np.ndarray:
    """Bicubic upscale of ``lr`` whose Cb/Cr were blurred by ``sigma`` LR pixels first."""
    rgb = lr.astype(np.float32) / 255.0
    ycc = np.stack([color.rgb_to_plane(rgb, c) for c in range(3)], -1)
    if sigma > 0:
        ycc[..., 1:] = blur(ycc[..., 1:], gaussian_kernel(sigma, sigma))
    h, w = lr.shape[:2]
    planes = [np.asarray(Image.fromarray(ycc[..., c]).resize((w * scale, h * scale), Image.BICUBIC)) for c in range(3)]
    return color.to_uint(color.planes_to_rgb(*planes), 8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="benchmarks/chroma.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--scale", type=int, default=3, choices=(2, 3, 4))
    ap.add_argument("--sets", nargs="+", default=["B100", "Set14"], choices=sorted(SETS))
    ap.add_argument("--degradation", choices=("realistic", "bicubic"), default="realistic")
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.0, 0.5, 0.8, 1.2, 2.0])
    a = ap.parse_args(argv)
    print(f"x{a.scale}, {a.degradation} LR; PSNR on Cb/Cr dB of the colour images; CPU: {cpu_name()}\n")
    print("| LR chroma blur sigma | " + " | ".join(a.sets) + " |")
    print("| ---: |" + " ---: |" * len(a.sets))
    data = {s: list(pairs(s, a.scale, a.degradation)) for s in a.sets}
    for sigma in a.sigmas:
        cells = []
        for s in a.sets:
            v = [metrics.psnr_cbcr(gt, chroma_smoothed(lr, a.scale, sigma), a.scale) for _, gt, lr in data[s]]
            cells.append(f"{np.mean([x for x in v if x is not None]):.2f}")
        print(f"| {sigma:g}{' (bicubic)' if sigma == 0 else ''} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
