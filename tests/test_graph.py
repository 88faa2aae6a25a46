"""Issue 15: every shipped graph is one CoreML partition at a fixed tile shape, checked here on
Linux with onnxruntime's own partition checker plus the CoreML EP rules it does not check; and the
rewrite that made them so (train.graph) keeps outputs bit-identical."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnxruntime.tools import onnx_model_utils
from onnxruntime.tools.mobile_helpers import usability_checker

from batchsr import models
from batchsr.tiling import AUTO_TILE, FIXED_BATCH
from train.graph import GraphError, clean_sub_pixel, is_clean, same_outputs

SHIPPED = models.shipped()


def _at_tile_shape(path) -> onnx.ModelProto:
    """The model with its input fixed as the runtime pins it on CoreML (accelerator.pin_for):
    [FIXED_BATCH, T, T, 1], T = AUTO_TILE + 2 radius."""
    proto = onnx.load(path)
    radius = int({p.key: p.value for p in proto.metadata_props}["receptive_radius"])
    side = AUTO_TILE + 2 * radius
    onnx_model_utils.make_input_shape_fixed(proto.graph, proto.graph.input[0].name, [FIXED_BATCH, side, side, 1])
    onnx_model_utils.fix_output_shapes(proto)
    return onnx.shape_inference.infer_shapes(proto, strict_mode=True)


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: f"{e.name}_x{e.scale}")
def test_a_shipped_graph_is_one_coreml_partition_at_the_tile_shape(entry):
    proto = _at_tile_shape(entry.path)
    for config in ("coreml_supported_mlprogram_ops.md", "coreml_supported_neuralnetwork_ops.md"):
        info = usability_checker.check_coreml_partitions(proto, True, config)
        assert (info.num_partitions, info.num_supported_nodes) == (1, info.num_nodes), (
            config,
            info.unsupported_ops,
            info.nodes_unsupported_due_to_dynamic_input,
            info.ops_with_unsupported_rank,
        )


@pytest.mark.parametrize("entry", SHIPPED, ids=lambda e: f"{e.name}_x{e.scale}")
def test_a_shipped_graph_keeps_the_coreml_rules_the_checker_does_not(entry):
    proto = _at_tile_shape(entry.path)
    g = proto.graph
    constants = {t.name for t in g.initializer}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in (*g.input, *g.output, *g.value_info)}
    assert max(ranks.values()) <= 5
    assert {n.op_type for n in g.node} <= {"Transpose", "Conv", "Relu", "Add", "DepthToSpace", "Tanh"}
    for n in g.node:
        assert all(ranks.get(t, 0) <= 5 for t in (*n.input, *n.output))
        if n.op_type == "Conv":
            assert all(t in constants for t in n.input[1:]), n.name  # constant weights and bias
            assert len(onnx.numpy_helper.to_array(next(t for t in g.initializer if t.name == n.input[1])).shape) == 4
        if n.op_type == "Reshape":
            assert n.input[1] in constants
        if n.op_type == "DepthToSpace":
            attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
            assert attrs["mode"] == b"DCR" and attrs["blocksize"] == entry.scale
    # named dynamic dimensions in the shipped file itself
    shipped = onnx.load(entry.path)
    dims = [d.dim_param or d.dim_value for d in shipped.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "height", "width", 1]


def _tf2onnx_like(scale: int, seed: int = 0) -> onnx.ModelProto:
    """A small graph in tf2onnx's shape: Unsqueeze/Reshape head, convs, and a depth-to-space made
    of a 6-D Reshape, a Transpose and a Reshape (the TensorFlow DCR order), as the shipped models had."""
    rng = np.random.default_rng(seed)
    s2 = scale * scale
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (s2, 4, 3, 3)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Unsqueeze", ["x", "ax"], ["x5"]),  # [N,H,W,1] -> [N,1,H,W,1]
        helper.make_node("Reshape", ["x5", "nchw_shape"], ["x_nchw"], allowzero=0),
        helper.make_node("Conv", ["x_nchw", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c2"], ["c2_nhwc"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["c2_nhwc", "six"], ["r6"]),  # [N,H,W,s,s,1]
        helper.make_node("Transpose", ["r6"], ["t6"], perm=[0, 1, 3, 2, 4, 5]),  # [N,H,s,W,s,1]
        helper.make_node("Reshape", ["t6", "four"], ["y"]),
    ]
    h, w = 8, 6  # a fixed size keeps the test graph's Reshapes constant
    inits = [
        w1,
        w2,
        numpy_helper.from_array(np.array([1], np.int64), "ax"),
        numpy_helper.from_array(np.array([-1, 1, h, w], np.int64), "nchw_shape"),
        numpy_helper.from_array(np.array([-1, h, w, scale, scale, 1], np.int64), "six"),
        numpy_helper.from_array(np.array([-1, h * scale, w * scale, 1], np.int64), "four"),
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, h, w, 1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, h * scale, w * scale, 1])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_rewrite_gives_bit_identical_outputs_with_a_dcr_depth_to_space(scale):
    """The rewrite is checked against the NCHW <-> NHWC and 6-D chain it replaces, not against itself."""
    raw = _tf2onnx_like(scale)
    clean = clean_sub_pixel(raw, scale)
    assert is_clean(clean) and not is_clean(raw)
    assert [n.op_type for n in clean.graph.node] == ["Transpose", "Conv", "Relu", "Conv", "DepthToSpace", "Transpose"]
    assert same_outputs(raw.SerializeToString(), clean.SerializeToString(), shapes=((1, 8, 6, 1), (3, 8, 6, 1)))


def test_the_rewrite_refuses_a_graph_it_does_not_know():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "t",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2, 2, 1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2, 2, 1])],
    )
    with pytest.raises(GraphError):
        clean_sub_pixel(helper.make_model(graph), 2)
