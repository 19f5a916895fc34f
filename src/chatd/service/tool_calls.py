"""Tool calls on models whose chat template knows nothing of tools, for any protocol:
the plan (which functions, which mode), what the model is shown, the grammar its answer
follows, and the parser that reads calls back out of its text.

The model is told about the tools by a generic system prompt (the Hermes / Qwen format)
and calls them by writing

    <tool_call>
    {"name":"get_weather","arguments":{"city":"Paris"}}
    </tool_call>

A grammar makes every call valid by construction: the name is one of the declared
functions and the arguments match that function's parameter schema. The mode decides
what the grammar allows: ``none`` no call, ``auto`` text or calls, ``required`` at least
one call, ``named`` exactly one call of the forced function. Each protocol's adapter
builds a ``ToolPlan`` from its own fields (Chat Completions: service/chat/tools.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from chatd.engine.json_keys import GRAMMAR_OPTIONS, closed_for_grammar
from chatd.protocol.errors import InvalidRequest
from chatd.protocol.ids import call_id
from chatd.protocol.validation import too_deep
from chatd.service.custom_tools import CustomFormat, custom_head, custom_rules, custom_spec
from chatd.service.structured import strict_violation

__all__ = [
    "CLOSE",
    "NO_JSON",
    "OPEN",
    "CallEvent",
    "Function",
    "Mode",
    "OutputParser",
    "ParsedCall",
    "ToolPlan",
    "call_text",
    "checked_function",
    "custom_call_text",
    "grammar",
    "parsed_arguments",
    "response_text",
    "system_prompt",
    "template_tools",
]

OPEN = "<tool_call>\n"
CLOSE = "\n</tool_call>"
NO_JSON = "\x00"  # no output begins with it (a NUL is no token's text the grammar allows)
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}

Mode = Literal["none", "auto", "required", "named"]


@dataclass(frozen=True)
class Function:
    """A tool the model may call: JSON arguments of ``parameters``, or, for a custom tool
    (``custom`` set: service/custom_tools.py), raw text input."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    custom: CustomFormat | None = None


@dataclass(frozen=True)
class ToolPlan:
    functions: list[Function]
    mode: Mode
    forced: str | None = None  # the function a named choice forces
    parallel: bool = True
    legacy: bool = False  # answered as the deprecated message.function_call

    @property
    def may_call(self) -> bool:
        return self.mode != "none"

    @property
    def json_after(self) -> str:
        """Where the output's JSON begins, for the grammar's duplicate-key guard: after
        the call tag, unless a custom tool's raw input may follow it, which is no JSON
        (then the guard is off: a text the output never begins with)."""
        return NO_JSON if any(f.custom is not None for f in self.functions) else OPEN


def checked_function(
    name: str,
    description: str | None,
    parameters: dict[str, Any] | None,
    strict: bool | None,
    param: str,
) -> Function:
    """A declared function whose parameters the grammar can enforce; ``param`` names the
    declaration in the request, for the error."""
    schema = parameters if parameters is not None else _NO_PARAMETERS
    if strict:
        problem = strict_violation(schema)
        if problem is not None:
            path, why = problem
            raise InvalidRequest(
                f"Invalid schema for function '{name}': in strict mode, at {path}: {why}",
                param=f"{param}.parameters",
                code="invalid_function_parameters",
            )
    if schema.get("type", "object") != "object":
        raise InvalidRequest(
            f"Invalid schema for function '{name}': parameters must be a JSON Schema of"
            " type 'object'.",
            param=f"{param}.parameters",
            code="invalid_function_parameters",
        )
    return Function(name, description, schema)


# --- what the model sees -------------------------------------------------------------------


def system_prompt(plan: ToolPlan) -> str:
    lines = [
        "# Tools",
        "",
        "You may call one or more functions to assist with the user query.",
        "",
        "You are provided with function signatures within <tools></tools> XML tags:",
        "<tools>",
    ]
    for f in plan.functions:
        if f.custom is not None:
            lines.append(custom_spec(f.name, f.description, f.custom))
            continue
        spec: dict[str, Any] = {"name": f.name}
        if f.description:
            spec["description"] = f.description
        spec["parameters"] = f.parameters
        lines.append(json.dumps({"type": "function", "function": spec}, ensure_ascii=False))
    lines += [
        "</tools>",
        "",
        "For each function call, return a json object with function name and arguments"
        " within <tool_call></tool_call> XML tags:",
        "<tool_call>",
        '{"name": <function-name>, "arguments": <args-json-object>}',
        "</tool_call>",
    ]
    if any(f.custom is not None for f in plan.functions):
        lines += [
            "",
            "A custom tool takes raw text, not JSON: write its name alone on the first line,"
            " then its input (in the tool's format) on the next lines:",
            "<tool_call>",
            "<custom-tool-name>",
            "<input>",
            "</tool_call>",
        ]
    return "\n".join(lines)


