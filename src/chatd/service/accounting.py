"""What every answered request leaves behind, whatever its protocol or route: its usage
(the usage table and the caller's rate-limit tokens) and, when asked, its stored copy."""

from __future__ import annotations

import logging
from typing import Any

from chatd import request_log
from chatd.protocol.errors import NotYetSupported, ServerError
from chatd.service.limits import Admission
from chatd.store.completions import CompletionStore
from chatd.store.usage import UsageBuffer
from chatd.tasks import spawn

__all__ = ["Accountant", "Saver"]

log = logging.getLogger("chatd.service")


class Accountant:
    """Counts one request's usage: rate-limit tokens, and the usage table (buffered)."""

    def __init__(
        self, usage: UsageBuffer, owner: str, model: str, admission: Admission | None = None
    ) -> None:
        self.usage = usage
        self.owner = owner
        self.model = model
        self.admission = admission

    def record(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        estimated: bool = False,
        cached_tokens: int | None = None,
    ) -> None:
        self.usage.add(self.owner, self.model, prompt_tokens, completion_tokens, estimated)
        line = request_log.current()
        if line is not None:  # the request's log line (chatd/request_log.py)
            line.usage(prompt_tokens, completion_tokens, cached_tokens)
        if self.admission is not None and self.admission.counts_tokens:
            spawn(self.admission.add_tokens(prompt_tokens + completion_tokens))


class Saver:
    """Persists one completion for its owner; a failure is an error, never swallowed.

    ``request`` and ``messages`` are the request as stored (its parameters, its input
    messages); ``metadata`` the caller's tags."""

    def __init__(
        self,
        store: CompletionStore | None,
        owner: str,
        request: dict[str, Any],
        messages: list[dict[str, Any]],
        metadata: dict[str, str],
    ) -> None:
        if store is None:
            raise NotYetSupported("store (this server has no database)")
        self.store = store
        self.owner = owner
        self.request = request
        self.messages = messages
        self.metadata = metadata

    async def save(self, body: dict[str, Any]) -> None:
        try:
            await self.store.save(self.owner, body, self.request, self.messages, self.metadata)
        except Exception:
            log.exception("storing completion %s failed", body.get("id"))
            raise ServerError("The completion could not be stored.") from None
