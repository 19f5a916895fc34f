"""The scheduler against a fake model whose KV cache is simulated cell by cell.

The fake "model" always predicts (last token + 1) mod V, so every continuation is known
in advance and must survive batching, forking, chunked prefill and preemption.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from chatd.engine.batch import Batch, Chunk, DecodeError
from chatd.engine.errors import QueueFull
from chatd.engine.params import Delta, FinishReason, SamplingParams
from chatd.engine.scheduler import Scheduler, SchedulerConfig
from chatd.engine.sequence import SequenceGroup

V = 50
EOS = 0


@dataclass(frozen=True)
class FakeConfig:
    n_seq_max: int
    n_ubatch: int


class FakeRunner:
    """The model and its KV memory, cell by cell as llama.cpp places them: free cells are
    taken from ``head`` on (from 0 when many lie below it), freeing moves ``head`` back,
    so a cell freed while others decode is refilled out of order. Every decoded token
    checks that its sequence holds exactly the positions before it, in cell order."""

    def __init__(self, n_ctx: int = 1024, n_seq_max: int = 41, n_ubatch: int = 16) -> None:
        self.config = FakeConfig(n_seq_max, n_ubatch)
        self.n_ctx = n_ctx
        self.n_vocab = V
        self.batch = Batch(64)
        self.eog = frozenset({EOS})
        self.control = frozenset({EOS})
        self.token_bytes = [b""] + [bytes([96 + t % 27]) for t in range(1, V)]
        self.token_names = [b"<eos>", *self.token_bytes[1:]]
        self.slots: list[tuple[int, set[int]] | None] = [None] * n_ctx  # (position, owners)
        self.head = 0
        self.calls: list[int] = []  # tokens per decode call
        self.pads: list[bool] = []  # pad_single of every decode call
        self.prefill: FakePrefill | None = None
        self.restores: list[int] = []  # cells of every restored state

    @property
    def wide_prefill(self) -> bool:
        return self.prefill is not None

    def release_prefill(self, unused_for: float) -> None:
        pass

    @property
    def cells(self) -> list[tuple[int, set[int]]]:
        return [c for c in self.slots if c is not None]

    def used(self) -> int:
        return len(self.cells)

    def held(self, seq: int) -> list[int]:
        """``seq``'s positions in cell order."""
        return [p for p, owners in self.cells if seq in owners]

    def _free(self) -> None:
        for i, c in enumerate(self.slots):
            if c is not None and not c[1]:
                self.slots[i] = None
                self.head = min(self.head, i)

    def find_slot(self, n: int) -> list[int] | None:
        head = 0 if self.head > self.used() + 2 * n else self.head
        order = [*range(head, self.n_ctx), *range(0, head)]
        free = [i for i in order if self.slots[i] is None][:n]
        return free if len(free) == n else None

    def place(self, positions: list[int], owners: list[set[int]]) -> bool:
        idxs = self.find_slot(len(positions))
        if idxs is None:
            return False
        for i, p, o in zip(idxs, positions, owners, strict=True):
            self.slots[i] = (p, o)
        if idxs:
            self.head = idxs[-1] + 1
        return True

    def seq_remove(self, seq: int) -> None:
        for c in self.cells:
            c[1].discard(seq)
        self._free()

    def seq_copy(self, src: int, dst: int, n: int) -> None:
        for p, owners in self.cells:
            if src in owners and p < n:
                owners.add(dst)

    def seq_move_tail(self, src: int, dst: int, start: int) -> None:
        for p, owners in self.cells:
            if src in owners and p >= start:
                owners.discard(src)
                owners.add(dst)

    def seq_trim(self, seq: int, start: int) -> None:
        for p, owners in self.cells:
            if p >= start:
                owners.discard(seq)
        self._free()

    def seq_move(self, src: int, dst: int) -> None:
        self.seq_copy(src, dst, 1 << 30)
        self.seq_remove(src)

    def memory_clear(self) -> None:
        self.slots = [None] * self.n_ctx
        self.head = 0

    def seq_state(self, seq: int, start: int, end: int) -> list[int]:
        """Its positions start..end-1 in cell order (one "byte" per cell)."""
        return [p for p in self.held(seq) if start <= p < end]

    def seq_restore(self, state: list[int], owners: list[tuple[int, int, int]]) -> bool:
        self.restores.append(len(state))
        taken = [{s for s, a, b in owners if a <= p < b} for p in state]
        if not self.place(list(state), taken):
            return False
        self._free()  # the scratch sequence's cells no owner took
        return True

    def run(self, chunks: list[Chunk], pad_single: bool = False) -> np.ndarray:
        return self.decode(self.batch.fill(chunks), pad_single)

    def decode(self, n_outputs: int, pad_single: bool = False) -> np.ndarray:
        b = self.batch
        n = b.n_tokens
        self.calls.append(n)
        self.pads.append(pad_single)
        if self.find_slot(n) is None:
            raise DecodeError(1)
        rows = []
        for i in range(n):
            seq, pos = int(b.seq_id[i]), int(b.pos[i])
            held = self.held(seq)
            assert held == list(range(pos)), f"seq {seq}: position {pos} after {held}"
            assert self.place([pos], [{seq}])
            if b.logits[i]:
                row = np.zeros(V, dtype=np.float32)
                nxt = (int(b.token[i]) + 1) % V
                row[nxt if nxt != EOS else 1] = 10.0
                rows.append(row)
        assert len(rows) == n_outputs
        return np.array(rows, dtype=np.float32).reshape(n_outputs, V)


