"""Training data: BSDS500 train+test degraded by batchsr.degrade, as Y patches.

``bicubic`` pairs each image with its one bicubic LR; ``realistic`` pairs it
with ``variants`` LRs made by ``degrade_realistic``, each from its own seed,
so patches see many kinds and strengths of damage while the degradation of
a whole image stays out of the training step (its JPEG and blur cost about
as much as a step).
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from batchsr.color import rgb_to_y
from batchsr.degrade import degrade, degrade_realistic
from batchsr.formats import IMAGE_SUFFIXES

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
# Stored in checkpoints relative to the repository root, so a checkpoint
# resumes from any clone that has ../shared beside it.
# B100 (bsds500/val), Set5 and Set14 are evaluation sets: never train on them.
TRAIN_DIRS = ("../shared/data/bsds500/train", "../shared/data/bsds500/test")


def portable(d: str | Path) -> str:
    """A data folder as stored in a checkpoint: relative to the repository root."""
    return os.path.relpath(Path(d).resolve(), ROOT)


def resolve_dir(d: str | Path) -> Path:
    """A stored data folder -> a path here. Absolute paths from older checkpoints that
    no longer exist are re-rooted at this clone's ../shared."""
    p = Path(d)
    if not p.is_absolute():
        return ROOT / p
    if not p.exists() and "shared" in p.parts:
        return SHARED.joinpath(*p.parts[p.parts.index("shared") + 1 :])
    return p


FORBIDDEN = ("bsds500/val", "benchmarks")


def list_images(dirs) -> list[Path]:
    """Sorted image files under ``dirs``; refuses the evaluation sets."""
    files: list[Path] = []
    for d in dirs:
        d = resolve_dir(d)
        posix = d.resolve().as_posix()
        if any(f in posix for f in FORBIDDEN):
            raise ValueError(f"{d} is an evaluation set; training on it is not allowed")
        files += sorted(p for p in d.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no training images under {', '.join(map(str, dirs))}")
    return files


DEGRADATIONS = ("bicubic", "realistic")


def _y(image: Image.Image) -> np.ndarray:
    return rgb_to_y(np.asarray(image, dtype=np.float32) / 255.0)


def _image_pairs(job: tuple) -> list[tuple[np.ndarray, np.ndarray]]:
    path, index, scale, min_lr, degradation, variants, seed = job
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if degradation == "bicubic":
        hr, lr = degrade(rgb, scale)
        lrs = [lr]
    else:
        lrs = []
        for v in range(variants):
            hr, lr = degrade_realistic(rgb, scale, np.random.default_rng((seed, index, v)))
            lrs.append(lr)
    y_hr = _y(hr)
    return [(y, y_hr) for y in map(_y, lrs) if min(y.shape) >= min_lr]


def load_pairs(
    files, scale: int, min_lr: int, degradation: str = "bicubic", variants: int = 1, seed: int = 0, processes: int = 1
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Y_lr, Y_hr) float32 arrays in model units (Y/255) for every image big enough.

    ``realistic`` gives ``variants`` pairs per image, sharing one HR array; the
    LR of variant ``v`` of image ``i`` is seeded by ``(seed, i, v)``, so a
    resumed run rebuilds the same pairs. ``processes`` > 1 degrades in a pool.
    """
    if degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; choose from {', '.join(DEGRADATIONS)}")
    jobs = [(p, i, scale, min_lr, degradation, variants, seed) for i, p in enumerate(files)]
    if processes > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(processes) as pool:
            per_image = list(pool.map(_image_pairs, jobs, chunksize=8))
    else:
        per_image = [_image_pairs(j) for j in jobs]
    return [pair for pairs in per_image for pair in pairs]


class PatchDataset(keras.utils.PyDataset):
    """Random aligned LR/HR patches with the 8 flips/rotations, reproducible by seed.

    Batch ``idx`` of epoch ``epoch`` is a pure function of (seed, epoch, idx),
    so a resumed run sees the same data stream it would have seen.
    """

    def __init__(self, pairs, scale: int, patch: int, batch: int, steps: int, seed: int, epoch: int = 0):
        super().__init__(workers=1, use_multiprocessing=False)
        self.pairs, self.scale, self.patch, self.batch = pairs, scale, patch, batch
        self.steps, self.seed, self.epoch = steps, seed, epoch

    def __len__(self):
        return self.steps

    def on_epoch_end(self):
        self.epoch += 1

    def __getitem__(self, idx):
        rng = np.random.default_rng((self.seed, self.epoch, idx))
        p, s = self.patch, self.scale
        lr = np.empty((self.batch, p, p, 1), np.float32)
        hr = np.empty((self.batch, p * s, p * s, 1), np.float32)
        for i in range(self.batch):
            y_lr, y_hr = self.pairs[rng.integers(len(self.pairs))]
            y0 = rng.integers(y_lr.shape[0] - p + 1)
            x0 = rng.integers(y_lr.shape[1] - p + 1)
            a = y_lr[y0 : y0 + p, x0 : x0 + p]
            b = y_hr[y0 * s : (y0 + p) * s, x0 * s : (x0 + p) * s]
            k = int(rng.integers(4))
            a, b = np.rot90(a, k), np.rot90(b, k)
            if rng.integers(2):
                a, b = a[:, ::-1], b[:, ::-1]
            lr[i, :, :, 0] = a
            hr[i, :, :, 0] = b
        return lr, hr
