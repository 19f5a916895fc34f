"""The jinja2 sandbox a model's chat template runs in, bounded.

A GGUF file is untrusted input and its chat template is code run on every request.
jinja2's ``ImmutableSandboxedEnvironment`` stops attribute walking (``__class__``,
``__globals__``) and mutation, and caps one ``range`` at 100 000 items; it does not
bound time or memory: nested loops, ``'x' * 10**10``, ``2 ** 10**9``, doubling a string
in a loop, ``'{:>9999999999}'.format(1)`` or ``center(10**10)`` would stall or exhaust
the server. ``BoundedSandbox`` adds, per render (``Budget``, in a context variable so
concurrent renders in threads or tasks do not share it):

* a step budget and a deadline, charged on every loop iteration (each ``for``'s
  iterable is wrapped when the template is compiled) and every call (macros included);
* a size limit on every value an operator, filter, call or concatenation makes, checked
  *before* the operations that could allocate a huge value in one go (repetition,
  powers, padding widths, ``replace``) and after the others;
* no ``include``/``import``/``extends`` (there is no loader: a chat template is one
  string), refused when the template is loaded.

Anything over a bound raises ``TemplateLimit``; ``template.py`` turns every failure of
the template into ``TemplateRenderError`` (a 400 for the request, not a stalled server).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["MAX_SIZE", "BoundedSandbox", "Budget", "TemplateLimit"]

MAX_SIZE = 4_000_000  # characters (or items) of any value, and of the output
MAX_STEPS = 250_000  # loop iterations + calls in one render (SmolLM2's: 2 a message)
MAX_SECONDS = 1.0  # wall time of one render (it runs on the event loop)
MAX_INT_BITS = 100_000  # an integer larger than this is refused

_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "chatd_template_budget", default=None
)
_DIGITS = re.compile(r"\d+")


class TemplateLimit(Exception):  # noqa: N818 - the name says what happened
    """The template went over a bound (time, steps or size) while rendering."""


@dataclass
class Budget:
    """One render's allowance: steps and a deadline (sizes are bounded by MAX_SIZE)."""

    steps: int = MAX_STEPS
    seconds: float = MAX_SECONDS
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = monotonic() + self.seconds

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0:
            raise TemplateLimit("the chat template ran too many steps")
        if self.steps % 256 == 0 and monotonic() > self.deadline:
            raise TemplateLimit(f"the chat template ran longer than {self.seconds:g} s")

    def run(self, chunks: Iterable[str]) -> str:
        """Join a render's output, within the budget (also the time check of a
        template whose loops emit without calling anything)."""
        out, size = [], 0
        with self.active():
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_SIZE:
                    raise TemplateLimit(f"the chat template's output is over {MAX_SIZE} chars")
                out.append(chunk)
                self.step()
        return "".join(out)

    def active(self) -> _Active:
        return _Active(self)


class _Active:
    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.token: contextvars.Token[Budget | None] | None = None

    def __enter__(self) -> Budget:
        self.token = _BUDGET.set(self.budget)
        return self.budget

    def __exit__(self, *_: object) -> None:
        assert self.token is not None
        _BUDGET.reset(self.token)


def _budget() -> Budget:
    budget = _BUDGET.get()
    if budget is None:
        # Rendered without Budget.run (template.render()): sizes are still bounded, but
        # steps cannot be counted across calls; ChatTemplate always uses Budget.run.
        return Budget()
    return budget


_SIZED = (str, bytes, list, tuple, dict, set, frozenset)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, _SIZED) else 0


def sized(value: Any) -> Any:
    """``value``, if it is within the size limit."""
    t = type(value)
    if t is str or t is list or t is tuple or t is dict:
        if len(value) > MAX_SIZE:
            raise TemplateLimit(f"the chat template built a value over {MAX_SIZE} items")
    elif t is int:
        if value.bit_length() > MAX_INT_BITS:
            raise TemplateLimit("the chat template built a too large integer")
    elif _size(value) > MAX_SIZE:
        raise TemplateLimit(f"the chat template built a value over {MAX_SIZE} items")
    return value


def _check_args(args: Iterable[Any]) -> None:
    """Refuse any integer argument larger than a value may be (a width, a count)."""
    limit = MAX_SIZE
    for a in args:
        if isinstance(a, int) and not isinstance(a, bool) and abs(a) > limit:
            raise TemplateLimit(f"the chat template used a number over {limit}: {a}")


def _check_format(fmt: Any, args: Iterable[Any]) -> None:
    """A format string's widths and precisions (``%9999999999d``, ``{:>9999999999}``)
    and its arguments (``%*d``) are numbers like any other."""
    _check_args(args)
    if isinstance(fmt, str):
        _check_args(int(d) for d in _DIGITS.findall(fmt))


