"""The disk tier's file format (docs/engine.md, "Prefix cache: the disk tier").

One entry is one file: a header that says exactly what the entry is (so a lookup never
needs the payload), then the payload (``llama_state_seq_get_data``'s bytes), opaque here.
Nothing read back is trusted: every byte of the file is covered by a check, so a damaged
file is refused (``CorruptEntry``), never read as another entry or as a shorter payload.

Layout, little-endian throughout::

    prelude  magic b"CHATDKV\\0" (8) | format version u16 | body length u32
    body     fingerprint length u16 | fingerprint (UTF-8)
             partition length u32   | partition (UTF-8, lone surrogates kept)
             tiled i64 | shared i64 | token count u32 | payload length u64
             payload digest (blake2b-256, 32) | tokens (int32 each)
    check    blake2b-128 of prelude + body (16)
    payload  payload length bytes

The header's own digest matters as much as the payload's: a flipped bit in ``tokens``
or ``partition`` would otherwise make a sound payload answer the wrong prompt, or
another tenant's.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

__all__ = [
    "MAGIC",
    "CorruptEntry",
    "Header",
    "StoredPrefix",
    "encode_header",
    "header_size",
    "payload_digest",
    "read_header",
]

MAGIC = b"CHATDKV\0"
VERSION = 1
_PRELUDE = struct.Struct("<8sHI")
_NUMBERS = struct.Struct("<qqIQ")  # tiled, shared, token count, payload length
_PAYLOAD_DIGEST = 32
_HEADER_DIGEST = 16
_MAX_BODY = 1 << 28  # 256 MiB of header (67 M tokens): anything longer is damage


@dataclass(frozen=True)
class StoredPrefix:
    """What an entry is, for lookups (the host tier uses the same fields)."""

    tokens: np.ndarray  # int32, the tokens whose KV the entry holds, from position 0
    tiled: int  # positions before this were computed in wide passes
    partition: str  # whose prompt it was (opaque tenant id; part of the key: never widen)
    shared: int  # leading tokens other partitions may reuse

    def __post_init__(self) -> None:
        # A private, read-only int32 copy: the entry outlives the caller's array, and a
        # caller writing into it later must not change what the index says is on disk.
        tokens = np.array(self.tokens, dtype=np.int32, copy=True).reshape(-1)
        tokens.setflags(write=False)
        object.__setattr__(self, "tokens", tokens)
        if self.tiled < 0 or self.shared < 0:
            raise ValueError(f"tiled and shared are counts, got {self.tiled}, {self.shared}")

    def __eq__(self, other: object) -> bool:
        # By value (the generated one would compare arrays and raise).
        if not isinstance(other, StoredPrefix):
            return NotImplemented
        return (
            self.tiled == other.tiled
            and self.shared == other.shared
            and self.partition == other.partition
            and np.array_equal(self.tokens, other.tokens)
        )

    def __hash__(self) -> int:
        return hash((self.tiled, self.shared, self.partition, self.tokens.tobytes()))


class CorruptEntry(Exception):
    """A file that is not a sound entry of this fingerprint: it is a miss, and deleted."""


@dataclass(frozen=True)
class Header:
    """A file's header, checked: what the entry is and how to check its payload."""

    meta: StoredPrefix
    payload_length: int
    payload_digest: bytes
    size: int  # bytes before the payload


def _encode_partition(partition: str) -> bytes:
    return partition.encode("utf-8", "surrogatepass")


def header_size(meta: StoredPrefix, fingerprint: str) -> int:
    """The header's length for ``meta``, known before the payload's digest is computed
    (so a put can be accounted for at once, the digest left to the writer thread)."""
    return (
        _PRELUDE.size
        + 2
        + len(fingerprint.encode())
        + 4
        + len(_encode_partition(meta.partition))
        + _NUMBERS.size
        + _PAYLOAD_DIGEST
        + 4 * len(meta.tokens)
        + _HEADER_DIGEST
    )


def payload_digest(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_PAYLOAD_DIGEST).digest()


def encode_header(meta: StoredPrefix, fingerprint: str, payload: bytes) -> bytes:
    """The header of an entry holding ``payload`` (its digest is computed here)."""
    fp = fingerprint.encode()
    part = _encode_partition(meta.partition)
    body = b"".join(
        (
            struct.pack("<H", len(fp)),
            fp,
            struct.pack("<I", len(part)),
            part,
            _NUMBERS.pack(meta.tiled, meta.shared, len(meta.tokens), len(payload)),
            payload_digest(payload),
            meta.tokens.astype("<i4", copy=False).tobytes(),
        )
    )
    head = _PRELUDE.pack(MAGIC, VERSION, len(body)) + body
    return head + hashlib.blake2b(head, digest_size=_HEADER_DIGEST).digest()


def read_header(file: BinaryIO, fingerprint: str) -> Header:
    """The checked header at the start of ``file`` (left positioned at the payload).
    Raises ``CorruptEntry`` for anything but a sound header of this format version and
    this fingerprint; the payload itself is not read (a scan reads headers only)."""
    prelude = file.read(_PRELUDE.size)
    if len(prelude) != _PRELUDE.size:
        raise CorruptEntry("short prelude")
    magic, version, body_length = _PRELUDE.unpack(prelude)
    if magic != MAGIC or version != VERSION or body_length > _MAX_BODY:
        raise CorruptEntry(f"not a version {VERSION} entry")
    body = file.read(body_length)
    check = file.read(_HEADER_DIGEST)
    if len(body) != body_length or len(check) != _HEADER_DIGEST:
        raise CorruptEntry("short header")
    if hashlib.blake2b(prelude + body, digest_size=_HEADER_DIGEST).digest() != check:
        raise CorruptEntry("header digest")
    try:
        meta, length, digest, stored_fingerprint = _decode_body(body)
    except (struct.error, UnicodeDecodeError, ValueError) as error:
        raise CorruptEntry(f"header fields: {error}") from error
    if stored_fingerprint != fingerprint:
        raise CorruptEntry("another fingerprint")
    return Header(meta, length, digest, _PRELUDE.size + body_length + _HEADER_DIGEST)


def _decode_body(body: bytes) -> tuple[StoredPrefix, int, bytes, str]:
    at = 0

    def take(n: int) -> bytes:
        nonlocal at
        if at + n > len(body):
            raise ValueError("field past the header's end")
        at += n
        return body[at - n : at]

    (fp_length,) = struct.unpack("<H", take(2))
    fingerprint = take(fp_length).decode()
    (part_length,) = struct.unpack("<I", take(4))
    partition = take(part_length).decode("utf-8", "surrogatepass")
    tiled, shared, count, length = _NUMBERS.unpack(take(_NUMBERS.size))
    digest = take(_PAYLOAD_DIGEST)
    tokens = np.frombuffer(take(4 * count), dtype="<i4").astype(np.int32)
    if at != len(body):
        raise ValueError("bytes after the tokens")
    meta = StoredPrefix(tokens=tokens, tiled=tiled, partition=partition, shared=shared)
    return meta, length, digest, fingerprint
