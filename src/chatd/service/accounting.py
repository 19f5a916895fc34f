"""What every answered request leaves behind, whatever its protocol or route: its usage
(the usage table and the caller's rate-limit tokens). Its stored copy, when asked, is each
protocol's own (``service/chat/stored_completions.py``, ``store/responses.py``)."""

from __future__ import annotations

from chatd import request_log
from chatd.service.limits import Admission
from chatd.store.usage import UsageBuffer
from chatd.tasks import spawn

__all__ = ["Accountant"]


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
