"""onnxruntime sessions: the only module that imports onnxruntime ("engine" is left to --engine,
where the per-image work runs).

One session is built per model and run, then passed on (never rebuilt per
image). Execution providers are chosen here and nowhere else.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from batchsr import tiling

log = logging.getLogger("batchsr")

# onnxruntime 1.29+ collects usage telemetry off Windows too, unless told not to:
# a device id and an event cache under ~/.cache/Microsoft, uploaded to Microsoft
# when the machine is online. An archive tool has no business reporting home,
# so it is off unless the user set the variable themselves. It must be set
# before onnxruntime starts; this module is the only one that imports it.
# (It also spared each run about 20 ms of writing that cache at exit.)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def import_onnxruntime():
    """onnxruntime, with its telemetry events off also where it was imported before us."""
    import onnxruntime as ort

    if os.environ.get("ORT_DISABLE_TELEMETRY") == "1":
        ort.disable_telemetry_events()
    return ort


# Best first. CoreML on Apple machines, CUDA where onnxruntime-gpu is installed,
# the CPU everywhere. Others that onnxruntime reports are used only on request.
PREFERENCE = ("CoreMLExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
ALIASES = {
    "coreml": "CoreMLExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "dml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
BATCHING_PROVIDERS = {
    "CUDAExecutionProvider",
    "CoreMLExecutionProvider",
    "TensorrtExecutionProvider",
    "DmlExecutionProvider",
    "ROCMExecutionProvider",
}
# Providers that compile the model for each input shape they meet (seconds a shape on CoreML):
# their sessions are pinned to one window shape and batch (Session's ``window``), so a run
# compiles once; images smaller than one window run on the CPU session beside them.
SHAPE_COMPILING_PROVIDERS = {"CoreMLExecutionProvider", "TensorrtExecutionProvider"}
# Options for providers whose defaults do not suit us.
PROVIDER_OPTIONS = {
    # ML Program (the NeuralNetwork format is deprecated and has no fp16 path) on every compute
    # unit CoreML will use: an fp32 program runs on the GPU and CPU, the Neural Engine only
    # takes fp16. RequireStaticInputShapes and ModelCacheDirectory are added per session.
    "CoreMLExecutionProvider": {"ModelFormat": "MLProgram", "MLComputeUnits": "ALL"},
    # cuDNN's default EXHAUSTIVE search benchmarks every convolution algorithm for each new
    # input shape, and tile batches change shape with the image width; HEURISTIC picks at once.
    "CUDAExecutionProvider": {"cudnn_conv_algo_search": "HEURISTIC"},
}
# Providers that run on one of several devices, chosen by their device_id option (--device).
DEVICE_PROVIDERS = {
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "DmlExecutionProvider",
}


def provider_options(
    provider: str, device: int | None = None, static_shapes: bool = False, cache_dir: str | None = None
) -> dict[str, str]:
    """The options batchsr passes to ``provider``: on GPU ``device`` where given; for CoreML with
    ``static_shapes`` (a pinned session) only static-shaped nodes taken, and its compiled model
    kept in ``cache_dir``. Pure."""
    options = dict(PROVIDER_OPTIONS.get(provider, {}))
    if device is not None and provider in DEVICE_PROVIDERS:
        options["device_id"] = str(device)
    if provider == "CoreMLExecutionProvider":
        if static_shapes:
            options["RequireStaticInputShapes"] = "1"
        if cache_dir:
            options["ModelCacheDirectory"] = cache_dir
    return options


def user_cache_dir(platform: str = sys.platform, env: Mapping[str, str] = os.environ) -> Path:
    """batchsr's folder in the user's cache folder: ``~/Library/Caches/batchsr`` on macOS,
    ``$XDG_CACHE_HOME/batchsr`` (default ``~/.cache/batchsr``) elsewhere. Pure."""
    home = Path(env.get("HOME") or Path.home())
    if platform == "darwin":
        return home / "Library" / "Caches" / "batchsr"
    return Path(env.get("XDG_CACHE_HOME") or home / ".cache") / "batchsr"


def compiled_model_dir(root: Path, sha256: str, ort_version: str, window: tuple[int, int, int]) -> Path:
    """Where a provider keeps the model it compiled for one window shape: one folder per model
    checksum, onnxruntime version and shape, because the CoreML provider does not check whether
    a cached compilation still matches the model (it keys it by the model's path). Pure."""
    shape = "x".join(str(d) for d in window)
    return root / "compiled" / f"{sha256[:16]}-ort{ort_version}-{shape}"


def placement_label(placement: dict[str, int]) -> str:
    """``{provider: nodes}`` -> the report's text (empty when nothing is known). Pure."""
    if len(placement) == 1:
        return next(iter(placement))
    total = sum(placement.values())
    return ", ".join(f"{ep} {n}/{total}" for ep, n in sorted(placement.items(), key=lambda kv: -kv[1]))


def _placement(session) -> dict[str, int]:
    """Nodes per execution provider after onnxruntime's partitioning ({} where it cannot say)."""
    try:
        subgraphs = session.get_provider_graph_assignment_info()
    except (AttributeError, RuntimeError):  # onnxruntime before the assignment record
        return {}
    counts: dict[str, int] = {}
    for sub in subgraphs:
        counts[sub.ep_name] = counts.get(sub.ep_name, 0) + len(sub.get_nodes())
    return counts


class SessionError(Exception):
    """A model that cannot be loaded or run; the message is one actionable line."""


def parse_providers(text: str) -> tuple[str, ...]:
    """``"cuda,cpu"`` -> full onnxruntime provider names, in the given order."""
    names = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        names.append(ALIASES.get(part.lower(), part))
    if not names:
        raise ValueError("--providers needs at least one provider, e.g. cpu or cuda,cpu")
    return tuple(names)


def choose_providers(available: Sequence[str], requested: Sequence[str] | None = None) -> list[str]:
    """The providers to use, best first. Pure: tested without the hardware.

    Without a request: every provider of PREFERENCE that is available, in that
    order (the CPU is always last and always present as a fallback). With a
    request: exactly those, in that order; any unavailable one is an error
    naming what is available.
    """
    available = list(available)
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise SessionError(
                f"provider {', '.join(missing)} is not available here (available: {', '.join(available)})"
            )
        return list(requested)
    chosen = [p for p in PREFERENCE if p in available]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _cache_dir(options: SessionOptions, sha256: str | None, ort_version: str, pin, provider: str) -> str | None:
    """The compiled-model folder of a pinned CoreML session (created), or None: another provider
    (only CoreML takes a ModelCacheDirectory), no pin or checksum to key it by, caching turned
    off (``model_cache=""``), or a folder that cannot be made."""
    if provider != "CoreMLExecutionProvider" or not pin or not sha256 or options.model_cache == "":
        return None
    root = Path(options.model_cache) if options.model_cache else user_cache_dir()
    folder = compiled_model_dir(root, sha256, ort_version, tuple(pin.values()))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("no compiled-model cache (%s): each run compiles the model again", exc)
        return None
    return str(folder)


def available_providers() -> list[str]:
    ort = import_onnxruntime()

    return list(ort.get_available_providers())


def threads_per_job(jobs: int, cpus: int | None = None) -> int:
    """Intra-op threads for each of ``jobs`` images in flight, so that all of them
    together use each core once.

    The local engine shares one session between its jobs; each concurrent
    ``run`` adds its own threads. Measured on the 2-core machine, 100 B100
    images with the fast model: 2 jobs x 2 threads took 3.0-3.4 s, 2 jobs x 1
    thread 2.3-2.8 s (oversubscribed cores wait on each other's barriers).
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


@dataclass(frozen=True)
class SessionOptions:
    providers: tuple[str, ...] | None = None  # None: choose_providers' default
    threads: int = 0  # intra-op threads; 0 = onnxruntime's default (one per core)
    device: int | None = None  # GPU index for CUDA, TensorRT, ROCm, DirectML; None: their default (0)
    # onnxruntime's threads spin while idle by default, which steals the CPU
    # from decode/encode work running beside inference.
    spinning: bool = False
    # Sessions on SHAPE_COMPILING_PROVIDERS are pinned to windows of this tile plus twice the
    # model's radius, tiling.FIXED_BATCH at a time; None leaves them every shape (--tile 0).
    fixed_tile: int | None = tiling.AUTO_TILE
    # The folder CoreML's compiled models are kept in; None: user_cache_dir(), "" none kept.
    model_cache: str | None = None


class Session:
    """An onnxruntime session for a single-channel super-resolution model (NHWC, 1 channel).

    ``run`` takes an (H, W) float32 array in model units and returns the
    (H*scale, W*scale) float32 output. With ``pin`` ({input dimension name: size}) the
    session takes that one input shape only (``window``), which onnxruntime then knows
    when it partitions the graph: CoreML compiles it once, as one static-shaped model.
    ``sha256`` (of the model's bytes) keys CoreML's compiled-model cache.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        options: SessionOptions = SessionOptions(),
        pin: Mapping[str, int] | None = None,
        sha256: str | None = None,
    ):
        ort = import_onnxruntime()

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if options.threads:
            so.intra_op_num_threads = options.threads
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        # Where onnxruntime placed each node (placement); older versions ignore the entry.
        so.add_session_config_entry("session.record_ep_graph_assignment_info", "1")
        for name, size in (pin or {}).items():
            so.add_free_dimension_override_by_name(name, size)
        providers = choose_providers(ort.get_available_providers(), options.providers)
        cache = _cache_dir(options, sha256, ort.__version__, pin, providers[0])
        provider_args = [(p, provider_options(p, options.device, bool(pin), cache)) for p in providers]
        source = model if isinstance(model, bytes) else str(model)
        try:
            self._session = ort.InferenceSession(source, sess_options=so, providers=provider_args)
        except Exception as exc:  # onnxruntime raises several unrelated types
            what = "model bytes" if isinstance(model, bytes) else str(model)
            raise SessionError(f"cannot load {what}: {str(exc).splitlines()[0]}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or (inputs[0].shape and inputs[0].shape[-1] not in (1, "1")):
            raise SessionError("the model must take one NHWC input with 1 channel (Y)")
        self._input = inputs[0].name
        self.input_shape: list[int | str | None] = list(inputs[0].shape)
        self._source, self.options, self._pin, self._sha256 = model, options, dict(pin or {}), sha256
        self.metadata: dict[str, str] = dict(self._session.get_modelmeta().custom_metadata_map)
        self.providers: list[str] = list(self._session.get_providers())
        self.placement: dict[str, int] = _placement(self._session)
        log.debug("onnxruntime providers: %s; nodes placed: %s", ", ".join(self.providers), self.ran_on)

    @property
    def ran_on(self) -> str:
        """Where the model's nodes run, as measured by onnxruntime when it placed them:
        ``CPUExecutionProvider``, or ``CoreMLExecutionProvider 17/19, CPUExecutionProvider 2/19``
        when split; the registered providers where this onnxruntime cannot tell."""
        return placement_label(self.placement) or ",".join(self.providers)

    @property
    def window(self) -> tuple[int, int, int] | None:
        """(batch, height, width): the one input shape a pinned session takes; None when it
        takes any."""
        n, h, w = self.input_shape[:3] if len(self.input_shape) == 4 else (None, None, None)
        return (n, h, w) if self._pin and all(isinstance(d, int) for d in (n, h, w)) else None

    def with_threads(self, threads: int) -> "Session":
        """A second session of the same model, providers and pin with ``threads`` intra-op threads."""
        return Session(self._source, replace(self.options, threads=threads), self._pin, self._sha256)

    @property
    def on_cpu(self) -> bool:
        return bool(self.providers) and self.providers[0] == "CPUExecutionProvider"

    @property
    def batches(self) -> bool:
        """Whether feeding several tiles per call pays: accelerators do, the CPU gains nothing
        and would hold every tile's activations at once."""
        return bool(self.providers) and self.providers[0] in BATCHING_PROVIDERS

    def run(self, y: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(y, dtype=np.float32)[None, :, :, None]
        out = self._session.run(None, {self._input: x})[0]
        return out[0, :, :, 0]

    def run_batch(self, ys: np.ndarray) -> np.ndarray:
        """(N, H, W) -> (N, H*s, W*s): several same-shaped windows in one call."""
        x = np.ascontiguousarray(ys, dtype=np.float32)[..., None]
        return self._session.run(None, {self._input: x})[0][..., 0]
