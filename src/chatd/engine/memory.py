"""How much memory a model will take once loaded, known before loading it: the weights
(the GGUF file's size: llama.cpp maps the file), the KV cache of both contexts (cells x
layers x K+V widths x bytes per value, the shape read from the file's GGUF header) and
an allowance for llama.cpp's compute buffers. Reading the header costs milliseconds and
no llama.cpp call, so the server can refuse a load that cannot fit before it starts
swapping (service/model_pool.py compares the estimate with MemAvailable).

With layers on a GPU (``--gpu-layers``) only the host's part is counted, since host
memory is what is compared: the weights and KV cells of the offloaded layers are on the
GPU (``MemoryNeed.on_device``, shown but not checked; llama.cpp's load fails if the GPU
lacks room). Which layers go is llama.cpp's rule, read from its llama-model.cpp.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "COMPUTE_ALLOWANCE",
    "KVShape",
    "MemoryNeed",
    "Skipped",
    "estimate",
    "gib",
    "header_facts",
    "give_back_freed_memory",
    "kv_shape",
    "offloaded_layers",
    "read_metadata",
    "tensor_bytes",
]

# llama.cpp's compute buffers (the graph's scratch, logits of a full batch) are not in
# the header; measured ~20-70 MB for small models here. A flat allowance keeps the
# estimate an upper bound for them without modelling each architecture.
COMPUTE_ALLOWANCE = 128 << 20
KV_BYTES = 2  # llama.cpp's default KV cache type is f16
# Without a readable header: a bound for models up to ~8B parameters (32 layers of 1024
# K and 1024 V values a cell with grouped-query attention; a wider model is underrated).
FALLBACK_LAYERS, FALLBACK_WIDTH = 32, 1024


@dataclass(frozen=True)
class KVShape:
    """What one KV cell costs: per layer, K and V values of that many dimensions."""

    layers: int
    k_width: int  # key dims per cell and layer, all KV heads (n_head_kv x head dim)
    v_width: int

    def cell_bytes(self, value_bytes: int = KV_BYTES) -> int:
        return self.layers * (self.k_width + self.v_width) * value_bytes


@dataclass(frozen=True)
class MemoryNeed:
    """Host memory (all of it is counted in ``total``), and what offloaded layers put on
    a GPU instead (``on_device``: their weights and KV cells; not counted)."""

    weights: int
    kv_cache: int
    compute: int
    on_device: int = 0

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute

    def describe(self) -> str:
        gpu = f"; {gib(self.on_device)} more on the GPU" if self.on_device else ""
        return (
            f"{gib(self.total)} (weights {gib(self.weights)}, KV cache {gib(self.kv_cache)},"
            f" compute {gib(self.compute)}{gpu})"
        )


def gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def estimate(
    file_size: int,
    shape: KVShape,
    cells: int,
    gpu_layers: int = 0,
    tensors: Mapping[str, int] | None = None,
) -> MemoryNeed:
    """The memory of a model of ``file_size`` bytes whose contexts hold ``cells`` KV
    cells in all (the main context's n_ctx plus the wide-prefill context's).

    With ``gpu_layers`` (llama.cpp's n_gpu_layers, -1: all), the host's part: the KV
    cells of the layers left on the CPU (llama.cpp's offload_kqv, on by default, puts an
    offloaded layer's cells on its GPU), and the file less the offloaded layers' tensors
    (``tensors``: each one's bytes, ``tensor_bytes``; without them the whole file, an
    upper bound). The compute allowance stays whole: a bound for the host's buffers."""
    repeating, output = offloaded_layers(shape.layers, gpu_layers)
    kv_all = cells * shape.cell_bytes()
    kv_host = cells * KVShape(shape.layers - repeating, shape.k_width, shape.v_width).cell_bytes()
    tensors = tensors or {}
    on_gpu = sum(n for t, n in tensors.items() if _offloaded(t, shape.layers - repeating, output))
    # a model whose output is its token embeddings (no output.weight) gets a copy of them
    # on the output layer's GPU; the host keeps its own for the input layer
    tied = tensors.get("token_embd.weight", 0) if output and "output.weight" not in tensors else 0
    return MemoryNeed(
        file_size - on_gpu,
        kv_host,
        COMPUTE_ALLOWANCE,
        on_device=on_gpu + tied + kv_all - kv_host,
    )


def offloaded_layers(layers: int, gpu_layers: int) -> tuple[int, bool]:
    """What llama.cpp (0.3.36: llama-model.cpp, ``load_tensors``) puts on the GPU for
    ``gpu_layers`` (-1: all) of a model of ``layers`` repeating layers: (how many of the
    repeating layers: the last ones, whether the output layer). Its layers are counted
    with the output layer last, and offloaded from the end: 1 is the output layer alone,
    ``layers + 1`` (or more) everything; the input layer (token embeddings) always stays
    on the CPU."""
    n = layers + 1 if gpu_layers < 0 else min(gpu_layers, layers + 1)
    return max(n - 1, 0), n > 0


def _offloaded(tensor: str, first_gpu_layer: int, output: bool) -> bool:
    """Whether a weight tensor is on the GPU: ``blk.N.*`` of an offloaded layer, and the
    output layer's ``output.*`` / ``output_norm.*``. Any other (token embeddings, an
    architecture's extras) is counted on the host: an upper bound."""
    if tensor.startswith("blk."):
        index = tensor.split(".", 2)[1]
        return index.isdigit() and int(index) >= first_gpu_layer
    return output and tensor.startswith(("output.", "output_norm."))


def kv_shape(path: Path) -> KVShape:
    """The model's KV cell shape from its GGUF header; a documented rough bound when the
    header cannot be read (not a GGUF file, an unknown layout)."""
    return header_facts(path)[0]


def header_facts(path: Path) -> tuple[KVShape, int | None]:
    """The KV cell shape (as ``kv_shape``) and the vocabulary size (None when the header
    does not say), from one read of the GGUF header: what is known of a model before it
    is loaded (a request's token ids are checked against the vocabulary without loading)."""
    try:
        meta = read_metadata(path)
    except (OSError, ValueError, struct.error):
        return KVShape(FALLBACK_LAYERS, FALLBACK_WIDTH, FALLBACK_WIDTH), None
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = len(tokens) if isinstance(tokens, list | Skipped) else None
    return _kv_shape(meta), n_vocab


def _kv_shape(meta: dict[str, Any]) -> KVShape:
    try:
        arch = meta["general.architecture"]
        layers = int(meta[f"{arch}.block_count"])
        embd = int(meta[f"{arch}.embedding_length"])
        heads = _first(meta[f"{arch}.attention.head_count"])
        heads_kv = _first(meta.get(f"{arch}.attention.head_count_kv", heads))
        k_dim = int(meta.get(f"{arch}.attention.key_length", embd // heads))
        v_dim = int(meta.get(f"{arch}.attention.value_length", embd // heads))
        return KVShape(layers, heads_kv * k_dim, heads_kv * v_dim)
    except (KeyError, ValueError, TypeError, ZeroDivisionError):
        return KVShape(FALLBACK_LAYERS, FALLBACK_WIDTH, FALLBACK_WIDTH)


def _first(value: Any) -> int:
    """Per-layer head counts are arrays in some models: the widest layer bounds them."""
    return int(max(value)) if isinstance(value, list) else int(value)


# GGUF value types: struct formats of the scalars; 8 is a string, 9 an array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9
_MAX_ARRAY_KEPT = 4096  # longer arrays (the vocabulary) are skipped, not kept
_MAX_DIMS = 8  # GGML_MAX_DIMS is 4: more is a damaged header


@dataclass(frozen=True)
class Skipped:
    """An array too long to keep (the vocabulary's tokens): only its length."""

    length: int

    def __len__(self) -> int:
        return self.length


def read_metadata(path: Path) -> dict[str, Any]:
    """The key/value header of a GGUF file (version 2 or 3), arrays longer than
    _MAX_ARRAY_KEPT skipped (their values are ``Skipped``, their length). Raises
    ValueError if it is not one."""
    return _read_header(path, tensors=False)[0]


def tensor_bytes(path: Path) -> dict[str, int] | None:
    """Each tensor's bytes in a GGUF file (from the header's tensor offsets, padding
    included; the last one's runs to the file's end), None when the header cannot be
    read: what the layers put on a GPU take off the host's share of the file."""
    try:
        return _read_header(path, tensors=True)[1]
    except (OSError, ValueError, struct.error):
        return None


def _read_header(path: Path, tensors: bool) -> tuple[dict[str, Any], dict[str, int]]:
    """The key/values, and (``tensors``) each tensor's bytes."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        (version,) = _unpack(f, "I")
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        n_tensors, n_kv = _unpack(f, "QQ")
        meta: dict[str, Any] = {}
        for _ in range(n_kv):
            key = _string(f)
            (kind,) = _unpack(f, "I")
            meta[key] = _value(f, kind)
        if not tensors:
            return meta, {}
        offsets: dict[str, int] = {}
        for _ in range(n_tensors):
            name = _string(f)
            (n_dims,) = _unpack(f, "I")
            if n_dims > _MAX_DIMS:
                raise ValueError(f"a tensor of {n_dims} dimensions")
            _unpack(f, "Q" * n_dims + "I")  # dimensions, type
            (offsets[name],) = _unpack(f, "Q")
        align = meta.get("general.alignment", 32)
        if not isinstance(align, int) or align <= 0:
            raise ValueError(f"general.alignment {align!r}")
        data_start = -(-f.tell() // align) * align
        data_size = path.stat().st_size - data_start
    ends = sorted({*offsets.values(), data_size})
    following = dict(zip(ends, ends[1:], strict=False))
    return meta, {name: following.get(at, at) - at for name, at in offsets.items()}


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _unpack(f, _SCALARS[kind])[0]
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item, n = _unpack(f, "IQ")
        if item in _SCALARS and n > _MAX_ARRAY_KEPT:
            f.seek(n * struct.calcsize("<" + _SCALARS[item]), 1)
            return Skipped(n)
        if item == _STRING and n > _MAX_ARRAY_KEPT:
            for _ in range(n):
                (size,) = _unpack(f, "Q")
                f.seek(size, 1)
            return Skipped(n)
        return [_value(f, item) for _ in range(n)]
    raise ValueError(f"unknown GGUF value type {kind}")


def _string(f: BinaryIO) -> str:
    (n,) = _unpack(f, "Q")
    if n > 1 << 26:
        raise ValueError("a GGUF string longer than 64 MiB")
    return f.read(n).decode("utf-8", "replace")


def _unpack(f: BinaryIO, fmt: str) -> tuple[Any, ...]:
    size = struct.calcsize("<" + fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("the GGUF header ends early")
    return struct.unpack("<" + fmt, data)


def give_back_freed_memory() -> None:
    """Return the heap an unloaded model's engine freed to the system (glibc keeps freed
    blocks for reuse otherwise, so RSS only ever grows as models come and go): the
    engine's Python objects are collected first, then ``malloc_trim`` (no-op elsewhere)."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return
    trim(0)
