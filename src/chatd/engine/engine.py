"""The engine's public face: a model, a scheduler on its own thread, and an async API.

Callers (the service layer) render a conversation to prompt tokens, ``submit`` them with
``SamplingParams`` and iterate over the returned ``Generation`` for each step's deltas;
they never see llama.cpp or the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatd.engine.embed_context import EmbedContext, model_embedding
from chatd.engine.embedding import Embedder, EmbedderConfig, EmbedJob
from chatd.engine.grammar import GrammarCompiler
from chatd.engine.model_runner import ModelRunner, RunnerConfig
from chatd.engine.params import UNSCOPED, CacheScope, Delta, SamplingParams, TokenLogprob
from chatd.engine.prefix_disk import PrefixDisk
from chatd.engine.scheduler import Scheduler, SchedulerConfig
from chatd.engine.sequence import SequenceGroup
from chatd.engine.template import ChatTemplate

log = logging.getLogger("chatd.engine")


@dataclass(frozen=True)
class EngineConfig:
    runner: RunnerConfig
    scheduler: SchedulerConfig = SchedulerConfig()
    embedder: EmbedderConfig = EmbedderConfig()
    # The prefix cache's disk tier (engine/prefix_disk.py): its folder (None: none) and
    # the bytes one model's entries may take there.
    prefix_cache_dir: Path | None = None
    prefix_cache_disk_bytes: int = 8 << 30


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.runner = ModelRunner(config.runner)
        n_ctx_seq = context_limit(self.runner, config.scheduler.n_ctx_seq)
        sched = dataclasses.replace(config.scheduler, n_ctx_seq=n_ctx_seq)
        self.disk = (
            PrefixDisk(
                config.prefix_cache_dir, config.prefix_cache_disk_bytes, kv_fingerprint(self.runner)
            )
            if config.prefix_cache_dir is not None and sched.prefix_cache_bytes > 0
            else None
        )
        self.scheduler = Scheduler(self.runner, sched, self.disk)
        self.context_window = sched.n_ctx_seq
        self.kv_capacity = self.runner.n_ctx
        r = self.runner
        self.template = ChatTemplate(
            r.meta("tokenizer.chat_template"),
            bos_token=r.token_names[r.bos].decode("utf-8", "replace") if r.bos >= 0 else "",
            eos_token=r.token_names[next(iter(sorted(r.eog)), 0)].decode("utf-8", "replace"),
        )
        self.grammars = GrammarCompiler(r)
        self.fingerprint = r.fingerprint
        self.n_vocab = r.n_vocab
        self._init_embeddings(config.embedder)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chatd-engine", daemon=True)
        self._warm = threading.Thread(
            target=self.grammars.warm, name="chatd-grammar-warm", daemon=True
        )

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        # Constrained decoding needs llguidance's view of the vocabulary: build it now,
        # beside the engine, rather than inside the first json_schema request's TTFT.
        self._warm.start()

    def stop(self) -> None:
        """Stop the thread and free the llama.cpp model and contexts (an unloaded model's
        memory is given back here, not when Python collects the object)."""
        self._stop.set()
        with self.scheduler.wake:
            self.scheduler.wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._warm.is_alive():  # it reads the model's vocabulary: not after it is freed
            self._warm.join()
        if not self._thread.is_alive():  # else it closes the embedder itself on its way out
            self.embedder.close()
        if self.disk is not None:  # entries still being written reach the disk
            self.disk.close()
        self.runner.close()

    def _loop(self) -> None:
        sched, embedder = self.scheduler, self.embedder
        while not self._stop.is_set():
            try:
                worked = sched.step()
            except Exception as e:  # never let the engine thread die silently
                log.exception("engine step failed")
                sched.fail_all(e)
                worked = False
            # One bounded embedding pass between two generation steps (engine/embedding.py)
            worked = embedder.turn(busy=sched.has_work()) or worked
            if not worked:
                with sched.wake:
                    idle = not sched.has_work() and not embedder.has_work()
                    if idle and not self._stop.is_set():
                        sched.wake.wait(timeout=1.0)
        embedder.close()

    def stats(self) -> dict[str, int]:
        """A racy but safe snapshot for health checks and metrics."""
        sched = self.scheduler
        running = list(sched.running)
        return {
            "running_requests": len(running),
            "running_sequences": sum(len(r.active()) for r in running),
            "waiting_requests": sched.n_waiting,
            "preemptions": sched.preemptions,
            "kv_repacks": sched.repacks,
            "prefix_cache_hit_tokens": sched.cache.hit_tokens,
            "prefix_cache_miss_tokens": sched.cache.miss_tokens,
            "prefix_cache_entries": len(sched.cache),
            "prefix_cache_bytes": sched.cache.bytes_used,
            "kv_cells_used": sched.cells.used,
        }

    # --- prompts ----------------------------------------------------------------------
    def render_chat(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        text = self.template.render(messages, add_generation_prompt=True, tools=tools)
        return self.runner.tokenize(text, add_special=self.runner.add_bos, parse_special=True)

    def tokenize_text(self, text: str) -> list[int]:
        """Plain text (no special tokens) in this model's tokens."""
        return self.runner.tokenize(text, add_special=False, parse_special=False)

    def count_tokens(self, text: str) -> int:
        """Tokens of plain text with this model's tokenizer (for estimates)."""
        return len(self.tokenize_text(text))

    def encode_prompt(self, text: str, start: bool = True) -> list[int]:
        """A raw prompt (the Completions API: no chat template) as the model reads a
        document: its BOS first when it wants one (``start``), special tokens' text read
        as those tokens (the client writes the whole prompt). An empty document is its
        start: BOS, else the end-of-text token (OpenAI's ``<|endoftext|>``)."""
        r = self.runner
        ids = r.tokenize(text, add_special=start and r.add_bos, parse_special=True)
        if not ids and start:
            ids = [r.bos if r.bos >= 0 else min(r.eog)]
        return ids

    def detokenize(self, tokens: list[int]) -> str:
        """Token ids as the text they render (control tokens as nothing)."""
        return b"".join(self.runner.token_bytes[t] for t in tokens).decode("utf-8", "replace")

    @property
    def fim_tokens(self) -> tuple[int, int, int] | None:
        """The model's fill-in-the-middle tokens (prefix, suffix, middle), if it has all
        three (llama.cpp reads them from the GGUF, or finds them by their text)."""
        return self.runner.fim

    # --- embeddings -------------------------------------------------------------------
    def _init_embeddings(self, config: EmbedderConfig) -> None:
        """What this model's embeddings are: pooled by the model's own GGUF pooling type
        when it names one (then it is an embedding model, not one to chat with), else
        mean-pooled here over the tokens' last hidden states. The context itself is made
        on the first request."""
        r = self.runner
        threads = r.config.n_threads or os.cpu_count() or 1
        pooling, name, self.embedding_dimensions = model_embedding(r.model, threads)
        own = name != "none"
        self.embedding_only = own
        self.embedding_pooling = name if own else "mean"
        if name == "rank":  # a reranker: refused by the service, no context is made
            self.embedding_limit = 0
            self.embedder = Embedder(_no_context, self.scheduler.wake, config)
            return
        if own:  # whole inputs in one pass: the batch is the longest input
            limit = min(r.n_ctx_train or self.context_window, self.context_window)
            n_ctx = n_batch = limit
        else:
            limit = n_ctx = self.context_window
            n_batch = max(config.idle_tokens, config.busy_tokens)
        self.embedding_limit = limit  # tokens one input may have

        def make() -> EmbedContext:
            return EmbedContext(r.model, pooling, n_ctx, n_batch, 64, threads)

        self.embedder = Embedder(make, self.scheduler.wake, config)

    def embedding_tokens(self, text: str) -> list[int]:
        """Text as an embedding input: plain text, with the special tokens the model's
        tokenizer adds itself (BOS; an encoder's CLS and SEP), as llama.cpp's server does."""
        return self.runner.tokenize(text, add_special=True, parse_special=False)

    def embed(self, inputs: list[list[int]]) -> Embedding:
        """Queue token lists for their (normalized) vectors; ``await`` the returned
        ``Embedding``'s ``vectors()``. Each list is non-empty and at most
        ``embedding_limit`` tokens (the caller checks: a ValueError here otherwise)."""
        if any(len(t) > self.embedding_limit for t in inputs):
            raise ValueError(f"an input exceeds {self.embedding_limit} tokens")
        return Embedding(self.embedder, inputs)

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """Text as the model's tokens, special-token text (``<|im_start|>``) read as those
        tokens, as vLLM's and llama.cpp's ``/tokenize`` read it; ``add_special`` adds the
        tokens the model puts around a text (BOS for most)."""
        return self.runner.tokenize(text, add_special=add_special, parse_special=True)

    def token_piece(self, token: int) -> bytes:
        """A token's bytes as ``/detokenize`` writes them: a control token by its name."""
        return self.runner.token_names[token]

    # --- generation -------------------------------------------------------------------
    def submit(
        self, prompt: list[int], params: SamplingParams, scope: CacheScope = UNSCOPED
    ) -> Generation:
        """Queue a request; raises QueueFull at once when the queue is full, so callers
        can refuse before they send a single byte. ``scope`` says whose cached prompts it
        may reuse and whose turn it waits for (``CacheScope``)."""
        return Generation(self.scheduler, prompt, params, self.n_vocab, scope)


