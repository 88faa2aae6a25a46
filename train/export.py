"""Export a checkpoint to ONNX with tf2onnx, check it, and register it.

Steps: rebuild the architecture, load the checkpoint's weights, convert with
dynamic batch/height/width, rewrite the layout ops into a graph every
execution provider takes whole (``train.graph``; outputs checked
bit-identical), run ``onnx.checker``, check onnxruntime against
Keras on a non-square input (max abs diff <= 1e-4), measure the validation
PSNR on B100 through the runtime's own code path, write the facts into the
ONNX ``metadata_props``, save, and record the file's SHA-256 in the
manifest next to it.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import keras
import numpy as np

from train import manifest as manifest_file
from train.archs import ARCHS, facts
from train.data import SHARED
from train.graph import clean_sub_pixel, same_outputs
from train.loop import load_state

PARITY_TOLERANCE = 1e-4
OPSET = 17
VAL_DIR = SHARED / "data/bsds500/val"  # B100: validation only


def to_onnx(model: keras.Model):
    """A Keras model -> onnx.ModelProto (needs the TensorFlow backend for tf2onnx)."""
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("export needs KERAS_BACKEND=tensorflow (tf2onnx converts TensorFlow graphs)")
    import tensorflow as tf
    import tf2onnx

    spec = [tf.TensorSpec([None, None, None, 1], tf.float32, name="y_lr")]
    fn = tf.function(lambda x: model(x, training=False), input_signature=spec)
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=OPSET)
    return proto


def parity(proto, model: keras.Model, shape=(1, 37, 53, 1), seed: int = 0) -> float:
    """Max abs difference between onnxruntime and Keras on a random non-square input."""
    from batchsr.session import import_onnxruntime

    ort = import_onnxruntime()

    x = np.random.default_rng(seed).uniform(16 / 255, 235 / 255, shape).astype(np.float32)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = keras.ops.convert_to_numpy(model(x, training=False))
    if got.shape != want.shape:
        raise AssertionError(f"ONNX output shape {got.shape} != Keras {want.shape}")
    return float(np.abs(got - want).max())


def set_metadata(proto, meta: dict) -> None:
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, str(v)


def validation_psnr(proto_bytes: bytes, meta: dict) -> tuple[float, float]:
    """(model, bicubic) mean PSNR on B100 through batchsr's runtime path."""
    from batchsr.evaluate import evaluate_folder
    from batchsr.models import Model
    from batchsr.session import Session

    engine = Session(proto_bytes)
    m = Model(meta["name"], int(meta["scale"]), int(meta["receptive_radius"]), engine, meta, "")
    score, _ = evaluate_folder(VAL_DIR, m)
    return score.psnr_model, score.psnr_bicubic


def register(manifest: Path, name: str, scale: int, file: Path, digest: str) -> None:
    """Add or replace (name, scale) in the manifest (written atomically)."""
    data = manifest_file.read(manifest)
    data["models"] = [m for m in data["models"] if (m["name"], int(m["scale"])) != (name, scale)]
    data["models"].append({"name": name, "scale": scale, "file": file.name, "sha256": digest})
    data["models"].sort(key=lambda m: (m["name"], m["scale"]))
    manifest_file.write(manifest, data)


def _degradation(cfg: dict) -> str:
    if cfg.get("degradation", "bicubic") == "bicubic":
        return "PIL bicubic"
    return f"degrade_realistic, {cfg.get('variants', 1)} seeded LRs per image"


def export_checkpoint(
    ckpt: Path, out: Path, name: str, manifest: Path | None = None, validate: bool = True, aliases=(), log=print
) -> dict:
    """Export ``ckpt`` to ``out`` and register it as ``name``; returns the metadata written."""
    import onnx

    state = load_state(ckpt)
    if state is None:
        raise FileNotFoundError(f"no checkpoint in {ckpt}")
    cfg = state["config"]
    model = ARCHS[cfg["arch"]](cfg["scale"])
    model.load_weights(Path(ckpt) / "model.weights.h5")
    f = facts(model)
    if "images" not in state:  # checkpoints from before the count was recorded
        from train.data import list_images

        files = list_images(cfg["data_dirs"])
        state["images"] = min(len(files), cfg.get("max_images") or len(files))
    raw = to_onnx(model)
    proto = clean_sub_pixel(raw, cfg["scale"])  # one graph every execution provider takes whole
    if not same_outputs(raw.SerializeToString(), proto.SerializeToString()):
        raise AssertionError("the rewritten graph's outputs differ from tf2onnx's")
    onnx.checker.check_model(proto)
    diff = parity(proto, model)
    log(f"parity onnxruntime vs keras: max abs diff {diff:.2e}")
    if diff > PARITY_TOLERANCE:
        raise AssertionError(f"ONNX export differs from Keras by {diff:.2e} > {PARITY_TOLERANCE}")
    meta = {
        "batchsr_format": 1,
        "name": name,
        "scale": cfg["scale"],
        "arch": cfg["arch"],
        "receptive_radius": f.receptive_radius,
        "macs_per_lr_pixel": f.macs_per_lr_pixel,
        "parameters": f.parameters,
        "input": "NHWC float32 [N,H,W,1]: luma Y/255, ITU-R BT.601 studio range (Y in [16,235])",
        "output": "NHWC float32 [N,H*scale,W*scale,1], same units",
        "training_data": f"{state.get('images', '?')} images of {' + '.join(Path(d).name for d in cfg['data_dirs'])}"
        f" (BSDS500), LR by batchsr.degrade: {_degradation(cfg)}",
        "degradation": cfg.get("degradation", "bicubic"),
        "steps": state["step"],
        "batch": cfg["batch"],
        "patch": cfg["patch"],
        "loss": cfg["loss"] if cfg["loss"] != "l1_ssim" else f"l1_ssim (SSIM weight {cfg['ssim_weight']:g})",
        "training_seconds": round(state["seconds"]),
        "trained_with": state.get("keras", ""),
        "parity_max_abs_diff": f"{diff:.2e}",
    }
    if validate:
        t0 = time.perf_counter()
        set_metadata(proto, meta)
        psnr_model, psnr_bicubic = validation_psnr(proto.SerializeToString(), meta)
        meta["val_psnr_b100"] = f"{psnr_model:.3f}"
        meta["val_psnr_b100_bicubic"] = f"{psnr_bicubic:.3f}"
        log(
            f"B100 validation: model {psnr_model:.3f} dB, bicubic {psnr_bicubic:.3f} dB "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    set_metadata(proto, meta)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = proto.SerializeToString()
    tmp = out.with_suffix(".onnx.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    digest = hashlib.sha256(data).hexdigest()
    for n in (name, *aliases):
        register(manifest or out.parent / "manifest.json", n, int(cfg["scale"]), out, digest)
    meta["sha256"] = digest
    return meta
