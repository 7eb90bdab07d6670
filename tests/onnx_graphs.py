"""Small ONNX graphs with the real AnimeGANv3 models' interface (see ``tests/test_onnx_v3.py``)."""

import onnx
from onnx import helper

from animegan2.onnx_v3 import INPUT_NAME, OUTPUT_NAME


def make_graph(path, multiple=8, input_name=INPUT_NAME, output_name=OUTPUT_NAME, layout="NHWC", batch="N"):
    f32 = onnx.TensorProto.FLOAT
    shape = [batch, "H", "W", 3] if layout == "NHWC" else [batch, 3, "H", "W"]
    scales = helper.make_tensor("scales", f32, [4], [1.0, 1.0, float(multiple), float(multiple)])
    nodes = [
        helper.make_node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2] if layout == "NHWC" else [0, 1, 2, 3]),
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[multiple] * 2, strides=[multiple] * 2),
        helper.make_node("Resize", ["pooled", "", "scales"], ["block"], mode="nearest"),
        helper.make_node("Add", ["nchw", "block"], ["sum"]),
        helper.make_node("Tanh", ["sum"], ["t"]),
        helper.make_node("Transpose", ["t"], [output_name], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "animeganv3_stub",
        [helper.make_tensor_value_info(input_name, f32, shape)],
        [helper.make_tensor_value_info(output_name, f32, [batch, "H", "W", 3])],
        initializer=[scales],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
