"""A reader of TensorFlow 1 checkpoints (TensorBundle V2) that needs no TensorFlow.

A checkpoint ``<prefix>`` is an ``<prefix>.index`` file -- an SSTable in the LevelDB table
format whose empty key maps to a ``BundleHeaderProto`` and every other key (a tensor
name) to a ``BundleEntryProto`` -- plus data shards ``<prefix>.data-SSSSS-of-NNNNN``
holding raw little-endian tensor bytes. Every tensor carries a masked crc32c
(Castagnoli) of its bytes, checked on every read.

>>> ckpt = TFCheckpoint("checkpoint/generator_Hayao_weight")     # doctest: +SKIP
>>> ckpt.variables()["generator/G_MODEL/out_layer/Conv/weights"]  # doctest: +SKIP
(dtype('float32'), (1, 1, 32, 3))
>>> ckpt.read("generator/G_MODEL/out_layer/Conv/weights").shape  # doctest: +SKIP
(1, 1, 32, 3)
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import CheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type byte + masked crc32c
MASK_DELTA = 0xA282EAD8

# tensorflow/core/framework/types.proto values of the dtypes we can read
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    19: np.dtype("<f2"),  # DT_HALF
}
DT_STRING = 7
DTYPE_NAMES = {8: "complex64", 14: "bfloat16", 18: "complex128", 20: "resource", 21: "variant"}


# --- crc32c ---------------------------------------------------------------------------

_POLY = 0x82F63B78  # Castagnoli, reflected


@lru_cache(maxsize=None)
def _byte_table() -> np.ndarray:
    crc = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        crc = np.where(crc & 1, (crc >> 1) ^ np.uint32(_POLY), crc >> 1).astype(np.uint32)
    return crc


def _apply(op: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Apply a linear map of GF(2)^32, given as 4 byte-indexed tables, to uint32 values."""
    return op[0][x & 0xFF] ^ op[1][(x >> 8) & 0xFF] ^ op[2][(x >> 16) & 0xFF] ^ op[3][x >> 24]