def _measure(value: Any) -> int:
    """A value's weight in an amplifying operation: a string's length, a list's items
    and their lengths, a count's value."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if isinstance(v, str))
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0)
    return 0


# Operations whose result can be far larger than their inputs, and which of their
# arguments multiply it: joining (separators), replacing, indenting, wrapping, tabs.
_AMPLIFIERS = {"join": object, "replace": str, "wordwrap": str, "indent": object, "expandtabs": int}


def _check_amplifier(name: str, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    kind = _AMPLIFIERS.get(name)
    if kind is None:
        return
    factor = 1 + sum(_measure(a) for a in (*args, *kwargs.values()) if isinstance(a, kind))
    if (_measure(obj) + 1) * factor > MAX_SIZE:
        raise TemplateLimit(f"the chat template's {name}() would build a value over the limit")


def _pre_check(name: str, obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    values = (*args, *kwargs.values())
    _check_args(values)
    if name in ("format", "format_map"):
        _check_format(obj, values)
    else:
        _check_amplifier(name, obj, args, kwargs)


def _pre_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if _size(seq) and isinstance(n, int) and _size(seq) * n > MAX_SIZE:
                raise TemplateLimit("the chat template repeated a value too many times")
    elif operator == "**":
        ints = isinstance(left, int) and isinstance(right, int)
        if ints and abs(left) > 1 and right * left.bit_length() > MAX_INT_BITS:
            raise TemplateLimit("the chat template raised a number to a too large power")
    elif operator == "%":
        _check_format(left, right if isinstance(right, tuple) else (right,))


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    """A ``for`` loop's iterable, charging one step per iteration."""
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


def _listed(value: Any) -> Any:
    """An iterator (``map``, ``select``...) as a list, so an amplifier can weigh it."""
    if isinstance(value, Iterator):
        return list(_bounded_iter(value))
    return value


def _guard_filter(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose arguments (not its value) are checked first and whose result is
    sized; ``@pass_context``-style filters get the context (or environment) first."""
    passes = hasattr(f, "jinja_pass_arg")

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if name in _AMPLIFIERS:
            i = 1 if passes else 0
            args = (*args[:i], _listed(args[i]), *args[i + 1 :])
        value, rest = (args[1], args[2:]) if passes else (args[0], args[1:])
        _pre_check(name, value, rest, kwargs)
        _budget().step()
        return sized(f(*args, **kwargs))

    if passes:
        guarded.jinja_pass_arg = f.jinja_pass_arg  # type: ignore[attr-defined]
    return guarded


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """jinja2's immutable sandbox with time, step and size bounds (module docstring)."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters["_chatd_loop"] = _bounded_iter
        self.filters["_chatd_sized"] = sized

    def guard_filter(self, name: str, f: Callable[..., Any]) -> None:
        """Add a filter of chatd's own, bounded like jinja2's."""
        self.filters[name] = _guard_filter(name, f)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget().step()
        name = getattr(__obj, "__name__", "")
        if name == "join" and args:
            args = (_listed(args[0]), *args[1:])
        _pre_check(name, getattr(__obj, "__self__", None), args, kwargs)
        return sized(super().call(__context, __obj, *args, **kwargs))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is str and type(right) is str:  # the hot one
            if len(left) + len(right) > MAX_SIZE:
                raise TemplateLimit(f"the chat template built a value over {MAX_SIZE} items")
            return left + right
        _pre_binop(operator, left, right)
        return sized(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            values = list(args) + list(kwargs.values())
            if value.__name__ == "format_map" and args and isinstance(args[0], dict):
                values = list(args[0].values())
            _check_format(fmt, values)
            return sized(wrapped(*args, **kwargs))

        return checked

    def compile_bounded(self, source: str) -> Any:
        """The template compiled with every loop charged and every concatenation
        sized; ``include``/``import``/``extends`` refused (``TemplateLimit``)."""
        tree = self.parse(source)
        for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            raise TemplateLimit(
                f"a chat template cannot use {type(node).__name__.lower()} (line {node.lineno})"
            )
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = _filter("_chatd_loop", loop.iter)
        for parent in list(tree.find_all(nodes.Node)):
            for name in parent.fields:
                child = getattr(parent, name, None)
                if isinstance(child, nodes.Concat):
                    setattr(parent, name, _filter("_chatd_sized", child))
                elif isinstance(child, list):
                    child[:] = [
                        _filter("_chatd_sized", c) if isinstance(c, nodes.Concat) else c
                        for c in child
                    ]
        return self.from_string(tree)


def _filter(name: str, node: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
