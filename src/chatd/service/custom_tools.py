"""Custom tools (OpenAI's ``type: "custom"``): tools whose input is raw text, free or of a
Lark or regex grammar, rather than JSON arguments. For any protocol; the tool-call core
(service/tool_calls.py) offers them beside function tools.

The model calls one by writing its name alone on the call's first line, then the raw
input::

    <tool_call>
    apply_patch
    *** Begin Patch ...
    </tool_call>

(not a JSON head like a function's: llguidance commits to one lexeme where a literal and
the nested JSON grammar of a function's call would begin alike, so the two kinds of call
differ from their first byte: ``{`` for a function, a name character for a custom tool).

The grammar holds the input to the tool's own grammar where it has one: a Lark grammar
is embedded whole (llguidance's nested ``%lark { ... }``, with its own lexer), a regex
becomes one terminal. Free text ends lazily at the closing tag (a ``stop`` rule). A
grammar llguidance cannot compile is a 400 naming the tool's ``format``, checked with
llguidance itself before anything is queued (no tokenizer needed to check).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import llguidance

from chatd.protocol.errors import InvalidRequest

__all__ = ["CustomFormat", "checked_format", "custom_head", "custom_rules", "custom_spec"]

Syntax = Literal["text", "lark", "regex"]


@dataclass(frozen=True)
class CustomFormat:
    """A custom tool's input: ``text`` (free), or the ``definition`` of a grammar."""

    syntax: Syntax = "text"
    definition: str = ""


def checked_format(name: str, syntax: Syntax, definition: str, param: str) -> CustomFormat:
    """The format, once llguidance compiles its grammar; else a 400 naming ``param``
    (the tool's ``format``) with llguidance's own words."""
    if syntax == "text":
        return CustomFormat()
    if syntax == "lark":
        source = llguidance.LLMatcher.grammar_from_lark(definition)
    else:
        source = llguidance.LLMatcher.grammar_from_regex(definition)
    error = llguidance.LLMatcher.validate_grammar(source)
    if error:
        raise InvalidRequest(
            f"Invalid {syntax} grammar for custom tool '{name}': {error.strip()}",
            param=param,
            code="invalid_grammar",
        )
    return CustomFormat(syntax, definition)


def custom_head(name: str) -> str:
    """What the model writes before a custom tool's input: its name on a line."""
    return name + "\n"


def custom_rules(rule: str, name: str, fmt: CustomFormat, close: str) -> list[str]:
    """The Lark rules of one custom tool's call, from its head to ``close``."""
    head = json.dumps(custom_head(name))
    body = f"{rule}_input"
    if fmt.syntax == "text":
        # Lazy: the input is whatever comes before the closing tag.
        return [f"{rule}: {head} {body}", f"{body}[stop={json.dumps(close)}]: /(.|\\n)*/"]
    if fmt.syntax == "lark":
        inner = f"%lark {{\n{fmt.definition}\n}}"
    else:
        inner = "/" + _slashed(fmt.definition) + "/"
    return [f"{rule}: {head} {body} {json.dumps(close)}", f"{body}: {inner}"]


def custom_spec(name: str, description: str | None, fmt: CustomFormat) -> str:
    """The line of the tools list that shows the model a custom tool."""
    spec: dict[str, object] = {"name": name}
    if description:
        spec["description"] = description
    if fmt.syntax == "text":
        spec["format"] = {"type": "text"}
    else:
        spec["format"] = {"type": "grammar", "syntax": fmt.syntax, "definition": fmt.definition}
    return json.dumps({"type": "custom", "custom": spec}, ensure_ascii=False)


def _slashed(regex: str) -> str:
    """A regex inside Lark's ``/.../``: its unescaped slashes escaped."""
    out = []
    escaped = False
    for c in regex:
        if c == "/" and not escaped:
            out.append("\\/")
        else:
            out.append(c)
        escaped = c == "\\" and not escaped
    return "".join(out)