class FakePrefill:
    """The prefill context: one prompt's positions 0..n-1, handed over whole blocks at a
    time, checked against what the main context holds."""

    BLOCK = 64

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.positions: list[int] = []
        self.passes: list[tuple[int, int]] = []  # (start, tokens) of every pass
        self.restored: list[int] = []  # prefix lengths restored by begin()

    def begin(self, source: int | None, n: int) -> None:
        if source is not None:
            assert self.runner.held(source)[:n] == list(range(n))
        self.positions = list(range(n))
        self.restored.append(n)

    def run(self, tokens: list[int], start: int) -> None:
        assert len(tokens) % self.BLOCK == 0 and start % self.BLOCK == 0
        assert start == len(self.positions), (start, len(self.positions))
        self.positions += range(start, start + len(tokens))
        self.passes.append((start, len(tokens)))

    def finish(self, start: int, dst: int) -> bool:
        new = self.positions[start:]
        assert self.runner.held(dst) == list(range(start))
        if not self.runner.place(new, [{dst} for _ in new]):
            return False
        self.positions = []
        return True


def wide(runner: FakeRunner) -> FakePrefill:
    runner.prefill = FakePrefill(runner)
    return runner.prefill


def collect(sched: Scheduler, requests: list[SequenceGroup], sink: dict[int, list], limit=500):
    for _ in range(limit):
        if all(r.all_finished() or r.cancelled for r in requests) and not sched.running:
            return
        sched.step()
    raise AssertionError("scheduler did not finish")


def make(
    runner: FakeRunner, prompt: list[int], sink: dict[int, list], **kw: object
) -> SequenceGroup:
    params = SamplingParams(temperature=0, **kw)  # type: ignore[arg-type]
    box: list[Delta | BaseException] = []
    req = SequenceGroup(
        prompt, params, V, lambda item: box.extend(item if isinstance(item, list) else [item])
    )
    sink[req.id] = box
    return req


def texts(box: list) -> dict[int, str]:
    out: dict[int, str] = {}
    for d in box:
        assert isinstance(d, Delta), d
        out[d.index] = out.get(d.index, "") + d.text
    return out


def expected(last: int, k: int) -> str:
    out, t = "", last
    for _ in range(k):
        t = (t + 1) % V or 1
        out += chr(96 + t % 27)
    return out


def test_single_request_generates_the_known_continuation() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    req = make(runner, [5, 6, 7], sink, max_new_tokens=6)
    sched.submit(req)
    collect(sched, [req], sink)
    assert texts(sink[req.id]) == {0: expected(7, 6)}
    assert sink[req.id][-1].finish_reason is FinishReason.LENGTH
    assert sink[req.id][-1].completion_tokens == 6
    assert runner.used() == sched.cells.used  # the accounting is exact


