"""A hostile chat template (the GGUF file is untrusted input): attribute walking, file
access and runaway loops or allocations are refused when the model loads or stopped
while rendering with a clear ``TemplateRenderError``; the server never stalls on one."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from chatd.engine import template_sandbox
from chatd.engine.template import ChatTemplate, TemplateRefused, TemplateRenderError

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(
    "source",
    [
        "{% include '/etc/passwd' %}",
        "{% include messages[0]['content'] %}",
        "{% import '/etc/passwd' as p %}",
        "{% from '/etc/passwd' import x %}",
        "{% extends '/etc/passwd' %}",
        "{% for m in messages %}{% include 'x' ignore missing %}{% endfor %}",
    ],
)
def test_file_access_is_refused_at_load(source: str) -> None:
    with pytest.raises(TemplateRefused, match="cannot use"):
        ChatTemplate(source)


@pytest.mark.parametrize("source", ["{% for m in messages %}", "{{ messages[ }}", "{% bogus %}"])
def test_broken_template_is_refused_at_load(source: str) -> None:
    with pytest.raises(TemplateRefused, match="chat template is refused"):
        ChatTemplate(source)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__ }}",
        "{{ raise_exception.__globals__['__builtins__']['open']('/etc/passwd').read() }}",
        "{{ strftime_now.__globals__['datetime'].__init__ }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'].listdir('/') }}",
        "{{ self._TemplateReference__context }}",
        "{{ ''.format.__globals__ }}",
        "{{ '{0.__class__.__mro__}'.format('') }}",
        "{{ '{0.__globals__}'.format(raise_exception) }}",
    ],
)
def test_attribute_walking_never_reaches_python(source: str) -> None:
    try:
        out = ChatTemplate(source).render(MESSAGES)
    except TemplateRenderError:
        return
    for leak in ("<class", "module", "function", "root:", "built-in", "__"):
        assert leak not in out, out


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        # loops: each range is capped by jinja2 (100 000), nesting by chatd's step budget
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "too many steps",
        ),
        (
            "{% for i in range(99999) %}{% for j in range(99999) %}{{ '' }}{% endfor %}"
            "{% endfor %}",
            "too many steps",
        ),
        ("{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}", "recursion"),
        ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "recursion"),
        ("{% for i in range(10 ** 9) %}{% endfor %}", "number over"),
        ("{% for i in range(3000000) %}{% endfor %}", "(?i)range too big"),
        # allocations: refused before they are made
        ("{{ 'x' * 10 ** 10 }}", "repeated"),
        ("{{ ['x'] * 10 ** 10 }}", "repeated"),
        ("{{ (messages[0]['content'] * 1000000) * 1000000 }}", "repeated"),
        ("{{ 2 ** 1000000000 }}", "power"),
        ("{{ 7 ** 99999 * 7 ** 99999 }}", "power"),
        ("{{ '{:>9999999999}'.format(1) }}", "number over"),
        ("{{ '{:>{}}'.format(1, 9999999999) }}", "number over"),
        ("{{ '{x:>9999999999}'.format_map({'x': 1}) }}", "number over"),
        ("{{ '%9999999999d' % 1 }}", "number over"),
        ("{{ '%*d' % (9999999999, 1) }}", "number over"),
        ("{{ '%9999999999d' | format(1) }}", "number over"),
        ("{{ 'x' | center(9999999999) }}", "number over"),
        ("{{ 'x'.ljust(9999999999) }}", "number over"),
        ("{{ 'x'.zfill(9999999999) }}", "number over"),
        ("{{ ('x' * 100000) | replace('', 'y' * 100000) }}", "replace"),
        ("{{ ('x' * 100000).replace('x', 'y' * 100000) }}", "replace"),
        ("{{ range(100000) | list | join('x' * 100000) }}", "join"),
        ("{{ ('x' * 100000).join(range(100000) | map('string')) }}", "join"),
        ("{{ (['x' * 1000000] * 1000000) | join }}", "join"),
        ("{{ range(100000) | map('string') | join('x' * 100000) }}", "join"),
        ("{{ ('\n' * 1000000) | indent(1000000) }}", "indent"),
        ("{{ ('a ' * 1000000) | wordwrap(1, wrapstring='x' * 1000) }}", "wordwrap"),
        ("{{ ('\t' * 1000000).expandtabs(1000) }}", "expandtabs"),
        # growth a step at a time: stopped at the size limit
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            "over",
        ),
        (
            "{% set ns = namespace(s='x') %}{% for i in range(64) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
            "over",
        ),
        (
            "{% set ns = namespace(s=['x']) %}{% for i in range(64) %}"
            "{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s | length }}",
            "over",
        ),
        # output: bounded as it is produced
        ("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output"),
        ("{% for i in range(100) %}{{ 'x' * 3000000 }}{% endfor %}", "output"),
    ],
)
def test_runaway_templates_are_stopped(
    source: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each bound stops its runaway for its own reason. The clock stands still: on a busy
    machine the 1 s limit could stop a slow one first (test_a_template_over_its_time...
    tests that limit on a clock of its own)."""
    monkeypatch.setattr(template_sandbox, "monotonic", lambda: 0.0)
    with pytest.raises(TemplateRenderError, match=reason):
        ChatTemplate(source).render(MESSAGES)


def test_a_template_over_its_time_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that moves one second per reading: the deadline passes within 256 steps.
    clock = itertools.count()
    monkeypatch.setattr(template_sandbox, "monotonic", lambda: float(next(clock)))
    source = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateRenderError, match="longer than 1 s"):
        ChatTemplate(source).render(MESSAGES)


def test_each_render_has_its_own_budget() -> None:
    # 200 000 steps a render, within the budget (250 000); more than it in all
    source = "{% for i in range(2) %}{% for j in range(99999) %}{% endfor %}{% endfor %}ok"
    tpl = ChatTemplate(source)
    for _ in range(2):
        assert tpl.render(MESSAGES) == "ok"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 'ab' * 3 }}", "ababab"),
        (
            "{{ 2 ** 10 }}|{{ 7 % 3 }}|{{ '%05d' % 42 }}|{{ '%s-%s' | format(1, 2) }}",
            "1024|1|00042|1-2",
        ),
        ("{{ '{:>4}'.format('a') }}|{{ 'a' | center(5) }}", "   a|  a  "),
        ("{{ messages[0]['content'] | replace('i', 'ey') }}{{ 'x'.ljust(3, '.') }}", "Heyx.."),
        ("{% for m in messages recursive %}{{ m['role'] }}{% endfor %}", "user"),
        ("{{ messages | map(attribute='role') | join(',') }}", "user"),
    ],
)
def test_ordinary_templates_still_render(source: str, expected: str) -> None:
    assert ChatTemplate(source).render(MESSAGES) == expected


def test_tool_schemas_with_large_numbers_render() -> None:
    tools: list[dict[str, Any]] = [
        {"type": "function", "function": {"name": "f", "parameters": {"maximum": 10**12}}}
    ]
    out = ChatTemplate("{{ tools | tojson }}").render(MESSAGES, tools=tools)
    assert "1000000000000" in out
