"""Chat prompts rendered with the model's own template (``tokenizer.chat_template``).

The template comes from the model file, so it is untrusted: it runs in jinja2's
immutable sandbox, with only the helpers Hugging Face templates expect.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

# ChatML, for GGUF files that carry no template.
DEFAULT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class TemplateRenderError(ValueError):
    """The template rejected the conversation (e.g. it raised on an unsupported role)."""


def _raise(message: str) -> None:
    raise TemplateRenderError(message)


def _tojson(value: Any, indent: int | None = None, **_: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent)


class ChatTemplate:
    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or DEFAULT_TEMPLATE
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self._template = env.from_string(self.source)
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
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._bos,
                eos_token=self._eos,
                tools=tools,
            )
        except TemplateRenderError:
            raise
        except Exception as e:  # untrusted code: any failure is the template's
            raise TemplateRenderError(f"chat template error: {e!r}") from e