def test_n_choices_share_one_prefill() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    prompt = list(range(1, 11))
    req = make(runner, prompt, sink, max_new_tokens=3, n=3)
    sched.submit(req)
    collect(sched, [req], sink)
    assert texts(sink[req.id]) == {i: expected(10, 3) for i in range(3)}
    assert sum(runner.calls) == len(prompt) + 3 * 2  # prompt once, then 2 decodes per choice


def test_long_prompt_is_chunked_while_others_decode() -> None:
    runner = FakeRunner(n_ubatch=16)
    sched = Scheduler(runner, SchedulerConfig(max_prefill_tokens=32))
    sink: dict[int, list] = {}
    a = make(runner, [3, 4], sink, max_new_tokens=30)
    sched.submit(a)
    sched.step()
    sched.step()
    b = make(runner, list(range(1, 49)) * 3, sink, max_new_tokens=2)  # 144 prompt tokens
    sched.submit(b)
    collect(sched, [a, b], sink)
    # While `a` decodes, every call carries a's token plus at most one pass of prompt.
    assert max(runner.calls[2:]) <= 16
    assert texts(sink[a.id]) == {0: expected(4, 30)}
    assert texts(sink[b.id]) == {0: expected(48, 2)}


def test_preemption_under_kv_pressure_keeps_outputs_exact() -> None:
    runner = FakeRunner(n_ctx=60, n_seq_max=4)
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=0))
    sink: dict[int, list] = {}
    reqs = [make(runner, [i + 1] * 10, sink, max_new_tokens=25) for i in range(3)]
    for r in reqs:
        sched.submit(r)
    collect(sched, reqs, sink)
    for i, r in enumerate(reqs):
        assert texts(sink[r.id]) == {0: expected(i + 1, 25)}
        assert sink[r.id][-1].finish_reason is FinishReason.LENGTH
    assert runner.used() <= runner.n_ctx
    fed_once = 3 * 10 + 3 * 24  # prompts + every sampled token but the last
    assert sum(runner.calls) > fed_once, "expected a preemption and a recompute"


def test_cancel_releases_sequences() -> None:
    runner = FakeRunner(n_seq_max=4)
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=0))
    sink: dict[int, list] = {}
    req = make(runner, [1, 2, 3], sink, max_new_tokens=100, n=3)
    sched.submit(req)
    for _ in range(5):
        sched.step()
    assert len(sched.kv.free_ids) == 0
    sched.cancel(req)
    sched.step()
    assert not sched.running
    assert sorted(sched.kv.free_ids) == [0, 1, 2]


def test_queue_bound() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(max_waiting=2))
    sink: dict[int, list] = {}
    sched.submit(make(runner, [1], sink))
    sched.submit(make(runner, [1], sink))
    with pytest.raises(QueueFull):
        sched.submit(make(runner, [1], sink))


def test_stop_and_eos() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    # continuation of 2 is "cdefg..."; stop at "ef"
    a = make(runner, [2], sink, max_new_tokens=10, stop=("ef",))
    sched.submit(a)
    collect(sched, [a], sink)
    assert texts(sink[a.id]) == {0: "cd"}
    assert sink[a.id][-1].finish_reason is FinishReason.STOP_SEQUENCE


# --- prefix cache ----------------------------------------------------------------------


def run_one(sched: Scheduler, runner: FakeRunner, prompt: list[int], **kw: object) -> SequenceGroup:
    sink: dict[int, list] = {}
    req = make(runner, prompt, sink, **kw)
    sched.submit(req)
    collect(sched, [req], sink)
    req.sink = sink[req.id]  # type: ignore[attr-defined]
    return req


def test_a_repeated_prompt_reuses_its_cells_and_says_so() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = list(range(1, 21))
    cold = run_one(sched, runner, prompt, max_new_tokens=5)
    fed = sum(runner.calls)
    hit = run_one(sched, runner, prompt, max_new_tokens=5)
    assert cold.cached_tokens == 0
    assert hit.cached_tokens == 19  # the last prompt token is computed for its logits
    assert sum(runner.calls) - fed == 1 + 4  # one prompt token, then 4 decodes
    assert texts(hit.sink) == texts(cold.sink) == {0: expected(20, 5)}  # type: ignore[attr-defined]
    assert (sched.cache.hit_tokens, sched.cache.miss_tokens) == (19, 21)
    assert runner.used() == sched.cells.used


