"""`torchbridge.Model`: a model of a repository, loaded through one of the Rust bridges,
called with numpy arrays (or torch tensors) and answering numpy arrays."""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
import torch

from torchbridge import _native

# KServe datatype <-> numpy dtype (little-endian). BF16 has no numpy dtype: see _to_raw.
NUMPY_DTYPES = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
DATATYPES = {dtype: name for name, dtype in NUMPY_DTYPES.items()}


class TensorInfo(NamedTuple):
    """One input or output: shape has -1 for any size (the batch dimension in front)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


class Model:
    """A loaded model: its instances run on torchbridge's threads, behind the batching
    scheduler when its config.toml has `[batching]`. `infer` may be called from many
    Python threads at once; the GIL is released while the model runs."""

    def __init__(self, native: _native.Model) -> None:
        self._native = native
        self._pid = os.getpid()
        self._inputs = [TensorInfo(n, d, tuple(s)) for n, d, s in native.inputs]
        self._outputs = [TensorInfo(n, d, tuple(s)) for n, d, s in native.outputs]

    @classmethod
    def load(cls, path: str | os.PathLike[str], bridge: str | None = None) -> Model:
        """Loads the highest version at `path` through `bridge` ("python", "torchscript",
        "onnx", ...) or, by default, the bridge its config.toml names."""
        return cls(_native.Model.load(os.fspath(path), bridge))

    @property
    def inputs(self) -> list[TensorInfo]:
        return list(self._inputs)

    @property
    def outputs(self) -> list[TensorInfo]:
        return list(self._outputs)

    @property
    def name(self) -> str:
        return self._native.name

    @property
    def version(self) -> int:
        return self._native.version

    @property
    def bridge(self) -> str:
        return self._native.bridge

    @property
    def max_batch_size(self) -> int:
        return self._native.max_batch_size

    def infer(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Runs one call. `inputs`: name -> numpy array, torch tensor, or (nested) list,
        batch dimension first when the model batches. Returns name -> numpy array
        (BF16 outputs widened to float32, BYTES outputs as object arrays of bytes)."""
        if not isinstance(inputs, Mapping):
            raise TypeError(f"inputs must be a dict of input name to array, got "
                            f"{type(inputs).__name__}")
        if os.getpid() != self._pid:
            # A fork copies the model's memory but not its threads: a call would wait for
            # ever on instances that do not exist in this process.
            raise _native.UnavailableError(
                f"model `{self.name}` was loaded in process {self._pid}, and this is a "
                f"child forked from it (a DataLoader worker, multiprocessing's 'fork'), "
                f"where its instance threads do not exist: load the model in the child "
                f"(worker_init_fn), or start children with 'spawn'")
        declared = {info.name: info.datatype for info in self._inputs}
        raw = [_to_raw(name, value, declared.get(name)) for name, value in inputs.items()]
        return {name: _from_raw(datatype, shape, data)
                for name, datatype, shape, data in self._native.infer(raw)}

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, version={self.version}, bridge={self.bridge!r}, "
                f"inputs={self._inputs}, outputs={self._outputs})")


def _to_raw(name: str, value: Any, declared: str | None) -> tuple[str, str, list[int], bytes]:
    """(name, datatype, shape, bytes) for Rust: the datatype is the array's own, so a
    mismatch is reported by the model's checks; only plain lists take the declared one."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            bits = value.contiguous().view(torch.int16).numpy()
            return name, "BF16", list(bits.shape), bits.astype("<i2", copy=False).tobytes()
        value = value.numpy()
    if value is None:
        raise _native.InvalidInputError(f"input `{name}` is None; give an array")
    if not isinstance(value, np.ndarray):
        dtype = NUMPY_DTYPES.get(declared) if declared else None
        try:
            if declared == "BF16":
                return _to_raw(name, torch.tensor(value, dtype=torch.bfloat16), declared)
            value = np.asarray(value, dtype=dtype if declared != "BYTES" else object)
        except (ValueError, TypeError) as err:
            raise _native.InvalidInputError(
                f"input `{name}` cannot be read as {declared or 'an'} array: {err}") from None
    if value.dtype.kind in "OSU":
        return name, "BYTES", list(value.shape), _encode_bytes(name, value)
    if declared == "BF16" and value.dtype.kind == "f":
        return _to_raw(name, torch.from_numpy(np.ascontiguousarray(value)).bfloat16(), declared)
    dtype = value.dtype.newbyteorder("<") if value.dtype.byteorder == ">" else value.dtype
    datatype = DATATYPES.get(dtype)
    if datatype is None:
        raise _native.InvalidInputError(
            f"input `{name}`: numpy dtype {value.dtype} has no KServe datatype")
    return name, datatype, list(value.shape), np.ascontiguousarray(value, dtype=dtype).tobytes()


def _encode_bytes(name: str, value: np.ndarray) -> bytes:
    """KServe BYTES layout: each element as a little-endian u32 length, then its bytes.
    Elements are bytes or str (UTF-8); anything else is refused, naming the input
    (bytes(5) would be five NUL bytes)."""
    parts = []
    for item in value.reshape(-1):
        if isinstance(item, str):
            data = item.encode()
        elif isinstance(item, (bytes, bytearray, memoryview)):
            data = bytes(item)
        else:
            raise _native.InvalidInputError(
                f"input `{name}` is BYTES, but holds an element of type "
                f"{type(item).__name__}; give bytes or str elements")
        parts += [struct.pack("<I", len(data)), data]
    return b"".join(parts)


def _from_raw(datatype: str, shape: list[int], data: bytearray) -> np.ndarray:
    if datatype == "BYTES":
        items, at = [], 0
        while at < len(data):
            (size,) = struct.unpack_from("<I", data, at)
            items.append(bytes(data[at + 4:at + 4 + size]))
            at += 4 + size
        out = np.empty(len(items), dtype=object)
        out[:] = items
        return out.reshape(shape)
    if datatype == "BF16":
        bits = torch.frombuffer(data, dtype=torch.bfloat16) if data else torch.empty(0)
        return bits.float().numpy().reshape(shape)
    return np.frombuffer(data, dtype=NUMPY_DTYPES[datatype]).reshape(shape)
