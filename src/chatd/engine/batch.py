"""One ``llama_decode`` call's input: chunks of tokens per sequence, packed into a reusable
``llama_batch`` whose arrays are numpy views (filling it is vectorized)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import llama_cpp
import numpy as np

__all__ = ["Batch", "Chunk", "DecodeError"]


@dataclass(frozen=True)
class Chunk:
    """Consecutive tokens of one sequence in a pass, and which of their logits to return."""

    tokens: list[int]
    start: int  # position of the first token
    seq_id: int
    last_logits: bool = False  # the last token's row (a prompt's end, a decoding token)
    all_logits: bool = False  # every token's row (verifying drafts)

    @property
    def n_outputs(self) -> int:
        return len(self.tokens) if self.all_logits else int(self.last_logits)


class Batch:
    """A reusable llama_batch whose arrays are numpy views, so filling it is vectorized."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_id = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        base = self.seq_id.ctypes.data
        self._seq_ptrs = (ctypes.POINTER(ctypes.c_int32) * capacity)(
            *[ctypes.cast(base + 4 * i, ctypes.POINTER(ctypes.c_int32)) for i in range(capacity)]
        )
        self.n_tokens = 0

    def clear(self) -> None:
        self.n_tokens = 0
        self.logits[:] = 0

    def add(
        self,
        tokens: list[int],
        start_pos: int,
        seq_id: int,
        want_last_logits: bool,
        all_logits: bool = False,
    ) -> None:
        n = len(tokens)
        i = self.n_tokens
        self.token[i : i + n] = tokens
        self.pos[i : i + n] = np.arange(start_pos, start_pos + n, dtype=np.int32)
        self.seq_id[i : i + n] = seq_id
        self.logits[i : i + n] = 0
        if all_logits:
            self.logits[i : i + n] = 1
        elif want_last_logits:
            self.logits[i + n - 1] = 1
        self.n_tokens += n

    def fill(self, chunks: list[Chunk]) -> int:
        """Put ``chunks`` in the batch, in order; returns the number of output rows."""
        self.clear()
        for c in chunks:
            self.add(c.tokens, c.start, c.seq_id, c.last_logits, c.all_logits)
        return sum(c.n_outputs for c in chunks)

    def as_llama_batch(self) -> llama_cpp.llama_batch:
        b = llama_cpp.llama_batch()
        b.n_tokens = self.n_tokens
        b.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        b.embd = None
        b.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        b.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        b.seq_id = ctypes.cast(
            self._seq_ptrs, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))
        )
        b.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        return b


class DecodeError(RuntimeError):
    def __init__(self, code: int) -> None:
        super().__init__(f"llama_decode failed with code {code}")
        self.code = code
