"""Resumable training loop.

A checkpoint folder holds ``model.weights.h5``, ``optimizer.npz`` (Adam's
moments and iteration count) and ``state.json`` (the configuration, the step
reached, accumulated training time and a loss history). Training resumes from
it transparently, on any Keras backend: weights saved under JAX load under
TensorFlow and vice versa.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import keras
import numpy as np
from keras import ops

from batchsr.metrics import SSIM_K, ssim_window
from train.archs import ARCHS, facts
from train.data import TRAIN_DIRS, PatchDataset, list_images, load_pairs, portable, resolve_dir


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (stored in state.json)."""

    arch: str
    scale: int
    steps: int
    batch: int = 64
    patch: int = 48
    lr: float = 1e-3
    loss: str = "l1"  # or "l2", or "l1_ssim": L1 + ssim_weight * (1 - SSIM)
    ssim_weight: float = 0.1
    seed: int = 0
    ckpt_every: int = 200
    data_dirs: tuple[str, ...] = TRAIN_DIRS
    max_images: int = 0  # 0 = all; tests use a handful
    degradation: str = "bicubic"  # or "realistic" (train.data)
    variants: int = 1  # realistic LRs per training image
    init: str = ""  # a checkpoint folder whose weights a new run starts from (fine-tuning)
    precision: str = "float32"  # or "mixed_bfloat16": about 3x faster on CPUs with AMX (engineering notes)


