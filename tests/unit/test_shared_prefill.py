"""Prompts that share a prefix compute it once, even when they arrive together; short
prompts do not wait behind long ones in the wide-prefill context; retired cells are freed
under load without breaking sharing. Against test_scheduler.py's simulated model, whose
KV memory places cells as llama.cpp does and checks every sequence's cell order."""

from __future__ import annotations

from test_scheduler import FakeRunner, collect, expected, make, texts, wide

from chatd.engine.scheduler import Scheduler, SchedulerConfig

SYSTEM = [1 + i % 40 for i in range(300)]


def test_prompts_arriving_together_compute_their_shared_prefix_once() -> None:
    runner = FakeRunner(n_ctx=4096)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig(tiled_tokens_idle=64))
    sink: dict[int, list] = {}
    reqs = [make(runner, [*SYSTEM, 41 + i, 42 + i], sink, max_new_tokens=3) for i in range(4)]
    for r in reqs:
        sched.submit(r)
    collect(sched, reqs, sink)
    wide_tokens = sum(n for _, n in prefill.passes)
    assert wide_tokens == 256  # the 4 shared blocks once; each one's tail in the main context
    assert [r.cached_tokens for r in reqs] == [0, 300, 300, 300]  # all the common prefix
    for i, r in enumerate(reqs):
        assert texts(sink[r.id]) == {0: expected(42 + i, 3)}
    assert runner.used() == sched.cells.used


def test_without_the_prefill_context_followers_wait_for_the_rows_too() -> None:
    runner = FakeRunner(n_ctx=4096, n_ubatch=32)
    sched = Scheduler(runner, SchedulerConfig(max_prefill_tokens=64))
    sink: dict[int, list] = {}
    reqs = [make(runner, [*SYSTEM, 41 + i], sink, max_new_tokens=2) for i in range(3)]
    for r in reqs:
        sched.submit(r)
    collect(sched, reqs, sink)
    # admitted once the step has room, after 256 of the 300 were computed: the rest of
    # the prefix is not worth waiting for; the third waits for all of it
    assert [r.cached_tokens for r in reqs] == [0, 256, 300]
    assert sum(runner.calls) == 301 + 45 + 1 + 3 * 1  # the prefix once (and 44 of it twice)
    for i, r in enumerate(reqs):
        assert texts(sink[r.id]) == {0: expected(41 + i, 2)}


def test_another_tenants_prompt_is_not_waited_for() -> None:
    """Waiting would tell a tenant that another's prompt shares its prefix (by timing):
    a prompt follows only lenders it may reuse (kv_cache.reusable)."""
    from test_tenant_isolation import group

    runner = FakeRunner(n_ctx=4096, n_ubatch=32)
    sched = Scheduler(runner, SchedulerConfig(max_prefill_tokens=64))
    a, _ = group([*SYSTEM, 41], "a")
    b, b_box = group([*SYSTEM, 42], "b")
    sched.submit(a)
    sched.submit(b)
    sched.step()
    assert a.follows is None and b.follows is None
    collect(sched, [a, b], {})
    assert b.cached_tokens == 0 and texts(b_box) == {0: expected(42, 3)}


def test_a_short_prompt_does_not_wait_behind_a_long_one() -> None:
    runner = FakeRunner(n_ctx=4096)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig(tiled_tokens_idle=64, tiled_tokens_busy=64))
    sink: dict[int, list] = {}
    long = make(runner, [1 + i % 40 for i in range(1000)], sink, max_new_tokens=2)
    sched.submit(long)
    sched.step()
    sched.step()  # two of its blocks are computed
    short = make(runner, [2 + i % 30 for i in range(130)], sink, max_new_tokens=2)
    sched.submit(short)
    first: dict[int, int] = {}
    for step in range(200):
        sched.step()
        for r in (long, short):
            if r.sequences[0].n_generated and r.id not in first:
                first[r.id] = step
        if len(first) == 2:
            break
    assert first[short.id] < first[long.id]
    # the long prompt's blocks moved to the main context while it waited, and came back
    assert 128 in prefill.restored
    collect(sched, [long, short], sink)
    assert texts(sink[long.id]) == {0: expected(int(long.prompt[-1]), 2)}
    assert texts(sink[short.id]) == {0: expected(int(short.prompt[-1]), 2)}
    assert runner.used() == sched.cells.used


def test_a_long_prompt_gets_its_turn_among_many_short_ones() -> None:
    """Credit for waiting: a stream of short prompts cannot hold a long one back for
    ever (it waits at most about its own length of others' blocks)."""
    runner = FakeRunner(n_ctx=8192, n_seq_max=64)
    wide(runner)
    sched = Scheduler(runner, SchedulerConfig(tiled_tokens_idle=64, tiled_tokens_busy=64))
    sink: dict[int, list] = {}
    long = make(runner, [1 + i % 40 for i in range(640)], sink, max_new_tokens=1)
    sched.submit(long)
    shorts = []
    for step in range(400):
        if step % 2 == 0 and len(shorts) < 60:
            r = make(runner, [2 + (step + i) % 30 for i in range(129)], sink, max_new_tokens=1)
            shorts.append(r)
            sched.submit(r)
        sched.step()
        if long.all_finished():
            break
    assert long.all_finished()
    assert sum(1 for r in shorts if r.all_finished()) < len(shorts)


