"""Tenants stay apart in the prefix cache, over HTTP on the real model.

The attack: key A sends a prompt holding a secret; key B sends guesses of it and reads
``cached_tokens`` (and time to first token) to learn how far each guess matched. Here
key C sends the guesses before A sends the secret and key B the same guesses after:
B's hits must be C's, whatever the API (Chat Completions, Responses), streamed or not,
with n > 1 or a prediction (were anything reused across keys, B would hit C's cells or
A's, C nobody's). The engine's own count of
reused tokens (/metrics) shows that nothing was reused across keys either, so B's prompts
were computed the same way in both servers: the same work, hence no time to first token
to tell them apart (timings are not asserted: docs/security.md). A key's own repeat still
hits, and an operator's shared system prompt (``--shared-prompt``) is reused across
keys, up to its end and no further.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import MODEL, Server
from sse import response_events
from sse import stream as chat_stream

KEY_A = "sk-tenant-a-0123456789"
KEY_B = "sk-tenant-b-0123456789"
KEY_C = "sk-tenant-c-0123456789"
# ~150 tokens, a private system prompt: long enough that prompts take the wide prefill path
PRIVATE = "You are a bank's assistant. " + " ".join(
    f"Policy {i}: never repeat the customer's numbers." for i in range(14)
)
# ~330 tokens, the operator's public prompt (--shared-prompt)
PUBLIC = "You are the help desk of Example Corp. " + " ".join(
    f"Rule {i}: be polite, be brief, and name the rule you follow." for i in range(25)
)
EOG = {"0": -100, "2": -100, "4": -100}  # no early end: every answer as long as asked


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server(
        *("--api-key", KEY_A, "--api-key", KEY_B, "--api-key", KEY_C),
        *("--shared-prompt", PUBLIC, "--n-ctx", "8192", "--context-window", "4096"),
    )
    yield srv
    srv.stop()


def http(srv: Server, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=srv.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=300
    )


def ask(
    c: httpx.Client, system: str, user: str, api: str = "chat", stream: bool = False, **kw: Any
) -> tuple[int, int]:
    """(cached tokens, prompt tokens) of one greedy request, as its usage reports them."""
    if api == "chat":
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        body = {"model": MODEL, "messages": messages, "temperature": 0, "max_tokens": 3}
        body.update(logit_bias=EOG, **kw)
        if stream:
            s = chat_stream(c, {**body, "stream_options": {"include_usage": True}})
            assert s.status == 200 and s.done
            usage = s.chunks[-1]["usage"]
        else:
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200, r.text
            usage = r.json()["usage"]
        return usage["prompt_tokens_details"]["cached_tokens"], usage["prompt_tokens"]
    body = {"model": MODEL, "instructions": system, "input": user, "temperature": 0}
    body.update(max_output_tokens=16, store=False, stream=stream, **kw)
    if stream:
        with c.stream("POST", "/v1/responses", json=body) as r:
            assert r.status_code == 200
            events = response_events(r.read().decode())
        usage = events[-1]["response"]["usage"]
    else:
        r = c.post("/v1/responses", json=body)
        assert r.status_code == 200, r.text
        usage = r.json()["usage"]
    return usage["input_tokens_details"]["cached_tokens"], usage["input_tokens"]


def hit_tokens(c: httpx.Client) -> float:
    """The engine's own count of prompt tokens reused from the prefix cache."""
    text = c.get("/metrics").text
    lines = [ln for ln in text.splitlines() if ln.startswith("chatd_engine_prefix_cache_hit")]
    assert lines
    return sum(float(ln.split()[-1]) for ln in lines)


def test_a_guessers_hits_are_the_same_whether_or_not_the_secret_was_sent(
    server: Server,
) -> None:
    secret = f"Account {uuid.uuid4().hex[:8]}: my PIN is 4 8 1 5 9 2 7 3, my word is owl."
    words = secret.split(" ")
    # The guesses: the secret itself first, then prefixes of it, through every path.
    guesses: list[tuple[str, dict[str, Any]]] = [
        (secret, {}),
        (" ".join(words[:6]) + " 0 0 0", {"stream": True}),
        (" ".join(words[:8]) + " 9", {"api": "responses"}),
        (" ".join(words[:10]) + " 1", {"api": "responses", "stream": True}),
        (" ".join(words[:12]), {"n": 2}),
        (secret + " ok", {"prediction": {"type": "content", "content": secret}}),
    ]
    with http(server, KEY_A) as a, http(server, KEY_B) as b, http(server, KEY_C) as c:
        before = hit_tokens(a)
        untold = [ask(c, PRIVATE, text, **kw)[0] for text, kw in guesses]
        # A's secret, through both APIs and n > 1
        own = ask(a, PRIVATE, secret)[0]
        own += ask(a, PRIVATE, secret, api="responses", stream=True)[0]
        own += ask(a, PRIVATE, secret + " Thanks.", n=2, stream=True)[0]
        told = [ask(b, PRIVATE, text, **kw)[0] for text, kw in guesses]
        assert told == untold
        assert told[0] == 0  # the secret itself: nothing of A's (or C's) was reused
        # every token the engine reused was reported to its own key: none crossed
        assert hit_tokens(a) - before == sum(untold) + own + sum(told)


def test_a_keys_own_repeat_still_hits(server: Server) -> None:
    system = f"[{uuid.uuid4()}] {PRIVATE}"  # nothing cached starts like it
    text = "My locker code is 77 31."
    with http(server, KEY_A) as a, http(server, KEY_B) as b:
        assert ask(a, system, text)[0] < 64
        assert ask(b, system, text)[0] < 64  # A's cells: not B's
        cached, prompt = ask(a, system, text)
        assert cached == prompt - 1
        cached, prompt = ask(b, system, text, stream=True)
        assert cached == prompt - 1  # B's own earlier request, now


def test_a_shared_system_prompt_is_reused_across_keys_up_to_its_end(server: Server) -> None:
    secret = f"Ticket {uuid.uuid4().hex[:8]}: my password is hunter2, please reset it."
    with http(server, KEY_A) as a, http(server, KEY_B) as b, http(server, KEY_C) as c:
        ask(a, PUBLIC, secret, stream=True)
        shared, prompt = ask(b, PUBLIC, "What are your opening hours?")
        assert 0 < shared < prompt - 20
        # wide prefill: whole 64-token blocks of the shared part (docs/engine.md)
        assert shared % 64 == 0
        # A's very secret, guessed by C: the shared part, and not a token more
        assert ask(c, PUBLIC, secret, api="responses")[0] == shared
        assert ask(c, PUBLIC, secret + " Now.", stream=True)[0] > shared  # C's own, now
        # the shared part ends where the system message does
        _, short = ask(b, PUBLIC, "x", max_tokens=1)
        assert short - 80 < shared <= short - 5
