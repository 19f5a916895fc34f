"""Where chatd talks to llama.cpp: model loading, tokenization, KV memory edits, one
decode step (with contexts.py: how contexts are made and their sequences' state moved, and
the wide-prefill context; embed_context.py: the embeddings' own context).

Everything here is synchronous and called from the scheduler's worker thread; ctypes
releases the GIL during ``llama_decode``, so the event loop keeps running.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import llama_cpp
import numpy as np

from chatd.engine.batch import Batch, Chunk, DecodeError
from chatd.engine.contexts import PrefillContext, new_context, state_get, state_set
from chatd.engine.rope import RopeScaling

_backend_lock = threading.Lock()
_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_backend_init()
            _backend_ready = True


@dataclass(frozen=True)
class RunnerConfig:
    model_path: Path
    n_ctx: int = 16384  # KV cells shared by every sequence (unified cache)
    n_seq_max: int = 64  # concurrent llama.cpp sequences (one per choice)
    n_batch: int = 512  # tokens per llama_decode call
    # Tokens per llama.cpp compute pass (ubatch). Measured here (llama.cpp in
    # llama-cpp-python 0.3.36, x86-64 CPU): passes of 1..63 tokens give bit-identical
    # logits for a sequence whatever else shares the pass, while passes of 64+ tokens take
    # another kernel path whose logits differ (by up to 0.83). Staying below 64 makes every
    # result independent of the batch, so a seed reproduces under any load; prefill speed
    # is unchanged (~450 tok/s either way).
    n_ubatch: int = 63
    n_threads: int = 0  # 0: every core
    # Layers llama.cpp puts on a GPU (-1: all); a build that cannot offload refuses any
    # but 0 (check_gpu_offload). The contexts keep llama.cpp's offload_kqv (true): the KV
    # cells of an offloaded layer live on its GPU too.
    n_gpu_layers: int = 0
    # Cells of the second context that computes long prompts in wide passes (0: none; see
    # PrefillContext). At least the longest prompt a request may have.
    prefill_ctx: int = 0
    # Told the fraction of the model loaded (0..1) while llama.cpp reads it, from the
    # loading thread: how a slow load shows its progress (chatd/service/load_progress.py).
    progress: Callable[[float], None] | None = field(default=None, compare=False)
    # RoPE scaling (engine/rope.py), and the per-request context window it stretches the
    # model's training context to when no factor is given (0: none wanted).
    rope: RopeScaling = RopeScaling()
    context_window: int = 0


class ModelRunner:
    """Owns one llama.cpp model and context."""

    def __init__(self, config: RunnerConfig) -> None:
        check_gpu_offload(config.n_gpu_layers)
        _init_backend()
        self.config = config
        path = str(config.model_path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"model file not found: {path}")
        llama_cpp.llama_log_set(_silent_log, ctypes.c_void_p(0))
        mparams = llama_cpp.llama_model_default_params()
        # No extra buffer types (AMX, repacked weights): on Intel CPUs with AMX the AMX
        # mat-mul of this llama.cpp build crashes (seen on a Xeon with amx_int8), and
        # repacking would change which kernels run, and so the numbers batch invariance
        # was measured on. Q4_1 weights have no repacked form on x86 anyway. With a GPU it
        # only concerns the layers left on the CPU (they stay in plain host buffers, which
        # the GPU can also read to compute a large pass): offloaded ones use the GPU's.
        mparams.use_extra_bufts = False
        # llama.cpp's default (-1) is every layer on the GPU when the build has one: chatd
        # offloads only what it is told. "All" is passed as llama-cpp-python's Llama does.
        mparams.n_gpu_layers = 0x7FFFFFFF if config.n_gpu_layers < 0 else config.n_gpu_layers
        progress = _progress_callback(config.progress)
        if progress is not None:  # kept referenced for the whole load
            mparams.progress_callback = progress
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load model {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        # Read before any context exists: llama.cpp raises the model's n_ctx_train when a
        # context with custom YaRN scaling is created.
        self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model)
        # Both contexts get the same RoPE parameters: cells computed in the wide-prefill
        # context are moved into the main one, so their positions must be encoded alike.
        self.rope = config.rope.resolve(self.n_ctx_train, config.context_window)

        threads = config.n_threads or os.cpu_count() or 1
        # One more sequence than callers see: the scratch row of decode(pad_single=True).
        self._scratch_seq = config.n_seq_max
        n_batch = max(config.n_batch, config.n_seq_max)
        self.ctx = new_context(
            self.model,
            config.n_ctx,
            n_batch,
            config.n_ubatch,
            config.n_seq_max + 1,
            threads,
            self.rope,
        )
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.batch = Batch(max(config.n_batch, config.n_seq_max) + 1)
        self.wide_prefill = config.prefill_ctx > 0
        self._prefill: PrefillContext | None = None
        self._prefill_used = 0.0
        self._threads = threads

        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        fim = tuple(
            getattr(llama_cpp, f"llama_vocab_fim_{part}", lambda _: -1)(self.vocab)
            for part in ("pre", "suf", "mid")
        )
        self.fim: tuple[int, int, int] | None = fim if min(fim) >= 0 else None  # type: ignore[assignment]
        self.eog = frozenset(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self.vocab, t)
        )
        self.control = frozenset(
            t for t in range(self.n_vocab) if llama_cpp.llama_vocab_is_control(self.vocab, t)
        )
        # Raw bytes of every token as it appears in generated text (control tokens render
        # as nothing) and as it is named in logprobs (control tokens by their text).
        self.token_bytes: list[bytes] = [self._piece(t, special=False) for t in range(self.n_vocab)]
        self.token_names: list[bytes] = [
            self._piece(t, special=True) if t in self.control else self.token_bytes[t]
            for t in range(self.n_vocab)
        ]
        self.fingerprint = _fingerprint(config.model_path, config.n_gpu_layers)

    # --- metadata ---------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        size = 1 << 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_model_meta_val_str(self.model, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.raw[:n].decode("utf-8", errors="replace")
            size = n + 1

    # --- tokens -----------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 16
        while True:
            arr = (llama_cpp.llama_token * cap)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), arr, cap, add_special, parse_special
            )
            if n >= 0:
                return list(arr[:n])
            cap = -n

    def _piece(self, token: int, *, special: bool) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    # --- KV memory --------------------------------------------------------------------
    def seq_move(self, src: int, dst: int) -> None:
        """Give every cell of ``src`` to ``dst`` (cells are shared, not copied)."""
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, -1, -1)
        llama_cpp.llama_memory_seq_rm(self.memory, src, -1, -1)

    def seq_copy(self, src: int, dst: int, n_tokens: int) -> None:
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, 0, n_tokens)

    def seq_move_tail(self, src: int, dst: int, start: int) -> None:
        """Give ``src``'s cells from position ``start`` on to ``dst``."""
        llama_cpp.llama_memory_seq_cp(self.memory, src, dst, start, -1)
        llama_cpp.llama_memory_seq_rm(self.memory, src, start, -1)

    def seq_trim(self, seq_id: int, start: int) -> None:
        """Free ``seq_id``'s cells from position ``start`` on."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, start, -1)

    def memory_clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, True)

    def seq_state(self, seq_id: int, start: int, end: int) -> ctypes.Array[ctypes.c_ubyte]:
        """``seq_id``'s KV at positions ``start``..``end``-1, serialized (llama.cpp's
        per-sequence state: each cell's position, then its K and V rows): what the prefix
        cache keeps in host memory and a repack moves. ~4 ms per 1000 tokens here."""
        scratch = self._scratch_seq
        llama_cpp.llama_memory_seq_cp(self.memory, seq_id, scratch, start, end)
        try:
            return state_get(self.ctx, scratch)
        finally:
            llama_cpp.llama_memory_seq_rm(self.memory, scratch, -1, -1)

    def seq_restore(self, state: object, owners: Sequence[tuple[int, int, int]]) -> bool:
        """Put serialized cells back (llama.cpp takes free cells from its head on, in
        position order) and give each ``(seq_id, start, end)`` of ``owners`` those
        positions; cells no owner takes are freed at once. False when they do not fit."""
        scratch = self._scratch_seq
        ok = state_set(self.ctx, state, scratch)
        try:
            if ok:
                for seq_id, start, end in owners:
                    llama_cpp.llama_memory_seq_cp(self.memory, scratch, seq_id, start, end)
        finally:
            llama_cpp.llama_memory_seq_rm(self.memory, scratch, -1, -1)
        return ok

    # --- decode -----------------------------------------------------------------------
    def run(self, chunks: list[Chunk], pad_single: bool = False) -> np.ndarray:
        """One ``llama_decode`` over ``chunks``; their output rows, in order (``decode``)."""
        return self.decode(self.batch.fill(chunks), pad_single)

    def decode(self, n_outputs: int, pad_single: bool = False) -> np.ndarray:
        """Run the filled batch; returns the (n_outputs, n_vocab) output logits.

        The array is a view of llama.cpp's buffer, valid until the next ``decode``: the
        scheduler samples every row within the step (a copy cost ~1 ms a step at 32 rows).

        ``pad_single``: a batch of one token gets a second, throw-away row (a scratch
        sequence, removed right after), because llama.cpp computes the attention of a
        lone token over 512+ cells with another kernel (split KV) whose sums differ from
        those of every larger pass.
        """
        padded = pad_single and self.batch.n_tokens == 1
        if padded:
            self.batch.add([0], 0, self._scratch_seq, False)
        rc = llama_cpp.llama_decode(self.ctx, self.batch.as_llama_batch())
        if padded:
            self.batch.n_tokens -= 1
            llama_cpp.llama_memory_seq_rm(self.memory, self._scratch_seq, -1, -1)
        if rc != 0:
            raise DecodeError(rc)
        if n_outputs == 0:
            return np.empty((0, self.n_vocab), dtype=np.float32)
        ptr = llama_cpp.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(n_outputs, self.n_vocab))

    @property
    def prefill(self) -> PrefillContext | None:
        """The wide-prefill context (None when it is off), made on first use: its cells
        (0.18 GiB for the embedded model's 8,192-token window) are memory that short
        prompts never need, so a server that has seen none does not hold it."""
        if not self.wide_prefill:
            return None
        if self._prefill is None:
            self._prefill = PrefillContext(self, self.config.prefill_ctx, self._threads)
        self._prefill_used = time.monotonic()
        return self._prefill

    def release_prefill(self, unused_for: float) -> None:
        """Free the wide-prefill context once it has gone unused for ``unused_for``
        seconds (the caller holds no prompt in it); the next long prompt makes it again
        (~0.1 s)."""
        if self._prefill is not None and time.monotonic() - self._prefill_used >= unused_for:
            self._prefill.close()
            self._prefill = None

    def close(self) -> None:
        if self._prefill is not None:
            self._prefill.close()
            self._prefill = None
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None


class GPUOffloadUnsupported(RuntimeError):
    """GPU layers asked of a llama.cpp build that cannot offload any."""


def check_gpu_offload(n_gpu_layers: int) -> None:
    """Refuse GPU layers this llama.cpp cannot offload: llama.cpp itself would load every
    layer on the CPU and say nothing (not even in its log), so a GPU user would get a slow
    CPU run unawares. ``llama_supports_gpu_offload`` is false on a CPU-only build and on a
    GPU build that finds no device."""
    if n_gpu_layers != 0 and not llama_cpp.llama_supports_gpu_offload():
        asked = "every layer" if n_gpu_layers < 0 else f"{n_gpu_layers} layers"
        raise GPUOffloadUnsupported(
            f"{asked} on the GPU asked for (--gpu-layers / gpu_layers), but this"
            " llama-cpp-python cannot offload to a GPU (llama_supports_gpu_offload() is"
            " false: it was built without CUDA, Metal or Vulkan, or it finds no GPU device);"
            " reinstall it with its GPU backend (docs/gpu.md), or run on the CPU with"
            " --gpu-layers 0 (a model's gpu_layers = 0)"
        )


def _progress_callback(report: Callable[[float], None] | None) -> object | None:
    """llama.cpp's load progress callback around ``report``; a failing report never
    aborts the load (it returns True: go on)."""
    if report is None:
        return None

    def called(fraction: float, user_data: ctypes.c_void_p) -> bool:
        with contextlib.suppress(Exception):  # a progress line is never worth a failed load
            report(float(fraction))
        return True

    return llama_cpp.llama_progress_callback(called)


@llama_cpp.llama_log_callback
def _silent_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if level >= 4 or os.environ.get("CHATD_LLAMA_LOG"):  # errors always reach stderr
        os.write(2, text)


def _fingerprint(path: Path, gpu_layers: int = 0) -> str:
    """Stable for one model file and one engine build; changes when either does, and with
    the GPU layers (GPU kernels round differently from the CPU's).

    Hashes the file's size and its first and last MiB rather than the whole file, so a
    multi-GB model does not delay start-up.
    """
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    h.update(llama_cpp.__version__.encode())
    h.update(llama_cpp.llama_print_system_info())
    if gpu_layers:  # none: the fingerprint of a CPU run stays what it was
        h.update(f"gpu_layers={gpu_layers}".encode())
    from chatd import __version__

    h.update(__version__.encode())
    return "fp_" + h.hexdigest()[:10]
