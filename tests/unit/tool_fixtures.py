"""Requests and tool plans shared by the tool-calling tests."""

from __future__ import annotations

from typing import Any

from chatd.protocol.chat_request import validate_chat_request
from chatd.service.chat.tools import plan_tools
from chatd.service.tool_calls import ToolPlan

# --- fixtures and builders -----------------------------------------------------------------

WEATHER_PARAMS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
NO_PARAMS = {"type": "object", "properties": {}, "additionalProperties": False}


def tool(name: str, parameters: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, **extra}
    if parameters is not None:
        function["parameters"] = parameters
    return {"type": "function", "function": function}


TOOLS = [tool("get_weather", WEATHER_PARAMS, description="Weather of a city"), tool("f")]
FUNCTIONS = [
    {"name": "get_weather", "description": "Weather of a city", "parameters": WEATHER_PARAMS},
    {"name": "f"},
]
USER = [{"role": "user", "content": "What is the weather in Paris?"}]


def request(messages: list[dict[str, Any]] | None = None, **fields: Any) -> Any:
    return validate_chat_request({"model": "m", "messages": messages or USER, **fields})


def plan_of(**fields: Any) -> ToolPlan:
    plan = plan_tools(request(**fields))
    assert plan is not None
    return plan


NAMED_WEATHER = {"type": "function", "function": {"name": "get_weather"}}

# Every way of allowing calls, tools and legacy functions alike.
CALLING_PLANS: dict[str, dict[str, Any]] = {
    "auto": {"tools": TOOLS},
    "auto-explicit": {"tools": TOOLS, "tool_choice": "auto"},
    "auto-serial": {"tools": TOOLS, "parallel_tool_calls": False},
    "required": {"tools": TOOLS, "tool_choice": "required"},
    "named": {"tools": TOOLS, "tool_choice": NAMED_WEATHER},
    "legacy-auto": {"functions": FUNCTIONS},
    "legacy-named": {"functions": FUNCTIONS, "function_call": {"name": "get_weather"}},
}
AUTO_PLANS = ["auto", "auto-explicit", "auto-serial", "legacy-auto"]
