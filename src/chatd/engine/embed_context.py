"""The llama.cpp context that computes embeddings: a third context on the loaded model
(beside the main one and the wide-prefill one), made on the first embedding request.

Why its own context rather than switching the main one to embeddings for a batch: the
main context's cells hold every running conversation, its passes are kept below 64
rows for determinism (docs/engine.md), and ``llama_set_embeddings`` on it would change
what every running sequence's next decode returns. Here embeddings never touch the
generation's KV cells; the engine thread runs one bounded embedding pass between two
generation steps (``engine/embedding.py``), so neither waits for the other's whole work.

Two ways to pool, chosen by the model:

* **The model's own pooling** (a GGUF with ``<arch>.pooling_type``: embedding models
  such as BERT/nomic/bge, or LAST-token models): llama.cpp pools each sequence itself
  (``llama_get_embeddings_seq``); each input must be whole in one pass.
* **None** (a chat model: its GGUF names no pooling): llama.cpp returns every token's
  final hidden state and ``embedding.py`` averages them, so a long input can be split
  over several passes (its earlier tokens' KV cells stay here between passes).
"""

from __future__ import annotations

import llama_cpp
import numpy as np

__all__ = ["EmbedContext", "PoolingUnsupported", "model_embedding", "model_pooling"]

POOLING_NAMES = {
    llama_cpp.LLAMA_POOLING_TYPE_NONE: "none",
    llama_cpp.LLAMA_POOLING_TYPE_MEAN: "mean",
    llama_cpp.LLAMA_POOLING_TYPE_CLS: "cls",
    llama_cpp.LLAMA_POOLING_TYPE_LAST: "last",
    llama_cpp.LLAMA_POOLING_TYPE_RANK: "rank",
}


class PoolingUnsupported(RuntimeError):
    """The model's pooling makes no embedding (a reranker's ``rank``)."""


class EmbedContext:
    """Owns the embedding context. ``own_pooling``: llama.cpp pools (the model's type);
    else every token's hidden state is returned (``run`` rows) for the caller to pool.

    ``n_ctx`` cells hold the inputs in flight (their tokens so far); ``n_batch`` tokens
    go into one ``llama_decode`` (with the model's own pooling, also the longest input:
    a pooled sequence must be whole in one pass)."""

    def __init__(
        self,
        model: llama_cpp.llama_model_p,
        pooling: int,
        n_ctx: int,
        n_batch: int,
        n_seq: int,
        threads: int,
    ) -> None:
        self.pooling = pooling  # model_pooling's answer
        if self.pooling == llama_cpp.LLAMA_POOLING_TYPE_RANK:
            raise PoolingUnsupported("the model's pooling is 'rank' (a reranker): no embeddings")
        self.own_pooling = self.pooling != llama_cpp.LLAMA_POOLING_TYPE_NONE
        cparams = llama_cpp.llama_context_default_params()
        cparams.embeddings = True
        cparams.pooling_type = self.pooling
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch  # one pass per call: pooled sequences are never split
        cparams.n_seq_max = n_seq
        cparams.n_threads = cparams.n_threads_batch = threads
        cparams.kv_unified = True
        cparams.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(model, cparams)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create an embedding context of {n_ctx} cells")
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.n_batch = llama_cpp.llama_n_batch(self.ctx)
        self.n_seq = n_seq
        self.n_embd = llama_cpp.llama_model_n_embd_out(model)
        self.memory = llama_cpp.llama_get_memory(self.ctx)  # None: an encoder, no cells kept
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)

    @property
    def pooling_name(self) -> str:
        return POOLING_NAMES.get(self.pooling, str(self.pooling))

    def run(self, pieces: list[tuple[int, list[int], int]]) -> np.ndarray | list[np.ndarray]:
        """One ``llama_decode`` over ``pieces`` (seq id, tokens, first position). Without
        own pooling: every token's embedding, one row per token in order (a copy); with
        it: each piece's pooled vector (pieces are whole inputs then)."""
        b = self.batch
        i = 0
        for seq, tokens, start in pieces:
            for k, token in enumerate(tokens):
                b.token[i] = token
                b.pos[i] = start + k
                b.n_seq_id[i] = 1
                b.seq_id[i][0] = seq
                b.logits[i] = 1
                i += 1
        b.n_tokens = i
        rc = llama_cpp.llama_decode(self.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode (embeddings) failed with code {rc}")
        if self.own_pooling:
            out = []
            for seq, _, _ in pieces:
                ptr = llama_cpp.llama_get_embeddings_seq(self.ctx, seq)
                if not ptr:
                    raise RuntimeError("llama.cpp returned no pooled embedding")
                out.append(np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).copy())
            return out
        ptr = llama_cpp.llama_get_embeddings(self.ctx)
        if not ptr:
            raise RuntimeError("llama.cpp returned no token embeddings")
        return np.ctypeslib.as_array(ptr, shape=(i, self.n_embd)).copy()

    def forget(self, seq: int) -> None:
        """Free one input's cells (it is done)."""
        if self.memory:
            llama_cpp.llama_memory_seq_rm(self.memory, seq, -1, -1)

    def clear(self) -> None:
        if self.memory:
            llama_cpp.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None


def model_pooling(model: llama_cpp.llama_model_p, threads: int) -> int:
    """The pooling the model's GGUF names (``<arch>.pooling_type``), NONE when it names
    none: read as llama.cpp resolves UNSPECIFIED, from a tiny throw-away context."""
    cparams = llama_cpp.llama_context_default_params()
    cparams.embeddings = True
    cparams.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
    cparams.n_ctx = cparams.n_batch = cparams.n_ubatch = 64
    cparams.n_seq_max = 1
    cparams.n_threads = cparams.n_threads_batch = threads
    cparams.no_perf = True
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        raise RuntimeError("llama.cpp could not create an embedding context")
    try:
        return int(llama_cpp.llama_pooling_type(ctx))
    finally:
        llama_cpp.llama_free(ctx)


def model_embedding(model: llama_cpp.llama_model_p, threads: int) -> tuple[int, str, int]:
    """The model's pooling (llama.cpp's number and its name: ``none`` for a chat model)
    and the length of its embeddings."""
    pooling = model_pooling(model, threads)
    return (
        pooling,
        POOLING_NAMES.get(pooling, str(pooling)),
        llama_cpp.llama_model_n_embd_out(model),
    )