def grammar(plan: ToolPlan) -> str | None:
    """The llguidance Lark grammar of the whole answer, or None for free text."""
    if plan.mode == "none":
        return None
    functions = [f for f in plan.functions if plan.forced in (None, f.name)]
    calls = "call" if not plan.parallel else 'call ("\\n" call)*'
    rules = [
        f"calls: {calls}",
        f"call: {json.dumps(OPEN)} payload",
        # a custom tool's rule ends with the closing tag itself (custom_tools.py)
        "payload: "
        + " | ".join(
            f"fn{i}" if f.custom is not None else f"fn{i} {json.dumps(CLOSE)}"
            for i, f in enumerate(functions)
        ),
    ]
    for i, f in enumerate(functions):
        if f.custom is not None:
            rules += custom_rules(f"fn{i}", f.name, f.custom, CLOSE)
        else:
            rules.append(f"fn{i}: %json {json.dumps(_call_schema(f))}")
    if plan.mode == "auto":
        return "\n".join(["start: calls | text", f"text: /{_not_a_call_regex()}/", *rules])
    return "\n".join(["start: calls", *rules])


_ARGS = "chatd_arguments"


def _call_schema(f: Function) -> dict[str, Any]:
    """``{"name": f, "arguments": <f's parameters>}``. The parameters move under
    ``$defs`` (with their own ``$defs``/``definitions`` lifted to the root), and their
    ``$ref``s are rewritten, so references inside them keep pointing where they did.
    Objects that declare properties are closed, for unique keys (engine/json_keys.py)."""
    params = dict(closed_for_grammar(f.parameters))
    defs = {k: _rehome(v) for k, v in params.pop("$defs", {}).items()}
    definitions = {k: _rehome(v) for k, v in params.pop("definitions", {}).items()}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"const": f.name}, "arguments": {"$ref": f"#/$defs/{_ARGS}"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
        "$defs": {**defs, _ARGS: _rehome(params)},
        "x-guidance": {"whitespace_flexible": False, **GRAMMAR_OPTIONS},
    }
    if definitions:
        schema["definitions"] = definitions
    return schema


def _rehome(node: Any) -> Any:
    if isinstance(node, list):
        return [_rehome(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rehome(v) for k, v in node.items()}
    ref = out.get("$ref")
    lifted = ("#/$defs/", "#/definitions/")
    if isinstance(ref, str) and ref.startswith("#") and not ref.startswith(lifted):
        out["$ref"] = f"#/$defs/{_ARGS}{ref[1:]}"
    return out


def _not_a_call_regex() -> str:
    """Any text that does not begin with the tool-call tag (the empty text included)."""
    tag = OPEN.rstrip("\n")
    alts = ["[^<](.|\\n)*"]
    for k in range(1, len(tag)):
        alts.append(f"{_re(tag[:k])}([^{_re(tag[k])}](.|\\n)*)?")
    alts.append(f"{_re(tag)}([^\\n](.|\\n)*)?")
    return "(" + "|".join(alts) + ")?"


def _re(text: str) -> str:
    return "".join("\\" + c if c in "\\/.^$|?*+()[]{}-" else c for c in text)


def template_tools(plan: ToolPlan) -> list[dict[str, Any]]:
    """The tools as Hugging Face chat templates expect them (functions only: a custom
    tool is shown as a function of one string, its raw input, which the grammar then
    makes the model write raw)."""
    return [
        {
            "type": "function",
            "function": {
                "name": f.name,
                "description": f.description or "",
                "parameters": f.parameters if f.custom is None else _RAW_INPUT,
            },
        }
        for f in plan.functions
    ]


_RAW_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "the raw input text"}},
    "required": ["input"],
}


def parsed_arguments(arguments: str) -> Any:
    """A call's arguments as JSON when they are (they should be), else the raw string: so
    is JSON nested deeper than a request may be (protocol/validation.py's MAX_DEPTH), which
    the chat template would otherwise walk into Python's recursion limit."""
    try:
        value = json.loads(arguments)
    except (ValueError, RecursionError):
        return arguments
    return arguments if too_deep(value) else value


def call_text(name: str, arguments: str) -> str:
    # Compact, as the grammar makes the model write its own calls.
    call = {"name": name, "arguments": parsed_arguments(arguments)}
    body = json.dumps(call, ensure_ascii=False, separators=(",", ":"))
    return f"{OPEN}{body}{CLOSE}"


def custom_call_text(name: str, text: str) -> str:
    """A custom tool's call as the grammar makes the model write it (custom_tools.py)."""
    return f"{OPEN}{custom_head(name)}{text}{CLOSE}"


def response_text(content: str, name: str | None = None) -> str:
    head = f'<tool_response name="{name}">' if name else "<tool_response>"
    return f"{head}\n{content}\n</tool_response>"


# --- reading the answer back -------------------------------------------------------------


@dataclass
class CallEvent:
    """Something the parser learned: a call began (name) or its arguments grew."""

    index: int
    name: str | None = None
    arguments: str = ""


