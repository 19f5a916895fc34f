"""Chat prompts rendered with the model's own template (``tokenizer.chat_template``).

The template comes from the model file, so it is untrusted: it runs in jinja2's
immutable sandbox, bounded in time, steps and sizes (``template_sandbox.py``), with only
the helpers Hugging Face templates expect. A template that cannot be compiled, or
includes other files, is refused when the model loads (``TemplateRefused``); one that
fails or goes over a bound while rendering is a ``TemplateRenderError`` (a 400).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import TemplateError

from chatd.engine.template_sandbox import BoundedSandbox, Budget, TemplateLimit

# ChatML, for GGUF files that carry no template.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateRenderError(ValueError):
    """The template rejected the conversation (e.g. it raised on an unsupported role),
    failed, or went over a bound while rendering it."""


class TemplateRefused(RuntimeError):
    """The model's template cannot be used at all (a syntax error, an include): the
    model does not load (``chatd serve`` says why, without a traceback)."""


def _raise(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or DEFAULT_TEMPLATE
        env = BoundedSandbox(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.guard_filter("tojson", _tojson)
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.compile_bounded(self.source)
        except (TemplateError, TemplateLimit) as e:
            raise TemplateRefused(f"the model's chat template is refused: {e}") from None
        self._bos = bos_token
        self._eos = eos_token
        # A template that never mentions "developer" cannot render that role; OpenAI
        # defines developer messages as the successor of system messages.
        self.has_developer_role = "developer" in self.source
        # Hugging Face templates that can describe tools read a `tools` variable.
        self.supports_tools = "tools" in self.source

    def render(
        self,
        messages: list[dict[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        if not self.has_developer_role:
            messages = [
                {**m, "role": "system"} if m.get("role") == "developer" else m for m in messages
            ]
        try:
            chunks = self._template.generate(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
                tools=tools,
            )
            return Budget().run(chunks)  # generate() is lazy: run() is the render
        except TemplateRenderError:
            raise
        except TemplateLimit as e:
            raise TemplateRenderError(str(e)) from None
        except Exception as e:  # untrusted code: any failure is the template's
            raise TemplateRenderError(f"chat template error: {e!r}") from e
