"""Small random ONNX models with batchsr metadata, built with onnx.helper (no TensorFlow).

They let the runtime tests exercise tiling and the engine on models whose
receptive radius is known by construction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def conv_net(
    path: Path,
    scale: int = 3,
    kernels=(5, 3, 3),
    width: int = 8,
    seed: int = 0,
    metadata: dict | None = None,
    skip: bool = True,
) -> Path:
    """NHWC [N,H,W,1] -> [N,H*s,W*s,1]: convs (zero 'same' padding, ReLU between) + depth-to-space.

    Receptive radius = sum((k-1)//2). With ``skip`` the input (repeated s^2
    times) is added before depth-to-space, like the shipped architectures.
    """
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Transpose", ["y"], ["x0"], perm=[0, 3, 1, 2])]
    inits = []
    cin = 1
    for i, k in enumerate(kernels):
        cout = width if i < len(kernels) - 1 else scale * scale
        w = rng.normal(0, 1.0 / np.sqrt(k * k * cin), (cout, cin, k, k)).astype(np.float32)
        b = rng.normal(0, 0.01, cout).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        p = (k - 1) // 2
        nodes.append(helper.make_node("Conv", [f"x{i}", f"w{i}", f"b{i}"], [f"c{i}"], pads=[p, p, p, p]))
        if i < len(kernels) - 1:
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"x{i + 1}"]))
        cin = cout
    last = f"c{len(kernels) - 1}"
    if skip:
        inits.append(numpy_helper.from_array(np.array([1, scale * scale, 1, 1], np.int64), "reps"))
        nodes.append(helper.make_node("Tile", ["x0", "reps"], ["rep"]))
        nodes.append(helper.make_node("Add", [last, "rep"], ["sum"]))
        last = "sum"
    nodes.append(helper.make_node("DepthToSpace", [last], ["d2s"], blocksize=scale, mode="DCR"))
    nodes.append(helper.make_node("Transpose", ["d2s"], ["out"], perm=[0, 2, 3, 1]))
    graph = helper.make_graph(
        nodes,
        "test_net",
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "H", "W", 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", "Hs", "Ws", 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"name": path.stem, "scale": scale, "arch": "test", "receptive_radius": sum((k - 1) // 2 for k in kernels)}
    if metadata is not None:
        meta = {k: v for k, v in {**meta, **metadata}.items() if v is not None}
    for k, v in meta.items():
        e = model.metadata_props.add()
        e.key, e.value = k, str(v)
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path