def test_a_shared_prefix_and_a_cached_answer_are_both_reused() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    system = list(range(1, 31))
    first = run_one(sched, runner, [*system, 40, 41], max_new_tokens=4)
    other = run_one(sched, runner, [*system, 7, 8], max_new_tokens=4)
    assert other.cached_tokens == 30
    # The next turn of the first conversation: its prompt holds the earlier answer.
    answer = [42, 43, 44]  # the fake model's continuation of 41 (minus the last token)
    follow = run_one(sched, runner, [*system, 40, 41, *answer, 45, 9], max_new_tokens=2)
    # 45 was sampled last and never decoded: the cells hold the prompt and 42, 43, 44.
    assert follow.cached_tokens == 30 + 2 + 3
    assert texts(follow.sink) == {0: expected(9, 2)}  # type: ignore[attr-defined]
    assert first.cached_tokens == 0
    assert runner.used() == sched.cells.used


def test_a_running_sequence_lends_its_prefix() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    prompt = list(range(1, 41))
    a = make(runner, prompt, sink, max_new_tokens=20)
    sched.submit(a)
    for _ in range(4):
        sched.step()
    b = make(runner, [*prompt, 5], sink, max_new_tokens=3)
    sched.submit(b)
    collect(sched, [a, b], sink)
    assert b.cached_tokens == 40
    assert texts(sink[a.id]) == {0: expected(40, 20)}
    assert texts(sink[b.id]) == {0: expected(5, 3)}
    assert runner.used() == sched.cells.used


def test_n_choices_on_a_cache_hit() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = list(range(1, 16))
    run_one(sched, runner, prompt, max_new_tokens=2)
    hit = run_one(sched, runner, prompt, max_new_tokens=3, n=3)
    assert hit.cached_tokens == 14
    assert texts(hit.sink) == {i: expected(15, 3) for i in range(3)}  # type: ignore[attr-defined]
    assert runner.used() == sched.cells.used


def test_finished_requests_leave_the_kv_cells_and_come_back_on_a_hit() -> None:
    """The cache lives in host memory: at rest no cell is held, so a later request attends
    over its own cells alone; a hit restores the entry's cells (its tail beyond the hit
    freed at once) and gives the same answer."""
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = list(range(1, 31))
    cold = run_one(sched, runner, prompt, max_new_tokens=4)
    assert sched.step() is False and runner.used() == sched.cells.used == 0
    assert len(sched.cache) == 1 and sched.cache.bytes_used == 33  # the fake: a byte a cell
    hit = run_one(sched, runner, [*prompt[:20], 44, 45], max_new_tokens=4)
    assert hit.cached_tokens == 20 and runner.restores == [33]
    assert texts(hit.sink) == {0: expected(45, 4)}  # type: ignore[attr-defined]
    again = run_one(sched, runner, prompt, max_new_tokens=4)
    assert again.cached_tokens == 29 and texts(again.sink) == texts(cold.sink)  # type: ignore[attr-defined]


def test_the_cache_is_bounded_in_bytes_least_recently_used_first() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_bytes=40))
    a, b = [1, *range(10, 30)], [2, *range(10, 30)]
    run_one(sched, runner, a, max_new_tokens=2)  # 22 "bytes"
    run_one(sched, runner, b, max_new_tokens=2)  # a goes: 44 > 40
    assert len(sched.cache) == 1 and sched.cache.bytes_used == 22
    assert run_one(sched, runner, a, max_new_tokens=1).cached_tokens == 0
    big = run_one(sched, runner, list(range(5, 49)), max_new_tokens=2)  # larger than it all
    assert big.cached_tokens == 0 and sched.cache.bytes_used <= 40


