"""Tool calling (``tools``/``tool_choice``, and the deprecated ``functions``/
``function_call``) on models whose chat template knows nothing of tools.

The model is told about the tools by a generic system prompt (the Hermes / Qwen format,
documented in docs/tools.md) and calls them by writing

    <tool_call>
    {"name":"get_weather","arguments":{"city":"Paris"}}
    </tool_call>

A grammar makes every call valid by construction: the name is one of the declared
functions and the arguments match that function's parameter schema. ``tool_choice``
decides what the grammar allows: ``none`` no call, ``auto`` text or calls, ``required``
at least one call, a named function exactly that call.
"""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Literal

from chatd.protocol.chat_messages import (
    AssistantMessage,
    FunctionMessage,
    FunctionToolCall,
    ToolMessage,
)
from chatd.protocol.chat_request import ChatCompletionRequest
from chatd.protocol.chat_tools import CustomTool, NamedToolChoice
from chatd.protocol.errors import InvalidRequest, NotYetSupported
from chatd.service.structured import strict_violation

OPEN = "<tool_call>\n"
CLOSE = "\n</tool_call>"
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
_ALPHABET = string.ascii_letters + string.digits

Mode = Literal["none", "auto", "required", "named"]


def call_id() -> str:
    return "call_" + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class Function:
    name: str
    description: str | None
    parameters: dict[str, Any]


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


def plan_tools(req: ChatCompletionRequest) -> ToolPlan | None:
    """What the request allows, validated; None when it declares no tools."""
    if req.tools:
        for i, tool in enumerate(req.tools):
            if isinstance(tool, CustomTool):
                raise NotYetSupported(f"tools[{i}]")
        functions = [
            _function(d, f"tools[{i}].function") for i, d in enumerate(req.function_definitions())
        ]
        mode, forced = _tool_choice(req)
        parallel = req.parallel_tool_calls is not False
        # A named choice means exactly one call of that function.
        return ToolPlan(functions, mode, forced, parallel=parallel and mode != "named")
    if req.functions:
        functions = [
            _function(d, f"functions[{i}]") for i, d in enumerate(req.function_definitions())
        ]
        fc = req.function_call
        if fc is None or fc == "auto":
            mode, forced = "auto", None
        elif fc == "none":
            mode, forced = "none", None
        else:
            mode, forced = "named", fc.name
        return ToolPlan(functions, mode, forced, parallel=False, legacy=True)
    return None


def _function(d: Any, param: str) -> Function:
    schema = d.parameters if d.parameters is not None else _NO_PARAMETERS
    if d.strict:
        problem = strict_violation(schema)
        if problem is not None:
            path, why = problem
            raise InvalidRequest(
                f"Invalid schema for function '{d.name}': in strict mode, at {path}: {why}",
                param=f"{param}.parameters",
                code="invalid_function_parameters",
            )
    if schema.get("type", "object") != "object":
        raise InvalidRequest(
            f"Invalid schema for function '{d.name}': parameters must be a JSON Schema of"
            " type 'object'.",
            param=f"{param}.parameters",
            code="invalid_function_parameters",
        )
    return Function(d.name, d.description, schema)


def _tool_choice(req: ChatCompletionRequest) -> tuple[Mode, str | None]:
    choice = req.tool_choice
    if choice is None or choice == "auto":
        return "auto", None
    if choice == "none":
        return "none", None
    if choice == "required":
        return "required", None
    if isinstance(choice, NamedToolChoice):
        return "named", choice.function.name
    raise NotYetSupported("tool_choice")


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
    return "\n".join(lines)


def grammar(plan: ToolPlan) -> str | None:
    """The llguidance Lark grammar of the whole answer, or None for free text."""
    if plan.mode == "none":
        return None
    functions = [f for f in plan.functions if plan.forced in (None, f.name)]
    calls = "call" if not plan.parallel else 'call ("\\n" call)*'
    rules = [
        f"calls: {calls}",
        f"call: {json.dumps(OPEN)} payload {json.dumps(CLOSE)}",
        "payload: " + " | ".join(f"fn{i}" for i in range(len(functions))),
        *(f"fn{i}: %json {json.dumps(_call_schema(f))}" for i, f in enumerate(functions)),
    ]
    if plan.mode == "auto":
        return "\n".join(["start: calls | text", f"text: /{_not_a_call_regex()}/", *rules])
    return "\n".join(["start: calls", *rules])


_ARGS = "chatd_arguments"