class Generation:
    """One submitted request: iterate it for each step's deltas until every choice ends.

    Stopping early (client gone) must call ``cancel``; the scheduler then drops the
    request's sequences at its next step.
    """

    def __init__(
        self,
        scheduler: Scheduler,
        prompt: list[int],
        params: SamplingParams,
        n_vocab: int,
        scope: CacheScope = UNSCOPED,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[list[Delta] | BaseException] = asyncio.Queue()
        queue = self._queue

        def emit(item: list[Delta] | BaseException) -> None:
            # RuntimeError: the event loop is gone (shutdown), nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, item)

        self._scheduler = scheduler
        self._n = params.n
        self._finished = 0
        self._request = SequenceGroup(prompt, params, n_vocab, emit, scope)
        scheduler.submit(self._request)

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens whose KV was reused from the prefix cache (known once the
        first delta arrived: the engine thread sets it before emitting)."""
        return self._request.cached_tokens or 0

    @property
    def prompt_logprobs(self) -> list[TokenLogprob | None] | None:
        """With ``SamplingParams.prompt_logprobs``: each prompt token's logprob given
        those before it (None for the first), complete once the first delta arrived (the
        engine thread fills it before emitting)."""
        return self._request.prompt_logprobs

    def prediction_tokens(self) -> tuple[int, int]:
        """(accepted, rejected) predicted tokens over all choices, as OpenAI counts
        them: accepted ones appear in the output, the rest of the prediction did not."""
        req = self._request
        if not req.params.prediction:  # prompt-lookup drafts are no prediction of the client's
            return 0, 0
        accepted = sum(s.drafter.matched for s in req.sequences if s.drafter is not None)
        n_predicted = len(req.params.prediction) * len(req.sequences)
        return accepted, max(0, n_predicted - accepted)

    @property
    def done(self) -> bool:
        return self._finished >= self._n

    def cancel(self) -> None:
        if not self.done:
            self._scheduler.cancel(self._request)

    async def __aiter__(self) -> AsyncIterator[list[Delta]]:
        try:
            while not self.done:
                item = await self._queue.get()
                if isinstance(item, BaseException):
                    self._finished = self._n
                    raise item
                self._finished += sum(1 for d in item if d.finish_reason is not None)
                yield item
        finally:
            self.cancel()


def _no_context() -> EmbedContext:
    raise RuntimeError("this model makes no embeddings")


class Embedding:
    """One submitted embedding job: ``await vectors()`` (float32 arrays, one per input);
    ``cancel`` drops its work not yet done (a client gone)."""

    def __init__(self, embedder: Embedder, inputs: list[list[int]]) -> None:
        loop = asyncio.get_running_loop()
        self._future: asyncio.Future[list[Any]] = loop.create_future()
        future = self._future

        def settle(result: list[Any] | BaseException) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        def done(result: list[Any] | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits
                loop.call_soon_threadsafe(settle, result)

        self._embedder = embedder
        self._job = EmbedJob(inputs, done)
        embedder.submit(self._job)

    @property
    def n_tokens(self) -> int:
        return self._job.n_tokens

    async def vectors(self) -> list[Any]:
        try:
            return await asyncio.shield(self._future)
        except asyncio.CancelledError:
            self.cancel()
            raise

    def cancel(self) -> None:
        if not self._job.finished:
            self._embedder.cancel(self._job)


def kv_fingerprint(runner: ModelRunner) -> str:
    """What makes saved KV bytes this engine's own: the model file and the build
    (``ModelRunner.fingerprint``) and the RoPE parameters, which encode every key's
    position (a stretched model's cells are not an unstretched one's). The KV type is
    llama.cpp's default (f16) in every build chatd makes."""
    rope = hashlib.sha256(repr(dataclasses.astuple(runner.rope)).encode()).hexdigest()[:8]
    return f"{runner.fingerprint}_{rope}"


def context_limit(runner: ModelRunner, wanted: int) -> int:
    """The per-request context window: ``wanted``, within the KV cells and within what the
    model can take (its training context, as stretched by RoPE scaling).

    A window beyond the training context is cut to it rather than served: past the
    positions a model was trained on (without scaling) its answers degrade into noise,
    which llama.cpp only warns about. The log says so, and how to stretch the model.
    """
    rope, name = runner.rope, runner.config.model_path.name
    if rope.custom:
        log.info("model %s: %s", name, rope.describe())
    model_limit = rope.n_ctx_stretched or runner.n_ctx
    limit = min(model_limit, runner.n_ctx)
    if wanted <= limit:
        return wanted
    if limit == runner.n_ctx and runner.n_ctx < model_limit:
        why = f"the KV cache has {runner.n_ctx} cells (--n-ctx, a model entry's n_ctx)"
    elif rope.n_ctx_stretched > rope.n_ctx_train:
        why = (
            f"the model's training context {rope.n_ctx_train} stretched {rope.factor:g}x"
            " by RoPE scaling goes no further (raise --rope-scale)"
        )
    else:
        why = (
            f"the model was trained on {rope.n_ctx_train} tokens and longer prompts would"
            " be noise; stretch it with --rope-scaling yarn (or a model entry's"
            ' rope_scaling; docs/models.md, "Stretching a model\'s context")'
        )
    log.warning("model %s: context window %d cut to %d tokens: %s", name, wanted, limit, why)
    return limit