def test_retired_cells_are_freed_without_a_hole_while_others_run() -> None:
    """Finished requests' cells wait in the retired sequence while others decode; once
    they outnumber the live ones a repack frees them, every sequence's cells in position
    order (the fake checks each token), outputs exact."""
    runner = FakeRunner(n_ctx=400, n_ubatch=16)
    sched = Scheduler(runner, SchedulerConfig(repack_min_cells=20))
    sink: dict[int, list] = {}
    long = make(runner, [3, 4, 5], sink, max_new_tokens=60)
    shorts = [make(runner, [10 + i] * 12, sink, max_new_tokens=6) for i in range(6)]
    sched.submit(long)
    for r in shorts:
        sched.submit(r)
    freed = []
    for _ in range(200):
        dead = sched.cells.dead
        if not sched.step():
            break
        if sched.cells.dead < dead and sched.running:
            freed.append(dead)
        assert runner.used() == sched.cells.used
    assert freed, "expected a repack while the long request ran"
    assert texts(sink[long.id]) == {0: expected(5, 60)}
    for i, r in enumerate(shorts):
        assert texts(sink[r.id]) == {0: expected(10 + i, 6)}


def test_at_rest_without_a_cache_no_cell_stays_held() -> None:
    """With the prefix cache off, a finished choice's cells wait in the retired sequence
    while others run (freeing them then would leave holes); once the engine rests they
    are freed, so a resting engine holds no cell (tests/e2e/test_disconnects.py)."""
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=0))
    run_one(sched, runner, list(range(1, 31)), max_new_tokens=4)
    assert sched.step() is False  # nothing to do: the engine rests
    assert runner.used() == sched.cells.used == 0


def test_entries_beyond_the_limit_retire_least_recently_used_first() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=2))
    prompts = [[i, *range(10, 20)] for i in (1, 2, 3)]
    for p in prompts:
        run_one(sched, runner, p, max_new_tokens=2)
    assert len(sched.cache) == 2
    assert run_one(sched, runner, prompts[0], max_new_tokens=1).cached_tokens == 0
    assert run_one(sched, runner, prompts[2], max_new_tokens=1).cached_tokens == 10
    assert runner.used() == sched.cells.used


def test_kv_pressure_evicts_the_cache_before_preempting() -> None:
    runner = FakeRunner(n_ctx=80)
    sched = Scheduler(runner, SchedulerConfig())
    run_one(sched, runner, [1] * 30, max_new_tokens=20)  # 49 cells, in the cache
    sink: dict[int, list] = {}
    reqs = [make(runner, [i + 2] * 10, sink, max_new_tokens=25) for i in range(2)]
    for r in reqs:
        sched.submit(r)
    collect(sched, reqs, sink)
    for i, r in enumerate(reqs):
        assert texts(sink[r.id]) == {0: expected(i + 2, 25)}
    assert sched.preemptions == 0
    assert runner.used() == sched.cells.used <= runner.n_ctx


# --- predicted outputs -----------------------------------------------------------------


def continuation(last: int, k: int) -> list[int]:
    out, t = [], last
    for _ in range(k):
        t = (t + 1) % V or 1
        out.append(t)
    return out


@pytest.mark.parametrize(
    "edit",
    [
        lambda c: c,  # the prediction is the answer
        lambda c: c[:10] + [33] + c[11:],  # one token replaced
        lambda c: c[:10] + [33, 34] + c[10:],  # inserted
        lambda c: c[:10] + c[14:],  # deleted
        lambda c: [7] * len(c),  # unrelated
    ],
    ids=["same", "replaced", "inserted", "deleted", "unrelated"],
)
def test_predicted_output_is_verified_not_trusted(edit) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(max_draft_tokens=8))
    answer = continuation(5, 40)
    plain = run_one(sched, runner, [3, 4, 5], max_new_tokens=40)
    steps_plain = len(runner.calls)
    predicted = run_one(
        sched, runner, [9, 3, 4, 5], max_new_tokens=40, prediction=tuple(edit(answer))
    )
    steps = len(runner.calls) - steps_plain
    assert texts(predicted.sink) == texts(plain.sink) == {0: expected(5, 40)}  # type: ignore[attr-defined]
    drafter = predicted.sequences[0].drafter
    assert drafter is not None
    accepted = drafter.matched
    if edit(answer) == answer:
        assert accepted == 40 and steps <= 1 + 40 // 9 + 1
    elif edit(answer)[0] != 7:
        assert accepted >= 30 and steps < 20  # re-aligned after the edit
    assert runner.used() == sched.cells.used


