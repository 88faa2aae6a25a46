"""Rewrite tf2onnx's graph of a sub-pixel model into one every execution provider takes whole.

tf2onnx turns the Keras model's NHWC luma into NCHW with an Unsqueeze and a
dynamic Reshape, and its DepthToSpace layer into a 6-D Reshape, a Transpose
and a Reshape fed by a Shape -> Gather -> Slice -> ... -> Concat chain. The
CoreML execution provider rejects rank > 5 and Reshapes of dynamic shapes, and
onnxruntime keeps shape arithmetic on the CPU, so a tile would cross between
providers twice. :func:`clean_sub_pixel` replaces the head by one Transpose
(NHWC -> NCHW; the luma has one channel) and the tail by an ONNX DepthToSpace
(mode DCR, the order of ``train.archs.DepthToSpace`` and of TensorFlow's
``depth_to_space``) and a Transpose back to NHWC: rank 4 throughout, no shape
arithmetic. The convolutions are untouched, and the result is checked to give
bit-identical outputs (:func:`same_outputs`).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

# Ops that only move data or compute shapes: what the head and tail chains are made of.
_LAYOUT = {"Reshape", "Transpose", "Unsqueeze", "Squeeze", "Identity"}
DIMS_IN = ("batch", "height", "width", 1)
DIMS_OUT = ("batch", "out_height", "out_width", 1)


class GraphError(ValueError):
    """The graph is not the shape of model this rewrite knows."""


def clean_sub_pixel(proto: onnx.ModelProto, scale: int) -> onnx.ModelProto:
    """A copy of ``proto`` (input NHWC [N,H,W,1], output [N,H*s,W*s,1]) with the head and tail
    layout chains replaced as the module says and named dynamic dimensions. Raises GraphError
    for a graph of another shape."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        raise GraphError("expected one input and one output")
    x, y = g.input[0].name, g.output[0].name
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    # Head: from the input through layout ops to the tensor the first computing node reads.
    head = x
    while True:
        users = consumers.get(head, [])
        if len(users) != 1 or users[0].op_type not in _LAYOUT:
            break
        head = users[0].output[0]
    if head == x:
        raise GraphError("no layout chain after the input")
    # Tail: back from the output along the data input of layout ops to the last computing node.
    tail = y
    while tail in producer and producer[tail].op_type in _LAYOUT:
        tail = producer[tail].input[0]
    if tail == y or tail not in producer:
        raise GraphError("no layout chain before the output")

    s = int(scale)
    head_node = helper.make_node("Transpose", [x], [head], perm=[0, 3, 1, 2], name="nhwc_to_nchw")
    d2s = helper.make_node("DepthToSpace", [tail], ["sub_pixel_nchw"], blocksize=s, mode="DCR", name="depth_to_space")
    tail_node = helper.make_node("Transpose", ["sub_pixel_nchw"], [y], perm=[0, 2, 3, 1], name="nchw_to_nhwc")

    # Keep what the computing part needs (between head and tail), in graph order.
    needed, stack = set(), [tail]
    while stack:
        t = stack.pop()
        if t == head or t in needed or t not in producer:
            continue
        needed.add(t)
        stack.extend(producer[t].input)
    core = [n for n in g.node if any(o in needed for o in n.output)]
    del g.node[:]
    g.node.extend([head_node, *core, d2s, tail_node])
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]
    _name_dims(g.input[0], DIMS_IN)
    _name_dims(g.output[0], DIMS_OUT)
    onnx.checker.check_model(model)
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def _name_dims(value, dims) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d


def same_outputs(a: bytes, b: bytes, shapes=((1, 37, 53, 1), (3, 16, 24, 1), (1, 64, 64, 1)), seed: int = 0) -> bool:
    """Whether two ONNX models give bit-identical outputs on the CPU for random luma inputs."""
    from batchsr.session import import_onnxruntime

    ort = import_onnxruntime()
    sa, sb = (ort.InferenceSession(m, providers=["CPUExecutionProvider"]) for m in (a, b))
    rng = np.random.default_rng(seed)
    for shape in shapes:
        x = rng.uniform(16 / 255, 235 / 255, shape).astype(np.float32)
        ya = sa.run(None, {sa.get_inputs()[0].name: x})[0]
        yb = sb.run(None, {sb.get_inputs()[0].name: x})[0]
        if ya.shape != yb.shape or ya.tobytes() != yb.tobytes():
            return False
    return True


def is_clean(proto: onnx.ModelProto) -> bool:
    """Whether ``proto`` already has the rewritten shape (one DepthToSpace, nothing above rank 4)."""
    ops = [n.op_type for n in proto.graph.node]
    return ops.count("DepthToSpace") == 1 and not {"Shape", "Gather", "Concat", "Unsqueeze"} & set(ops)


def rewrite_shipped(manifest_path, log=print) -> int:
    """Rewrite every model of a manifest in place (once), each checked bit-identical on the CPU;
    the manifest's checksums follow. Returns how many were rewritten."""
    import hashlib
    from pathlib import Path

    from train import manifest as manifest_file

    manifest_path = Path(manifest_path)
    data = manifest_file.read(manifest_path)
    done = 0
    for entry in data["models"]:
        path = manifest_path.parent / entry["file"]
        raw = path.read_bytes()
        proto = onnx.load_from_string(raw)
        if is_clean(proto):
            continue
        new = clean_sub_pixel(proto, int(entry["scale"])).SerializeToString()
        if not same_outputs(raw, new):
            raise GraphError(f"{path}: the rewritten graph's outputs differ")
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(new)
        tmp.replace(path)
        entry["sha256"] = hashlib.sha256(new).hexdigest()
        log(
            f"{path}: {len(proto.graph.node)} -> {len(onnx.load_from_string(new).graph.node)} nodes, "
            "outputs bit-identical"
        )
        done += 1
    manifest_file.write(manifest_path, data)
    return done


if __name__ == "__main__":
    import sys

    rewrite_shipped(sys.argv[1] if len(sys.argv) > 1 else "models/manifest.json")
