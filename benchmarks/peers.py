"""The methods a comparison runs, each as its users run it: 8-bit RGB in, 8-bit RGB out.

Peers live in ``../shared/peers`` (never shipped): OpenCV dnn_superres ESPCN
(``opencv-contrib-python-headless``) and Real-ESRGAN's compact models through
the ``ncnn`` package on the CPU, both from ``pip install '.[bench]'``.
Real-ESRGAN's general model is x4 only; at other scales its output is
resized with Lanczos, as Real-ESRGAN's own ``--outscale`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PEERS = SHARED / "peers"

Upscaler = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Method:
    label: str
    upscale: Upscaler


def bicubic(scale: int) -> Upscaler:
    def run(lr: np.ndarray) -> np.ndarray:
        h, w = lr.shape[:2]
        return np.asarray(Image.fromarray(lr).resize((w * scale, h * scale), Image.BICUBIC))

    return run


def opencv(algo: str, scale: int) -> Upscaler:
    import cv2

    sr = cv2.dnn_superres.DnnSuperResImpl_create()
    sr.readModel(str(PEERS / "opencv_dnn_superres" / f"{algo.upper()}_x{scale}.pb"))
    sr.setModel(algo.lower(), scale)

    def run(lr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(sr.upsample(np.ascontiguousarray(lr[..., ::-1]))[..., ::-1])

    return run


def realesrgan(stem: str, scale: int, native: int, threads: int = 0) -> Upscaler:
    """A Real-ESRGAN compact model (``stem``.param/.bin) of ``native`` scale, through ncnn."""
    import os

    import ncnn

    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = threads or os.cpu_count() or 1
    folder = PEERS / "realesrgan_ncnn"
    if net.load_param(str(folder / f"{stem}.param")) or net.load_model(str(folder / f"{stem}.bin")):
        raise FileNotFoundError(f"cannot load {folder / stem}")

    def run(lr: np.ndarray) -> np.ndarray:
        h, w = lr.shape[:2]
        mat = ncnn.Mat.from_pixels(np.ascontiguousarray(lr), ncnn.Mat.PixelType.PIXEL_RGB, w, h)
        mat.substract_mean_normalize([0.0, 0.0, 0.0], [1 / 255.0] * 3)
        ex = net.create_extractor()
        ex.input("data", mat)
        _, out = ex.extract("output")
        a = np.clip(np.array(out).transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if a.shape[:2] != (h * scale, w * scale):
            a = np.asarray(Image.fromarray(a).resize((w * scale, h * scale), Image.LANCZOS))
        return a

    return run


def batchsr_model(name: str, scale: int, threads: int = 0) -> Upscaler:
    from batchsr.models import load
    from batchsr.session import SessionOptions
    from batchsr.upscaling import upscale_u8

    model = load(name, scale, SessionOptions(threads=threads))
    return lambda lr: upscale_u8(lr, model)


def methods(scale: int, names: list[str], threads: int = 0) -> list[Method]:
    """The named methods at ``scale``; a peer whose package is missing is left out with a message."""
    makers: dict[str, tuple[str, Callable[[], Upscaler]]] = {
        "bicubic": ("bicubic", lambda: bicubic(scale)),
        "espcn": ("OpenCV ESPCN", lambda: opencv("espcn", scale)),
        "realesrgan-general": (
            "Real-ESRGAN general x4v3" + ("" if scale == 4 else f" (x4, resized to x{scale})"),
            lambda: realesrgan("realesr-general-x4v3", scale, 4, threads),
        ),
        "realesrgan-anime": (
            f"Real-ESRGAN animevideov3 x{scale}",
            lambda: realesrgan(f"realesr-animevideov3-x{scale}", scale, scale, threads),
        ),
    }
    out = []
    for name in names:
        if name in makers:
            label, make = makers[name]
        else:  # a batchsr model
            label, make = f"batchsr {name}", (lambda n=name: batchsr_model(n, scale, threads))
        try:
            out.append(Method(label, make()))
        except ImportError as exc:
            print(f"skipping {label}: {exc} (pip install '.[bench]')")
    return out
