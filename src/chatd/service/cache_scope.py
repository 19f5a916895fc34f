"""Whose cached prompt a local request may reuse: the engine's ``CacheScope`` for a caller.

The engine's prefix cache is one pool for every tenant; were it shared freely, a caller
could send guesses of another's prompt and read, from its own ``cached_tokens`` and time
to first token, how far each guess matched (the prompt-caching side channel). So each
request's cells are lent only within its owner's partition, except for a part the
operator marked public: a shared system prompt (``--shared-prompt``, ``shared_prompts``
in the config file), which every key may reuse from any other, and only up to its end.

What the shared part is must not depend on anything but the shared text (else what one
tenant reuses of another's cells would tell something of the rest of their request): it
is the token prefix that the template renders the same for every conversation opening
with that system message, found by rendering it before differing user messages. A
request whose prompt does not begin with exactly those tokens (a template that puts
tools before it) shares nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any

from chatd.engine.params import CacheScope
from chatd.engine.template import TemplateRenderError
from chatd.service.engine_api import EngineLike

__all__ = ["SharedPrompts", "cache_scope"]

SHARED_ROLES = ("system", "developer")  # the roles a shared prompt may open a conversation in


class SharedPrompts:
    """The operator's shareable system prompts, and their public token prefix per engine."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.texts = frozenset(t for t in texts if t)
        # per engine: (role, text) -> the tokens every conversation opening with it shares
        self._prefixes: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], list[int]]] = (
            weakref.WeakKeyDictionary()
        )

    def __bool__(self) -> bool:
        return bool(self.texts)

    def length(self, engine: EngineLike, messages: list[dict[str, Any]], prompt: list[int]) -> int:
        """How many leading tokens of ``prompt`` (rendered from ``messages``) are a shared
        prompt's public part; 0 when the conversation does not open with one."""
        if not self.texts or not messages:
            return 0
        first = messages[0]
        role, text = first.get("role"), first.get("content")
        if role not in SHARED_ROLES or not isinstance(text, str) or text not in self.texts:
            return 0
        known = self._prefixes.setdefault(engine, {})
        prefix = known.get((role, text))
        if prefix is None or prompt[: len(prefix)] != prefix:
            # new, or rendered otherwise since (a template that shows today's date)
            prefix = known[(role, text)] = _public_prefix(engine, role, text)
        n = len(prefix)
        if n == 0 or len(prompt) <= n or prompt[:n] != prefix:
            return 0
        return n


def _public_prefix(engine: EngineLike, role: str, text: str) -> list[int]:
    """The tokens the template renders alike for any conversation opening with this
    system message: the common prefix of renderings followed by different user messages
    (and by none, when the template accepts that)."""
    system = {"role": role, "content": text}
    renders: list[list[int]] = []
    for rest in ([{"role": "user", "content": "0"}], [{"role": "user", "content": "1"}], []):
        try:
            renders.append(engine.render_chat([system, *rest]))
        except TemplateRenderError:
            if rest:
                return []  # a template that cannot render this: nothing is shared
    first = renders[0]
    n = min(len(r) for r in renders)
    for r in renders[1:]:
        n = next((i for i in range(n) if r[i] != first[i]), n)
    return first[:n]


def cache_scope(
    owner: str,
    shared: SharedPrompts,
    engine: EngineLike,
    messages: list[dict[str, Any]],
    prompt: list[int],
) -> CacheScope:
    """The engine's scope for ``owner``'s request: its own partition, and the public
    shared part its prompt opens with (if any)."""
    return CacheScope(owner, shared.length(engine, messages, prompt))
