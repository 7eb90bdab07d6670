"""AnimeGAN v1 checkpoints: detection, the 129-tensor mapping, parity with TensorFlow's own
output, and the zoo/CLI paths. Conversion runs without TensorFlow; TF only builds the
reference checkpoint (session fixture ``tf_v1_checkpoint``)."""

import numpy as np
import pytest
import torch
from torch import nn

from animegan2 import cli, zoo
from animegan2.convert import ARCHITECTURES, convert_checkpoint, detect_architecture, save_weights
from animegan2.errors import CheckpointError
from animegan2.model_v1 import GeneratorV1
from animegan2.tfcheckpoint import TFCheckpoint
from tests.manifests import entry
from tests.tf_reference import tf
from tests.tf_reference_v1 import SIZES

pytestmark = pytest.mark.usefixtures("fast_retries")

G = "generator/G_MODEL/"
MAX_ABS, MEAN_ABS = 2e-4, 2e-5  # TF's own float32 rounding is larger in this deeper network


@pytest.fixture(scope="module")
def converted(tf_v1_checkpoint):
    return convert_checkpoint(tf_v1_checkpoint.directory)


def model_from(state) -> GeneratorV1:
    model = GeneratorV1().eval()
    model.load_state_dict(state, strict=True)
    return model


def errors(model, tf_v1_checkpoint, sizes=SIZES) -> list[tuple[float, float]]:
    """(max abs, mean abs) difference from TensorFlow's output at each of ``sizes``."""
    result = []
    for size in sizes:
        x, expected = tf_v1_checkpoint.outputs[size]
        with torch.no_grad():
            got = model(torch.from_numpy(x).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
        assert got.shape == expected.shape == (1, size[0] // 4 * 4, size[1] // 4 * 4, 3)
        diff = np.abs(got - expected)
        result.append((float(diff.max()), float(diff.mean())))
    return result


def test_mapping_follows_the_scopes_creation_order():
    mapping = ARCHITECTURES["AnimeGAN v1"].mapping()
    assert list(mapping) == list(GeneratorV1().state_dict())
    assert len({name for name, _ in mapping.values()}) == 129
    names = {key: name for key, (name, _) in mapping.items()}
    assert names["b1.2.strided.1.weight"] == "b1/SeparableConv2d/depthwise_weights"  # left operand of the sum
    assert names["b1.2.resized.conv.2.weight"] == "b1/SeparableConv2d_1/pointwise_weights"
    assert names["b2.1.3.weight"] == "b2/SeparableConv2d/InstanceNorm/gamma"
    assert names["b2.2.strided.1.weight"] == "b2/SeparableConv2d_1/depthwise_weights"
    assert names["b2.2.resized.conv.3.bias"] == "b2/SeparableConv2d_2/InstanceNorm/beta"
    assert names["m.4.layers.2.weight"] == "m/r4/r4/w"
    assert names["m.4.layers.5.weight"] == "m/r4/Conv_1/weights"
    assert names["m.9.2.weight"] == "m/InstanceNorm_1/gamma"
    assert names["u1.2.1.weight"] == "u1/Conv_1/weights"
    assert names["out_layer.0.weight"] == "Conv/weights"


def test_detects_v1_and_says_so(tf_v1_checkpoint, capsys):
    assert detect_architecture(TFCheckpoint(tf_v1_checkpoint.directory).variables()) == "AnimeGAN v1"
    assert cli.main(["convert", str(tf_v1_checkpoint.directory), "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("network: AnimeGAN v1")


def test_neither_v1_nor_v2_is_refused_naming_both(tmp_path):
    with pytest.raises(CheckpointError, match=r"of no known network; known: AnimeGANv2 \(has .*\), AnimeGAN v1 \(has "):
        detect_architecture([G + "b1/Conv/weights", G + "Conv/weights"])


def test_matches_tensorflow_at_every_size(converted, tf_v1_checkpoint):
    state, metadata = converted
    assert (metadata["architecture"], metadata["upsample"], metadata["source"]) == ("animeganv1", "tf", "Hayao-60.ckpt")
    assert len(state) == 129 and sum(v.numel() for v in state.values()) == 3_956_096
    for max_abs, mean_abs in errors(model_from(state), tf_v1_checkpoint):
        assert max_abs <= MAX_ABS and mean_abs <= MEAN_ABS, (max_abs, mean_abs)


def test_a_wrong_separable_epsilon_fails_parity(converted, tf_v1_checkpoint):
    model = model_from(converted[0])
    for norm in model.modules():
        if isinstance(norm, nn.InstanceNorm2d) and norm.eps == 1e-6:
            norm.eps = 1e-5
    assert errors(model, tf_v1_checkpoint, SIZES[:1])[0][0] > 10 * MAX_ABS


@pytest.mark.parametrize("block", ["b1", "b2"])
def test_swapped_downsampling_branches_fail_parity(converted, tf_v1_checkpoint, block):
    state = dict(converted[0])
    for part in ("1.weight", "2.weight", "3.weight", "3.bias"):
        a, b = f"{block}.2.strided.{part}", f"{block}.2.resized.conv.{part}"
        state[a], state[b] = state[b], state[a]
    assert errors(model_from(state), tf_v1_checkpoint, SIZES[:1])[0][0] > 10 * MAX_ABS


def test_missing_tensor_names_the_network(tf_v1_checkpoint, tmp_path):
    reader = tf.compat.v1.train.load_checkpoint(str(tf_v1_checkpoint.prefix))
    names = [n for n in reader.get_variable_to_shape_map() if n != G + "m/r8/2/gamma"]
    prefix = tmp_path / "partial.ckpt"
    tf.raw_ops.SaveV2(
        prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
        tensors=[tf.constant(reader.get_tensor(n)) for n in names],
    )  # fmt: skip
    with pytest.raises(CheckpointError, match="not a complete AnimeGAN v1 generator: missing generator/G_MODEL/m/r8/2/gamma"):
        convert_checkpoint(prefix)


def test_saved_weights_and_checkpoints_load_as_v1(converted, tf_v1_checkpoint, tmp_path):
    st = save_weights(*converted, tmp_path / "v1.safetensors")
    for source in (st, tf_v1_checkpoint.directory):
        model = zoo.load_generator(source)
        assert isinstance(model, GeneratorV1)
        assert errors(model, tf_v1_checkpoint, SIZES[:1])[0][0] <= MAX_ABS
    assert cli.main(["convert", str(tf_v1_checkpoint.prefix), "-o", str(tmp_path / "v1.pt"), "-q"]) == 0
    assert isinstance(zoo.load_generator(tmp_path / "v1.pt"), GeneratorV1)


def test_zoo_entry_downloads_and_converts_a_v1_checkpoint(tf_v1_checkpoint, server, manifest):
    files = [tf_v1_checkpoint.directory / f"Hayao-60.ckpt{ext}" for ext in (".index", ".data-00000-of-00001")]
    spec = entry([], architecture="animeganv1", format="tf1-checkpoint")
    del spec["upsample"], spec["norm_eps"]
    spec["files"] = [{"name": f.name, "urls": [server.add(f"/{f.name}", f.read_bytes())]} for f in files]
    manifest(v1stub=spec)
    model = zoo.load_generator("v1stub", progress=False)
    assert isinstance(model, GeneratorV1)
    assert errors(model, tf_v1_checkpoint, SIZES[1:2])[0][0] <= MAX_ABS