def test_drafter_realigns_where_the_output_rejoins() -> None:
    from chatd.engine.speculation import Drafter

    d = Drafter((1, 2, 3, 4, 5, 6, 7, 8))
    assert d.propose([], 3) == [1, 2, 3]
    for t in (1, 2, 9):  # the output leaves the prediction at 9 ...
        d.advance(t)
    assert d.propose([1, 2, 9], 2) == []  # 9 is nowhere in it
    d.advance(5)  # ... and rejoins it at 5
    assert d.propose([1, 2, 9, 5], 2) == [6, 7]


# --- wide prefill passes (PrefillContext) ---------------------------------------------------


def test_a_long_prompt_goes_to_the_prefill_context_in_whole_blocks() -> None:
    runner = FakeRunner(n_ctx=2048)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig(tiled_tokens_idle=128))
    prompt = [1 + i % 40 for i in range(200)]
    req = run_one(sched, runner, prompt, max_new_tokens=3)
    assert req.tiled_len == 192  # whole blocks, short of the last token
    assert prefill.passes == [(0, 128), (128, 64)]
    assert runner.calls == [8, 1, 1]  # the main context computes the last 8, then decodes
    assert texts(req.sink) == {0: expected(prompt[-1], 3)}  # type: ignore[attr-defined]
    assert runner.used() == sched.cells.used


def test_blocks_go_one_pass_a_step_while_others_decode() -> None:
    runner = FakeRunner(n_ctx=2048)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    a = make(runner, [3, 4], sink, max_new_tokens=12)
    sched.submit(a)
    sched.step()
    b = make(runner, [1 + i % 40 for i in range(300)], sink, max_new_tokens=2)
    sched.submit(b)
    collect(sched, [a, b], sink)
    assert all(n == 64 for _, n in prefill.passes)
    assert texts(sink[a.id]) == {0: expected(4, 12)}
    assert texts(sink[b.id]) == {0: expected(int(b.prompt[-1]), 2)}
    assert runner.used() == sched.cells.used


def test_hits_reuse_only_positions_computed_the_way_the_prompt_would() -> None:
    runner = FakeRunner(n_ctx=4096)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig())
    base = [1 + i % 40 for i in range(200)]
    first = run_one(sched, runner, base, max_new_tokens=2)  # tiled 192
    # Same tiled length, diverging at 150: reuse rounds down to a block (128), and the
    # prefill context restarts from there with the cached 128 restored.
    second = run_one(sched, runner, [*base[:150], *[7] * 60], max_new_tokens=2)
    assert (first.cached_tokens, second.cached_tokens) == (0, 128)
    assert prefill.restored[-1] == 128 and prefill.passes[-1] == (128, 64)
    # A 100-token prompt computes 64 positions wide: exactly what the cache can lend.
    short = run_one(sched, runner, base[:100], max_new_tokens=2)
    assert short.tiled_len == 64 and short.cached_tokens == 64
    # Under one block, everything is computed one row at a time: nothing wide is lent.
    tiny = run_one(sched, runner, base[:50], max_new_tokens=2)
    assert tiny.tiled_len == 0 and tiny.cached_tokens == 0
    # and a prompt's own one-row positions are lent to a prompt that computes them so
    tiny_again = run_one(sched, runner, [*base[:50], 9], max_new_tokens=2)
    assert tiny_again.cached_tokens == 50
    for r in (second, short, tiny, tiny_again):
        assert texts(r.sink) == {0: expected(int(r.prompt[-1]), 2)}  # type: ignore[attr-defined]
    assert runner.used() == sched.cells.used


def test_a_cancelled_prompt_in_the_prefill_context_frees_it() -> None:
    runner = FakeRunner(n_ctx=2048)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig(tiled_tokens_idle=64))
    sink: dict[int, list] = {}
    a = make(runner, [1 + i % 40 for i in range(300)], sink, max_new_tokens=2)
    sched.submit(a)
    sched.step()
    sched.cancel(a)
    b = make(runner, [2 + i % 30 for i in range(130)], sink, max_new_tokens=2)
    sched.submit(b)
    collect(sched, [b], sink)
    assert prefill.restored[-1] == 0 and prefill.passes[-1] == (64, 64)  # b from scratch
    assert texts(sink[b.id]) == {0: expected(int(b.prompt[-1]), 2)}
    assert runner.used() == sched.cells.used