@keras.saving.register_keras_serializable(package="batchsr")
class Cosine(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from ``peak`` to ``peak * floor`` over ``total`` steps, after a short warm-up."""

    def __init__(self, peak: float, total: int, warmup: int = 100, floor: float = 0.01):
        self.peak, self.total, self.warmup, self.floor = peak, max(1, total), warmup, floor

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warm = ops.minimum(1.0, (step + 1.0) / float(max(1, self.warmup)))
        t = ops.minimum(step / float(self.total), 1.0)
        cos = self.floor + (1 - self.floor) * 0.5 * (1.0 + ops.cos(math.pi * t))
        return self.peak * warm * cos

    def get_config(self):
        return {"peak": self.peak, "total": self.total, "warmup": self.warmup, "floor": self.floor}


def psnr(y_true, y_pred):
    """Mean PSNR (dB) of a batch, images in [0, 1]."""
    mse = ops.mean(ops.square(y_true - ops.cast(y_pred, y_true.dtype)), axis=(1, 2, 3))
    return ops.mean(10.0 * ops.log10(1.0 / ops.maximum(mse, 1e-10)))


def ssim(y_true, y_pred):
    """Per-image mean SSIM (B,) of Y batches (B, H, W, 1) in model units (Y/255): the window
    and constants of ``batchsr.metrics.ssim_y`` (Gaussian sigma 1.5, 11x11, valid), separably."""
    taps = ssim_window().astype(np.float32)
    rows, cols = taps.reshape(-1, 1, 1, 1), taps.reshape(1, -1, 1, 1)

    def mean(x):
        return ops.conv(ops.conv(x, rows, padding="valid"), cols, padding="valid")

    a, b = y_true, ops.cast(y_pred, y_true.dtype)
    c1, c2 = SSIM_K[0] ** 2, SSIM_K[1] ** 2  # the peak is 1
    mu_a, mu_b = mean(a), mean(b)
    var_a = mean(a * a) - mu_a * mu_a
    var_b = mean(b * b) - mu_b * mu_b
    cov = mean(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2))
    return ops.mean(s, axis=(1, 2, 3))


def l1_ssim(weight: float):
    """The loss L1 + ``weight`` * (1 - SSIM), per image: fidelity, plus the local structure SSIM
    scores. L1 on Y/255 is about 0.03-0.05 and 1 - SSIM about 0.3-0.4 on realistic patches, so
    at a weight of 0.1 the two terms weigh about alike."""

    def loss(y_true, y_pred):
        l1 = ops.mean(ops.abs(y_true - ops.cast(y_pred, y_true.dtype)), axis=(1, 2, 3))
        return l1 + weight * (1.0 - ssim(y_true, y_pred))

    return loss


def loss_of(cfg: TrainConfig):
    """What ``model.compile`` takes for ``cfg.loss``."""
    if cfg.loss == "l1_ssim":
        return l1_ssim(cfg.ssim_weight)
    return {"l1": "mean_absolute_error", "l2": "mean_squared_error"}[cfg.loss]


def build(cfg: TrainConfig) -> keras.Model:
    # Keras reads its dtype policy when a layer is made: set it for this model only.
    before = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(cfg.precision)
    try:
        model = ARCHS[cfg.arch](cfg.scale)
    finally:
        keras.mixed_precision.set_dtype_policy(before)
    opt = keras.optimizers.Adam(learning_rate=Cosine(cfg.lr, cfg.steps))
    model.compile(optimizer=opt, loss=loss_of(cfg), metrics=[psnr])
    opt.build(model.trainable_variables)
    return model


def save_checkpoint(model: keras.Model, ckpt: Path, state: dict) -> None:
    """Write the checkpoint atomically enough: each file via a temporary name, state last."""
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / "model.tmp.weights.h5"
    model.save_weights(tmp)
    tmp.replace(ckpt / "model.weights.h5")
    opt_vars = {f"v{i:03d}": np.asarray(keras.ops.convert_to_numpy(v)) for i, v in enumerate(model.optimizer.variables)}
    with open(ckpt / "optimizer.tmp.npz", "wb") as f:
        np.savez(f, **opt_vars)
    (ckpt / "optimizer.tmp.npz").replace(ckpt / "optimizer.npz")
    (ckpt / "state.tmp.json").write_text(json.dumps(state, indent=1))
    (ckpt / "state.tmp.json").replace(ckpt / "state.json")


def load_state(ckpt: Path) -> dict | None:
    p = Path(ckpt) / "state.json"
    return json.loads(p.read_text()) if p.exists() else None


def restore(model: keras.Model, ckpt: Path) -> None:
    model.load_weights(Path(ckpt) / "model.weights.h5")
    opt_file = Path(ckpt) / "optimizer.npz"
    if opt_file.exists():
        saved = np.load(opt_file)
        variables = model.optimizer.variables
        if len(saved.files) != len(variables):
            raise ValueError(f"{opt_file}: optimizer state does not match this model")
        for i, v in enumerate(variables):
            v.assign(saved[f"v{i:03d}"])


def config_from_state(state: dict, **overrides) -> TrainConfig:
    raw = dict(state["config"])
    raw["data_dirs"] = tuple(portable(resolve_dir(d)) for d in raw["data_dirs"])
    cfg = TrainConfig(**raw)
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def fitted_steps(step: int, steps: int, every: int, seconds_left: float, s_per_step: float) -> int:
    """The step total that ends within ``seconds_left`` at ``s_per_step``: ``steps`` when it
    fits, else the largest multiple of ``every`` reachable in time (never below ``step``)."""
    reachable = step + int(max(0.0, seconds_left) / max(s_per_step, 1e-9))
    if reachable >= steps:
        return steps
    return max(step, reachable // every * every)


def train(cfg: TrainConfig, ckpt: Path, log=print, fit: bool = False, deadline: float | None = None) -> dict:
    """Train until ``cfg.steps`` (or ``deadline``), checkpointing every ``cfg.ckpt_every`` steps.

    Resumes from ``ckpt`` when it holds a checkpoint of the same architecture
    and scale; ``cfg.steps`` may be raised on resume (the cosine schedule is
    stretched to the new total). Returns the final state dict.

    ``deadline`` is a ``time.monotonic()`` value: the run stops at the first
    checkpoint past it (resumable). With ``fit``, the run never stops half-way
    instead: at each checkpoint the step total is lowered, if needed, to what
    the measured speed reaches in the time left, so the cosine schedule still
    decays to its end (for a fixed GPU lease). The lowered total is kept in
    ``state.json``.
    """
    ckpt = Path(ckpt)
    state = load_state(ckpt)
    model = build(cfg)
    if state is not None:
        old = state["config"]
        if (old["arch"], old["scale"]) != (cfg.arch, cfg.scale):
            raise ValueError(f"{ckpt} holds {old['arch']} x{old['scale']}, not {cfg.arch} x{cfg.scale}")
        restore(model, ckpt)
        log(f"resumed {ckpt} at step {state['step']}")
    else:
        state = {"step": 0, "seconds": 0.0, "history": []}
        if cfg.init:
            init = resolve_dir(cfg.init)
            model.load_weights(init / "model.weights.h5")
            state["init"] = {"from": cfg.init, "step": (load_state(init) or {}).get("step")}
            log(f"weights from {init}")
    state["config"] = asdict(cfg)
    state["keras"] = f"{keras.__version__} ({keras.backend.backend()})"
    f = facts(model)
    state["facts"] = asdict(f)
    if state["step"] >= cfg.steps:
        return state

    files = list_images(cfg.data_dirs)
    if cfg.max_images:
        files = files[: cfg.max_images]
    t0 = time.monotonic()
    pairs = load_pairs(
        files, cfg.scale, cfg.patch, cfg.degradation, cfg.variants, cfg.seed, processes=min(4, os.cpu_count() or 1)
    )
    state["data_seconds"] = round(time.monotonic() - t0, 1)
    state["images"] = len({id(hr) for _, hr in pairs})
    log(
        f"{cfg.arch} x{cfg.scale}: {f.parameters} parameters, {f.macs_per_lr_pixel} MACs/LR px, "
        f"radius {f.receptive_radius}; {len(pairs)} training pairs ({cfg.degradation}, "
        f"made in {state['data_seconds']} s)"
    )

    while state["step"] < cfg.steps:
        n = min(cfg.ckpt_every, cfg.steps - state["step"])
        # One "epoch" per checkpoint interval; the data stream is keyed by the step reached.
        ds = PatchDataset(pairs, cfg.scale, cfg.patch, cfg.batch, n, cfg.seed, epoch=state["step"])
        t0 = time.monotonic()
        t1 = None  # after the first step: excludes (re)compilation from the speed estimate
        # train_on_batch in a plain loop: model.fit over a PyDataset costs ~2x per step here.
        losses, psnrs = [], []
        for i in range(n):
            x, y = ds[i]
            r = model.train_on_batch(x, y, return_dict=True)
            losses.append(float(r["loss"]))
            psnrs.append(float(r["psnr"]))
            if i == 0:
                t1 = time.monotonic()
        now = time.monotonic()
        dt = now - t0
        state["step"] += n
        state["seconds"] += dt
        loss, p = float(np.mean(losses)), float(np.mean(psnrs))
        state["history"].append({"step": state["step"], "loss": loss, "psnr": p, "s_per_step": dt / n})
        log(
            f"step {state['step']}/{cfg.steps} loss {loss:.5f} psnr {p:.2f} dB "
            f"{dt / n:.3f} s/step, {state['seconds'] / 3600:.2f} h in all"
        )
        lowered = False
        if fit and deadline is not None and state["step"] < cfg.steps:
            rate = (now - t1) / (n - 1) if n > 1 else dt
            # A margin, so that a slower stretch (or the recompile a lowered total costs)
            # rarely forces a second, later cut; and time for the last checkpoint write.
            steps = fitted_steps(state["step"], cfg.steps, cfg.ckpt_every, 0.92 * (deadline - now) - 2.0, rate)
            if steps < cfg.steps:
                log(f"fit: {rate * 1000:.1f} ms/step; step total lowered from {cfg.steps} to {steps}")
                state.setdefault("fitted", []).append({"at_step": state["step"], "from": cfg.steps, "to": steps})
                cfg = replace(cfg, steps=steps)
                state["config"] = asdict(cfg)
                lowered = True
        save_checkpoint(model, ckpt, state)
        if lowered and cfg.steps > state["step"]:
            # The schedule's total is baked into the compiled train step: rebuild, as a resume would.
            model = build(cfg)
            restore(model, ckpt)
        if not fit and deadline is not None and now > deadline and state["step"] < cfg.steps:
            log(f"time budget reached at step {state['step']}; resume with the same command")
            break
    return state
