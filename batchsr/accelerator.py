"""Opening a model on an accelerator (CoreML, CUDA, TensorRT, ...) so that a run can trust it.

Beside the accelerator's session a CPU session of the same model is opened: it is the
reference of a self-check run once, before any image, and it runs the images a pinned
session cannot take. Sessions on providers that compile per shape
(:data:`batchsr.session.SHAPE_COMPILING_PROVIDERS`) are pinned to one window shape,
``fixed_tile + 2R`` square and :data:`batchsr.tiling.FIXED_BATCH` windows a call, so CoreML
compiles one static-shaped model per run (cached across runs) instead of one per image size.

The self-check runs a probe (smooth gradients, hard edges, fine noise: what photos hold) through
both sessions. If the accelerator fails, or its output differs from the CPU's by more than
:data:`TOLERANCE` anywhere, the run uses the CPU session alone, and the note says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from batchsr import tiling
from batchsr.session import (
    SHAPE_COMPILING_PROVIDERS,
    Session,
    SessionOptions,
    available_providers,
    choose_providers,
)

log = logging.getLogger("batchsr")

CPU = "CPUExecutionProvider"
# Largest difference from the CPU's output the self-check accepts, in model units (1.0 = white):
# two 8-bit levels. Not yet measured on a Mac: CoreML's fp32 ML Program is expected to stay far
# below, and a broken conversion (a wrong layout, NaN, a dropped layer) is far above.
TOLERANCE = 2 / 255
# The probe's side where the session takes any shape: a few receptive fields across.
PROBE_SIDE = 64


@dataclass(frozen=True)
class Sessions:
    """What a model runs on: ``main`` runs the images; ``cpu`` (beside an accelerator that
    passed the self-check) runs those ``main`` cannot take; ``note`` says why ``main`` is the
    CPU although an accelerator was chosen."""

    main: Session
    cpu: Session | None = None
    note: str | None = None


def probe(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """(N, H, W) float32 in [0, 1]: a gradient, a bright disc with a hard edge, fine stripes
    and seeded noise, different in each window. Deterministic."""
    n, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty(shape, np.float32)
    for i in range(n):
        disc = ((yy - h * 0.4) ** 2 + (xx - w * (0.3 + 0.1 * i)) ** 2) < (min(h, w) * 0.25) ** 2
        stripes = 0.5 + 0.5 * np.sin(xx * (0.9 + 0.2 * i))
        base = 0.15 + 0.5 * xx / max(w - 1, 1) + 0.3 * disc
        out[i] = np.where(yy > h * 0.75, stripes, base) + rng.normal(0, 0.03, (h, w))
    return np.clip(out, 0.0, 1.0)


def disagreement(candidate: Session, reference: Session, windows: np.ndarray) -> float:
    """The largest absolute difference between the two sessions' outputs for ``windows`` (inf
    where the candidate's output is not finite or not the reference's shape)."""
    got, want = candidate.run_batch(windows), reference.run_batch(windows)
    if got.shape != want.shape or not np.isfinite(got).all():
        return float("inf")
    return float(np.max(np.abs(got - want)))


def pin_for(cpu: Session, tile: int, radius: int) -> dict[str, int] | None:
    """The dimension sizes that pin a session of this model to windows of ``tile + 2*radius``,
    FIXED_BATCH a call, by the names its input declares; None where the input is not
    (N, H, W, 1) with three distinct named dimensions (such a file runs unpinned)."""
    dims = cpu.input_shape
    side = tile + 2 * radius
    if len(dims) != 4 or not all(isinstance(d, str) and d for d in dims[:3]) or len(set(dims[:3])) != 3:
        return None
    return {dims[0]: tiling.FIXED_BATCH, dims[1]: side, dims[2]: side}


def open_sessions(
    source, options: SessionOptions, sha256: str | None = None, chosen: list[str] | None = None
) -> Sessions:
    """The sessions of one model for a run with ``options``: the CPU session alone where the CPU
    is the chosen provider; else the accelerator's (pinned where it compiles per shape and
    ``options.fixed_tile`` is set) with a CPU session beside it, once the self-check passed, or
    the CPU session alone with a note when it did not. ``chosen`` overrides the providers
    :func:`choose_providers` picks (tests stand a CPU session in for an accelerator). Raises
    SessionError (one line) where even the CPU session cannot be opened."""
    chosen = chosen or choose_providers(available_providers(), options.providers)
    if chosen[0] == CPU:
        return Sessions(Session(source, options, sha256=sha256))
    cpu = Session(source, replace(options, providers=(CPU,)), sha256=sha256)
    pin = None
    if chosen[0] in SHAPE_COMPILING_PROVIDERS and options.fixed_tile:
        pin = pin_for(cpu, options.fixed_tile, int(cpu.metadata.get("receptive_radius", 0)))
    try:
        main = Session(source, options, pin, sha256)
        window = main.window or (1, PROBE_SIDE, PROBE_SIDE)
        worst = disagreement(main, cpu, probe(window))
    except Exception as exc:  # an accelerator may fail in any way; the CPU still runs the model
        return _fallback(cpu, f"{chosen[0]} failed its self-check ({str(exc).splitlines()[0][:120]})")
    if worst > TOLERANCE:
        return _fallback(cpu, f"{chosen[0]} differed from the CPU by {worst * 255:.1f} levels on its self-check")
    log.debug("%s passed its self-check (%.3f levels from the CPU)", chosen[0], worst * 255)
    return Sessions(main, cpu)


def _fallback(cpu: Session, why: str) -> Sessions:
    note = f"{why}; the model runs on the CPU"
    log.warning("%s", note)
    return Sessions(cpu, None, note)