def test_prompt_lookup_drafts_from_the_prompt_and_stays_exact() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(prompt_lookup=True))
    # The fake model counts up from the last token; the prompt holds a counting run.
    prompt = [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 3, 4, 5, 6]
    req = run_one(sched, runner, prompt, max_new_tokens=12)
    assert texts(req.sink) == {0: expected(6, 12)}  # type: ignore[attr-defined]
    assert len(runner.calls) < 1 + 12  # drafts were verified several at a time
    drafter = req.sequences[0].drafter
    assert drafter is not None and drafter.from_prompt and drafter.matched > 0
    # off by default: one decode per token
    runner = FakeRunner()
    plain = run_one(Scheduler(runner, SchedulerConfig()), runner, prompt, max_new_tokens=12)
    assert texts(plain.sink) == texts(req.sink)  # type: ignore[attr-defined]
    assert len(runner.calls) == 1 + 11


def test_prompt_lookup_needs_a_two_token_match() -> None:
    from chatd.engine.speculation import Drafter

    d = Drafter((1, 2, 3, 4, 5), from_prompt=True)
    assert d.propose([9, 2], 4) == []  # only "2" matches: no draft
    assert d.propose([1, 2], 4) == [3, 4, 5]  # "1 2" matches: what followed it


def test_a_lone_row_over_many_cells_drafts_from_the_prompt_instead_of_padding() -> None:
    # 300 counting tokens: the fake model's continuation repeats the prompt's n-grams.
    prompt = [1 + i % 49 for i in range(300)]
    runner = FakeRunner()
    req = run_one(Scheduler(runner, SchedulerConfig()), runner, prompt, max_new_tokens=20)
    assert texts(req.sink) == {0: expected(prompt[-1], 20)}  # type: ignore[attr-defined]
    decodes = runner.calls[len(runner.calls) - sum(1 for n in runner.calls if n <= 64) :]
    assert any(n > 1 for n in decodes[1:]) and len(decodes) < 20  # drafts rode along
    # Beside another decoding sequence nothing is padded, so nothing is drafted.
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    a = make(runner, prompt, sink, max_new_tokens=10)
    b = make(runner, [3, 4], sink, max_new_tokens=10)
    sched.submit(a)
    sched.submit(b)
    collect(sched, [a, b], sink)
    assert texts(sink[a.id]) == {0: expected(prompt[-1], 10)}
    assert a.sequences[0].drafter is None  # never asked for a draft


@pytest.mark.parametrize(
    ("sampling", "padded"),
    [
        ({"temperature": 0.1}, False),
        ({"temperature": 0.1, "seed": 5}, True),
        ({}, True),
        ({"temperature": 1.0, "top_p": 1e-9}, True),
    ],
    ids=["sampled", "seeded", "greedy", "nucleus"],
)
def test_only_reproducible_requests_pay_for_a_padded_lone_row(
    sampling: dict[str, float], padded: bool
) -> None:
    prompt = [7] * 300  # its n-grams never match the continuation: no drafts
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    params = SamplingParams(max_new_tokens=6, **{"temperature": 0, **sampling})  # type: ignore[arg-type]
    req = SequenceGroup(prompt, params, V, lambda item: sink.setdefault(0, []).extend(item))
    sched.submit(req)
    collect(sched, [req], sink)
    assert texts(sink[0]) == {0: expected(7, 6)}
    lone = [pad for n, pad in zip(runner.calls, runner.pads, strict=True) if n == 1]
    assert lone and all(pad is padded for pad in lone)
    # Cells computed by the unpadded (split-KV) kernel are not lent: a follow-up that
    # holds the answer reuses the prompt only; a reproducible answer is lent whole.
    follow = run_one(sched, runner, [*prompt, 8, 9, 10, 11, 3], max_new_tokens=1)
    assert follow.cached_tokens == (304 if padded else 300)