def test_a_repack_keeps_n_choices_sharing_their_prompt() -> None:
    runner = FakeRunner(n_ctx=600, n_ubatch=16)
    sched = Scheduler(runner, SchedulerConfig(repack_min_cells=20))
    sink: dict[int, list] = {}
    big = make(runner, list(range(1, 41)), sink, max_new_tokens=40, n=3)
    shorts = [make(runner, [10 + i] * 12, sink, max_new_tokens=5) for i in range(8)]
    for r in [big, *shorts]:
        sched.submit(r)
    repacks = 0
    for _ in range(300):
        dead = sched.cells.dead
        if not sched.step():
            break
        repacks += sched.cells.dead < dead and big.sequences[0].n_generated < 40
        assert runner.used() == sched.cells.used
        held = [set(runner.held(s.seq_id)) for s in big.sequences if s.seq_id is not None]
        if len(held) == 3 and big.forked:  # the 40 prompt cells once, not three times
            assert runner.used() < sched.cells.used + 1 and len(set.intersection(*held)) >= 40
    assert repacks
    assert texts(sink[big.id]) == {i: expected(40, 40) for i in range(3)}
    for i, r in enumerate(shorts):
        assert texts(sink[r.id]) == {0: expected(10 + i, 5)}


def test_a_conversations_next_turn_reuses_its_whole_history() -> None:
    """Long prompts end their wide part on a stride (a 16th of the prompt), so the next
    turn of a conversation (its last prompt, the answer, a new message) computes the same
    positions wide and reuses everything, not only whole blocks below the answer."""
    runner = FakeRunner(n_ctx=8192)
    wide(runner)
    sched = Scheduler(runner, SchedulerConfig())
    sink: dict[int, list] = {}
    first = make(runner, [1 + i % 40 for i in range(2100)], sink, max_new_tokens=5)
    sched.submit(first)
    collect(sched, [first], sink)
    answer = [int(first.prompt[-1]) + k for k in range(1, 5)]  # the 4 decoded answer tokens
    turn = make(runner, [*first.prompt.tolist(), *answer, *[7] * 20], sink, max_new_tokens=2)
    sched.submit(turn)
    collect(sched, [turn], sink)
    assert (first.tiled_len, turn.tiled_len) == (2048, 2048)
    assert turn.cached_tokens == 2104  # the prompt and its answer
    assert texts(sink[turn.id]) == {0: expected(7, 2)}


def test_the_shared_part_is_always_computed_wide() -> None:
    """Whatever the stride, a prompt's shared part is computed wide, so what another tenant
    may reuse of it never depends on how long the rest of the prompt is."""
    from test_tenant_isolation import group

    req, _ = group([1 + i % 40 for i in range(2301)], "a", shared=2290)
    req.shape(64)
    assert (req.shared, req.tiled_len) == (2240, 2240)  # the stride alone would stop at 2176


def test_sessions_hold_their_shared_system_prompt_once_when_they_come_back() -> None:
    """Two sessions' next turns: the first restores its whole history from the cache; the
    second shares the system prompt's whole segments with it (live cells) and restores
    only its own rest, so the prompt is held once in the KV cells, not once a session."""
    from chatd.engine.kv_cache import SEGMENT

    system = [1 + i % 40 for i in range(1100)]
    runner = FakeRunner(n_ctx=4096, n_ubatch=32)
    sched = Scheduler(runner, SchedulerConfig(max_prefill_tokens=256))
    sink: dict[int, list] = {}
    first = [make(runner, [*system, 41 + i, 42], sink, max_new_tokens=3) for i in range(2)]
    for r in first:
        sched.submit(r)
    collect(sched, first, sink)
    nxt = [
        make(runner, [*r.prompt.tolist(), 43, 44, 9 + i], sink, max_new_tokens=2)
        for i, r in enumerate(first)
    ]
    runner.restores.clear()
    for r in nxt:
        sched.submit(r)
    sched.step()
    assert [r.cached_tokens for r in nxt] == [1104, 1104]  # the prompt and the answer's cells
    assert runner.restores[0] == SEGMENT and max(runner.restores) <= SEGMENT  # segments
    a, b = (r.lead.seq_id for r in nxt)
    both = [p for p, owners in runner.cells if {a, b} <= owners]
    assert sorted(both) == list(range(2 * SEGMENT))  # positions 0..1023: one set of cells
    assert runner.used() == sched.cells.used < 2 * 1104
    collect(sched, nxt, sink)
    for i, r in enumerate(nxt):
        assert texts(sink[r.id]) == {0: expected(9 + i, 2)}
