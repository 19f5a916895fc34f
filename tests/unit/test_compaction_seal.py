"""The compaction seal (service/responses/compaction_seal.py) and the pure pieces of
compaction.py: a sealed summary opens only with the same secret, owner and model; any
change to it fails; the request /v1/responses/compact makes; the items the model sees."""

from __future__ import annotations

import base64

import pytest

from chatd.protocol.errors import APIError, InvalidRequest
from chatd.service.generation import engine_params
from chatd.service.responses.compaction import (
    COMPACTION_PROMPT,
    SUMMARY_HEADER,
    compact_body,
    compacted,
    expanded_items,
)
from chatd.service.responses.compaction_seal import PREFIX, CompactionSeal, SealError

SECRET = b"s" * 32
SUMMARY = "The user wants a landing page; it is written. Next: deploy it. ünïcode"


def seal() -> CompactionSeal:
    return CompactionSeal(SECRET)


def test_round_trip() -> None:
    sealed = seal().seal(SUMMARY, "key_a", "m")
    assert sealed.startswith(PREFIX)
    assert "landing" not in sealed and "=" not in sealed
    assert seal().open(sealed, "key_a", "m") == SUMMARY
    assert seal().seal(SUMMARY, "key_a", "m") != sealed  # a fresh nonce each time


@pytest.mark.parametrize(
    ("owner", "model", "secret"),
    [("key_b", "m", SECRET), ("key_a", "other", SECRET), ("key_a", "m", b"t" * 32)],
)
def test_opens_only_for_its_owner_model_and_secret(owner: str, model: str, secret: bytes) -> None:
    sealed = seal().seal(SUMMARY, "key_a", "m")
    with pytest.raises(SealError):
        CompactionSeal(secret).open(sealed, owner, model)


def _bytes(sealed: str) -> bytearray:
    body = sealed[len(PREFIX) :]
    return bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def _text(raw: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("position", [0, 11, 12, 20, -1])
def test_any_flipped_bit_fails(position: int) -> None:
    raw = _bytes(seal().seal(SUMMARY, "key_a", "m"))
    raw[position] ^= 0x01
    with pytest.raises(SealError):
        seal().open(_text(bytes(raw)), "key_a", "m")


@pytest.mark.parametrize(
    "content", ["", "cmp1.", "cmp1.!!!!", "cmp2.AAAA", "gAAAAABpM0Yj-x=", "cmp1.AAAA"]
)
def test_garbage_fails(content: str) -> None:
    with pytest.raises(SealError):
        seal().open(content, "key_a", "m")


def test_truncated_fails() -> None:
    raw = _bytes(seal().seal(SUMMARY, "key_a", "m"))
    with pytest.raises(SealError):
        seal().open(_text(bytes(raw[:-1])), "key_a", "m")


async def test_secret_read_once_when_loaded() -> None:
    reads = 0

    async def read() -> bytes:
        nonlocal reads
        reads += 1
        return SECRET

    lazy = CompactionSeal(read)
    with pytest.raises(RuntimeError):
        lazy.seal(SUMMARY, "key_a", "m")
    await lazy.load()
    await lazy.load()
    assert reads == 1
    assert seal().open(lazy.seal(SUMMARY, "key_a", "m"), "key_a", "m") == SUMMARY


def test_without_a_database_a_random_key() -> None:
    a, b = CompactionSeal(), CompactionSeal()
    with pytest.raises(SealError):
        b.open(a.seal(SUMMARY, "o", "m"), "o", "m")


def test_compact_body() -> None:
    assert compact_body({"model": "m", "input": "hi"}) == {
        "model": "m",
        "input": [{"role": "user", "content": "hi"}, {"type": "compaction_trigger"}],
        "store": False,
        "stream": False,
    }
    assert compact_body({"model": "m"})["input"] == [{"type": "compaction_trigger"}]
    for bad in ({"model": "m", "store": True}, {"model": "m", "background": True}):
        with pytest.raises(InvalidRequest, match="Unrecognized request argument"):
            compact_body(bad)


def _msg(text: str) -> dict[str, object]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def test_expanded_items() -> None:
    s = seal()
    item = {"type": "compaction", "encrypted_content": s.seal(SUMMARY, "o", "m")}
    old = {"type": "compaction_summary", "encrypted_content": s.seal("old", "o", "m")}
    history = [_msg("a"), old, _msg("b"), {"type": "compaction_trigger"}, item, _msg("c")]
    shown = expanded_items(history, [_msg("d"), item, {"type": "compaction_trigger"}], s, "o", "m")
    texts = [m["content"][0]["text"] for m in shown]
    # the chain's last compaction item stands for all before it; the request's items as sent
    assert texts == [
        SUMMARY_HEADER + SUMMARY,
        "c",
        "d",
        SUMMARY_HEADER + SUMMARY,
        COMPACTION_PROMPT,
    ]
    with pytest.raises(InvalidRequest) as e:
        expanded_items([], [_msg("x"), {**item, "encrypted_content": "cmp1.AAAA"}], s, "o", "m")
    assert e.value.param == "input[1].encrypted_content"
    assert e.value.code == "invalid_encrypted_content"


def test_compacted_keeps_the_newest_user_messages_that_fit() -> None:
    response = {
        "id": "resp_1",
        "created_at": 5,
        "output": [{"type": "compaction", "id": "cmp_1", "encrypted_content": "x"}],
        "usage": {"input_tokens": 1},
    }
    body = compacted(response, ["x" * 70_000, "y" * 20_000, "z"])
    texts = [i["content"][0]["text"] for i in body["output"] if i["type"] == "message"]
    assert texts == ["y" * 20_000, "z"]
    assert body["output"][-1]["type"] == "compaction"
    assert body["object"] == "response.compaction" and body["id"] == "resp_1"


@pytest.mark.parametrize("asked", [None, 16])
def test_responses_input_past_the_window_is_the_live_api_error(asked: int | None) -> None:
    sampling = {} if asked is None else {"max_new_tokens": asked}
    with pytest.raises(APIError) as caught:
        engine_params(sampling, 120, 100, prompt_param="input")
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "input", "context_length_exceeded")
    assert error.message == (
        "Your input exceeds the context window of this model. Please adjust your input and"
        " try again. (The input is 120 tokens; the model's context window is 100 tokens.)"
    )
