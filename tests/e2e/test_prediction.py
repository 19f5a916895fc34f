"""Predicted outputs (``prediction``) as speculative decoding: the model verifies the
predicted tokens, so the answer is the one it gives without a prediction (temperature 0
and seeded), whatever the prediction; usage counts accepted and rejected tokens."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from conftest import MODEL
from sse import stream

CODE = "\n".join(
    [
        "def total_price(items, tax_rate):",
        "    subtotal = 0",
        "    for item in items:",
        "        subtotal += item.price * item.quantity",
        "    tax = subtotal * tax_rate",
        "    return subtotal + tax",
        "",
        "",
        "def cheapest(items):",
        "    best = None",
        "    for item in items:",
        "        if best is None or item.price < best.price:",
        "            best = item",
        "    return best",
    ]
)
ASK = [
    {"role": "system", "content": "Repeat the user's code exactly, changing nothing."},
    {"role": "user", "content": CODE},
]
EDITS = {
    "same": CODE,
    "renamed": CODE.replace("subtotal", "amount"),
    "inserted": CODE.replace("    tax = ", "    # the tax\n    tax = "),
    "deleted": CODE.replace("    tax = subtotal * tax_rate\n", ""),
    "unrelated": "The quick brown fox jumps over the lazy dog. " * 8,
}


def create(client: openai.OpenAI, **kw: Any) -> Any:
    return client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=120, **kw)


GREEDY: dict[str, Any] = {"temperature": 0}
SEEDED: dict[str, Any] = {"temperature": 0.8, "seed": 3}


@pytest.mark.parametrize(
    ("edit", "sampling"),
    [*[(e, GREEDY) for e in EDITS], ("renamed", SEEDED), ("unrelated", SEEDED)],
)
def test_the_answer_is_the_models_whatever_the_prediction(
    client: openai.OpenAI, edit: str, sampling: dict[str, Any]
) -> None:
    plain = create(client, **sampling)
    predicted = create(client, prediction={"type": "content", "content": EDITS[edit]}, **sampling)
    assert predicted.choices[0].message.content == plain.choices[0].message.content
    assert predicted.choices[0].finish_reason == plain.choices[0].finish_reason
    details = predicted.usage.completion_tokens_details
    assert details.accepted_prediction_tokens <= predicted.usage.completion_tokens
    assert details.accepted_prediction_tokens + details.rejected_prediction_tokens > 0
    if edit == "same" and sampling["temperature"] == 0 and plain.choices[0].message.content == CODE:
        assert details.rejected_prediction_tokens == 0
    plain_details = plain.usage.completion_tokens_details
    assert plain_details.accepted_prediction_tokens == 0
    assert plain_details.rejected_prediction_tokens == 0


def test_a_prediction_that_matches_is_accepted(client: openai.OpenAI) -> None:
    plain = create(client, temperature=0).choices[0].message.content
    r = create(client, temperature=0, prediction={"type": "content", "content": plain})
    assert r.choices[0].message.content == plain
    details = r.usage.completion_tokens_details
    assert details.accepted_prediction_tokens >= r.usage.completion_tokens - 1
    assert details.rejected_prediction_tokens <= 1


def test_text_parts_streamed_with_logprobs(http: Any) -> None:
    body: dict[str, Any] = {"model": MODEL, "messages": ASK, "max_tokens": 60, "temperature": 0}
    body.update(logprobs=True, top_logprobs=2)
    plain = stream(http, {**body, "stream": True})
    parts = [{"type": "text", "text": CODE[:40]}, {"type": "text", "text": CODE[40:]}]
    predicted = stream(
        http,
        {
            **body,
            "stream": True,
            "prediction": {"type": "content", "content": parts},
            "stream_options": {"include_usage": True},
        },
    )
    assert predicted.content() == plain.content()
    lp = [c["choices"][0]["logprobs"] for c in predicted.chunks if c["choices"]]
    lp_plain = [c["choices"][0]["logprobs"] for c in plain.chunks if c["choices"]]
    tokens = [t for x in lp if x for t in x["content"]]
    tokens_plain = [t for x in lp_plain if x for t in x["content"]]
    assert tokens == tokens_plain
    assert (
        predicted.chunks[-1]["usage"]["completion_tokens_details"]["accepted_prediction_tokens"] > 0
    )


@pytest.fixture(scope="module")
def narrow_lookup() -> Any:
    """A server with prompt lookup for every request and no prefill context."""
    from conftest import API_KEY, Server

    srv = Server("--api-key", API_KEY, "--prompt-lookup", "--no-wide-prefill")
    yield openai.OpenAI(base_url=srv.base_url + "/v1", api_key=API_KEY, max_retries=0)
    srv.stop()


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_prompt_lookup_drafts_change_nothing_but_speed(
    narrow_lookup: openai.OpenAI, sampling: dict[str, Any]
) -> None:
    # The answer repeats the prompt's code: drafts from the prompt are verified, so the
    # answer is the same as with no drafts at all (here: the same request again, on a
    # cache hit), and nothing is reported as an accepted prediction. min_tokens keeps
    # the model going to max_tokens, so every answer is long enough to draft from.
    held = {**sampling, "extra_body": {"min_tokens": 120}}
    first = create(narrow_lookup, **held)
    again = create(narrow_lookup, **held)
    assert first.choices[0].message.content == again.choices[0].message.content
    assert first.usage.completion_tokens == 120
    details = first.usage.completion_tokens_details
    assert details.accepted_prediction_tokens == details.rejected_prediction_tokens == 0
