"""Tenants in the engine (``CacheScope``): one partition's prompts never change another's
prefix-cache hits beyond the operator's shared part, and admission and prompt compute
are fair across partitions. Against test_scheduler.py's simulated model and KV cache."""

from __future__ import annotations

from collections import Counter

import numpy as np
from test_scheduler import FakeRunner, collect, expected, texts, wide

from chatd.engine.kv_cache import Lender, reusable
from chatd.engine.params import CacheScope, Delta, SamplingParams
from chatd.engine.scheduler import Scheduler, SchedulerConfig
from chatd.engine.sequence import Phase, SequenceGroup
from chatd.engine.waiting import WaitingQueue, interleaved

V = 50
SECRET = [11, 12, 13, 14, 15, 16, 17, 18, 19, 20]


def group(
    prompt: list[int], partition: str, shared: int = 0, **kw: object
) -> tuple[SequenceGroup, list[Delta]]:
    params = SamplingParams(**{"temperature": 0, "max_new_tokens": 3, **kw})  # type: ignore[arg-type]
    box: list[Delta] = []
    req = SequenceGroup(
        prompt,
        params,
        V,
        lambda item: box.extend(item if isinstance(item, list) else [item]),  # type: ignore[arg-type]
        CacheScope(partition, shared),
    )
    return req, box


def run(sched: Scheduler, prompt: list[int], partition: str, shared: int = 0, **kw: object) -> int:
    """Run one request to its end; its cached tokens (checking its output is exact)."""
    req, box = group(prompt, partition, shared, **kw)
    sched.submit(req)
    collect(sched, [req], {})
    assert texts(box) == {0: expected(prompt[-1], req.params.max_new_tokens)}
    assert sched.runner.used() == sched.cells.used  # type: ignore[attr-defined]
    assert req.cached_tokens is not None
    return req.cached_tokens


# --- scoping ---------------------------------------------------------------------------


def test_another_partitions_entry_lends_nothing_its_own_does() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = [1, 2, 3, *SECRET, 4]
    assert run(sched, prompt, "a") == 0
    assert run(sched, prompt, "b") == 0  # the very same prompt, another tenant
    assert run(sched, prompt, "b") == len(prompt) - 1  # its own entry now
    assert run(sched, prompt, "a") == len(prompt) - 1


def test_a_guess_hits_the_same_whether_or_not_another_tenant_sent_the_secret() -> None:
    """The side channel: B guesses A's prompt token by token and reads its hits."""
    system = list(range(21, 41))
    guesses = [[*system, *SECRET[:k], 9, 9] for k in range(0, len(SECRET) + 1, 2)]

    def probe(secret_sent: bool) -> list[int]:
        runner = FakeRunner()
        sched = Scheduler(runner, SchedulerConfig())
        if secret_sent:
            run(sched, [*system, *SECRET, 5], "a", max_new_tokens=20)
        return [run(sched, g, "b") for g in guesses]

    assert probe(True) == probe(False)


def test_a_running_sequence_of_another_partition_lends_nothing() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = list(range(1, 41))
    a, a_box = group(prompt, "a", max_new_tokens=20)
    sched.submit(a)
    for _ in range(4):
        sched.step()
    b, _ = group([*prompt, 5], "b")
    c, _ = group([*prompt, 6], "a")
    sched.submit(b)
    sched.submit(c)
    collect(sched, [a, b, c], {})
    assert (b.cached_tokens, c.cached_tokens) == (0, 40)
    assert texts(a_box) == {0: expected(40, 20)}


def test_the_shared_part_crosses_partitions_up_to_what_both_declare() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    system = list(range(1, 31))
    run(sched, [*system, *SECRET, 5], "a", shared=30, max_new_tokens=10)
    assert run(sched, [*system, 7, 8], "b", shared=30) == 30
    assert run(sched, [*system, *SECRET, 5], "c", shared=30) == 30  # not a token more
    assert run(sched, [*system, 7, 9], "d", shared=20) == 20
    assert run(sched, [*system, 7, 9], "e") == 0  # it declared nothing shared


def test_a_shared_part_is_never_more_than_the_lenders() -> None:
    lender = Lender(0, np.arange(1, 40, dtype=np.int32), 0, "a", 10)
    prompt = np.arange(1, 40, dtype=np.int32)
    assert reusable(prompt, 0, lender, "b", 30) == 10
    assert reusable(prompt, 0, lender, "a", 0) == 38  # its own partition: all but the last


def test_with_wide_prefill_the_shared_part_is_whole_blocks_whatever_the_rest() -> None:
    """Past the shared part's whole 64-token blocks, a position is computed wide or not
    depending on the prompt's length: what crosses partitions must not depend on it."""
    system = [1 + i % 40 for i in range(100)]

    def hit(a_rest: int) -> int:
        runner = FakeRunner(n_ctx=4096)
        wide(runner)
        sched = Scheduler(runner, SchedulerConfig())
        run(sched, [*system, *[7] * a_rest, 3], "a", shared=100)
        return run(sched, [*system, 8, 8, 3], "b", shared=100)  # one wide block

    assert hit(5) == hit(100) == 64


def test_entries_of_other_partitions_never_retire_as_redundant() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = list(range(1, 21))
    run(sched, prompt, "a", max_new_tokens=2)
    # b's entry holds all of a's (its prompt, then the token a's answer began with)
    run(sched, [*prompt, 21, 22, 23], "b", max_new_tokens=2)
    assert run(sched, prompt, "a") == 19


