"""What the local engine can honour of a Responses request. A field it cannot is a 400
naming it, never ignored; one it honours by doing nothing (hosted tools the model may
leave uncalled, reasoning options of a model that does not reason) is accepted, and
docs/acceptance.md says why.

Fields refused outright are declared in ``protocol/responses_fields.py``; this module
applies that table and holds the checks of the fields whose refusal depends on the value
(``refuses_values`` in the table), one function per field in :data:`VALUE_CHECKS`. Fields
are judged in table order, so the first fault is always the same one.
"""

from __future__ import annotations

from collections.abc import Callable

from chatd.protocol.chat_fields import Policy
from chatd.protocol.errors import InvalidRequest, Unsupported
from chatd.protocol.responses_fields import RESPONSES_FIELDS
from chatd.protocol.responses_items import InputFile, InputImage, MessageItem, OtherItem
from chatd.protocol.responses_request import CreateResponseRequest
from chatd.protocol.responses_tools import ToolChoiceOther
from chatd.service.responses.compaction import COMPACTION_TYPES

__all__ = ["VALUE_CHECKS", "check_local_support"]

# (request, model id): raises when the value is beyond the local model.
ValueCheck = Callable[[CreateResponseRequest, str], None]


def check_local_support(req: CreateResponseRequest, model_id: str) -> None:
    """Raise for anything a text-only, non-reasoning local model without built-in tools
    cannot do."""
    given = req.supplied_fields()
    for name, policy in RESPONSES_FIELDS.items():
        if policy.policy is Policy.REFUSED and name in given:
            raise Unsupported(name, policy.why.format(model=model_id))
        check = VALUE_CHECKS.get(name)
        if check is not None and name in given:
            check(req, model_id)


def _input(req: CreateResponseRequest, model_id: str) -> None:
    for i, item in enumerate(req.input_items()):
        if isinstance(item, OtherItem) and item.type not in COMPACTION_TYPES:
            raise Unsupported(
                f"input[{i}]",
                f"items of type '{item.type}' are not supported by `{model_id}` (it serves"
                " messages, function calls, their outputs and item references).",
            )
        if not isinstance(item, MessageItem):
            continue
        for j, part in enumerate(item.parts()):
            if isinstance(part, InputImage | InputFile):
                kind = "image" if isinstance(part, InputImage) else "file"
                raise InvalidRequest(
                    f"Invalid content type. {part.type} is only supported by models with"
                    f" {kind} input; `{model_id}` is text-only.",
                    param=f"input[{i}].content[{j}].type",
                    code="unsupported_content_type",
                )


def _tool_choice(req: CreateResponseRequest, model_id: str) -> None:
    """A choice the local model cannot make is a 400 naming ``tool_choice``: one that
    forces a hosted tool (or an MCP server's), or ``required`` when only hosted tools are
    offered (the model would have to call a tool it cannot run)."""
    choice = req.tool_choice
    if isinstance(choice, ToolChoiceOther):
        if choice.type == "allowed_tools":
            raise Unsupported(
                "tool_choice",
                f"of type 'allowed_tools' is not supported by `{model_id}` yet; use 'auto',"
                " 'required' or a function.",
            )
        raise Unsupported(
            "tool_choice",
            f"forces the hosted tool '{choice.type}', which `{model_id}` cannot run (it runs"
            " no hosted tools: only function and custom tools are called).",
        )
    if choice == "required" and not req.callable_tools():
        if req.hosted_tools():
            hosted = ", ".join(sorted({t.type for t in req.hosted_tools()}))
            raise Unsupported(
                "tool_choice",
                f"'required' would force a call of a hosted tool ({hosted}), which"
                f" `{model_id}` cannot run; offer a function or custom tool, or use 'auto'.",
            )
        raise InvalidRequest(
            "Tool choice 'required' must be specified with 'tools' parameter.",
            param="tool_choice",
        )


def _text(req: CreateResponseRequest, model_id: str) -> None:
    text = req.text
    if text is not None and text.verbosity not in (None, "medium"):
        raise Unsupported(
            "text.verbosity",
            f"'{text.verbosity}' is only supported by reasoning models; `{model_id}` is not.",
        )


# One per field whose table entry declares ``refuses_values``.
VALUE_CHECKS: dict[str, ValueCheck] = {
    "input": _input,
    "tool_choice": _tool_choice,
    "text": _text,
}
