"""The engine's prompt logprobs (``SamplingParams.prompt_logprobs``, the Completions
API's echo with logprobs), against test_scheduler.py's fake model, which predicts
(last token + 1) mod V with a logit of 10 and 0 for every other token: a prompt token
that follows that rule has a logprob near 0, any other one near -10."""

from __future__ import annotations

import math

from test_scheduler import FakeRunner, expected, run_one, texts, wide

from chatd.engine.scheduler import Scheduler, SchedulerConfig

V = 50
LIKELY = 10 - math.log(math.exp(10) + V - 1)  # the predicted token's logprob
UNLIKELY = -math.log(math.exp(10) + V - 1)


def test_every_prompt_token_gets_its_logprob_and_the_answer_is_unchanged() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = [5, 6, 7, 20]
    req = run_one(
        sched, runner, prompt, max_new_tokens=3, prompt_logprobs=True, logprobs=True, top_logprobs=2
    )
    lps = req.prompt_logprobs
    assert lps is not None and lps[0] is None
    assert [round(lp.logprob, 4) for lp in lps[1:] if lp] == [
        round(LIKELY, 4),
        round(LIKELY, 4),
        round(UNLIKELY, 4),
    ]
    assert [lp.token for lp in lps[1:] if lp] == ["f", "g", "t"]
    assert lps[3] is not None and lps[3].top[0].token == "h"  # what the model expected
    assert texts(req.sink) == {0: expected(20, 3)}  # type: ignore[attr-defined]
    assert runner.used() == sched.cells.used


def test_a_cached_prompt_is_computed_again_for_its_logprobs() -> None:
    runner = FakeRunner()
    sched = Scheduler(runner, SchedulerConfig())
    prompt = list(range(1, 21))
    run_one(sched, runner, prompt, max_new_tokens=2)
    again = run_one(sched, runner, prompt, max_new_tokens=2, prompt_logprobs=True)
    assert again.cached_tokens == 0
    assert again.prompt_logprobs is not None and all(again.prompt_logprobs[1:])
    assert texts(again.sink) == {0: expected(20, 2)}  # type: ignore[attr-defined]


def test_a_long_prompt_is_computed_row_by_row_in_chunks() -> None:
    runner = FakeRunner(n_ctx=2048)
    prefill = wide(runner)
    sched = Scheduler(runner, SchedulerConfig(tiled_tokens_idle=128))
    prompt = [1 + i % 40 for i in range(200)]
    req = run_one(sched, runner, prompt, max_new_tokens=2, prompt_logprobs=True, n=2)
    assert req.tiled_len == 0 and prefill.passes == []  # not in the wide prefill context
    lps = req.prompt_logprobs
    assert lps is not None and lps[0] is None and all(lps[1:])
    assert len(runner.calls) > 2  # the prompt went in several chunks
    rule = [p == (prompt[i] + 1) % V for i, p in enumerate(prompt[1:])]
    assert [lp.logprob > -1 for lp in lps[1:] if lp] == rule
    assert texts(req.sink) == {i: expected(prompt[-1], 2) for i in range(2)}  # type: ignore[attr-defined]
