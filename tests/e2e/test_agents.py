"""A real client beyond the SDK: the OpenAI Agents SDK (``openai-agents``) runs agents
on the embedded model through ``/v1/responses``: its ``OpenAIResponsesModel`` pointed at
chatd. One run covers a handoff and a function tool (three responses): a triage agent
hands the conversation off to a weather agent (a handoff is a tool call to
``transfer_to_<agent>``), which calls its one tool and, given its output, answers; a
streamed run continues a stored conversation by ``previous_response_id``. This is how
the newest clients use the Responses API: the whole conversation sent each turn,
function calls and their outputs as items, strict tool schemas.

The handoff run's requests, as the SDK sent them, are tests/fixtures/agents_sdk_request.json
(replayed in the fast tier, tests/service/test_client_fixtures.py); run this module with
``CHATD_WRITE_FIXTURES=1`` to capture them again (e.g. after an SDK upgrade)."""

from __future__ import annotations

import json
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import API_KEY, MODEL

agents = pytest.importorskip("agents", reason="the openai-agents package is a test extra")


def weather_agent(aclient: openai.AsyncOpenAI, cities: list[str]) -> Any:
    agents.set_tracing_disabled(True)  # no export to OpenAI's tracing service

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"It is sunny and 21 degrees in {city}."

    return agents.Agent(
        name="weather",
        instructions="You answer questions about the weather. Use the tool.",
        tools=[get_weather],
        model=agents.OpenAIResponsesModel(model=MODEL, openai_client=aclient),
        # The first turn must call the tool; the SDK then resets tool_choice to auto
        # (reset_tool_choice), so the second turn answers from the tool's output.
        model_settings=agents.ModelSettings(
            tool_choice="required", parallel_tool_calls=False, temperature=0, max_tokens=48
        ),
    )


async def test_streamed_agent_continues_a_stored_conversation(
    aclient: openai.AsyncOpenAI,
) -> None:
    """``Runner.run_streamed`` reads the typed events; a second run continues the first
    by ``previous_response_id`` alone (the server keeps the conversation)."""
    cities: list[str] = []
    agent = weather_agent(aclient, cities)
    first = agents.Runner.run_streamed(agent, "What is the weather in Paris?", max_turns=3)
    kinds = {event.type async for event in first.stream_events()}
    assert {"raw_response_event", "run_item_stream_event"} <= kinds
    assert isinstance(first.final_output, str) and first.final_output.strip()
    last_id = first.raw_responses[-1].response_id
    second = await agents.Runner.run(
        agent, "And in Rome?", previous_response_id=last_id, max_turns=3
    )
    assert len(cities) == 2 and isinstance(second.final_output, str)
    stored = await aclient.responses.retrieve(second.raw_responses[0].response_id)
    assert stored.previous_response_id == last_id


FIXTURE = Path(__file__).parents[1] / "fixtures" / "agents_sdk_request.json"
DEADLINE = 900  # seconds for one response: three short prompts on 2 shared cores
# What a capture leaves out of the headers: the key, and what the transport sets.
UNKEPT = {"authorization", "host", "content-length", "accept-encoding", "connection"}


def capturing_client(base_url: str, seen: list[dict[str, Any]]) -> openai.AsyncOpenAI:
    """An SDK client whose every request (method, path, headers, JSON body) is appended
    to ``seen`` as it leaves, through httpx's request hook."""

    async def record(request: httpx.Request) -> None:
        seen.append(
            {
                "method": request.method,
                "path": request.url.path,
                "headers": {k: v for k, v in request.headers.items() if k not in UNKEPT},
                "body": json.loads(request.content) if request.content else None,
            }
        )

    http = httpx.AsyncClient(event_hooks={"request": [record]}, timeout=DEADLINE)
    return openai.AsyncOpenAI(
        base_url=base_url + "/v1", api_key=API_KEY, max_retries=0, http_client=http
    )


async def test_agent_hands_off_to_an_agent_that_calls_a_tool(base_url: str) -> None:
    """A triage agent forced (``ModelSettings.tool_choice``) to take its handoff; the
    weather agent it hands off to must call its tool exactly once (the SDK then resets
    tool_choice), then answers from its output: three responses, each stored (the SDK's
    default ``store: true``), the handoff and the tool call each a function call with
    its output in the next request."""
    seen: list[dict[str, Any]] = []
    aclient = capturing_client(base_url, seen)
    cities: list[str] = []
    weather = weather_agent(aclient, cities)
    to_weather = agents.handoff(weather)
    triage = agents.Agent(
        name="triage",
        instructions="Hand questions about the weather to the weather agent.",
        handoffs=[to_weather],
        model=agents.OpenAIResponsesModel(model=MODEL, openai_client=aclient),
        model_settings=agents.ModelSettings(
            tool_choice=to_weather.tool_name,
            parallel_tool_calls=False,
            temperature=0,
            max_tokens=48,
        ),
    )
    result = await agents.Runner.run(triage, "What is the weather in Paris?", max_turns=4)

    assert result.last_agent is weather
    kinds = [type(item).__name__ for item in result.new_items]
    assert kinds == [
        "HandoffCallItem",
        "HandoffOutputItem",
        "ToolCallItem",
        "ToolCallOutputItem",
        "MessageOutputItem",
    ], kinds
    assert len(cities) == 1 and cities[0]
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert len(result.raw_responses) == 3 == len(seen)
    posts = list(seen)  # the run's requests (the stored check below adds a GET)
    first, second, third = (r["body"] for r in posts)
    assert first["tool_choice"] == {"type": "function", "name": "transfer_to_weather"}
    assert [t["name"] for t in first["tools"]] == ["transfer_to_weather"]
    assert second["tool_choice"] == "required"
    assert [t["name"] for t in second["tools"]] == ["get_weather"]
    handoff_types = [i.get("type") for i in second["input"]]
    assert handoff_types.count("function_call") == 1
    assert handoff_types.count("function_call_output") == 1
    assert "tool_choice" not in third  # reset_tool_choice, after the call: left out
    assert "function_call_output" in [i.get("type") for i in third["input"]][2:]
    for response in result.raw_responses:
        assert response.response_id is not None and response.response_id.startswith("resp_")
        assert response.usage.output_tokens > 0
    # the last turn was stored with the weather agent's call and its output as input
    stored = await aclient.responses.input_items.list(result.raw_responses[2].response_id)
    assert {"function_call", "function_call_output"} <= {item.type for item in stored.data}
    if os.environ.get("CHATD_WRITE_FIXTURES"):
        comment = (
            f"OpenAI Agents SDK {version('openai-agents')} (openai {version('openai')}):"
            " Runner.run of a triage agent forced to hand off to a weather agent, which"
            " calls its get_weather tool, then answers (tests/e2e/test_agents.py): its"
            " three POST /v1/responses, captured against chatd on the embedded model;"
            " headers without " + ", ".join(sorted(UNKEPT)) + "."
        )
        FIXTURE.write_text(json.dumps({"_comment": comment, "requests": posts}, indent=2) + "\n")
