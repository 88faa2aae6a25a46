"""Which model runs each image of a run: the one ``--model NAME`` forces, or with ``--model auto``
(the default) the shipped ``default`` for clean inputs and ``photo`` for damaged ones.

An input is judged damaged from the estimates of :mod:`batchsr.estimate` by
:class:`DamageRule`, a rule written down and fitted on validation sets
(``benchmarks/auto_rule.py``). Both models are loaded once per run; the
choice per image costs a comparison.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple, dataclass, field, replace
from functools import lru_cache
from typing import Callable

from batchsr.config import RunConfig
from batchsr.estimate import Damage, DamageRule
from batchsr.models import Model, ModelError, load, resolve
from batchsr.session import SessionOptions, threads_per_job
from batchsr.tiling import AUTO_TILE

AUTO = "auto"
CLEAN, DAMAGED = "default", "photo"  # the shipped models auto chooses between


@dataclass(frozen=True)
class Choice:
    """The model(s) of one run: ``clean`` runs every image, unless ``damaged`` is set (``--model
    auto``), which runs the images ``rule`` judges damaged."""

    clean: Model
    damaged: Model | None = None
    rule: DamageRule = field(default_factory=DamageRule)

    @property
    def auto(self) -> bool:
        return self.damaged is not None

    @property
    def scale(self) -> int:
        return self.clean.scale

    @property
    def models(self) -> tuple[Model, ...]:
        return (self.clean, self.damaged) if self.damaged is not None else (self.clean,)

    @property
    def label(self) -> str:
        """The report's model for rows no model ran on: "auto x3" (its precision added when both
        builds share one), or the forced model's label."""
        if self.damaged is None:
            return self.clean.label
        same = self.clean.precision == self.damaged.precision == "int8"
        return f"{AUTO} x{self.scale}" + (" int8" if same else "")

    @property
    def digest(self) -> str:
        """What the resume key holds of the models: the forced model's checksum, or one over both
        checksums and the rule (a change to any of them redoes the outputs)."""
        if self.damaged is None:
            return self.clean.sha256
        recipe = [AUTO, self.clean.sha256, self.damaged.sha256, list(astuple(self.rule))]
        return hashlib.sha256(json.dumps(recipe).encode()).hexdigest()

    def pick(self, damage: Damage | None) -> tuple[Model, str | None]:
        """The model for an input with ``damage`` (None: not estimated), and why it is not the
        clean one (None when it is)."""
        if self.damaged is None or damage is None:
            return self.clean, None
        seen = self.rule.seen(damage)
        return (self.damaged, seen) if seen else (self.clean, None)

    def map(self, fn: Callable[[Model], Model]) -> Choice:
        """The same choice with each model replaced by ``fn(model)`` (e.g. a session with more threads)."""
        return Choice(fn(self.clean), None if self.damaged is None else fn(self.damaged), self.rule)


def load_choice(
    model: str = AUTO, scale: int | None = None, options: SessionOptions = SessionOptions(), precision: str = "fp32"
) -> Choice:
    """The run's Choice for ``--model``: ``auto`` loads both shipped models of the scale (default
    3), anything else (a name, an ONNX path) that one model alone. Raises ModelError with one line."""
    if model != AUTO:
        return Choice(load(model, scale, options, precision))
    scale = scale or 3
    resolve(CLEAN, scale)  # the one-line error naming what is shipped, before any session
    try:
        resolve(DAMAGED, scale)
    except ModelError:
        raise ModelError(
            f"--model auto needs the shipped '{CLEAN}' and '{DAMAGED}' models for x{scale}; "
            f"pass --model {CLEAN} to run without the choice"
        ) from None
    return Choice(load(CLEAN, scale, options, precision), load(DAMAGED, scale, options, precision))


def as_choice(models: Choice | Model) -> Choice:
    """``models`` as a Choice: a single Model runs every image (library callers pass one)."""
    return models if isinstance(models, Choice) else Choice(models)


@lru_cache(maxsize=8)
def cached_choice(model: str = AUTO, scale: int | None = None, precision: str = "fp32") -> Choice:
    """:func:`load_choice` once per (model, scale, precision), for library callers such as
    :func:`batchsr.upscale`."""
    return load_choice(model, scale, precision=precision)


def session_options(cfg: RunConfig, threads: int) -> SessionOptions:
    """The sessions' options for a run of ``cfg`` with ``threads`` intra-op threads each: its
    providers and GPU, and the window a shape-compiling provider is pinned to (``--tile N``'s,
    default :data:`batchsr.tiling.AUTO_TILE`; ``--tile 0`` pins none: every image its own shape)."""
    fixed_tile = AUTO_TILE if cfg.tile is None else (cfg.tile or None)
    return SessionOptions(providers=cfg.providers, threads=threads, device=cfg.device, fixed_tile=fixed_tile)


def load_for_run(cfg: RunConfig) -> tuple[Choice, RunConfig]:
    """The run's models, opened the one way the CLI and :func:`batchsr.run_folder` both use, and
    ``cfg`` with the scale and precision they resolved to.

    Locally each of the ``--jobs`` images in flight gets its share of the cores
    (:func:`batchsr.session.threads_per_job`) unless ``cfg.threads`` says otherwise; for Ray
    the session here only checks the models (each worker sizes its own). Raises ModelError
    or SessionError with one line.
    """
    threads = cfg.threads or (threads_per_job(cfg.jobs) if cfg.engine == "local" else 0)
    choice = load_choice(cfg.model, cfg.scale, session_options(cfg, threads), cfg.precision)
    return choice, replace(cfg, scale=choice.scale, precision=choice.clean.precision)
