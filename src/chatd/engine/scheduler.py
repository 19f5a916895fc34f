"""Continuous batching: every step puts one token of every decoding choice, plus chunks
of the prompts being prefilled, into a single ``llama_decode`` call.

Runs only on the engine thread; other threads talk to it through ``submit``/``cancel``.

A step, in order:
1. take new requests in; drop cancelled ones (their seq ids and KV cells are released);
2. plan the step: decode tokens first (one per running choice), then prompt chunks
   (only the room left in the step's last compute pass while others decode, so a long
   prompt does not stall running streams), then admit waiting requests while seq ids,
   KV cells and the budget allow; if the KV cache would overflow, the newest request is
   preempted (its cells freed, its tokens recomputed later: the client sees a pause);
3. decode (llama.cpp computes it in passes of ``n_ubatch`` tokens, which keeps every
   result independent of the batch: see RunnerConfig); sample each row that asked for
   logits; emit.

A request with n > 1 prefills its prompt once on its lead sequence and then shares the
prompt's cells with the other choices (``llama_memory_seq_cp``). A prompt whose prefix a
running request is still computing waits for it and shares it (``SequenceGroup.follows``)
rather than computing it again; the wide-prefill context serves the shortest remaining
prompt first, with credit for waiting, so a short prompt never waits behind long ones.

Tenants (``CacheScope.partition``) are kept apart: a prompt reuses another partition's
cells only within the shared part both declare (kv_cache.py), and admission, prompt
compute and preemption are fair across partitions (waiting.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from chatd.engine.batch import DecodeError
from chatd.engine.contexts import PrefillContext
from chatd.engine.errors import EngineFailure, QueueFull
from chatd.engine.feeds import Feed, Work
from chatd.engine.grammar import GrammarError
from chatd.engine.kv_cache import CacheHit, KVAllocator, PrefixCache
from chatd.engine.model_runner import ModelRunner
from chatd.engine.output import OutputStep
from chatd.engine.params import Delta
from chatd.engine.prefix_disk import PrefixDisk
from chatd.engine.prefix_reuse import PrefixReuse, lendable_tokens, lenders, usable
from chatd.engine.sequence import Phase, Sequence, SequenceGroup
from chatd.engine.speculation import Drafter
from chatd.engine.waiting import WaitingQueue, interleaved, load
from chatd.engine.wide_turns import WideTurns, in_wide_part


@dataclass(frozen=True)
class SchedulerConfig:
    max_prefill_tokens: int = 252  # prompt tokens per step when nothing is decoding
    max_waiting: int = 256  # requests waiting for admission before new ones get QueueFull
    n_ctx_seq: int = 8192  # context window of one choice (prompt + completion)
    prefix_cache_bytes: int = 512 << 20  # host memory for finished sequences' KV (0: off)
    prefix_cache_entries: int = 256  # finished sequences kept in it
    # Cells only the retired sequence holds before a repack frees them (at least as many as
    # the live ones: a repack moves every live cell, ~8 ms per 1000 here).
    repack_min_cells: int = 512
    max_draft_tokens: int = 48  # predicted tokens verified per sequence and step
    prompt_lookup: bool = False  # without a prediction, draft from n-grams of the prompt
    # Prompt tokens computed in the prefill context per step: while others decode (one
    # pass of one 64-token block, ~0.25 s here), and when nothing else runs (passes of
    # 512 compute 2-9% more tokens a second than passes of 256 here: 285 against 260-281).
    tiled_tokens_busy: int = 64
    tiled_tokens_idle: int = 512
    # At rest, the prefill context is freed once unused this long (made again on demand).
    prefill_keep_seconds: float = 30.0


class Scheduler:
    def __init__(
        self, runner: ModelRunner, config: SchedulerConfig, disk: PrefixDisk | None = None
    ) -> None:
        self.runner = runner
        self.config = config
        self.output = OutputStep(runner, config.n_ctx_seq)
        self.waiting = WaitingQueue()
        self.running: list[SequenceGroup] = []
        cache = PrefixCache(
            runner, config.prefix_cache_bytes, config.prefix_cache_entries, disk=disk
        )
        self.kv = KVAllocator(runner, runner.config.n_seq_max, cache)
        self.cells, self.cache = self.kv.cells, self.kv.cache
        self.n_live = self.kv.n_live
        self.wide = WideTurns(runner, self.cells)  # whose prompt the prefill context computes
        self.reuse = PrefixReuse(self.kv, runner.n_ctx)  # hits, and prefixes computed once
        self._incoming: list[SequenceGroup] = []
        self._lock = threading.Lock()
        self.wake = threading.Condition(self._lock)
        self.n_waiting = 0  # readable from any thread (metrics, admission control)
        self.preemptions = 0
        self.repacks = 0  # KV repacks (kv_cells.py), for metrics and tests

    # --- called from other threads ------------------------------------------------------
    def submit(self, request: SequenceGroup) -> None:
        with self._lock:
            if self.n_waiting >= self.config.max_waiting:
                raise QueueFull(f"{self.n_waiting} requests are already waiting")
            if request.params.n > self.n_live:
                raise EngineFailure(
                    f"n={request.params.n} exceeds this engine's {self.n_live} concurrent sequences"
                )
            self._incoming.append(request)
            self.n_waiting += 1
            self.wake.notify()

    def cancel(self, request: SequenceGroup) -> None:
        request.cancelled = True
        with self._lock:
            self.wake.notify()

    def has_work(self) -> bool:
        return bool(self._incoming or self.waiting or self.running)

    # --- the step -------------------------------------------------------------------
    def step(self) -> bool:
        """One step, shaped as nano-vllm's ``LLMEngine.step``: schedule, run, postprocess.
        Returns False when there was nothing to do."""
        if not self._take_incoming():
            return False
        work = self._schedule()
        logits = self._run(work)
        if logits is not None:
            self._postprocess(work, logits)
        return True

    def _take_incoming(self) -> bool:
        with self._lock:
            self.waiting.extend(self._incoming)
            self._incoming.clear()
        self._drop_cancelled()
        if self.waiting or self.running:
            return True
        self.kv.settle()  # at rest: no retired cell outlives the work
        self.runner.release_prefill(unused_for=self.config.prefill_keep_seconds)
        return False

    def _schedule(self) -> Work:
        """The step's work: which tokens of which sequences go into the pass."""
        feeds = self._plan()
        # A pass of one token over 512+ cells takes llama.cpp's split-KV attention, whose
        # sums differ from the path every larger pass takes: such a pass gets a second
        # row so a sequence's results do not depend on whether it runs alone. That row
        # costs a whole row of compute (~6 ms here): drafts from the prompt take its
        # place when there are any, so that it may yield tokens; and a request that asked
        # for no reproducibility (sampled over the whole vocabulary, no seed) skips it,
        # its cells from there on no longer lent to other prompts (they would not match a
        # cold computation). A nucleus (top_p < 1) can be as good as greedy, so it pads.
        pad = self.cells.used >= 256
        if pad and len(feeds) == 1:
            f = feeds[0]
            self._draft_alone(f)
            p = f.request.params
            random = p.seed is None and p.temperature > 0 and p.top_p >= 1.0
            if f.n_tokens == 1 and random:
                pad = False
                f.seq.lendable = min(f.seq.lendable, f.seq.n_cached)
        return Work(feeds, pad)

    def _run(self, work: Work) -> np.ndarray | None:
        """The prefill context's pass, if a long prompt waits for one, then the main
        pass; its output rows (None when there was no main pass or it failed)."""
        cfg = self.config
        tokens = cfg.tiled_tokens_busy if work.feeds else cfg.tiled_tokens_idle
        self.wide.step(self.running, tokens, self._make_room)
        if not work.feeds:
            return None
        chunks = [f.chunk() for f in work.feeds]
        try:
            return self.runner.run(chunks, pad_single=work.pad)
        except DecodeError as e:
            self._on_decode_error(e)
            return None

    def _postprocess(self, work: Work, logits: np.ndarray) -> None:
        """Cells are now held; every output row becomes tokens and deltas (the output
        step), finished choices free their ids, requests are told."""
        for f in work.feeds:
            self.cells.appended(f.seq.seq_id, f.seq.n_cached, f.n_tokens)
            f.seq.n_cached += f.n_tokens
        touched: dict[int, tuple[SequenceGroup, list[Delta]]] = {}
        failed: dict[int, SequenceGroup] = {}
        first_row = 0
        for f in [f for f in work.feeds if f.wants_logits or f.prompt_rows]:
            rows = logits[first_row : first_row + f.n_rows]
            first_row += f.n_rows
            if f.prompt_rows:  # each row the next prompt token's logprob; the last starts
                self.output.prompt_logprobs(f.request, f.seq.n_cached - f.n_tokens, rows)
                rows = rows[-1:]
                if not f.wants_logits:
                    continue
            if f.request.id in failed:
                continue
            out = touched.setdefault(f.request.id, (f.request, []))[1]
            try:
                if f.fork:
                    self._fork(f.request)
                    for s in [s for s in f.request.active() if s.n_generated == 0]:
                        out.extend(self.output.advance(f.request, s, rows[0]))
                        self._retire_if_done(f.request, s)
                elif f.drafts:
                    out.extend(self._verify(f, rows, alone=len(work.feeds) == 1))
                else:
                    out.extend(self.output.advance(f.request, f.seq, rows[0]))
                    self._retire_if_done(f.request, f.seq)
            except GrammarError as e:  # this request's grammar broke: fail it alone
                failed[f.request.id] = f.request
                f.request.emit(EngineFailure(f"constrained decoding failed: {e}"))
        for req in failed.values():
            touched.pop(req.id, None)
            self.running.remove(req)
            self._release(req)
        for req, deltas in touched.values():
            if deltas:
                req.emit(deltas)
        for req in [r for r in self.running if r.all_finished()]:
            self._release(req)
            self.running.remove(req)

    # --- planning ---------------------------------------------------------------------
    def _plan(self) -> list[Feed]:
        if not self.running:
            self.kv.settle()  # nothing runs: every held cell is retired, freed whole
        elif self.cells.dead >= max(self.config.repack_min_cells, self.cells.used // 2):
            self._repack()  # the retired cells cost every step more than moving the live ones
        while True:
            feeds, needed = self._plan_once()
            if needed <= self.runner.n_ctx:
                return feeds
            if self._repack():
                continue
            if not self._preempt_newest():
                # A lone request that cannot fit: fail it rather than spin.
                req = self.running[0]
                self.running.remove(req)
                self._release(req)
                req.emit(EngineFailure("the request does not fit in the KV cache"))

    def _plan_once(self) -> tuple[list[Feed], int]:
        """The step's feeds, and the KV cells they need in all (held + new + retired)."""
        feeds = self._decode_feeds()
        ub = self.runner.config.n_ubatch
        n_decode = sum(f.n_tokens for f in feeds)
        if feeds:
            # Prompts fill the room left in the step's last compute pass (at least a
            # quarter of one), so running streams wait for at most about one extra pass.
            budget = -n_decode % ub
            if budget < ub // 4:
                budget += ub
        else:
            budget = self.config.max_prefill_tokens
        budget = min(budget, self.runner.batch.capacity - n_decode)
        for req in interleaved(self.running):  # one prompt of each partition in turn
            budget = self._plan_prefill(req, feeds, budget)
        used = self.cells.used + sum(f.n_tokens for f in feeds)
        live = lenders(self.running) if self.waiting and budget > 0 else []
        running = load(self.running)
        while budget > 0 and (req := self.waiting.head(running)) is not None:
            active = req.active()
            if len(active) > len(self.kv.free_ids):
                break
            self._shape(req)
            hit = self.reuse.lookup(req, live, self.runner.n_ctx - used)
            reused = usable(req, hit)
            lender, ahead = self.reuse.ahead(req, reused, self.running)
            if used + req.kv_needed() - max(reused, ahead) > self.runner.n_ctx and self.running:
                break
            held = self.cells.used
            self._admit(req, hit, reused, lender, ahead)
            used += self.cells.used - held  # the cells a cache entry's restore brought back
            live = lenders(self.running)  # it lends to the next one (a restored hit: all)
            running[req.partition] += len(active)
            before = budget
            budget = self._plan_prefill(req, feeds, budget)
            used += before - budget
        # cells the prefill context will hand over
        used += self.wide.pending(self.running)
        return feeds, used

    def _decode_feeds(self) -> list[Feed]:
        """One token per running choice past its prompt, plus the drafts (predicted
        outputs, prompt lookup) that fill the rest of the step's one compute pass."""
        feeds: list[Feed] = []
        for req in self.running:
            if req.forked:
                feeds.extend(Feed(req, s, 1, True, False) for s in req.active() if s.pending == 1)
        room = self.runner.config.n_ubatch - len(feeds)
        for f in feeds:
            if self._drafting(f.request) and room > 0:
                f.drafts = self._drafts(f.request, f.seq, room)
                f.n_tokens += len(f.drafts)
                room -= len(f.drafts)
        return feeds

    def _admit(
        self,
        req: SequenceGroup,
        hit: CacheHit | None,
        reused: int,
        lender: SequenceGroup | None = None,
        ahead: int = 0,
    ) -> None:
        """Move the waiting queue's head to running, its lead reusing ``reused`` positions
        of ``hit``; or, with a ``lender`` computing a longer prefix of its prompt, waiting
        for that prefix before it computes anything (``_follow``)."""
        self.waiting.pop(req)
        with self._lock:
            self.n_waiting -= 1
        for s in req.active():
            s.seq_id = self.kv.allocate()
            s.n_cached = 0
            s.lendable = Sequence.lendable  # recomputed from scratch: exact again
        req.phase = Phase.RUNNING
        req.forked = False
        req.follows, req.follow_until = lender, ahead
        req.tiled_credit = 0
        self.running.append(req)
        if lender is None:
            self.reuse.take(req, hit, reused)

    def _plan_prefill(self, req: SequenceGroup, feeds: list[Feed], budget: int) -> int:
        if req.follows is not None and not self.reuse.follow(req, self.running):  # no budget
            return budget
        if budget <= 0:
            return budget
        if not req.forked:
            if in_wide_part(req):  # the prefill context computes this part
                return budget
            lead = req.lead
            n = min(req.prompt_len - lead.n_cached, budget)
            if n > 0:
                done = lead.n_cached + n == req.prompt_len
                rows = req.prompt_logprobs is not None
                feeds.append(Feed(req, lead, n, done, done, prompt_rows=rows))
                budget -= n
            return budget
        for s in req.active():
            if s.pending > 1 and budget > 0:
                n = min(s.pending, budget)
                done = n == s.pending
                feeds.append(Feed(req, s, n, done, False))
                budget -= n
        return budget

    # --- wide prefill passes ------------------------------------------------------------
    def _shape(self, req: SequenceGroup) -> None:
        """Before its first lookup: what of its prompt is computed wide, what is shared."""
        req.shape(PrefillContext.BLOCK if self.runner.wide_prefill else 0)

    # --- speculative decoding -------------------------------------------------------------
    def _drafting(self, req: SequenceGroup) -> bool:
        """Drafts in every step: from a prediction, or from the prompt with prompt lookup on."""
        return bool(req.params.prediction) or self.config.prompt_lookup

    def _draft_alone(self, f: Feed) -> None:
        """A lone decoding row that would be padded gets prompt-lookup drafts instead."""
        if f.n_tokens != 1 or f.fork or f.seq.n_generated == 0:
            return
        room = min(self.runner.config.n_ubatch - 1, self.runner.n_ctx - self.cells.used - 1)
        if room > 0:
            f.drafts = self._drafts(f.request, f.seq, room)
            f.n_tokens += len(f.drafts)

    def _drafts(self, req: SequenceGroup, seq: Sequence, room: int) -> list[int]:
        if seq.drafter is None:
            # Made on first use, not at admission: most sequences never draft, and an
            # unaligned prompt drafter has no state to keep before then.
            seq.drafter = Drafter(tuple(req.prompt.tolist()), from_prompt=True)
        left = req.params.max_new_tokens - seq.n_generated - 1
        k = min(self.config.max_draft_tokens, room, left, self.config.n_ctx_seq - len(seq.tokens))
        start = 0 if seq.drafter.from_prompt else req.prompt_len  # what it matches on
        return seq.drafter.propose(seq.tokens[max(start, len(seq.tokens) - 4) :], k)

    def _verify(self, f: Feed, rows: np.ndarray, alone: bool) -> list[Delta]:
        """Sample row after row as plain decoding would, while the sampled token is the
        drafted one; the first mismatch is the model's own next token. Cells of drafts
        after it go to the retired sequence (freeing them now would leave holes that
        running sequences' next tokens fill out of order), unless it was ``alone`` in the
        step: they are then the newest cells of all, and freed at once."""
        req, seq = f.request, f.seq
        start = seq.n_cached - f.n_tokens  # position of the first fed token
        out: list[Delta] = []
        used = 0
        for j, row in enumerate(rows):
            used = j + 1
            out.extend(self.output.advance(req, seq, row))
            if seq.finished or j == len(f.drafts) or seq.tokens[-1] != f.drafts[j]:
                break
        seq.n_cached = start + used
        assert seq.drafter is not None
        seq.drafter.verified(len(f.drafts), used - 1, self.config.max_draft_tokens)
        if used < f.n_tokens and alone:  # its rejected drafts are the newest cells: freed
            self.cells.trim(seq.seq_id, seq.n_cached)
        elif used < f.n_tokens:
            self.cells.retire_tail(seq.seq_id, seq.n_cached)
        self._retire_if_done(req, seq)
        return out

    # --- sequences --------------------------------------------------------------------
    def _fork(self, req: SequenceGroup) -> None:
        lead = req.lead
        for s in req.active():
            if s is not lead:
                self.cells.share(lead.seq_id, s.seq_id, req.prompt_len)
                s.n_cached = req.prompt_len
                s.lendable = min(s.lendable, lead.lendable)
        req.forked = True

    def _retire_if_done(self, req: SequenceGroup, seq: Sequence) -> None:
        if seq.finished and seq.seq_id is not None and len(req.sequences) > 1:
            # Free this choice's own cells now; the shared prompt stays for the others.
            self._retire(seq, req)

    # --- lifecycle --------------------------------------------------------------------
    def _release(self, req: SequenceGroup) -> None:
        for s in req.sequences:
            if s.seq_id is not None:
                self._retire(s, req)
            s.n_cached = 0
        self.wide.release(req)
        req.phase = Phase.DONE

    def _retire(self, seq: Sequence, req: SequenceGroup) -> None:
        """Free a choice's seq id, but keep its KV cells: in the prefix cache (or, when
        it is off, in the retired sequence) until the engine is idle or the cache runs
        short.

        Freed cells leave holes that llama.cpp fills with the next tokens of running
        sequences, placing them before those sequences' earlier cells; attention then
        sums in another order and logits drift (measured: up to 0.25 in a logprob). Keeping
        cells until idle keeps every running sequence's cells in position order, so its
        results do not depend on what else ran.
        """
        assert seq.seq_id is not None
        self.kv.release(seq.seq_id, lendable_tokens(seq), req.tiled_len, req.partition, req.shared)
        seq.seq_id = None

    def _make_room(self) -> None:
        """Cells for the prefill context's hand-over: retired ones freed, else a preemption."""
        if not self._repack():
            self._preempt_newest()

    def _repack(self) -> bool:
        """Free the retired sequence's cells without a hole (kv_cells.py); whether any
        was freed."""
        freed = self.cells.repack()
        self.repacks += freed > 0
        return freed > 0

    def _preempt_newest(self) -> bool:
        """Preempt the newest request of the partition running the most sequences (one
        tenant's burst does not pause another's request)."""
        if len(self.running) <= 1:
            return False
        running = load(self.running)
        req = max(self.running, key=lambda r: (running[r.partition], r.arrival))
        self.preemptions += 1
        self.running.remove(req)
        self._release(req)
        req.phase = Phase.WAITING
        req.forked = False
        self.waiting.appendleft(req)
        with self._lock:
            self.n_waiting += 1
        return True

    def _drop_cancelled(self) -> None:
        for req in [r for r in self.running if r.cancelled]:
            self.running.remove(req)
            self._release(req)
        dropped = self.waiting.remove_if(lambda r: r.cancelled)
        if dropped:
            with self._lock:
                self.n_waiting -= dropped

    def _on_decode_error(self, error: DecodeError) -> None:
        if error.code == 1:  # no KV slot: make room, then retry at the next step
            if self._repack():
                return
            if self._preempt_newest():
                return
        for req in self.running:
            self._release(req)
            req.emit(EngineFailure(str(error)))
        self.running.clear()

    def fail_all(self, error: BaseException) -> None:
        """Called by the engine thread when a step raised: nobody is left hanging."""
        for req in self.running:
            try:
                self._release(req)
            finally:
                req.emit(EngineFailure("engine step failed"))  # the engine logged why
        self.running.clear()