def _tables_from_columns(columns: np.ndarray) -> np.ndarray:
    """The 4 byte tables of the linear map whose image of bit ``i`` is ``columns[i]``."""
    values = np.arange(256, dtype=np.uint32)
    op = np.zeros((4, 256), dtype=np.uint32)
    for i in range(32):
        op[i // 8][(values >> (i % 8)) & 1 == 1] ^= columns[i]
    return op


_BASIS = np.uint32(1) << np.arange(32, dtype=np.uint32)  # the register values with one bit set


@lru_cache(maxsize=None)
def _zeros_operator(n: int) -> np.ndarray:
    """Tables of the map "run the raw crc register over ``n`` zero bytes" (n a power of 2)."""
    if n == 1:
        return _tables_from_columns(_byte_table()[_BASIS & 0xFF] ^ (_BASIS >> 8))
    half = _zeros_operator(n // 2)
    return _tables_from_columns(_apply(half, _apply(half, _BASIS)))


def _shift(register: np.ndarray | int, nbytes: int) -> np.ndarray:
    """The register after ``nbytes`` zero bytes (any ``nbytes`` >= 0)."""
    out = np.asarray(register, dtype=np.uint32)
    bit = 0
    while nbytes >> bit:
        if (nbytes >> bit) & 1:
            out = _apply(_zeros_operator(1 << bit), out)
        bit += 1
    return out


@lru_cache(maxsize=64)
def _zeros_operator_any(n: int) -> np.ndarray:
    """Tables of "run the raw crc register over ``n`` zero bytes" for any ``n``."""
    return _tables_from_columns(_shift(_BASIS, n))


def _raw_crc_lanes(lanes: np.ndarray) -> np.ndarray:
    """Raw crc (register starting at 0, no final xor) of each row of a uint8 matrix, in parallel."""
    table = _byte_table()
    columns = np.ascontiguousarray(lanes.T)
    reg = np.zeros(lanes.shape[0], dtype=np.uint32)
    for col in columns:
        reg = table[(reg ^ col) & 0xFF] ^ (reg >> 8)
    return reg


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """The CRC-32C (Castagnoli) of ``data``, continuing from ``crc``; pure numpy.

    Long inputs are cut into many equal lanes whose crcs are computed side by side and
    then folded together with precomputed "append zero bytes" operators (crc is linear):
    about 40 ms for an 8.5 MB checkpoint, where a byte-at-a-time loop takes seconds.

    >>> hex(crc32c(b"123456789"))
    '0xe3069283'
    >>> crc32c(b"56789", crc32c(b"1234")) == crc32c(b"123456789")
    True
    """
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1).view(np.uint8)
    n = buf.size
    lanes = 1 << min(12, (n // 64).bit_length() - 1) if n >= 64 else 0
    length = n // lanes if lanes else 0
    body = lanes * length
    # The initial register (crc ^ 0xFFFFFFFF) contributes linearly: shift it past the body.
    reg = int(_shift(np.uint32(crc ^ 0xFFFFFFFF), body))
    if body:
        parts = _raw_crc_lanes(buf[:body].reshape(lanes, length))
        span = length
        while parts.size > 1:
            parts = _apply(_zeros_operator_any(span), parts[0::2]) ^ parts[1::2]
            span *= 2
        reg ^= int(parts[0])
    table = _byte_table()
    for byte in buf[body:].tobytes():
        reg = int(table[(reg ^ byte) & 0xFF]) ^ (reg >> 8)
    return reg ^ 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """LevelDB's crc masking, as stored in checkpoints: rotate right by 15, add a constant.

    >>> hex(mask_crc(0))
    '0xa282ead8'
    """
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + MASK_DELTA) & 0xFFFFFFFF


# --- protobuf wire format and the LevelDB table -----------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, next position)."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a serialized protobuf message; length-delimited
    values are bytes, all others ints."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if pos + width > len(buf):
                raise ValueError("truncated fixed-width field")
            value = int.from_bytes(buf[pos : pos + width], "little")
            pos += width
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise ValueError("truncated length-delimited field")
            value = bytes(buf[pos : pos + length])
            pos += length
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, value


@dataclass(frozen=True)
class _Entry:
    """A decoded ``BundleEntryProto``."""

    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc: int | None
    sliced: bool


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, value in _proto_fields(buf):
        if number == 2:  # TensorShapeProto.dim
            size = next((v for n, v in _proto_fields(value) if n == 1), 0)
            dims.append(size - (1 << 64) if size >= 1 << 63 else size)
        elif number == 3 and value:
            raise ValueError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(buf: bytes) -> _Entry:
    fields = {"dtype": 0, "shape": (), "shard_id": 0, "offset": 0, "size": 0, "masked_crc": None, "sliced": False}
    for number, value in _proto_fields(buf):
        if number == 1:
            fields["dtype"] = value
        elif number == 2:
            fields["shape"] = _parse_shape(value)
        elif number in (3, 4, 5):
            fields[{3: "shard_id", 4: "offset", 5: "size"}[number]] = value
        elif number == 6:
            fields["masked_crc"] = value
        elif number == 7:
            fields["sliced"] = True
    return _Entry(**fields)


def _block(data: bytes, handle: bytes, what: str) -> bytes:
    """The contents of the block a ``BlockHandle`` points at, its trailer's crc checked."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    end = offset + size + BLOCK_TRAILER_SIZE
    if end > len(data) - FOOTER_SIZE:
        raise CheckpointError(f"{what} ends at byte {end}, past the end of the file's data: the file is truncated")
    contents = data[offset : offset + size]
    kind = data[offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    if mask_crc(crc32c(data[offset : offset + size + 1])) != stored:
        raise CheckpointError(f"crc32c mismatch in {what}: the file is corrupt")
    if kind != 0:
        raise CheckpointError(f"{what} is compressed (type {kind}); only uncompressed tables are supported")
    return contents


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) pairs of a table block: prefix-compressed keys, restart array at the end."""
    if len(block) < 4:
        raise ValueError("block shorter than its restart count")
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise ValueError("restart array larger than the block")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > limit:
            raise ValueError("entry overruns the block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _read_table(path: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable file, in key order."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) < FOOTER_SIZE:
        raise CheckpointError(
            f"{path} is truncated ({len(data)} bytes, less than the {FOOTER_SIZE}-byte table footer)"
        )
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != TABLE_MAGIC:
        raise CheckpointError(
            f"{path} is not a TensorFlow checkpoint index (magic number {magic:#018x}, expected "
            f"{TABLE_MAGIC:#018x}): the file is truncated or of another format"
        )
    try:
        footer = data[len(data) - FOOTER_SIZE :]
        _, pos = _varint(footer, 0)  # metaindex offset
        _, pos = _varint(footer, pos)  # metaindex size
        index_start = pos
        _, pos = _varint(footer, pos)
        _, pos = _varint(footer, pos)
        index = _block(data, footer[index_start:pos], f"the index block of {path}")
        items = []
        for _, handle in _block_entries(index):
            block = _block(data, handle, f"a data block of {path}")
            items.extend(_block_entries(block))
    except ValueError as exc:
        raise CheckpointError(f"{path} is corrupt: {exc}") from exc
    return items


def _string_lengths(buf: bytes, entry: _Entry) -> tuple[list[int], int]:
    """A string tensor's element lengths (varints at the start of its bytes) and where they end."""
    lengths, pos = [], 0
    for _ in range(int(np.prod(entry.shape, dtype=np.int64))):
        length, pos = _varint(buf, pos)
        lengths.append(length)
    return lengths, pos


def _string_tensor_crc(buf: bytes, entry: _Entry) -> int:
    """TF's crc of a string tensor: each length as a little-endian uint32 (uint64 if larger),
    then the stored bytes after the varints (the 4-byte length checksum and the strings)."""
    try:
        lengths, pos = _string_lengths(buf, entry)
    except ValueError:
        return -1
    packed = b"".join(n.to_bytes(4 if n <= 0xFFFFFFFF else 8, "little") for n in lengths)
    return crc32c(buf[pos:], crc32c(packed))


def _string_tensor_values(buf: bytes, entry: _Entry) -> np.ndarray:
    lengths, pos = _string_lengths(buf, entry)
    pos += 4  # the masked crc of the lengths, already covered by the tensor's crc
    out = np.empty(len(lengths), dtype=object)
    for i, length in enumerate(lengths):
        out[i] = bytes(buf[pos : pos + length])
        pos += length
    return out.reshape(entry.shape)


# --- the checkpoint -------------------------------------------------------------------


def _checkpoint_state_prefix(directory: Path) -> Path:
    """The prefix that a checkpoint directory's ``checkpoint`` text file names as the latest."""
    state = directory / "checkpoint"
    if not state.is_file():
        indexes = sorted(directory.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        found = ", ".join(p.name for p in indexes) or "none"
        raise CheckpointError(
            f"{directory} has no 'checkpoint' file and not exactly one .index file (found: {found}); "
            "give the checkpoint prefix or its .index file"
        )
    match = re.search(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', state.read_text("utf-8"), re.M)
    if not match:
        raise CheckpointError(f"{state} names no model_checkpoint_path; give the checkpoint prefix instead")
    named = Path(codecs.escape_decode(match.group(1).encode("utf-8"))[0].decode("utf-8"))
    prefix = named if named.is_absolute() else directory / named
    if not Path(f"{prefix}.index").is_file() and Path(f"{directory / named.name}.index").is_file():
        prefix = directory / named.name  # the directory was moved since it was written
    return prefix


def resolve_prefix(path: str | Path) -> Path:
    """The checkpoint prefix for a checkpoint directory, its ``checkpoint`` file, a prefix, or a
    file of the checkpoint (``.index``, ``.meta``, ``.data-*``).

    >>> resolve_prefix("ckpt/Hayao-64.ckpt.index")                    # doctest: +SKIP
    PosixPath('ckpt/Hayao-64.ckpt')
    """
    path = Path(path)
    if path.is_dir():
        prefix = _checkpoint_state_prefix(path)
    elif path.name == "checkpoint" and path.is_file():
        prefix = _checkpoint_state_prefix(path.parent)
    elif path.name.endswith((".index", ".meta")):
        prefix = path.with_suffix("")
    elif re.search(r"\.data-\d{5}-of-\d{5}$", path.name):
        prefix = path.with_name(re.sub(r"\.data-\d{5}-of-\d{5}$", "", path.name))
    else:
        prefix = path
    if not Path(f"{prefix}.index").is_file():
        raise CheckpointError(
            f"no TensorFlow checkpoint at {path}: {prefix}.index does not exist; give a checkpoint "
            "directory, a checkpoint prefix (e.g. .../Hayao-64.ckpt) or its .index file"
        )
    return prefix


class TFCheckpoint:
    """A TF1 TensorBundle V2 checkpoint, read without TensorFlow.

    Args:
        path: a checkpoint directory (its ``checkpoint`` file names the latest prefix), a
            prefix such as ``.../Hayao-64.ckpt``, or the ``.index`` file.

    Raises:
        CheckpointError: the index is missing, truncated or corrupt, or a data shard is missing.

    >>> ckpt = TFCheckpoint("generator_Hayao_weight")            # doctest: +SKIP
    >>> len(ckpt.variables()), [p.name for p in ckpt.files()]    # doctest: +SKIP
    (77, ['Hayao-64.ckpt.index', 'Hayao-64.ckpt.data-00000-of-00001'])
    """

    def __init__(self, path: str | Path) -> None:
        self.prefix: Path = resolve_prefix(path)
        index = Path(f"{self.prefix}.index")
        self._entries: dict[str, _Entry] = {}
        header = None
        for key, value in _read_table(index):
            try:
                if key == b"":
                    header = dict(_proto_fields(value))
                else:
                    self._entries[key.decode("utf-8")] = _parse_entry(value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{index} is corrupt: entry {key!r}: {exc}") from exc
        if header is None:
            raise CheckpointError(f"{index} has no bundle header: it is not a TensorBundle V2 checkpoint")
        if header.get(2, 0) != 0:
            raise CheckpointError(f"{index} was written big-endian; only little-endian checkpoints are supported")
        self._num_shards = int(header.get(1, 1))
        for entry_name, entry in self._entries.items():
            if not 0 <= entry.shard_id < self._num_shards:
                raise CheckpointError(
                    f"{index} is corrupt: tensor {entry_name!r} is in shard {entry.shard_id} of {self._num_shards}"
                )
        for shard in self._shards():
            if not shard.is_file():
                raise CheckpointError(
                    f"data shard {shard} is missing (the checkpoint has {self._num_shards}); "
                    "copy every .data-* file of the checkpoint beside its .index"
                )

    def _shards(self) -> list[Path]:
        return [Path(f"{self.prefix}.data-{i:05d}-of-{self._num_shards:05d}") for i in range(self._num_shards)]

    def files(self) -> list[Path]:
        """The index file, then the data shards in order."""
        return [Path(f"{self.prefix}.index"), *self._shards()]

    def variables(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Tensor name -> (numpy dtype, shape), in the index's (sorted) order. Tensors of a dtype
        this reader cannot decode (complex, bfloat16, ...) and strings are listed with ``np.dtype(object)``."""
        return {
            name: (DTYPES.get(entry.dtype, np.dtype(object)), entry.shape) for name, entry in self._entries.items()
        }

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise CheckpointError(f"tensor {name!r} is not in the checkpoint {self.prefix}") from None

    def _raw(self, name: str) -> bytearray:
        """The tensor's bytes, their crc32c checked against the index."""
        entry = self._entry(name)
        shard = self._shards()[entry.shard_id]
        buf = bytearray(entry.size)
        with open(shard, "rb") as f:
            f.seek(entry.offset)
            got = f.readinto(buf)
        if got != entry.size:
            raise CheckpointError(
                f"data shard {shard} is truncated: tensor {name!r} needs bytes {entry.offset}..{entry.offset + entry.size}"
            )
        crc = _string_tensor_crc(buf, entry) if entry.dtype == DT_STRING else crc32c(buf)
        if entry.masked_crc is not None and mask_crc(crc) != entry.masked_crc:
            raise CheckpointError(f"crc32c mismatch for tensor {name!r} in {shard}: the checkpoint is corrupt")
        return buf

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a new numpy array (native byte order; strings as an object
        array of ``bytes``), crc32c-verified.

        Raises:
            CheckpointError: unknown name, unsupported dtype, truncated shard or crc mismatch.
        """
        entry = self._entry(name)
        if entry.sliced:
            raise CheckpointError(f"tensor {name!r} is saved in slices (a partitioned variable); not supported")
        if entry.dtype == DT_STRING:
            return _string_tensor_values(self._raw(name), entry)
        dtype = DTYPES.get(entry.dtype)
        if dtype is None:
            kind = DTYPE_NAMES.get(entry.dtype, f"enum {entry.dtype}")
            raise CheckpointError(f"tensor {name!r} has dtype {kind}, which this reader cannot decode")
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise CheckpointError(
                f"{self.prefix}.index is corrupt: tensor {name!r} of shape {entry.shape} and dtype "
                f"{dtype.name} should take {count * dtype.itemsize} bytes, the index says {entry.size}"
            )
        return np.frombuffer(self._raw(name), dtype=dtype).astype(dtype.newbyteorder("="), copy=False).reshape(entry.shape)

    def verify(self) -> None:
        """Check every tensor's crc32c; raises :class:`CheckpointError` naming the first bad one."""
        for name in self._entries:
            if not self._entries[name].sliced:
                self._raw(name)

    def __repr__(self) -> str:
        return f"TFCheckpoint({str(self.prefix)!r}, tensors={len(self._entries)}, shards={self._num_shards})"
