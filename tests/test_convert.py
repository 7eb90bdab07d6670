"""TF1 checkpoint -> PyTorch conversion: parity with TensorFlow's own output, and bad input."""

import hashlib
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors import safe_open

from animegan2.cli import main
from animegan2.convert import ARCHITECTURES, convert_checkpoint, describe, detect_architecture, save_weights
from animegan2.errors import CheckpointError, ConfigError
from animegan2.model import Generator
from animegan2.tfcheckpoint import TFCheckpoint
from animegan2.zoo import load_generator
from tests.conftest import REPO
from tests.tf_reference import SIZES, tf

G = "generator/G_MODEL/"


@pytest.fixture(scope="module")
def converted(tf_v2_checkpoint):
    return convert_checkpoint(tf_v2_checkpoint.directory)


@pytest.fixture(scope="module")
def tf_values(tf_v2_checkpoint):
    """Every tensor of the reference checkpoint as TensorFlow reads it."""
    reader = tf.compat.v1.train.load_checkpoint(str(tf_v2_checkpoint.prefix))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _save(directory, tensors):
    """Write ``tensors`` (name -> array) as a TF checkpoint with TF's SaveV2; returns the prefix."""
    directory.mkdir()
    prefix = directory / "model.ckpt"
    names = list(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[n]) for n in names],
    )
    return prefix


def _run_tf_layout(model, x_nhwc):
    with torch.no_grad():
        y = model(torch.from_numpy(x_nhwc).permute(0, 3, 1, 2))
    return y.permute(0, 2, 3, 1).numpy()


def test_mapping_covers_the_published_layout_exactly():
    mapping = ARCHITECTURES["AnimeGANv2"].mapping()
    assert list(mapping) == list(Generator().state_dict())
    assert len({tf_name for tf_name, _ in mapping.values()}) == 77
    assert mapping["block_c.5.1.weight"][0] == "C/Conv_1/weights"
    assert mapping["block_c.4.layers.1.2.bias"][0] == "C/r4/1/beta"
    assert mapping["block_e.2.2.weight"][0] == "E/LayerNorm_2/gamma"


def test_kernels_are_transposed_to_pytorch_layout(converted, tf_values):
    state, _ = converted
    conv = tf_values[G + "A/Conv_1/weights"]  # [kh, kw, in, out]
    assert state["block_a.1.1.weight"].shape == (64, 32, 3, 3)
    assert state["block_a.1.1.weight"][5, 7, 2, 1].item() == conv[2, 1, 7, 5]
    dw = tf_values[G + "C/r2/r2/w"]  # [kh, kw, C, 1]
    assert state["block_c.2.layers.1.1.weight"].shape == (512, 1, 3, 3)
    assert state["block_c.2.layers.1.1.weight"][300, 0, 0, 2].item() == dw[0, 2, 300, 0]
    assert torch.equal(state["block_c.3.layers.3.bias"], torch.from_numpy(tf_values[G + "C/r3/2/beta"]))
    assert all(v.dtype == torch.float32 and v.is_contiguous() for v in state.values())


