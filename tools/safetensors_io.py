"""A minimal safetensors reader and writer in plain numpy.

Written for the golden-data tools of assistgen so that they need neither the
`safetensors` nor the `transformers` package (neither is a Debian package).
Run the tools with Debian's /usr/bin/python3.

Format (https://huggingface.co/docs/safetensors): 8-byte little-endian header
length N, then N bytes of JSON (padded with spaces so that the data starts at
a multiple of 8), then the raw little-endian tensor bytes. Each JSON entry is
{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with offsets
relative to the start of the data section; "__metadata__" maps str to str.

BF16 has no numpy dtype: it is read as uint16 bits and widened to float32
exactly (bf16 is the upper half of an IEEE float32); writing rounds float32 to
the nearest bf16, ties to even (what torch's .to(torch.bfloat16) does).
"""

import json
import struct

import numpy as np

_NUMPY_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_ITEM_SIZES = {**{k: v.itemsize for k, v in _NUMPY_DTYPES.items()}, "BF16": 2}


def bf16_bits_to_f32(bits):
    """uint16 bf16 bit patterns -> float32 values (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(values):
    """float32 values -> uint16 bf16 bit patterns, round to nearest even; NaN stays NaN."""
    u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def round_to_bf16(values):
    """float32 values rounded to bf16 precision, returned as float32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(values)).reshape(np.shape(values))


class StoredTensor:
    """A tensor as stored: safetensors dtype name plus a numpy array.

    For BF16 the array holds the uint16 bit patterns; `to_float64()` widens
    every floating dtype exactly.
    """

    def __init__(self, dtype, array):
        self.dtype = dtype
        self.array = array

    @property
    def shape(self):
        return tuple(self.array.shape)

    def to_float64(self):
        if self.dtype == "BF16":
            return bf16_bits_to_f32(self.array).reshape(self.array.shape).astype(np.float64)
        if self.dtype in ("F64", "F32", "F16"):
            return self.array.astype(np.float64)
        raise ValueError(f"tensor dtype {self.dtype} is not a floating type")


def read_safetensors(path):
    """Returns (dict name -> StoredTensor, metadata dict). Validates offsets and sizes."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", blob[:8])
    if 8 + n > len(blob):
        raise ValueError(f"{path}: header length {n} runs past the end of the file")
    header = json.loads(blob[8 : 8 + n].decode("utf-8"))
    data = memoryview(blob)[8 + n :]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        dtype = entry["dtype"]
        if dtype not in _ITEM_SIZES:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        shape = tuple(int(d) for d in entry["shape"])
        begin, end = (int(x) for x in entry["data_offsets"])
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != numel * _ITEM_SIZES[dtype]:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {begin},{end} for {dtype}{list(shape)}")
        np_dtype = np.dtype("<u2") if dtype == "BF16" else _NUMPY_DTYPES[dtype]
        arr = np.frombuffer(data[begin:end], dtype=np_dtype).reshape(shape).copy()
        tensors[name] = StoredTensor(dtype, arr)
    return tensors, metadata


def write_safetensors(path, tensors, metadata=None):
    """Writes dict name -> StoredTensor (or numpy array: dtype taken from it).

    Tensors are laid out in name order, contiguous, no gaps.
    """
    entries = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if not isinstance(t, StoredTensor):
            arr = np.asarray(t)
            kind = {v: k for k, v in _NUMPY_DTYPES.items()}.get(arr.dtype.newbyteorder("<"))
            if kind is None:
                raise ValueError(f"tensor {name}: numpy dtype {arr.dtype} has no safetensors name")
            t = StoredTensor(kind, arr)
        np_dtype = np.dtype("<u2") if t.dtype == "BF16" else _NUMPY_DTYPES[t.dtype]
        raw = np.ascontiguousarray(t.array, dtype=np_dtype).tobytes()
        entries[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    if metadata:
        entries = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}, **entries}
    header = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for c in chunks:
            f.write(c)