@dataclass
class ParsedCall:
    name: str
    arguments: str = ""
    id: str = field(default_factory=call_id)


class OutputParser:
    """Reads one choice's output incrementally: free text, or tool calls.

    Streams and whole answers go through the same parser, so streamed argument
    fragments concatenate exactly to the non-streamed arguments.
    """

    def __init__(self, plan: ToolPlan) -> None:
        self.plan = plan
        self.kind: Literal["undecided", "text", "calls"] = (
            "undecided" if plan.mode == "auto" else ("text" if plan.mode == "none" else "calls")
        )
        self.calls: list[ParsedCall] = []
        self._buf = ""  # text not consumed yet
        self._state = "open"  # open | head | args | tail | input (a custom tool's)
        self._depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, text: str) -> tuple[str, list[CallEvent]]:
        """Returns (content text now known to be content, call events)."""
        self._buf += text
        if self.kind == "undecided":
            tag = OPEN
            if self._buf.startswith(tag):
                self.kind = "calls"
            elif not tag.startswith(self._buf):
                self.kind = "text"
            else:
                return "", []
        if self.kind == "text":
            out, self._buf = self._buf, ""
            return out, []
        return "", self._parse_calls()

    def finish(self) -> str:
        """At the end: text still held while undecided is content after all."""
        if self.kind == "undecided":
            self.kind = "text"
            out, self._buf = self._buf, ""
            return out
        return ""

    def flush(self) -> list[CallEvent]:
        """At the end: a custom tool's input cut short (token limit) is what it got."""
        if self._state != "input" or not self._buf:
            return []
        piece, self._buf = self._buf, ""
        self.calls[-1].arguments += piece
        return [CallEvent(len(self.calls) - 1, arguments=piece)]

    def _parse_calls(self) -> list[CallEvent]:
        events: list[CallEvent] = []
        while True:
            if self._state == "open":
                stripped = self._buf.lstrip("\n")
                if len(stripped) < len(OPEN):
                    return events
                self._buf = stripped[len(OPEN) :]
                self._state = "head"
            if self._state == "head" and not self._head(events):
                return events
            if self._state == "args":
                piece, done = self._scan_arguments()
                if piece:
                    self.calls[-1].arguments += piece
                    events.append(CallEvent(len(self.calls) - 1, arguments=piece))
                if not done:
                    return events
                self._state = "tail"
            if self._state == "input":
                piece, done = self._scan_input()
                if piece:
                    self.calls[-1].arguments += piece
                    events.append(CallEvent(len(self.calls) - 1, arguments=piece))
                if not done:
                    return events
                self._state = "open"
            if self._state == "tail":
                end = "}" + CLOSE
                if len(self._buf) < len(end):
                    return events
                self._buf = self._buf[len(end) :]
                self._state = "open"

    def _head(self, events: list[CallEvent]) -> bool:
        """A call's head: ``{"name":...,"arguments":`` (a function's), or a custom tool's
        name alone on a line (custom_tools.py); the first character tells which."""
        if not self._buf:
            return False
        if self._buf.startswith("{"):
            marker = '"arguments":'
            at = self._buf.find(marker)
            if at < 0:
                return False
            name = json.loads(self._buf[:at].rstrip().rstrip(",") + "}")["name"]
            self._buf = self._buf[at + len(marker) :]
            self._state = "args"
            self._depth = 0
        else:
            end = self._buf.find("\n")
            if end < 0:
                return False
            name, self._buf = self._buf[:end], self._buf[end + 1 :]
            self._state = "input"
        self.calls.append(ParsedCall(name))
        events.append(CallEvent(len(self.calls) - 1, name=name))
        return True

    def _scan_input(self) -> tuple[str, bool]:
        """A custom tool's raw input, up to the closing tag; the tail that may be the
        tag's beginning is held until it is known not to be."""
        at = self._buf.find(CLOSE)
        if at >= 0:
            piece, self._buf = self._buf[:at], self._buf[at + len(CLOSE) :]
            return piece, True
        keep = 0
        for k in range(min(len(CLOSE) - 1, len(self._buf)), 0, -1):
            if CLOSE.startswith(self._buf[-k:]):
                keep = k
                break
        cut = len(self._buf) - keep
        piece, self._buf = self._buf[:cut], self._buf[cut:]
        return piece, False

    def _scan_arguments(self) -> tuple[str, bool]:
        """Consume the arguments object from the buffer, tracking nesting and strings."""
        for i, c in enumerate(self._buf):
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif c == "\\":
                    self._escaped = True
                elif c == '"':
                    self._in_string = False
            elif c == '"':
                self._in_string = True
            elif c in "{[":
                self._depth += 1
            elif c in "}]":
                self._depth -= 1
                if self._depth == 0:
                    piece, self._buf = self._buf[: i + 1], self._buf[i + 1 :]
                    return piece, True
        piece, self._buf = self._buf, ""
        return piece, False
