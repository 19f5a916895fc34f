"""llama.cpp contexts: how one is made, a sequence's KV state read and written, and the
second context that computes long prompts in wide passes (``PrefillContext``).

Called, like model_runner.py, from the engine thread only.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import llama_cpp

from chatd.engine.batch import Batch, DecodeError
from chatd.engine.rope import ResolvedRope

if TYPE_CHECKING:
    from chatd.engine.model_runner import ModelRunner

__all__ = ["PrefillContext", "new_context", "state_get", "state_set"]


class PrefillContext:
    """A second llama.cpp context on the same model that computes long prompts in wide,
    tiled passes, then hands their KV cells to the main context.

    Why a second context: the main context runs passes of at most 63 tokens, the only
    attention path whose results do not depend on the other rows of the pass nor on where
    the cells lie (see RunnerConfig.n_ubatch), but for prompts it is ~25% slower than the
    tiled attention llama.cpp uses for passes of 64+ rows. Tiled results do depend on how
    a sequence's cells fall into 64-cell tiles, so here a prompt is computed alone, its
    cell i holding position i, in passes of whole 64-token blocks: every prompt position
    is then computed the same way whatever else runs, and whether its prefix came from
    the prefix cache or not. Moving the cells costs ~4 ms per 1000 tokens
    (``llama_state_seq_get/set_data``).

    One prompt at a time, in sequence 0: ``begin`` (optionally restoring a cached prefix
    from the main context), ``run`` for each pass, ``finish`` to move the computed cells.
    """

    BLOCK = 64  # GGML_FA_TILE_Q: passes of at least this many rows take the tiled path

    def __init__(self, runner: ModelRunner, n_ctx: int, threads: int) -> None:
        self.runner = runner
        self.ctx = new_context(runner.model, n_ctx, 512, 512, 1, threads, runner.rope)
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = Batch(512)

    def begin(self, source_seq: int | None, n_tokens: int) -> None:
        """Start a prompt: empty, or with the first ``n_tokens`` positions of the main
        context's ``source_seq`` (cells computed here earlier) restored into cells 0..n-1."""
        llama_cpp.llama_memory_clear(self.memory, True)
        if source_seq is None or n_tokens == 0:
            return
        r = self.runner
        llama_cpp.llama_memory_seq_cp(r.memory, source_seq, r._scratch_seq, 0, n_tokens)
        try:
            data = state_get(r.ctx, r._scratch_seq)
        finally:
            llama_cpp.llama_memory_seq_rm(r.memory, r._scratch_seq, -1, -1)
        if not state_set(self.ctx, data, 0):
            raise DecodeError(1)

    def run(self, tokens: list[int], start: int) -> None:
        """Compute ``tokens`` at positions ``start``...: whole 64-token blocks, all of them
        in one pass or in passes of whole blocks."""
        assert len(tokens) % self.BLOCK == 0 and start % self.BLOCK == 0
        assert len(tokens) <= self.batch.capacity
        self.batch.clear()
        self.batch.add(tokens, start, 0, False)
        rc = llama_cpp.llama_decode(self.ctx, self.batch.as_llama_batch())
        if rc != 0:
            raise DecodeError(rc)

    def finish(self, start: int, dst_seq: int) -> bool:
        """Give the main context's ``dst_seq`` the cells of positions ``start``... (it
        may already hold the positions before); False when the main cache has no room
        for them (the prompt stays here: retry after making room)."""
        r = self.runner
        llama_cpp.llama_memory_seq_rm(self.memory, 0, 0, start)
        data = state_get(self.ctx, 0)
        if not state_set(r.ctx, data, r._scratch_seq):
            return False
        llama_cpp.llama_memory_seq_cp(r.memory, r._scratch_seq, dst_seq, -1, -1)
        llama_cpp.llama_memory_seq_rm(r.memory, r._scratch_seq, -1, -1)
        llama_cpp.llama_memory_clear(self.memory, True)
        return True

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None


def new_context(
    model: llama_cpp.llama_model_p,
    n_ctx: int,
    n_batch: int,
    n_ubatch: int,
    n_seq: int,
    threads: int,
    rope: ResolvedRope,
) -> llama_cpp.llama_context_p:
    """A context with one unified KV cache (sequences share cells, see kv_cache.py) and
    the model's RoPE scaling (0 / -1 values: the model's own, llama.cpp's convention)."""
    cparams = llama_cpp.llama_context_default_params()
    cparams.rope_scaling_type = rope.scaling_type
    cparams.rope_freq_base = rope.freq_base
    cparams.rope_freq_scale = rope.freq_scale
    cparams.yarn_orig_ctx = rope.yarn_orig_ctx
    cparams.yarn_ext_factor = rope.yarn_ext_factor
    cparams.n_ctx = n_ctx
    cparams.n_batch = n_batch
    cparams.n_ubatch = n_ubatch
    cparams.n_seq_max = n_seq
    cparams.n_threads = threads
    cparams.n_threads_batch = threads
    cparams.kv_unified = True
    cparams.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not create a context of {n_ctx} cells")
    return ctx


def state_get(ctx: llama_cpp.llama_context_p, seq: int) -> ctypes.Array[ctypes.c_ubyte]:
    n = llama_cpp.llama_state_seq_get_size(ctx, seq)
    buf = (ctypes.c_ubyte * n)()
    if llama_cpp.llama_state_seq_get_data(ctx, buf, n, seq) != n:
        raise RuntimeError("llama.cpp could not read a sequence's KV state")
    return buf


def state_set(ctx: llama_cpp.llama_context_p, data: object, seq: int) -> bool:
    """Restore a state from a ctypes buffer (as ``state_get`` returns) or from bytes (as
    the disk tier reads them; passed without a copy)."""
    if isinstance(data, bytes):
        n = len(data)
        buf = ctypes.cast(ctypes.c_char_p(data), ctypes.POINTER(ctypes.c_ubyte))
    else:
        n = len(data)  # type: ignore[arg-type]
        buf = data
    return llama_cpp.llama_state_seq_set_data(ctx, buf, n, seq) == n