def _call_schema(f: Function) -> dict[str, Any]:
    """``{"name": f, "arguments": <f's parameters>}``. The parameters move under
    ``$defs`` (with their own ``$defs``/``definitions`` lifted to the root), and their
    ``$ref``s are rewritten, so references inside them keep pointing where they did."""
    params = dict(f.parameters)
    defs = {k: _rehome(v) for k, v in params.pop("$defs", {}).items()}
    definitions = {k: _rehome(v) for k, v in params.pop("definitions", {}).items()}
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"name": {"const": f.name}, "arguments": {"$ref": f"#/$defs/{_ARGS}"}},
        "required": ["name", "arguments"],
        "additionalProperties": False,
        "$defs": {**defs, _ARGS: _rehome(params)},
        "x-guidance": {"whitespace_flexible": False},
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
    """The tools as Hugging Face chat templates expect them."""
    return [
        {
            "type": "function",
            "function": {
                "name": f.name,
                "description": f.description or "",
                "parameters": f.parameters,
            },
        }
        for f in plan.functions
    ]


def render_messages(
    req: ChatCompletionRequest, plan: ToolPlan | None, *, native: bool = False
) -> list[dict[str, Any]]:
    """The conversation as messages for the chat template.

    ``native``: the template renders tools itself (Hugging Face conventions: assistant
    ``tool_calls`` with parsed arguments, ``tool`` messages). Otherwise earlier calls
    become their <tool_call> text, results become <tool_response> user turns, and the
    tool prompt joins the system message.
    """
    known_ids: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if isinstance(m, AssistantMessage):
            text = m.text() if m.content is not None else ""
            calls = []
            for call in m.tool_calls or []:
                if not isinstance(call, FunctionToolCall):
                    raise NotYetSupported(f"messages[{i}].tool_calls")
                known_ids.add(call.id)
                calls.append((call.id, call.function.name, call.function.arguments))
            if m.function_call is not None:
                calls.append(("", m.function_call.name, m.function_call.arguments))
            if native and calls:
                native_calls = [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": name, "arguments": _arguments(args)},
                    }
                    for cid, name, args in calls
                ]
                out.append({"role": "assistant", "content": text, "tool_calls": native_calls})
            else:
                parts = ([text] if text else []) + [_call_text(n, a) for _, n, a in calls]
                out.append({"role": "assistant", "content": "\n".join(parts)})
        elif isinstance(m, ToolMessage):
            if m.tool_call_id not in known_ids:
                raise InvalidRequest(
                    f"Invalid parameter: 'tool_call_id' of '{m.tool_call_id}' not found in"
                    " 'tool_calls' of previous message.",
                    param=f"messages[{i}].tool_call_id",
                )
            if native:
                out.append({"role": "tool", "content": m.text(), "tool_call_id": m.tool_call_id})
            else:
                out.append({"role": "user", "content": _response_text(m.text())})
        elif isinstance(m, FunctionMessage):
            if native:
                out.append({"role": "tool", "content": m.content or "", "name": m.name})
            else:
                out.append({"role": "user", "content": _response_text(m.content or "", m.name)})
        else:
            entry: dict[str, Any] = {"role": m.role, "content": m.text()}
            if getattr(m, "name", None):
                entry["name"] = m.name  # type: ignore[union-attr]
            out.append(entry)
    if plan is not None and plan.may_call and not native:
        prompt = system_prompt(plan)
        if out and out[0]["role"] in ("system", "developer"):
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def _arguments(arguments: str) -> Any:
    """A call's arguments as JSON when they are (they should be), else the raw string."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


def _call_text(name: str, arguments: str) -> str:
    # Compact, as the grammar makes the model write its own calls.
    call = {"name": name, "arguments": _arguments(arguments)}
    body = json.dumps(call, ensure_ascii=False, separators=(",", ":"))
    return f"{OPEN}{body}{CLOSE}"


def _response_text(content: str, name: str | None = None) -> str:
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
        self._state = "open"  # open | head | args | tail
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

    def _parse_calls(self) -> list[CallEvent]:
        events: list[CallEvent] = []
        while True:
            if self._state == "open":
                stripped = self._buf.lstrip("\n")
                if len(stripped) < len(OPEN):
                    return events
                self._buf = stripped[len(OPEN) :]
                self._state = "head"
            if self._state == "head":
                marker = '"arguments":'
                at = self._buf.find(marker)
                if at < 0:
                    return events
                head = json.loads(self._buf[:at].rstrip().rstrip(",") + "}")
                self.calls.append(ParsedCall(head["name"]))
                events.append(CallEvent(len(self.calls) - 1, name=head["name"]))
                self._buf = self._buf[at + len(marker) :]
                self._state = "args"
                self._depth = 0
            if self._state == "args":
                piece, done = self._scan_arguments()
                if piece:
                    self.calls[-1].arguments += piece
                    events.append(CallEvent(len(self.calls) - 1, arguments=piece))
                if not done:
                    return events
                self._state = "tail"
            if self._state == "tail":
                end = "}" + CLOSE
                if len(self._buf) < len(end):
                    return events
                self._buf = self._buf[len(end) :]
                self._state = "open"

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
