"""What ``POST /v1/responses`` accepts from real clients (docs/acceptance.md), in-process
over the real app with a scripted FakeEngine: ``client_metadata``, ``prompt_cache_key``,
``safety_identifier``, ``reasoning`` and ``include`` on a model that does not reason,
hosted tools offered in ``auto`` (never run, said in a header), namespace tools (a call
returned with its ``name`` and ``namespace``, as the live API and Codex have it) and
custom tools (``custom_tool_call`` items, their grammars checked by llguidance itself).
The openai SDK where it has the types, raw httpx for headers and events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fakes.engine import Call, FakeEngine
from openapi_schemas import assert_valid
from sse import response_events

from .checks import check_error
from .harness import MODEL, Chatd, running_chatd

URL = "/v1/responses"
KEY_A = "sk-tenant-a-0123456789"
KEY_B = "sk-tenant-b-0123456789"
SPAWN = {
    "type": "function",
    "name": "spawn_agent",
    "description": "Spawn a sub-agent.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {"task": {"type": "string"}},
        "required": ["task"],
        "additionalProperties": False,
    },
}
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Tools for spawning and managing sub-agents.",
    "tools": [SPAWN, {**SPAWN, "name": "close_agent"}],
}
NS_CALL = (
    '<tool_call>\n{"name":"multi_agent_v1.spawn_agent","arguments":{"task":"look"}}\n</tool_call>'
)
LARK = 'start: "add " NUM (" " NUM)*\nNUM: /[0-9]+/'
CALC = {
    "type": "custom",
    "name": "calc",
    "description": "Adds numbers.",
    "format": {"type": "grammar", "syntax": "lark", "definition": LARK},
}
CUSTOM_CALL = "<tool_call>\ncalc\nadd 1 2\n</tool_call>"


def script(call: Call) -> str:
    """Calls whatever the prompt offers, once: a namespace's function, or the custom
    tool; answers in text once a result came back or when nothing is offered."""
    prompt = call.prompt
    if "<tool_response>" in prompt:
        return "Done."
    if call.params.grammar is not None and "multi_agent_v1.spawn_agent" in prompt:
        return NS_CALL
    if call.params.grammar is not None and '"name": "calc"' in prompt:
        return CUSTOM_CALL
    return "Hello there, friend."


@pytest.fixture(scope="module")
async def chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    async with running_chatd(tmp_path_factory.mktemp("accept"), FakeEngine(script)) as c:
        yield c


async def post(http: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await http.post(URL, json={"model": MODEL, "input": "hi", **fields})


async def create(http: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    resp = await post(http, **fields)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert_valid("Response", body)
    return body


# --------------------------------------------------------------------------------------------
# Fields accepted with their honest meaning
# --------------------------------------------------------------------------------------------

ACCEPTED: list[Any] = [
    pytest.param({"client_metadata": {"thread_id": "t-1", "turn_id": "u-1"}}, id="client-meta"),
    pytest.param({"prompt_cache_key": "thread-1"}, id="prompt-cache-key"),
    pytest.param({"safety_identifier": "user-hash"}, id="safety-identifier"),
    pytest.param({"prompt_cache_retention": "24h"}, id="prompt-cache-retention"),
    pytest.param({"prompt_cache_options": {"ttl": "30m", "mode": "implicit"}}, id="cache-opts"),
    pytest.param({"reasoning": {"summary": "auto"}}, id="reasoning-summary"),
    pytest.param({"reasoning": {"effort": "high", "summary": "detailed"}}, id="reasoning-effort"),
    pytest.param({"include": ["reasoning.encrypted_content"]}, id="include-reasoning"),
    pytest.param(
        {"include": ["web_search_call.action.sources", "file_search_call.results"]},
        id="include-hosted-results",
    ),
    pytest.param({"max_tool_calls": 3}, id="max-tool-calls"),
    pytest.param({"service_tier": "auto", "store": False}, id="tier-no-store"),
    pytest.param({"text": {"verbosity": "medium"}}, id="verbosity-default"),
]


@pytest.mark.parametrize("fields", ACCEPTED)
async def test_field_accepted(http: httpx.AsyncClient, fields: dict[str, Any]) -> None:
    body = await create(http, **fields)
    assert body["status"] == "completed"
    assert [item["type"] for item in body["output"]] == ["message"]  # no reasoning item


async def test_sdk_sends_them_all(client: openai.AsyncOpenAI) -> None:
    r = await client.responses.create(
        model=MODEL,
        input="hi",
        prompt_cache_key="thread-1",
        safety_identifier="user-hash",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
        store=False,
        extra_body={"client_metadata": {"thread_id": "t-1"}},
    )
    assert r.status == "completed" and r.output_text == "Hello there, friend."
    assert r.prompt_cache_key == "thread-1" and r.safety_identifier == "user-hash"
    assert r.usage is not None and r.usage.output_tokens_details.reasoning_tokens == 0


async def test_client_metadata_is_stored_not_returned(
    chatd: Chatd, http: httpx.AsyncClient
) -> None:
    """Kept with the stored response (its body row); the Response object has no such field,
    so neither the create answer nor a retrieve shows it."""
    meta = {"thread_id": "t-9", "x-codex-turn-metadata": '{"a": 1}' * 200}
    body = await create(http, client_metadata=meta, metadata={"k": "v"})
    assert "client_metadata" not in body and body["metadata"] == {"k": "v"}
    got = (await http.get(f"{URL}/{body['id']}")).json()
    assert "client_metadata" not in got and got["metadata"] == {"k": "v"}
    from chatd.store.tables import responses

    async with chatd.db.engine.connect() as conn:
        row = (await conn.execute(responses.select().where(responses.c.id == body["id"]))).first()
    assert row is not None and row.body["client_metadata"] == meta


async def test_client_metadata_must_be_strings(http: httpx.AsyncClient) -> None:
    resp = await post(http, client_metadata={"n": 1})
    check_error(resp, 400, param="client_metadata.n", code="invalid_type")
    resp = await post(http, client_metadata=["x"])
    check_error(resp, 400, param="client_metadata", code="invalid_type")


async def test_prompt_cache_key_shares_nothing_across_keys(tmp_path: Path) -> None:
    """The key is a hint: two callers sending the same one stay in their own partitions
    of the prefix cache, in both APIs (service/cache_scope.py)."""
    engine = FakeEngine()
    async with running_chatd(tmp_path, engine, [KEY_A, KEY_B]) as c:
        for key in (KEY_A, KEY_B):
            r = await c.http(key).post(
                URL, json={"model": MODEL, "input": "same prompt", "prompt_cache_key": "k"}
            )
            assert r.status_code == 200, r.text
            chat = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "same prompt"}],
                "prompt_cache_key": "k",
            }
            r = await c.http(key).post("/v1/chat/completions", json=chat)
            assert r.status_code == 200, r.text
    parts = [s.partition for s in engine.scopes]
    assert parts[0] == parts[1] != parts[2] == parts[3]
    assert all(s.shared == 0 for s in engine.scopes)


# --------------------------------------------------------------------------------------------
# Hosted tools: accepted in auto, never run, said so
# --------------------------------------------------------------------------------------------

HOSTED = [
    {"type": "web_search", "external_web_access": False},
    {"type": "web_search_preview"},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation"},
    {"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"},
    {"type": "local_shell"},
    {
        "type": "computer_use_preview",
        "display_width": 1,
        "display_height": 1,
        "environment": "linux",
    },
    {"type": "tool_search"},
]


@pytest.mark.parametrize("tool", HOSTED, ids=[t["type"] for t in HOSTED])
async def test_hosted_tool_offered_in_auto(
    chatd: Chatd, http: httpx.AsyncClient, tool: dict[str, Any]
) -> None:
    resp = await post(http, tools=[tool], tool_choice="auto")
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-chatd-tools-not-run"] == tool["type"]
    body = resp.json()
    assert [i["type"] for i in body["output"]] == ["message"]
    assert body["tools"] == [tool]  # echoed as sent
    assert chatd.engine.last_params.grammar is None  # nothing offered to the model
    assert f"are not run (the model cannot run them): {tool['type']}" in chatd.log.text()


async def test_hosted_tools_beside_functions(chatd: Chatd, http: httpx.AsyncClient) -> None:
    """``required`` then means one of the tools the model can call."""
    resp = await post(
        http,
        tools=[{"type": "web_search"}, NAMESPACE, {"type": "file_search"}],
        tool_choice="required",
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-chatd-tools-not-run"] == "web_search, file_search"
    (call,) = resp.json()["output"]
    assert call["type"] == "function_call"


async def test_no_header_without_hosted_tools(http: httpx.AsyncClient) -> None:
    resp = await post(http)
    assert "x-chatd-tools-not-run" not in resp.headers


async def test_hosted_tools_header_on_a_stream(http: httpx.AsyncClient) -> None:
    payload = {"model": MODEL, "input": "hi", "stream": True, "tools": [{"type": "web_search"}]}
    async with http.stream("POST", URL, json=payload) as r:
        assert r.status_code == 200
        assert r.headers["x-chatd-tools-not-run"] == "web_search"
        events = response_events((await r.aread()).decode())
    assert events[-1]["type"] == "response.completed"


@pytest.mark.parametrize(
    "choice",
    [{"type": "web_search_preview"}, {"type": "file_search"}, {"type": "image_generation"}],
    ids=lambda c: c["type"],
)
async def test_forcing_a_hosted_tool_is_refused(
    http: httpx.AsyncClient, choice: dict[str, Any]
) -> None:
    resp = await post(http, tools=[{"type": choice["type"]}], tool_choice=choice)
    err = check_error(resp, 400, param="tool_choice", code="unsupported_parameter")
    assert choice["type"] in err["message"]


async def test_required_with_only_hosted_tools_is_refused(http: httpx.AsyncClient) -> None:
    resp = await post(http, tools=[{"type": "web_search"}], tool_choice="required")
    err = check_error(resp, 400, param="tool_choice", code="unsupported_parameter")
    assert "web_search" in err["message"]


# --------------------------------------------------------------------------------------------
# Namespace tools
# --------------------------------------------------------------------------------------------


async def test_namespace_call_round_trip(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    r = await client.responses.create(model=MODEL, input="spawn one", tools=[NAMESPACE])
    (call,) = r.output
    assert call.type == "function_call"
    assert (call.name, call.namespace) == ("spawn_agent", "multi_agent_v1")
    assert call.arguments == '{"task":"look"}'
    prompt = chatd.engine.last_prompt_text
    assert "multi_agent_v1.spawn_agent" in prompt and "multi_agent_v1.close_agent" in prompt
    assert r.tools[0].type == "namespace"  # echoed whole
    follow = await client.responses.create(
        model=MODEL,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "ok"}],
        tools=[NAMESPACE],
    )
    assert follow.output_text == "Done."
    # the earlier call is shown to the model by its qualified name
    assert '"name":"multi_agent_v1.spawn_agent"' in chatd.engine.last_prompt_text


async def test_namespace_call_sent_back_by_the_client(
    http: httpx.AsyncClient, chatd: Chatd
) -> None:
    """With store: false (Codex), the client sends the call back itself, namespace and all."""
    body = await create(
        http,
        store=False,
        tools=[NAMESPACE],
        input=[
            {"role": "user", "content": "spawn one"},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "spawn_agent",
                "namespace": "multi_agent_v1",
                "arguments": '{"task":"look"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "spawned"},
        ],
    )
    assert body["output"][0]["type"] == "message"
    assert '"name":"multi_agent_v1.spawn_agent"' in chatd.engine.last_prompt_text


async def test_namespace_call_streamed(http: httpx.AsyncClient) -> None:
    payload = {"model": MODEL, "input": "spawn", "stream": True, "tools": [NAMESPACE]}
    async with http.stream("POST", URL, json=payload) as r:
        events = response_events((await r.aread()).decode())
    done = [e for e in events if e["type"] == "response.output_item.done"]
    assert done[0]["item"]["namespace"] == "multi_agent_v1"
    assert done[0]["item"]["name"] == "spawn_agent"
    args = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert args[0]["arguments"] == '{"task":"look"}'


async def test_namespace_function_forced_by_qualified_name(
    http: httpx.AsyncClient, chatd: Chatd
) -> None:
    body = await create(
        http,
        tools=[NAMESPACE],
        tool_choice={"type": "function", "name": "multi_agent_v1.spawn_agent"},
    )
    assert body["output"][0]["namespace"] == "multi_agent_v1"
    grammar = chatd.engine.last_params.grammar
    assert grammar is not None and "multi_agent_v1.close_agent" not in str(grammar.source)


NAMESPACE_FAULTS = [
    pytest.param(
        {"tools": [{**NAMESPACE, "tools": []}]},
        "tools[0].tools",
        "empty_array",
        id="empty-namespace",
    ),
    pytest.param(
        {"tools": [{k: v for k, v in NAMESPACE.items() if k != "description"}]},
        "tools[0].description",
        "missing_required_parameter",
        id="no-description",
    ),
    pytest.param(
        {"tools": [{**NAMESPACE, "tools": [SPAWN, SPAWN]}]},
        "tools[0].tools[1].name",
        "invalid_value",
        id="duplicate-member",
    ),
    pytest.param(
        {"tools": [NAMESPACE], "tool_choice": {"type": "function", "name": "spawn_agent"}},
        "tool_choice",
        "invalid_value",
        id="choice-needs-qualified-name",
    ),
]


@pytest.mark.parametrize(("fields", "param", "code"), NAMESPACE_FAULTS)
async def test_namespace_faults(
    http: httpx.AsyncClient, fields: dict[str, Any], param: str, code: str
) -> None:
    check_error(await post(http, **fields), 400, param=param, code=code)


# --------------------------------------------------------------------------------------------
# Custom tools
# --------------------------------------------------------------------------------------------


async def test_custom_tool_call_round_trip(client: openai.AsyncOpenAI, chatd: Chatd) -> None:
    r = await client.responses.create(model=MODEL, input="add", tools=[CALC])
    (call,) = r.output
    assert call.type == "custom_tool_call"
    assert (call.name, call.input) == ("calc", "add 1 2")
    assert call.id.startswith("ctc_")
    grammar = chatd.engine.last_params.grammar
    assert grammar is not None and "%lark {" in grammar.source and LARK in grammar.source
    follow = await client.responses.create(
        model=MODEL,
        previous_response_id=r.id,
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "3"}],
        tools=[CALC],
    )
    assert follow.output_text == "Done."
    prompt = chatd.engine.last_prompt_text
    assert "<tool_call>\ncalc\nadd 1 2\n</tool_call>" in prompt and "3" in prompt


async def test_custom_tool_call_streamed(http: httpx.AsyncClient) -> None:
    payload = {"model": MODEL, "input": "add", "stream": True, "tools": [CALC]}
    async with http.stream("POST", URL, json=payload) as r:
        events = response_events((await r.aread()).decode())
    deltas = [e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert "".join(deltas) == "add 1 2"
    (done,) = [e for e in events if e["type"] == "response.custom_tool_call_input.done"]
    assert done["input"] == "add 1 2"
    final = events[-1]["response"]
    assert final["output"][0]["type"] == "custom_tool_call"


async def test_custom_tool_sent_back_by_the_client(http: httpx.AsyncClient, chatd: Chatd) -> None:
    body = await create(
        http,
        store=False,
        tools=[CALC],
        input=[
            {"role": "user", "content": "add"},
            {"type": "custom_tool_call", "call_id": "c1", "name": "calc", "input": "add 2 2"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "4"},
        ],
    )
    assert body["output"][0]["type"] == "message"
    assert "<tool_call>\ncalc\nadd 2 2\n</tool_call>" in chatd.engine.last_prompt_text


@pytest.mark.parametrize(
    "fmt",
    [
        None,
        {"type": "text"},
        {"type": "grammar", "syntax": "regex", "definition": r"[a-z]+ / \d+"},
    ],
    ids=["no-format", "text", "regex"],
)
async def test_custom_tool_formats(chatd: Chatd, http: httpx.AsyncClient, fmt: Any) -> None:
    tool = {"type": "custom", "name": "calc"} | ({"format": fmt} if fmt else {})
    body = await create(http, tools=[tool], tool_choice={"type": "custom", "name": "calc"})
    assert body["output"][0]["type"] == "custom_tool_call"
    source = chatd.engine.last_params.grammar.source
    if fmt and fmt.get("syntax") == "regex":
        assert r"/[a-z]+ \/ \d+/" in source
    else:
        assert '[stop="\\n</tool_call>"]' in source


BAD_GRAMMARS = [
    pytest.param({"syntax": "lark", "definition": "start: ( "}, id="lark"),
    pytest.param({"syntax": "lark", "definition": "start: undefined_rule"}, id="lark-undefined"),
    pytest.param({"syntax": "regex", "definition": "[a-"}, id="regex"),
]


@pytest.mark.parametrize("grammar", BAD_GRAMMARS)
async def test_bad_grammar_is_refused(http: httpx.AsyncClient, grammar: dict[str, str]) -> None:
    tool = {"type": "custom", "name": "calc", "format": {"type": "grammar", **grammar}}
    resp = await post(http, tools=[{"type": "function", "name": "f"}, tool])
    err = check_error(resp, 400, param="tools[1].format", code="invalid_grammar")
    assert "calc" in err["message"] and grammar["syntax"] in err["message"]


async def test_bad_grammar_in_a_namespace(http: httpx.AsyncClient) -> None:
    bad = {
        "type": "custom",
        "name": "c",
        "format": {"type": "grammar", "syntax": "regex", "definition": "("},
    }
    ns = {**NAMESPACE, "tools": [SPAWN, bad]}
    resp = await post(http, tools=[ns])
    check_error(resp, 400, param="tools[0].tools[1].format", code="invalid_grammar")


CUSTOM_FAULTS = [
    pytest.param(
        {"tools": [CALC, {**SPAWN, "name": "calc"}]},
        "tools[1].name",
        "invalid_value",
        id="same-name",
    ),
    pytest.param(
        {"tools": [CALC], "tool_choice": {"type": "custom", "name": "nope"}},
        "tool_choice",
        "invalid_value",
        id="choice-unknown",
    ),
    pytest.param(
        {"tools": [{**CALC, "format": {"type": "grammar", "syntax": "ebnf", "definition": "x"}}]},
        "tools[0].format.syntax",
        "invalid_value",
        id="syntax",
    ),
    pytest.param(
        {"input": [{"type": "custom_tool_call_output", "call_id": "nope", "output": "1"}]},
        "input",
        None,
        id="output-without-call",
    ),
]


@pytest.mark.parametrize(("fields", "param", "code"), CUSTOM_FAULTS)
async def test_custom_faults(
    http: httpx.AsyncClient, fields: dict[str, Any], param: str, code: str | None
) -> None:
    check_error(await post(http, **fields), 400, param=param, code=code)
