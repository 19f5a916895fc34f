"""ChatTemplate: exact renders, role mapping, the sandbox and the Hugging Face helpers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from chatd.engine.template import DEFAULT_TEMPLATE, ChatTemplate, TemplateRenderError

# tokenizer.chat_template of SmolLM2-135M-Instruct, verbatim.
SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging"
    " Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' +"
    " message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
DEFAULT_SYSTEM = (
    "<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
)
ASSISTANT = "<|im_start|>assistant\n"


def msg(role: str, content: str) -> dict[str, Any]:
    return {"role": role, "content": content}


# --- exact renders ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (
            [msg("system", "Be brief."), msg("user", "Hi")],
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" + ASSISTANT,
        ),
        (
            [msg("user", "Hi")],
            DEFAULT_SYSTEM + "<|im_start|>user\nHi<|im_end|>\n" + ASSISTANT,
        ),
        (
            [msg("developer", "Be brief."), msg("user", "Hi")],
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n" + ASSISTANT,
        ),
        (
            [msg("user", "Hi"), msg("assistant", "Hello!"), msg("user", "Bye")],
            DEFAULT_SYSTEM
            + "<|im_start|>user\nHi<|im_end|>\n"
            + "<|im_start|>assistant\nHello!<|im_end|>\n"
            + "<|im_start|>user\nBye<|im_end|>\n"
            + ASSISTANT,
        ),
    ],
    ids=["system+user", "user-only", "developer", "multi-turn"],
)
def test_smollm2_render(messages: list[dict[str, Any]], expected: str) -> None:
    assert ChatTemplate(SMOLLM2).render(messages) == expected


def test_smollm2_without_generation_prompt() -> None:
    out = ChatTemplate(SMOLLM2).render(
        [msg("system", "S"), msg("user", "Hi")], add_generation_prompt=False
    )
    assert out == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"


def test_smollm2_non_ascii_content_verbatim() -> None:
    out = ChatTemplate(SMOLLM2).render([msg("system", "S"), msg("user", "héllo 中文 😀")])
    assert "<|im_start|>user\nhéllo 中文 😀<|im_end|>\n" in out


def test_developer_mapping_does_not_mutate_input() -> None:
    messages = [msg("developer", "D"), msg("user", "U")]
    ChatTemplate(SMOLLM2).render(messages)
    assert messages == [msg("developer", "D"), msg("user", "U")]


def test_developer_mapped_only_for_templates_without_developer() -> None:
    tpl = ChatTemplate(SMOLLM2)
    assert not tpl.has_developer_role
    out = tpl.render([msg("developer", "D")], add_generation_prompt=False)
    assert "developer" not in out
    assert out == "<|im_start|>system\nD<|im_end|>\n"


def test_template_mentioning_developer_keeps_the_role() -> None:
    source = (
        "{% for m in messages %}{% if m['role'] == 'developer' %}[dev]{% endif %}"
        "{{ m['role'] }}={{ m['content'] }};{% endfor %}"
    )
    tpl = ChatTemplate(source)
    assert tpl.has_developer_role
    out = tpl.render([msg("developer", "D"), msg("user", "U")])
    assert out == "[dev]developer=D;user=U;"


def test_bos_and_eos_tokens_are_passed() -> None:
    source = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{{ eos_token }}{% endfor %}"
    tpl = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    assert tpl.render([msg("user", "a"), msg("assistant", "b")]) == "<s>a</s>b</s>"


def test_bos_and_eos_default_empty() -> None:
    assert ChatTemplate("[{{ bos_token }}|{{ eos_token }}]").render([]) == "[|]"


def test_trim_and_lstrip_blocks_like_hugging_face() -> None:
    source = (
        "{% for m in messages %}\n    {% if true %}\n{{ m['content'] }}\n"
        "    {% endif %}\n{% endfor %}"
    )
    assert ChatTemplate(source).render([msg("user", "a"), msg("user", "b")]) == "a\nb\n"


# --- default template ---------------------------------------------------------------------


@pytest.mark.parametrize("source", [None, ""])
def test_missing_source_falls_back_to_default(source: str | None) -> None:
    tpl = ChatTemplate(source)
    assert tpl.source == DEFAULT_TEMPLATE
    out = tpl.render([msg("user", "Hi")])
    assert out == "<|im_start|>user\nHi<|im_end|>\n" + ASSISTANT


def test_default_template_maps_developer_to_system() -> None:
    out = ChatTemplate(None).render([msg("developer", "D"), msg("user", "U")])
    assert out == "<|im_start|>system\nD<|im_end|>\n<|im_start|>user\nU<|im_end|>\n" + ASSISTANT


# --- sandbox and errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ raise_exception.__globals__['os'] }}",
        "{{ raise_exception.__globals__.keys() | list }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{% set x = [] %}{{ x.append(1) }}",
        "{% set d = {} %}{{ d.update({'a': 1}) }}",
        "{{ messages.append(1) }}",
        "{{ messages[0].update({'role': 'x'}) }}",
        "{{ messages.pop() }}",
        "{% for i in range(10 ** 6) %}{% endfor %}",  # the sandbox's MAX_RANGE guard
    ],
)
def test_sandbox_violations_raise_template_render_error(source: str) -> None:
    messages = [msg("user", "Hi")]
    with pytest.raises(TemplateRenderError):
        ChatTemplate(source).render(messages)
    assert messages == [msg("user", "Hi")]


@pytest.mark.parametrize(
    "source",
    ["{{ raise_exception.__globals__ }}", "{{ ''.__class__ }}", "{{ strftime_now.__code__ }}"],
)
def test_unsafe_attribute_never_leaks(source: str) -> None:
    # A bare unsafe attribute is undefined in jinja2's sandbox: it may render empty or raise
    # TemplateRenderError, but never shows the object.
    try:
        out = ChatTemplate(source).render([msg("user", "Hi")])
    except TemplateRenderError:
        return
    assert out == ""


@pytest.mark.parametrize("message", ["Roles must alternate", "Système non pris en charge"])
def test_raise_exception_becomes_template_render_error(message: str) -> None:
    source = (
        "{% if messages[0]['role'] == 'user' %}{{ raise_exception('" + message + "') }}{% endif %}"
    )
    tpl = ChatTemplate(source)
    with pytest.raises(TemplateRenderError) as info:
        tpl.render([msg("user", "Hi")])
    assert str(info.value) == message
    assert tpl.render([msg("system", "S")]) == ""


@pytest.mark.parametrize(
    "source",
    [
        "{{ messages[5]['content'] }}",  # IndexError-like
        "{{ messages[0]['content'] + 1 }}",  # TypeError
        "{{ messages[0]['nope'].strip() }}",  # call on undefined
        "{{ messages | sum }}",  # TypeError inside a filter
        "{{ 1 // 0 }}",  # ZeroDivisionError
        "{{ 10.0 ** 1000 }}",  # OverflowError
    ],
)
def test_runtime_errors_become_template_render_error(source: str) -> None:
    with pytest.raises(TemplateRenderError):
        ChatTemplate(source).render([msg("user", "Hi")])


# --- Hugging Face helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("messages[0]['content'] | tojson", '"héllo 中文 😀"'),
        ("messages[0] | tojson", '{"role": "user", "content": "héllo 中文 😀"}'),
        ("{'k': ['é', 1, none, true]} | tojson", '{"k": ["é", 1, null, true]}'),
        ("{'a': 'ü'} | tojson(indent=2)", '{\n  "a": "ü"\n}'),
    ],
)
def test_tojson_keeps_non_ascii(expr: str, expected: str) -> None:
    out = ChatTemplate("{{ " + expr + " }}").render([msg("user", "héllo 中文 😀")])
    assert out == expected
    assert "\\u" not in out


def test_tojson_does_not_html_escape() -> None:
    out = ChatTemplate("{{ messages[0]['content'] | tojson }}").render([msg("user", "<a & 'b'>")])
    assert out == "\"<a & 'b'>\""


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
            "{{ m['content'] }}{% endfor %}",
            "ab",
        ),
        (
            "{% for m in messages %}{% if m['role'] == 'assistant' %}{% continue %}{% endif %}"
            "{{ m['content'] }}{% endfor %}",
            "acd",
        ),
    ],
    ids=["break", "continue"],
)
def test_loopcontrols(source: str, expected: str) -> None:
    messages = [msg("user", "a"), msg("assistant", "b"), msg("user", "c"), msg("user", "d")]
    assert ChatTemplate(source).render(messages) == expected


def test_strftime_now() -> None:
    out = ChatTemplate("{{ strftime_now('%Y') }}").render([])
    assert out in {str(datetime.now().year), str(datetime.now().year - 1)}
