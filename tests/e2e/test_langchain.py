"""LangChain's OpenAI chat model against chatd's embedded model (issue 13): LangChain
sends tool parameters and response schemas without ``strict`` and without
``additionalProperties``, and a small model's arguments must still have exactly the
tool's keys, or LangChain's parsers reject them (or a model inventing key after key
runs into ``max_tokens`` and leaves JSON that does not parse). chatd decodes such
objects closed, for the grammar only (engine/json_keys.py ``closed_for_grammar``), as
llama.cpp's grammar converter does.

Checked here: ``bind_tools(..., tool_choice="any")`` over several prompts and sampled
seeds (not one lucky answer), ``with_structured_output`` with ``function_calling``
(``include_raw`` too), ``json_schema`` and ``json_mode``. Every check reads the keys
against the schema LangChain sent (properties and required, nested objects included),
then validates with the tool's own pydantic schema."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import API_KEY, MODEL, Server
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field


class Address(BaseModel):
    """A postal address."""

    city: str = Field(description="The city")
    country: str = Field(description="The country")


class Booking(BaseModel):
    """A table booked at a restaurant."""

    restaurant: str = Field(description="The restaurant's name")
    guests: int = Field(description="How many people")
    time: str = Field(description="When, e.g. 19:30")
    vegetarian: bool
    children: int | None = Field(default=None, description="How many guests are children")
    address: Address


@tool
def book_table(
    restaurant: str,
    guests: int,
    time: str,
    vegetarian: bool,
    address: Address,
    children: int | None = None,
) -> str:
    """Book a table at a restaurant."""
    return f"booked {restaurant} for {guests}"


class Colour(BaseModel):
    name: str
    hex: str


PROMPTS = [
    "Book a table for 4 at Chez Marie in Paris, France at 19:30, vegetarian.",
    "I need a dinner reservation for two at Luigi's, Rome, Italy, 8pm.",
    "Reserve Sushi Ko in Tokyo, Japan for 6 people at noon, no meat, a window seat.",
]
BOOK_TABLE = convert_to_openai_tool(book_table)["function"]["parameters"]
BOOKING = convert_to_openai_tool(Booking)["function"]["parameters"]


@pytest.fixture(scope="module")
def llm(server: Server) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url + "/v1",
        api_key=API_KEY,  # type: ignore[arg-type]
        model=MODEL,
        temperature=0,
        max_tokens=160,  # type: ignore[call-arg]
        max_retries=0,
        timeout=120,
    )


def assert_keys(value: Any, schema: dict[str, Any], where: str = "arguments") -> None:
    """Every object of ``value`` has only keys its schema declares, and all it requires
    (what ``additionalProperties: false`` would say, the schema not saying it)."""
    props = schema.get("properties")
    if props is None:
        return
    assert isinstance(value, dict), (where, value)
    assert set(value) <= set(props), f"{where}: keys not in the schema: {set(value) - set(props)}"
    missing = set(schema.get("required", [])) - set(value)
    assert not missing, f"{where}: required keys missing: {missing}"
    for key, sub in value.items():
        assert_keys(sub, props[key], f"{where}.{key}")


def check_call(message: AIMessage, name: str, schema: dict[str, Any]) -> dict[str, Any]:
    assert message.invalid_tool_calls == [], message.invalid_tool_calls
    assert len(message.tool_calls) == 1, message.tool_calls
    call = message.tool_calls[0]
    assert call["name"] == name
    assert_keys(call["args"], schema)
    return call["args"]


@pytest.mark.parametrize(
    ("prompt", "sampling"),
    [(p, {}) for p in PROMPTS] + [(PROMPTS[0], {"temperature": 1.0, "seed": s}) for s in (1, 2)],
)
def test_bind_tools_any_calls_with_the_tools_keys(
    llm: ChatOpenAI, prompt: str, sampling: dict[str, Any]
) -> None:
    """``tool_choice="any"`` (sent as ``"required"``): one call whose arguments have the
    tool's keys, validate against its args schema, and run the tool."""
    bound = llm.bind_tools([book_table], tool_choice="any", parallel_tool_calls=False)
    message = bound.bind(**sampling).invoke(prompt) if sampling else bound.invoke(prompt)
    assert isinstance(message, AIMessage)
    args = check_call(message, "book_table", BOOK_TABLE)
    assert book_table.args_schema is not None
    book_table.args_schema.model_validate(args)  # type: ignore[union-attr]
    result = book_table.invoke(message.tool_calls[0])
    assert isinstance(result, ToolMessage) and result.content.startswith("booked ")


@pytest.mark.parametrize("prompt", PROMPTS[:2])
def test_structured_output_by_function_calling(llm: ChatOpenAI, prompt: str) -> None:
    booking = llm.with_structured_output(Booking, method="function_calling").invoke(prompt)
    assert isinstance(booking, Booking)


def test_structured_output_include_raw_has_no_parsing_error(llm: ChatOpenAI) -> None:
    """``include_raw=True``: the raw message's call has the schema's keys, the parsed
    object is there, ``parsing_error`` is None; a JSON-schema dict (no pydantic class,
    so nothing but these keys checks it) as well as a pydantic class."""
    as_dict = {"title": "Booking", "description": Booking.__doc__, **BOOKING}
    for schema, name in ((Booking, "Booking"), (as_dict, "Booking")):
        structured = llm.with_structured_output(schema, method="function_calling", include_raw=True)
        out = structured.invoke(PROMPTS[2])
        assert isinstance(out, dict) and out["parsing_error"] is None, out
        args = check_call(out["raw"], name, BOOKING)
        if schema is Booking:
            assert out["parsed"] == Booking.model_validate(args)
        else:
            assert out["parsed"] == args


def test_structured_output_by_json_schema(llm: ChatOpenAI) -> None:
    """LangChain's default method: OpenAI's strict schema made from the class."""
    booking = llm.with_structured_output(Booking, method="json_schema").invoke(PROMPTS[1])
    assert isinstance(booking, Booking)


def test_structured_output_by_json_mode(llm: ChatOpenAI) -> None:
    """JSON mode (``{"type": "json_object"}``): no schema reaches the server, so the
    prompt says the keys; the object parses and validates."""
    structured = llm.with_structured_output(Colour, method="json_mode", include_raw=True)
    for prompt in (
        'What colour is the sky? Answer in JSON with the keys "name" and "hex" (its code).',
        'Reply with a JSON object with two strings, "name" and "hex": the colour of grass.',
    ):
        out = structured.invoke(prompt)
        assert out["parsing_error"] is None, out  # type: ignore[index]
        assert isinstance(out["parsed"], Colour)  # type: ignore[index]
