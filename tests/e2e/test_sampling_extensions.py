"""The sampling extensions (top_k, min_p, repetition_penalty, min_tokens) on the real model:
each one's effect, not just its acceptance."""

from __future__ import annotations

from typing import Any

import httpx
from conftest import MODEL

URL = "/v1/chat/completions"
POEM = [{"role": "user", "content": "Write a short poem about the sea."}]
SHORT = [{"role": "user", "content": "Is the sky blue? Answer with one word."}]
CATS = [{"role": "user", "content": "Repeat the word 'cat' 30 times."}]


def ask(http: httpx.Client, messages: list[dict[str, str]], **fields: Any) -> dict[str, Any]:
    r = http.post(URL, json={"model": MODEL, "messages": messages, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def content(data: dict[str, Any]) -> str:
    return data["choices"][0]["message"]["content"] or ""


def test_top_k_one_at_temperature_one_is_greedy(http: httpx.Client) -> None:
    greedy = content(ask(http, POEM, max_tokens=24, temperature=0))
    for seed in (1, 2, 3):
        got = ask(http, POEM, max_tokens=24, temperature=1, top_k=1, seed=seed)
        assert content(got) == greedy
    # and without top_k, temperature 1 does sample (the check above is not vacuous)
    sampled = {content(ask(http, POEM, max_tokens=24, temperature=1, seed=s)) for s in (1, 2, 3)}
    assert sampled != {greedy}


def test_min_p_one_is_greedy(http: httpx.Client) -> None:
    greedy = content(ask(http, POEM, max_tokens=16, temperature=0))
    got = ask(http, POEM, max_tokens=16, temperature=1.5, min_p=1.0, seed=4)
    assert content(got) == greedy


def test_min_tokens_holds_back_the_end(http: httpx.Client) -> None:
    short = ask(http, SHORT, max_tokens=40, temperature=0)
    n = short["usage"]["completion_tokens"]
    assert short["choices"][0]["finish_reason"] == "stop" and n < 10, short
    longer = ask(http, SHORT, max_tokens=40, temperature=0, min_tokens=n + 10)
    assert longer["usage"]["completion_tokens"] >= n + 10, longer
    assert content(longer).startswith(content(short))  # greedy until the end was masked


def test_repetition_penalty_changes_a_repetitive_output(http: httpx.Client) -> None:
    # Greedy, this model loops on "The cat is a cat." (min_tokens keeps it going).
    fields = {"max_tokens": 60, "min_tokens": 60, "temperature": 0}
    plain = content(ask(http, CATS, **fields))
    penalized = content(ask(http, CATS, repetition_penalty=1.5, **fields))
    assert len(set(plain.split())) < 10, plain  # a loop of a few words
    assert len(set(penalized.split())) > 3 * len(set(plain.split())), penalized
    # a penalty of 1 is no penalty
    assert content(ask(http, CATS, repetition_penalty=1.0, **fields)) == plain