def test_which_entries_survive_does_not_depend_on_another_tenants_prompt() -> None:
    """Under the byte bound, least recently used entries go; a prompt of another tenant
    matching an entry it may not read must not refresh it (B would see its own older entry
    go or stay, and so learn that its guess matched)."""
    secret = [1 + i % 40 for i in range(80)]
    own = [41, 42, 43, *[44] * 70]

    def own_hit_after(guess: list[int]) -> int:
        runner = FakeRunner()
        sched = Scheduler(runner, SchedulerConfig(prefix_cache_bytes=230))
        run(sched, own, "b", max_new_tokens=2)
        run(sched, secret, "a", max_new_tokens=2)
        run(sched, guess, "b", max_new_tokens=2)  # one entry must go
        return run(sched, own, "b", max_new_tokens=2)

    assert own_hit_after([*secret, 9]) == own_hit_after([*[5] * 80, 9]) == 0
    # its own prompts still find their entries
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_bytes=230))
    run(sched, own, "b", max_new_tokens=2)
    run(sched, secret, "a", max_new_tokens=2)
    run(sched, [*own, 9], "b", max_new_tokens=2)
    assert run(sched, own, "b", max_new_tokens=2) == len(own) - 1


# --- fairness --------------------------------------------------------------------------


def admissions(sched: Scheduler, reqs: list[SequenceGroup]) -> list[SequenceGroup]:
    """The order in which ``reqs`` were admitted, stepping until all have finished."""
    order: list[SequenceGroup] = []
    for _ in range(2000):
        for r in sched.running:
            if r not in order:
                order.append(r)
        if all(r.all_finished() for r in reqs) and not sched.running:
            return order
        sched.step()
    raise AssertionError("scheduler did not finish")


def test_one_tenants_burst_does_not_make_another_wait_behind_it() -> None:
    runner = FakeRunner(n_seq_max=3)  # two running sequences at a time
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=0))
    burst = [group([i + 1, i + 2], "a", max_new_tokens=5)[0] for i in range(6)]
    other = [group([30 + i], "b", max_new_tokens=5)[0] for i in range(2)]
    for r in [*burst, *other]:
        sched.submit(r)
    order = admissions(sched, [*burst, *other])
    assert [r.partition for r in order[:4]] == ["a", "b", "a", "b"]
    assert [r for r in order if r.partition == "a"] == burst  # first come, first served
    assert [r for r in order if r.partition == "b"] == other


def test_fewest_running_sequences_first() -> None:
    q = WaitingQueue()
    a1, a2, b1 = (group([1], p)[0] for p in ("a", "a", "b"))
    for r in (a1, a2, b1):
        q.append(r)
    assert q.head(Counter({"a": 0, "b": 3})) is a1
    assert q.head(Counter({"a": 2, "b": 0})) is b1
    assert q.head(Counter()) is a1  # a tie: the partition first in line
    q.pop(a1)
    assert q.head(Counter()) is b1  # then the one served least recently
    q.appendleft(a1)  # preempted: first of its own partition again
    assert q.head(Counter({"b": 1})) is a1
    assert q.remove_if(lambda r: r is a2) == 1 and len(q) == 2


def test_prompts_are_computed_one_partition_in_turn() -> None:
    reqs = [group([1], p)[0] for p in ("a", "a", "a", "b", "c", "b")]
    assert [r.partition for r in interleaved(reqs)] == ["a", "b", "c", "a", "b", "a"]
    # In the scheduler: b's prompt is computed beside a's first, not after all of a's.
    runner = FakeRunner(n_ctx=4096)
    sched = Scheduler(runner, SchedulerConfig(max_prefill_tokens=64))
    burst = [group([1 + (i + k) % 40 for k in range(60)], "a")[0] for i in range(3)]
    late, _ = group([2 + k % 30 for k in range(60)], "b")
    for r in [*burst, late]:
        sched.submit(r)
    first_token: dict[int, int] = {}
    for step in range(100):
        sched.step()
        for r in [*burst, late]:
            if r.sequences[0].n_generated and r.id not in first_token:
                first_token[r.id] = step
    assert first_token[late.id] <= first_token[burst[1].id]


def test_preemption_takes_from_the_tenant_running_most_and_stays_exact() -> None:
    runner = FakeRunner(n_ctx=90, n_seq_max=5)
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=0))
    burst = [group([i + 1] * 10, "a", max_new_tokens=25) for i in range(3)]
    other = group([9] * 10, "b", max_new_tokens=25)
    preempted: list[SequenceGroup] = []
    requeue = sched.waiting.appendleft
    sched.waiting.appendleft = lambda r: (preempted.append(r), requeue(r))[1]  # type: ignore[method-assign]
    for r, _ in [*burst, other]:
        sched.submit(r)
    collect(sched, [r for r, _ in [*burst, other]], {})
    assert preempted and {r.partition for r in preempted} == {"a"}  # b came last, yet kept on
    for (r, box), last in zip([*burst, other], [1, 2, 3, 9], strict=True):
        assert texts(box) == {0: expected(last, 25)}
        assert r.phase is Phase.DONE
    assert other[0].cached_tokens == 0 and runner.used() == sched.cells.used


def test_cancelled_waiting_requests_leave_every_partitions_queue() -> None:
    runner = FakeRunner(n_seq_max=2)  # one running sequence
    sched = Scheduler(runner, SchedulerConfig(prefix_cache_entries=0))
    a, _ = group([1, 2], "a", max_new_tokens=4)
    b1, _ = group([3], "b", max_new_tokens=4)
    b2, b2_box = group([4], "b", max_new_tokens=4)
    for r in (a, b1, b2):
        sched.submit(r)
    sched.step()
    sched.cancel(b1)
    collect(sched, [a, b1, b2], {})
    assert sched.n_waiting == 0 and not sched.waiting
    assert b1.cached_tokens is None  # never admitted
    assert texts(b2_box) == {0: expected(4, 4)}
