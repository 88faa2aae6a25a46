"""Static int8 quantisation of the shipped models, calibrated on training patches.

    python -m train.quantize models/fast_x3.onnx /tmp/fast_x3_int8.onnx [--patches 64]
    python -m train.quantize --shipped        # every model of models/manifest.json
    python -m train.quantize --shipped --only photo_x3   # after re-exporting one

Calibration data are LR Y patches of BSDS500 train (never the evaluation
sets), made by the shared degradation the model was trained on (bicubic or
realistic). QDQ, per-channel int8 weights, uint8 activations with MinMax
ranges; the first and the last convolution stay float (the last writes the
residual added to the input, where 8-bit steps would show in the output).
The result keeps the model's metadata_props plus ``precision=int8``.
``--shipped`` writes ``models/NAME_xS_int8.onnx`` for each model and
records it in the manifest beside its float model (``int8`` file and
checksum), where ``--precision`` finds it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


class PatchReader:
    """onnxruntime CalibrationDataReader over LR Y patches of the training set."""

    def __init__(
        self, input_name: str, scale: int, count: int, size: int = 64, seed: int = 0, degradation: str = "bicubic"
    ):
        from train.data import TRAIN_DIRS, list_images, load_pairs

        pairs = load_pairs(list_images(TRAIN_DIRS[:1])[:40], scale, size, degradation, seed=seed)
        rng = np.random.default_rng(seed)
        self._items = []
        for _ in range(count):
            y_lr, _ = pairs[rng.integers(len(pairs))]
            y0, x0 = rng.integers(y_lr.shape[0] - size + 1), rng.integers(y_lr.shape[1] - size + 1)
            self._items.append({input_name: y_lr[None, y0 : y0 + size, x0 : x0 + size, None].copy()})
        self._it = iter(self._items)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._items)


def quantize(src: Path, dst: Path, patches: int = 64) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from batchsr.session import import_onnxruntime  # first: it turns onnxruntime's telemetry off

    ort = import_onnxruntime()
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    reader = PatchReader(
        sess.get_inputs()[0].name, int(meta["scale"]), patches, degradation=meta.get("degradation", "bicubic")
    )
    convs = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    quantize_static(
        str(src),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=["Conv"],
        nodes_to_exclude=convs[:1] + convs[-1:],
    )
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for k, v in {**meta, "precision": "int8"}.items():
        e = model.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.save(model, str(dst))


# Models whose int8 build loses more than 0.1 dB on an evaluation set: none is shipped, and
# --precision auto runs them in float (models/README.md, "int8", has the figures).
NOT_QUANTIZED = {"paper"}


def quantize_shipped(manifest: Path, patches: int = 64, only=(), log=print) -> None:
    """Write and register the int8 model of every float model in ``manifest`` but NOT_QUANTIZED
    (the manifest written atomically)."""
    import hashlib

    from train import manifest as manifest_file

    data = manifest_file.read(manifest)
    for entry in data["models"]:
        if entry["name"] in NOT_QUANTIZED:
            entry.pop("int8", None)
            continue
        if only and f"{entry['name']}_x{entry['scale']}" not in only:
            continue
        src = manifest.parent / entry["file"]
        dst = src.with_name(f"{src.stem}_int8.onnx")
        quantize(src, dst, patches)
        entry["int8"] = {"file": dst.name, "sha256": hashlib.sha256(dst.read_bytes()).hexdigest()}
        log(f"wrote {dst}")
    manifest_file.write(manifest, data)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m train.quantize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("src", type=Path, nargs="?")
    ap.add_argument("dst", type=Path, nargs="?")
    ap.add_argument("--patches", type=int, default=64)
    ap.add_argument(
        "--shipped",
        nargs="?",
        const=Path("models/manifest.json"),
        type=Path,
        metavar="MANIFEST",
        help="quantise every model of MANIFEST (default models/manifest.json) and register them",
    )
    ap.add_argument("--only", nargs="+", default=(), metavar="NAME_xS", help="with --shipped: just these")
    a = ap.parse_args(argv)
    if a.shipped:
        quantize_shipped(a.shipped, a.patches, a.only)
        return 0
    if not (a.src and a.dst):
        ap.error("give SRC and DST, or --shipped")
    quantize(a.src, a.dst, a.patches)
    print(f"wrote {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