def test_pt_and_safetensors_match_tensorflow_output(converted, tf_v2_checkpoint, tmp_path):
    state, metadata = converted
    pt = save_weights(state, metadata, tmp_path / "hayao.pt")
    st = save_weights(state, metadata, tmp_path / "hayao.safetensors")
    from_pt = torch.load(pt, weights_only=True)
    with safe_open(str(st), framework="pt") as f:
        from_st = {k: f.get_tensor(k) for k in f.keys()}
    assert list(from_pt) == list(state) and sorted(from_st) == sorted(state)
    assert all(torch.equal(from_pt[k], state[k]) and torch.equal(from_st[k], state[k]) for k in state)

    model = Generator(upsample="tf", norm_eps=1e-12).eval()
    model.load_state_dict(from_st, strict=True)
    for size in SIZES:
        x, expected = tf_v2_checkpoint.outputs[size]
        got = _run_tf_layout(model, x)
        assert got.shape == expected.shape == (1, size[0] // 4 * 4, size[1] // 4 * 4, 3)
        assert np.abs(got - expected).max() <= 2e-5, size
    # The reference is sensitive to what matters: the upsampling semantics and the norm's epsilon.
    x, expected = tf_v2_checkpoint.outputs[(130, 97)]
    model.upsample = "half_pixel"
    assert np.abs(_run_tf_layout(model, x) - expected).max() > 0.1
    model.upsample, model.norm_eps = "tf", 1e-5
    assert np.abs(_run_tf_layout(model, x) - expected).max() > 0.01


def test_safetensors_metadata_drives_the_loader(converted, tf_v2_checkpoint, tmp_path):
    _, metadata = converted
    st = save_weights(*converted, tmp_path / "hayao.safetensors")
    with safe_open(str(st), framework="pt") as f:
        stored = f.metadata()
    assert stored == metadata
    assert (stored["architecture"], stored["upsample"], stored["norm_eps"]) == ("animeganv2", "tf", "1e-12")
    assert stored["source"] == "Hayao-64.ckpt"
    assert stored["converter"].startswith("animegan2.convert ")
    digests = json.loads(stored["source_sha256"])
    files = TFCheckpoint(tf_v2_checkpoint.directory).files()
    assert digests == {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    model = load_generator(st)
    assert (model.upsample, model.norm_eps) == ("tf", 1e-12)


def test_training_checkpoint_takes_the_generator_only(tf_training_checkpoint):
    state, _ = convert_checkpoint(tf_training_checkpoint)
    reader = tf.compat.v1.train.load_checkpoint(str(tf_training_checkpoint))
    assert len(state) == 77
    expected = reader.get_tensor(G + "C/r1/Conv_1/weights").transpose(3, 2, 0, 1)
    assert np.array_equal(state["block_c.1.layers.2.weight"].numpy(), expected)
    adam = reader.get_tensor(G + "C/r1/Conv_1/weights/Adam").transpose(3, 2, 0, 1)
    assert not np.array_equal(adam, expected)


def test_sharded_checkpoint_converts_identically(converted, tf_sharded_checkpoint):
    state, _ = convert_checkpoint(tf_sharded_checkpoint)
    assert all(torch.equal(state[k], v) for k, v in converted[0].items())


def test_float16_and_float64_checkpoints_become_float32(tf_values, tmp_path):
    tensors = dict(tf_values)
    tensors[G + "A/LayerNorm/gamma"] = tensors[G + "A/LayerNorm/gamma"].astype(np.float16)
    tensors[G + "out_layer/Conv/weights"] = tensors[G + "out_layer/Conv/weights"].astype(np.float64)
    state, _ = convert_checkpoint(_save(tmp_path / "mixed", tensors))
    assert state["block_a.0.2.weight"].dtype == state["out_layer.0.weight"].dtype == torch.float32
    assert torch.equal(state["block_a.0.2.weight"], torch.from_numpy(tensors[G + "A/LayerNorm/gamma"].astype(np.float32)))


def _edit(tf_values, drop=(), **changes):
    tensors = {k: v for k, v in tf_values.items() if k not in drop}
    tensors.update({G + k.replace("__", "/"): v for k, v in changes.items()})
    return tensors


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: _edit(t, drop=[G + "C/r3/1/gamma"]),
            "is not a complete AnimeGANv2 generator: missing generator/G_MODEL/C/r3/1/gamma",
        ),
        (
            lambda t: _edit(t, C__r5__Conv__weights=np.zeros((1, 1, 256, 512), np.float32)),
            "has variables that AnimeGANv2 does not: generator/G_MODEL/C/r5/Conv/weights",
        ),
        (
            lambda t: _edit(t, B__Conv_1__weights=np.zeros((3, 3, 128, 64), np.float32)),
            r"tensor generator/G_MODEL/B/Conv_1/weights has shape \[3, 3, 128, 64\], but AnimeGANv2 needs "
            r"\[3, 3, 128, 128\] \(PyTorch block_b.1.1.weight \[128, 128, 3, 3\]\)",
        ),
        (
            lambda t: _edit(t, D__LayerNorm__beta=np.zeros(128, np.int32)),
            "tensor generator/G_MODEL/D/LayerNorm/beta has dtype int32; a float tensor was expected",
        ),
        (
            lambda t: {"discriminator/conv_0/weights": np.zeros((3, 3, 3, 32), np.float32)},
            "not an AnimeGAN generator checkpoint: no variable under generator/G_MODEL/ "
            r"\(found 1: discriminator/conv_0/weights, ...\)",
        ),
        (
            lambda t: {G + "Encoder/Conv/weights": np.zeros((3, 3, 3, 64), np.float32)},
            r"generator/G_MODEL/ holds 1 variables \(Encoder/Conv/weights, ...\) of no known network; known: "
            r"AnimeGANv2 \(has generator/G_MODEL/C/r1/r1/w\), AnimeGAN v1 \(has generator/G_MODEL/b1/SeparableConv2d/",
        ),
    ],
    ids=["missing", "extra", "shape", "dtype", "discriminator-only", "other-network"],
)
def test_bad_checkpoints_name_the_problem_and_write_nothing(tf_values, tmp_path, capsys, edit, message):
    prefix = _save(tmp_path / "bad", edit(tf_values))
    with pytest.raises(CheckpointError, match=message):
        convert_checkpoint(prefix)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(prefix), "-o", str(out / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("animegan2: error: ")
    assert list(out.iterdir()) == []


def test_detect_architecture():
    assert detect_architecture([G + "C/r1/r1/w", G + "A/Conv/weights"]) == "AnimeGANv2"
    with pytest.raises(CheckpointError, match="no variables at all"):
        detect_architecture([])


@pytest.mark.parametrize("damage", ["truncated-index", "missing-shard", "wrong-magic"])
def test_cli_on_a_broken_checkpoint_prints_one_line(tf_v2_checkpoint, tmp_path, capsys, damage):
    directory = tmp_path / "ckpt"
    directory.mkdir()
    for f in TFCheckpoint(tf_v2_checkpoint.directory).files():
        (directory / f.name).write_bytes(f.read_bytes())
    index = directory / "Hayao-64.ckpt.index"
    if damage == "truncated-index":
        index.write_bytes(index.read_bytes()[:100])
    elif damage == "missing-shard":
        (directory / "Hayao-64.ckpt.data-00000-of-00001").unlink()
    else:
        index.write_bytes(index.read_bytes()[:-8] + b"\0" * 8)
    expected = {"truncated-index": "truncated", "missing-shard": "is missing", "wrong-magic": "magic number"}[damage]
    out = tmp_path / "w.pt"
    assert main(["convert", str(index), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err
    assert not out.exists()


def test_output_in_missing_directory_or_with_unknown_extension(converted, tmp_path, capsys):
    with pytest.raises(ConfigError, match="output directory .*missing does not exist"):
        save_weights(*converted, tmp_path / "missing" / "w.pt")
    with pytest.raises(ConfigError, match=r"must end in \.pt .* or \.safetensors"):
        save_weights(*converted, tmp_path / "w.bin")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing(converted, tmp_path):
    (tmp_path / "w.safetensors").mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(ConfigError, match="cannot write"):
        save_weights(*converted, tmp_path / "w.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["w.safetensors"]


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_unwritable_output_folder_is_one_line(tf_v2_checkpoint, suffix, capsys):
    # /proc takes no new files, even from root; torch.save and safetensors report it in their own types
    assert main(["convert", str(tf_v2_checkpoint.directory), "-o", f"/proc/w{suffix}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"animegan2: error: cannot write /proc/w{suffix}: ") and err.count("\n") == 1
    assert "writable" in err


def test_written_files_get_the_usual_permissions(converted, tmp_path):
    old = os.umask(0o022)
    try:
        for name in ("w.pt", "w.safetensors"):
            assert stat.S_IMODE(save_weights(*converted, tmp_path / name).stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_cli_converts_and_reports(tf_v2_checkpoint, converted, tmp_path, capsys):
    out = tmp_path / "hayao.pt"
    assert main(["convert", str(tf_v2_checkpoint.directory), "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {out} (animeganv2, 77 tensors, upsample=tf, norm_eps=1e-12)\n"
    loaded = torch.load(out, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in converted[0].items())
    assert main(["convert", str(tf_v2_checkpoint.directory), "-o", str(tmp_path / "q.pt"), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["convert", str(tf_v2_checkpoint.directory)]) == 1
    assert "needs an output file" in capsys.readouterr().err


def test_list_shows_tensors_and_their_pytorch_keys(tf_training_checkpoint):
    lines = describe(tf_training_checkpoint).splitlines()
    assert len(lines) == 241
    assert lines[-1] == "240 tensors, 6,488,547 values, 1 data shard(s); network: AnimeGANv2"
    by_name = {line.split()[0]: line.split() for line in lines[:-1]}
    assert by_name[G + "C/r1/r1/w"] == [G + "C/r1/r1/w", "float32", "[3,", "3,", "256,", "1]", "->", "block_c.1.layers.1.1.weight"]
    assert by_name[G + "C/r1/r1/w/Adam"][-1] == "1]"
    assert by_name["global_step"] == ["global_step", "int64", "[]"]


def test_convert_weights_script_lists(tf_v2_checkpoint):
    result = subprocess.run(
        [sys.executable, str(REPO / "convert" / "convert_weights.py"), str(tf_v2_checkpoint.directory), "--list"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout == describe(tf_v2_checkpoint.directory) + "\n"
    assert result.stdout.splitlines()[-1] == "77 tensors, 2,143,552 values, 1 data shard(s); network: AnimeGANv2"
