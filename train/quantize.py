"""Static int8 quantisation of a shipped model, calibrated on training patches.

    python -m train.quantize models/fast_x3.onnx /tmp/fast_x3_int8.onnx [--patches 64]

Calibration data are LR Y patches of BSDS500 train (never the evaluation
sets), made by the shared degrade(). The result keeps the model's
metadata_props (plus ``precision=int8``), so `batchsr eval --model PATH`
and the bench can measure it side by side with the float model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


class PatchReader:
    """onnxruntime CalibrationDataReader over LR Y patches of the training set."""

    def __init__(self, input_name: str, scale: int, count: int, size: int = 64, seed: int = 0):
        from train.data import TRAIN_DIRS, list_images, load_pairs

        pairs = load_pairs(list_images(TRAIN_DIRS[:1])[:40], scale, size)
        rng = np.random.default_rng(seed)
        self._items = []
        for _ in range(count):
            y_lr, _ = pairs[rng.integers(len(pairs))]
            y0, x0 = rng.integers(y_lr.shape[0] - size + 1), rng.integers(y_lr.shape[1] - size + 1)
            self._items.append({input_name: y_lr[None, y0:y0 + size, x0:x0 + size, None].copy()})
        self._it = iter(self._items)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._items)


def quantize(src: Path, dst: Path, patches: int = 64) -> None:
    from batchsr.engine import import_onnxruntime  # first: it turns onnxruntime's telemetry off

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    ort = import_onnxruntime()
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    meta = dict(sess.get_modelmeta().custom_metadata_map)
    reader = PatchReader(sess.get_inputs()[0].name, int(meta["scale"]), patches)
    convs = [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Conv"]
    # Only the hidden convolutions: the last one writes the residual that is added
    # to the input, where 8-bit steps would show directly in the output.
    quantize_static(str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=convs[:1] + convs[-1:])
    model = onnx.load(str(dst))
    del model.metadata_props[:]
    for k, v in {**meta, "precision": "int8", "name": meta.get("name", "") + "-int8"}.items():
        e = model.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.save(model, str(dst))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train.quantize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--patches", type=int, default=64)
    a = ap.parse_args(argv)
    quantize(a.src, a.dst, a.patches)
    print(f"wrote {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
