"""Compaction and channels (docs/compaction.md, "Channels"), in process over the real app
and the fake upstream: a compaction item chatd sealed is sent upstream as the summary
message it stands for (an upstream cannot read chatd's seal), in either wire; a
compaction itself (``compaction_trigger``, ``/v1/responses/compact``) on a model only
channels serve is a 400 naming the trigger, before anything is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fakes.engine import Call, FakeEngine

from chatd.service.responses.compaction import COMPACTION_PROMPT, SUMMARY_HEADER

from .checks import check_error
from .harness import MODEL, Chatd, Upstream, fake_upstream, running_chatd

URL = "/v1/responses"
SUMMARY = "The user is building a dog cafe page."
TRIGGER = {"type": "compaction_trigger"}


def script(call: Call) -> str:
    return SUMMARY if COMPACTION_PROMPT in call.prompt else "Local answer."


def _channel(name: str, url: str, model: str, api: str) -> str:
    return (
        f'[[channels]]\nname = "{name}"\nbase_url = "{url}"\napi = "{api}"\n'
        f'models = [{{id = "{model}", upstream = "ok"}}]\npriority = 0\n'
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[Upstream]:
    with fake_upstream() as upstream:
        yield upstream


@pytest.fixture(scope="module")
async def gateway(fake: Upstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    url = fake.url + "/v1"
    toml = "".join(
        [
            # the local model's aliases, served first by a channel of each wire
            f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n'
            'aliases = ["both-responses", "both-chat"]\npriority = 1\n',
            _channel("native", url, "both-responses", "responses"),
            _channel("chat", url, "both-chat", "chat"),
            _channel("only", url, "upstream-only", "responses"),
        ]
    )
    tmp = tmp_path_factory.mktemp("compaction-relay")
    async with running_chatd(tmp, FakeEngine(script), config=toml) as c:
        yield c


async def compaction_item(gateway: Chatd) -> dict[str, Any]:
    resp = await gateway.http().post(
        URL, json={"model": MODEL, "input": [{"role": "user", "content": "hi"}, TRIGGER]}
    )
    assert resp.status_code == 200, resp.text
    (item,) = resp.json()["output"]
    return item


@pytest.mark.parametrize(
    ("model", "key"), [("both-responses", "responses:ok"), ("both-chat", "ok")]
)
async def test_sealed_item_is_relayed_as_its_summary(
    gateway: Chatd, fake: Upstream, model: str, key: str
) -> None:
    """The item was sealed for the local model these aliases stand for: it opens, and
    the channel is sent its summary, never the sealed blob."""
    item = await compaction_item(gateway)
    body = {"model": model, "input": [item, {"role": "user", "content": "Go on."}]}
    resp = await gateway.http().post(URL, json=body)
    assert resp.status_code == 200, resp.text
    sent = str(fake.last[key])
    assert SUMMARY_HEADER.strip() in sent and SUMMARY in sent
    assert item["encrypted_content"] not in sent and "compaction" not in sent


async def test_trigger_on_a_relayed_model_is_refused(gateway: Chatd) -> None:
    body = {"model": "upstream-only", "input": [{"role": "user", "content": "hi"}, TRIGGER]}
    resp = await gateway.http().post(URL, json=body)
    check_error(resp, 400, param="input[1]", code="unsupported_parameter")
    resp = await gateway.http().post(
        URL + "/compact", json={"model": "upstream-only", "input": "hi"}
    )
    check_error(resp, 400, param="input[1]", code="unsupported_parameter")


async def test_item_of_another_model_does_not_open(gateway: Chatd) -> None:
    """Sealed for the local model, it is not an item of a model only channels serve."""
    item = await compaction_item(gateway)
    resp = await gateway.http().post(URL, json={"model": "upstream-only", "input": [item]})
    check_error(resp, 400, param="input[0].encrypted_content", code="invalid_encrypted_content")
