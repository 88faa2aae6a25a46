"""Registry of the shipped models, and loading of user-supplied ONNX models.

Shipped models live in ``models/`` of the source tree and in
``batchsr/_models`` of an installed wheel. ``manifest.json`` there maps
(name, scale) to a file and its SHA-256, which is verified before a model is
used. Everything else a model needs at run time (scale, receptive radius,
architecture) comes from the ONNX file's own ``metadata_props``, which the
training export writes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from batchsr.accelerator import open_sessions
from batchsr.precision import choose_precision, cpu_flags
from batchsr.session import Session, SessionError, SessionOptions, available_providers, choose_providers

# An installed wheel carries the models as package data (pyproject: force-include models ->
# batchsr/_models); a clone has them in models/ beside the package. Wheels install unzipped,
# so the package's resource folder is a real path that onnxruntime and Ray can read.
_PACKAGE_DIR = Path(str(resources.files("batchsr") / "_models"))
_SOURCE_DIR = Path(__file__).resolve().parent.parent / "models"
MANIFEST = "manifest.json"
REQUIRED_METADATA = ("scale", "receptive_radius")


class ModelError(Exception):
    """A model that cannot be found or trusted; the message is one actionable line."""


def models_dir() -> Path:
    """Where the shipped models are: the installed package's copy, else the source tree's."""
    for d in (_PACKAGE_DIR, _SOURCE_DIR):
        if (d / MANIFEST).is_file():
            return d
    raise ModelError("no shipped models found; reinstall batchsr or pass --model PATH.onnx")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    scale: int
    path: Path
    sha256: str | None  # None for user-supplied files
    int8: ModelEntry | None = None  # the int8 build of a shipped model (train.quantize)
    precision: str = "fp32"


def load_manifest(directory: Path | None = None) -> list[ModelEntry]:
    d = directory or models_dir()
    raw = json.loads((d / MANIFEST).read_text())
    entries = []
    for m in raw["models"]:
        q = m.get("int8")
        int8 = ModelEntry(m["name"], int(m["scale"]), d / q["file"], q["sha256"], precision="int8") if q else None
        entries.append(ModelEntry(m["name"], int(m["scale"]), d / m["file"], m["sha256"], int8))
    return entries


def shipped() -> list[ModelEntry]:
    """Every shipped (name, scale), sorted."""
    return sorted(load_manifest(), key=lambda m: (m.name, m.scale))


def is_path(model: str) -> bool:
    return model.lower().endswith(".onnx") or "/" in model or "\\" in model


def resolve(model: str, scale: int | None, precision: str = "fp32") -> ModelEntry:
    """A model name (with a scale, default 3) or an ONNX path -> the entry to load; ``precision``
    fp32 or int8 picks the build of a shipped model (a file is what it is).

    Raises ModelError with a one-line message naming what exists.
    """
    if is_path(model):
        p = Path(model).expanduser()
        if not p.is_file():
            raise ModelError(f"model file not found: {model}")
        if precision == "int8":
            raise ModelError(
                "--precision int8 picks the int8 build of a shipped model; for your own "
                "file, pass its int8 version (python -m train.quantize SRC DST)"
            )
        return ModelEntry(p.stem, scale or 0, p, None)
    scale = scale or 3
    entries = load_manifest()
    for e in entries:
        if e.name == model and e.scale == scale:
            if precision != "int8":
                return e
            if e.int8 is None:
                raise ModelError(f"no int8 build of '{model}' x{scale} is shipped; use --precision fp32")
            return e.int8
    have = ", ".join(f"{e.name} x{e.scale}" for e in sorted(entries, key=lambda e: (e.name, e.scale)))
    raise ModelError(f"no shipped model '{model}' for x{scale} (shipped: {have}); or pass --model PATH.onnx")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Model:
    """A loaded model: its session and the facts the runner needs."""

    name: str
    scale: int
    radius: int
    session: Session
    metadata: dict
    sha256: str
    source: Path | None = None  # the file it was opened from (None: from bytes)
    # Beside an accelerator's session: the CPU session for images it cannot take (see session_for).
    cpu: Session | None = None
    note: str | None = None  # why the model runs on the CPU although an accelerator was chosen

    def session_for(self, height: int, width: int) -> Session:
        """The session that runs an LR image of this size: the main one, or the CPU session
        where the main one is pinned to windows larger than the image (padding the image to
        the window would break exact tiling's zero-padded border)."""
        window = self.session.window
        if window and self.cpu is not None and (height < window[1] or width < window[2]):
            return self.cpu
        return self.session

    @property
    def precision(self) -> str:
        """fp32 or int8, as the file's metadata says."""
        return self.metadata.get("precision", "fp32")

    @property
    def label(self) -> str:
        return f"{self.name} x{self.scale}" + (" int8" if self.precision == "int8" else "")


def load(
    model: str = "default",
    scale: int | None = None,
    options: SessionOptions = SessionOptions(),
    precision: str = "fp32",
) -> Model:
    """Resolve, verify and open a model. Raises ModelError (or SessionError) with one line.

    ``precision`` auto picks the int8 build where :func:`batchsr.precision.choose_precision`
    says it pays on this machine (a file passed by path is always what it is).
    """
    if precision == "auto":
        precision = (
            "fp32"
            if is_path(model)
            else choose_precision("auto", choose_providers(available_providers(), options.providers), cpu_flags())
        )
        if precision == "int8" and resolve(model, scale).int8 is None:
            precision = "fp32"  # a model shipped without an int8 build (its int8 lost too much)
    entry = resolve(model, scale, precision)
    digest = sha256_file(entry.path)
    if entry.sha256 is not None and digest != entry.sha256:
        raise ModelError(f"{entry.path} is corrupt (checksum mismatch); reinstall batchsr")
    # Shipped models are labelled by the name asked for (default, fast, ...), files by their stem.
    return _open(entry.path, str(entry.path), entry.name, digest, scale, options)


def from_bytes(data: bytes, name: str, sha256: str, options: SessionOptions = SessionOptions()) -> Model:
    """Open a model from its file's bytes, e.g. on a cluster node that lacks the file.

    Raises ModelError unless the bytes hash to ``sha256``, so every node runs
    exactly the model the driver loaded; ``name`` is the label it had there.
    """
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ModelError(f"model {name}: the bytes received do not match its checksum")
    return _open(data, f"model {name}", name, digest, None, options)


def _open(source: Path | bytes, what: str, name: str, digest: str, scale: int | None, options: SessionOptions) -> Model:
    sessions = open_sessions(source, options, digest)
    meta = sessions.main.metadata
    missing = [k for k in REQUIRED_METADATA if k not in meta]
    if missing:
        raise ModelError(
            f"{what} lacks batchsr metadata ({', '.join(missing)}); export it with `python -m train export`"
        )
    try:
        model_scale, radius = int(meta["scale"]), int(meta["receptive_radius"])
    except ValueError:
        raise ModelError(f"{what} has malformed batchsr metadata") from None
    if scale and model_scale != scale:
        raise ModelError(f"{what} is an x{model_scale} model, but --scale {scale} was asked for")
    path = source if isinstance(source, Path) else None
    return Model(name, model_scale, radius, sessions.main, meta, digest, path, sessions.cpu, sessions.note)


__all__ = ["SessionError", "Model", "ModelEntry", "ModelError", "load", "from_bytes", "resolve", "shipped"]
