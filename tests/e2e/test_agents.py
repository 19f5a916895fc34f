"""A real client beyond the SDK: the OpenAI Agents SDK (``openai-agents``) runs an agent
on the embedded model through ``/v1/responses``: its ``OpenAIResponsesModel`` pointed at
chatd, one function tool, two turns (the model calls the tool; given its output, it
answers). This is how the newest clients use the Responses API: the whole conversation
sent each turn, function calls and their outputs as items, strict tool schemas."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from conftest import MODEL

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


async def test_agent_with_one_tool_call(aclient: openai.AsyncOpenAI) -> None:
    cities: list[str] = []
    agent = weather_agent(aclient, cities)
    result = await agents.Runner.run(agent, "What is the weather in Paris?", max_turns=3)

    assert len(cities) == 1 and cities[0]  # exactly one call, with an argument
    kinds = [type(item).__name__ for item in result.new_items]
    assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"], kinds
    assert isinstance(result.final_output, str) and result.final_output.strip()
    assert len(result.raw_responses) == 2  # two turns, two responses
    for response in result.raw_responses:
        assert response.response_id is not None and response.response_id.startswith("resp_")
        assert response.usage.output_tokens > 0
    # Both turns were stored by default (store: true), and the second carried the call.
    second = await aclient.responses.input_items.list(result.raw_responses[1].response_id)
    types = {item.type for item in second.data}
    assert {"function_call", "function_call_output"} <= types


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
