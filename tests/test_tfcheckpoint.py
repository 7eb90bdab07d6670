"""The TensorFlow-free checkpoint reader against checkpoints written by TensorFlow itself."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from animegan2.errors import CheckpointError
from animegan2.tfcheckpoint import TFCheckpoint, crc32c, mask_crc
from tests.tf_reference import tf


def _bytewise_crc32c(data: bytes) -> int:
    """The textbook one-byte-at-a-time reflected CRC-32C, bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _copy(prefix, dst):
    """Copy a checkpoint's files (index + data shards) into ``dst``; returns the new prefix."""
    dst.mkdir(exist_ok=True)
    for f in TFCheckpoint(prefix).files():
        shutil.copy(f, dst / f.name)
    return dst / prefix.name


def test_crc32c_standard_vectors():
    # The CRC catalogue check value and RFC 3720 (iSCSI) B.4 vectors.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    assert crc32c(bytes(32)) == 0x8A9136AA
    assert crc32c(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(bytes(range(32))) == 0x46DD794E


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000, 4096 * 64 + 17, 300_001])
def test_crc32c_matches_bytewise_definition(n):
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    expected = _bytewise_crc32c(data)
    assert crc32c(data) == expected
    assert crc32c(data[n // 3 :], crc32c(data[: n // 3])) == expected


def test_mask_crc_is_leveldb_rotate_and_add():
    assert mask_crc(0) == 0xA282EAD8
    assert mask_crc(1 << 15) == 0xA282EAD9  # rotated right by 15 -> 1
    assert mask_crc(1) == (1 << 17) + 0xA282EAD8
    assert mask_crc(0xFFFFFFFF) == (0xFFFFFFFF + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.tf
@pytest.mark.parametrize("which", ["tf_v2_checkpoint", "tf_training_checkpoint", "tf_sharded_checkpoint"])
def test_values_equal_tensorflow_bit_for_bit(request, which):
    ckpt_path = request.getfixturevalue(which)
    ckpt_path = getattr(ckpt_path, "prefix", ckpt_path)
    ckpt = TFCheckpoint(ckpt_path)
    reader = tf.compat.v1.train.load_checkpoint(str(ckpt_path))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    variables = ckpt.variables()
    assert sorted(variables) == sorted(shapes)
    for name, (dtype, shape) in variables.items():
        value, expected = ckpt.read(name), reader.get_tensor(name)
        assert dtype == dtypes[name].as_numpy_dtype and shape == tuple(shapes[name]), name
        assert value.dtype == expected.dtype and value.shape == expected.shape, name
        assert value.tobytes() == np.asarray(expected).tobytes(), name
    ckpt.verify()


def test_published_layout_listing(tf_v2_checkpoint):
    ckpt = TFCheckpoint(tf_v2_checkpoint.directory)
    variables = ckpt.variables()
    assert len(variables) == 77
    assert sum(int(np.prod(s)) for _, s in variables.values()) == 2_143_552
    assert variables["generator/G_MODEL/out_layer/Conv/weights"] == (np.dtype("float32"), (1, 1, 32, 3))
    assert variables["generator/G_MODEL/C/r2/r2/w"] == (np.dtype("float32"), (3, 3, 512, 1))
    assert [f.name for f in ckpt.files()] == ["Hayao-64.ckpt.index", "Hayao-64.ckpt.data-00000-of-00001"]
    assert ckpt.files()[1].stat().st_size == 8_574_208


def test_training_checkpoint_holds_int64_step_and_adam_slots(tf_training_checkpoint):
    ckpt = TFCheckpoint(tf_training_checkpoint)
    assert ckpt.variables()["global_step"] == (np.dtype("int64"), ())
    assert ckpt.read("global_step") == 1
    assert "generator/G_MODEL/A/Conv/weights/Adam_1" in ckpt.variables()


def test_sharded_checkpoint_lists_every_shard(tf_sharded_checkpoint):
    ckpt = TFCheckpoint(tf_sharded_checkpoint)
    assert [f.name for f in ckpt.files()] == [
        "Hayao-64.ckpt.index",
        "Hayao-64.ckpt.data-00000-of-00002",
        "Hayao-64.ckpt.data-00001-of-00002",
    ]
    assert all(f.stat().st_size > 0 for f in ckpt.files())


def test_accepts_directory_prefix_index_and_data_file(tf_v2_checkpoint):
    prefix = tf_v2_checkpoint.prefix
    forms = [
        tf_v2_checkpoint.directory,
        prefix,
        str(prefix) + ".index",
        str(prefix) + ".data-00000-of-00001",
        str(prefix) + ".meta",
        tf_v2_checkpoint.directory / "checkpoint",
    ]
    assert [TFCheckpoint(p).prefix for p in forms] == [prefix] * len(forms)


def test_directory_moved_since_saving_still_resolves(tf_v2_checkpoint, tmp_path):
    prefix = _copy(tf_v2_checkpoint.prefix, tmp_path / "moved")
    (tmp_path / "moved" / "checkpoint").write_text('model_checkpoint_path: "/gone/elsewhere/Hayao-64.ckpt"\n')
    assert TFCheckpoint(tmp_path / "moved").prefix == prefix
    (tmp_path / "moved" / "checkpoint").unlink()  # no state file: the only .index is taken
    assert TFCheckpoint(tmp_path / "moved").prefix == prefix


@pytest.mark.tf
def test_dtypes_strings_and_refusals(tmp_path):
    values = {
        "f16": np.array([[1.5, -2.25]], np.float16),
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "f64": np.array([np.pi, -np.e]),
        "i32": np.array([-(2**31), 2**31 - 1], np.int32),
        "i64": np.array(-(2**40), np.int64),
    }
    prefix = tmp_path / "dtypes"
    names = [*values, "str", "bf16"]
    tensors = [tf.constant(v) for v in values.values()]
    tensors += [tf.constant([["a", ""], ["bc", "d" * 300]]), tf.constant([1.0, 2.0], tf.bfloat16)]
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
    ckpt = TFCheckpoint(prefix)
    for name, expected in values.items():
        got = ckpt.read(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert got.tobytes() == expected.tobytes()
    assert ckpt.variables()["str"] == (np.dtype(object), (2, 2))
    assert ckpt.read("str").tolist() == [[b"a", b""], [b"bc", b"d" * 300]]
    assert ckpt.variables()["bf16"] == (np.dtype(object), (2,))
    with pytest.raises(CheckpointError, match="'bf16' has dtype bfloat16, which this reader cannot decode"):
        ckpt.read("bf16")
    ckpt.verify()  # the string tensor's crc follows TF's own layout


def test_corrupted_data_byte_is_caught_naming_the_tensor(tf_v2_checkpoint, tmp_path):
    prefix = _copy(tf_v2_checkpoint.prefix, tmp_path)
    name = "generator/G_MODEL/C/r3/Conv_1/weights"
    data_file = TFCheckpoint(prefix).files()[1]
    raw = bytearray(data_file.read_bytes())
    offset = raw.find(TFCheckpoint(prefix).read(name).tobytes())
    raw[offset + 1000] ^= 0x01
    data_file.write_bytes(raw)
    ckpt = TFCheckpoint(prefix)
    with pytest.raises(CheckpointError, match=f"crc32c mismatch for tensor '{name}'"):
        ckpt.read(name)
    with pytest.raises(CheckpointError, match=f"crc32c mismatch for tensor '{name}'"):
        ckpt.verify()
    assert ckpt.read("generator/G_MODEL/out_layer/Conv/weights").shape == (1, 1, 32, 3)


def test_truncated_data_shard(tf_v2_checkpoint, tmp_path):
    prefix = _copy(tf_v2_checkpoint.prefix, tmp_path)
    data_file = tmp_path / "Hayao-64.ckpt.data-00000-of-00001"
    data_file.write_bytes(data_file.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001 is truncated: tensor 'generator/G_MODEL/"):
        TFCheckpoint(prefix).verify()


def test_truncated_index(tf_v2_checkpoint, tmp_path):
    prefix = _copy(tf_v2_checkpoint.prefix, tmp_path)
    index = tmp_path / "Hayao-64.ckpt.index"
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        TFCheckpoint(prefix)
    index.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated .20 bytes"):
        TFCheckpoint(prefix)


def test_wrong_magic_number(tf_v2_checkpoint, tmp_path):
    prefix = _copy(tf_v2_checkpoint.prefix, tmp_path)
    index = tmp_path / "Hayao-64.ckpt.index"
    data = bytearray(index.read_bytes())
    data[-1] ^= 0xFF
    index.write_bytes(data)
    with pytest.raises(CheckpointError, match="magic number 0x244775248b80fb57, expected 0xdb4775248b80fb57"):
        TFCheckpoint(prefix)


def test_corrupted_index_block(tf_v2_checkpoint, tmp_path):
    prefix = _copy(tf_v2_checkpoint.prefix, tmp_path)
    index = tmp_path / "Hayao-64.ckpt.index"
    data = bytearray(index.read_bytes())
    data[40] ^= 0x10  # inside the first data block
    index.write_bytes(data)
    with pytest.raises(CheckpointError, match="crc32c mismatch in a data block"):
        TFCheckpoint(prefix)


def test_missing_data_shard(tf_sharded_checkpoint, tmp_path):
    prefix = _copy(tf_sharded_checkpoint, tmp_path)
    (tmp_path / "Hayao-64.ckpt.data-00001-of-00002").unlink()
    with pytest.raises(CheckpointError, match=r"data shard .*data-00001-of-00002 is missing \(the checkpoint has 2\)"):
        TFCheckpoint(prefix)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no TensorFlow checkpoint at"):
        TFCheckpoint(tmp_path / "nothing.ckpt")
    with pytest.raises(CheckpointError, match="not exactly one .index"):
        TFCheckpoint(tmp_path)


def test_unknown_tensor_name(tf_v2_checkpoint):
    with pytest.raises(CheckpointError, match="'nope' is not in the checkpoint"):
        TFCheckpoint(tf_v2_checkpoint.prefix).read("nope")


def test_unreadable_index_is_a_checkpoint_error(tf_v2_checkpoint, monkeypatch):
    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # root reads any file, so simulate a non-root user
    with pytest.raises(CheckpointError, match=r"^cannot read .*Hayao-64\.ckpt\.index: Permission denied$"):
        TFCheckpoint(tf_v2_checkpoint.prefix)
