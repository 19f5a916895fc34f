"""The field policy table (src/chatd/protocol/chat_fields.py) and the local refusals it drives
(src/chatd/service/chat/capabilities.py): every field of the contract has exactly one policy, every
field of OpenAI's spec is a field of the contract, and the refusals read as they always did."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from chatd.engine.params import SamplingParams
from chatd.protocol.chat_fields import (
    CHAT_FIELDS,
    FieldPolicy,
    Policy,
    engine_fields,
    refused_fields,
    undeclared_fields,
)
from chatd.protocol.chat_request import ChatCompletionRequest, validate_chat_request
from chatd.protocol.errors import InvalidRequest
from chatd.service.chat.capabilities import VALUE_CHECKS, check_local_support

MODEL = "smollm2"
N_VOCAB = 1000


def request(**fields: Any) -> ChatCompletionRequest:
    return validate_chat_request(
        {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], **fields}
    )


def refusal(req: ChatCompletionRequest) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        check_local_support(req, MODEL, N_VOCAB)
    return caught.value


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


def test_every_field_of_the_contract_has_a_policy() -> None:
    assert undeclared_fields() == set()
    assert set(CHAT_FIELDS) == set(ChatCompletionRequest.model_fields)


def test_a_field_without_a_policy_is_caught() -> None:
    class Wider(ChatCompletionRequest):
        typical_p: float | None = None

    assert undeclared_fields(Wider) == {"typical_p"}


def test_every_field_of_the_spec_is_a_field_of_the_contract() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    try:
        schemas = pytest.importorskip("openapi_schemas")
    finally:
        sys.path.pop(0)
    if not schemas.SPEC_PATH.exists():
        pytest.skip("OpenAPI spec not available")

    spec = schemas.properties("CreateChatCompletionRequest")
    assert len(spec) > 30  # the spec was read, not an empty shell
    contract = {f.alias or name for name, f in ChatCompletionRequest.model_fields.items()}
    assert spec - contract == set()


def test_engine_rows_name_a_sampling_parameter() -> None:
    parameters = {f.name for f in dataclasses.fields(SamplingParams)}
    for name, policy in engine_fields().items():
        assert policy.engine in parameters, name
    for name, policy in CHAT_FIELDS.items():
        assert (policy.engine is not None) == (policy.policy is Policy.ENGINE), name
        assert (policy.convert is None) or policy.policy is Policy.ENGINE, name


def test_every_non_engine_row_says_why() -> None:
    for name, policy in CHAT_FIELDS.items():
        if policy.policy is not Policy.ENGINE:
            assert policy.why.strip(), name


def test_a_budget_field_comes_first() -> None:
    """max_completion_tokens wins over the deprecated max_tokens: first in table order."""
    order = [n for n, p in engine_fields().items() if p.engine == "max_new_tokens"]
    assert order == ["max_completion_tokens", "max_tokens"]


def test_value_checks_are_the_fields_declaring_refused_values() -> None:
    declared = {n for n, p in CHAT_FIELDS.items() if p.refuses_values is not None}
    assert set(VALUE_CHECKS) == declared


def test_hints_are_accepted_with_no_effect() -> None:
    hints = {n for n, p in CHAT_FIELDS.items() if p.policy is Policy.HINT}
    assert hints == {
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "prompt_cache_retention",
        "reasoning_effort",
        "prompt_cache_options",
    }
    req = request(
        user="u",
        safety_identifier="s",
        prompt_cache_key="k",
        prompt_cache_retention="24h",
        reasoning_effort="high",
        prompt_cache_options={"ttl": "30m", "mode": "explicit"},
        verbosity="medium",
    )
    check_local_support(req, MODEL, N_VOCAB)


def test_field_policy_conversion() -> None:
    assert FieldPolicy(Policy.ENGINE, "", "n").to_engine(3) == 3
    assert CHAT_FIELDS["stop"].to_engine("x") == ("x",)
    assert CHAT_FIELDS["stop"].to_engine(["a", "b"]) == ("a", "b")
    assert CHAT_FIELDS["logit_bias"].to_engine({"7": -100}) == {7: -100.0}


# --------------------------------------------------------------------------------------------
# Local refusals (service/chat/capabilities.py): status, message, param and code as before
# --------------------------------------------------------------------------------------------

REFUSED: list[tuple[str, Any, str]] = [
    ("audio", {"voice": "alloy", "format": "wav"}, f"is not supported by `{MODEL}`."),
    (
        "web_search_options",
        {},
        "is only supported by search models, which search the web for every answer;"
        f" `{MODEL}` runs no web search.",
    ),
    ("moderation", {"model": "omni-moderation-latest"}, f"is not supported by `{MODEL}`."),
]


@pytest.mark.parametrize("value", ["low", "high"])
def test_verbosity_other_than_the_default(value: str) -> None:
    error = refusal(request(verbosity=value))
    assert (error.param, error.code) == ("verbosity", "unsupported_parameter")
    assert error.message == (
        f"Unsupported parameter: 'verbosity' '{value}' is only supported by reasoning models;"
        f" `{MODEL}` is not."
    )


def test_refused_fields_are_the_declared_ones() -> None:
    assert list(refused_fields()) == [name for name, _, _ in REFUSED]


@pytest.mark.parametrize(("field", "value", "reason"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_field(field: str, value: Any, reason: str) -> None:
    error = refusal(request(**{field: value}))
    assert error.status == 400
    assert error.body()["error"] == {
        "message": f"Unsupported parameter: '{field}' {reason}",
        "type": "invalid_request_error",
        "param": field,
        "code": "unsupported_parameter",
    }


def test_null_is_not_given() -> None:
    check_local_support(request(audio=None, reasoning_effort=None), MODEL, N_VOCAB)


def test_audio_modality() -> None:
    error = refusal(request(modalities=["text", "audio"]))
    assert (error.param, error.code) == ("modalities", "unsupported_parameter")
    assert error.message == (
        f"Unsupported parameter: 'modalities' 'audio' is not supported by `{MODEL}` (text only)."
    )
    check_local_support(request(modalities=["text"]), MODEL, N_VOCAB)


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ({"type": "image_url", "image_url": {"url": "https://x/y.png"}}, "image"),
        ({"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}, "audio"),
        ({"type": "file", "file": {"file_id": "file-abc"}}, "file"),
    ],
)
def test_non_text_part(part: dict[str, Any], kind: str) -> None:
    content = [{"type": "text", "text": "look"}, part]
    error = refusal(request(messages=[{"role": "user", "content": content}]))
    assert error.body()["error"] == {
        "message": f"Invalid content type. {part['type']} is only supported by models with "
        f"{kind} input; `{MODEL}` is text-only.",
        "type": "invalid_request_error",
        "param": "messages[0].content[1].type",
        "code": "unsupported_content_type",
    }


def test_assistant_audio() -> None:
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "audio": {"id": "audio_1"}},
    ]
    error = refusal(request(messages=messages))
    assert (error.param, error.code) == ("messages[1].audio", "unsupported_parameter")
    assert error.message == (
        f"Unsupported parameter: 'messages[1].audio' is not supported by `{MODEL}`."
    )


def test_logit_bias_beyond_the_vocabulary() -> None:
    check_local_support(request(logit_bias={str(N_VOCAB - 1): 5}), MODEL, N_VOCAB)
    error = refusal(request(logit_bias={str(N_VOCAB): 5}))
    assert (error.param, error.code) == ("logit_bias", "invalid_value")
    assert error.message == (
        f"Invalid key in 'logit_bias': {N_VOCAB}. Token ids of `{MODEL}` are 0 to {N_VOCAB - 1}."
    )


def test_first_fault_in_the_order_it_always_was() -> None:
    """Messages, then modalities, then refused fields in table order, then logit_bias."""
    image = [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
    everything: dict[str, Any] = {
        "messages": [{"role": "user", "content": image}],
        "modalities": ["audio"],
        "audio": {"voice": "alloy", "format": "wav"},
        "verbosity": "low",
        "logit_bias": {str(N_VOCAB): 1},
    }
    expected = ["messages[0].content[0].type", "modalities", "verbosity", "audio"]
    expected += ["logit_bias"]
    for param in expected:
        assert refusal(request(**everything)).param == param
        key = "messages" if param.startswith("messages") else param
        if key == "messages":
            everything["messages"] = [{"role": "user", "content": "Hi"}]
        else:
            del everything[key]
    check_local_support(request(**everything), MODEL, N_VOCAB)
