"""A response answered by upstream channels, consumed as a local one is (``ResponseAnswer``):
whole or as stream events, accounted, stored when asked, and handed to the fallback routes
when no channel answers before its first byte.

Which wire answered decides how the answer is read. A channel speaking the Responses API
(``api = "responses"``) is relayed as it answered, with chatd's id, model and state fields
written in (chatd keeps the state: the upstream gets the whole conversation and
``store: false``). A Chat Completions channel's answer is read back into the core's events
and made into a response exactly as a local one (``answer.StreamedResponse``), so both APIs
work on every channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chatd.protocol.responses_response import ResponseSettings
from chatd.service.event_sources import (
    EventSource,
    SourceUsage,
    chain,
)
from chatd.service.relayed import RelayedEvents
from chatd.service.responses.answer import Account, ResponseAnswer, Save, StreamedResponse
from chatd.service.responses.conversation import item_text
from chatd.upstream.relay import UpstreamCall

__all__ = ["RelayedResponse", "prompt_text"]

Json = dict[str, Any]
CountTokens = Callable[[str], int]


class RelayedResponse(RelayedEvents[ResponseAnswer]):
    """An upstream's answer to one Responses request (``ResponseAnswer``)."""

    # An upstream runs the hosted tools it offers (or refuses them): none is left unrun here.
    tools_not_run: tuple[str, ...] = ()

    def __init__(
        self,
        call: UpstreamCall,
        settings: ResponseSettings,
        *,
        streaming: bool,
        logprobs: bool,
        obfuscate: bool,
        save: Save | None,
        account: Account | None,
        count_tokens: CountTokens | None,
        prompt_text: str,
        fallback: Callable[[], Awaitable[ResponseAnswer]] | None,
    ) -> None:
        super().__init__(call, fallback, account, count_tokens, prompt_text)
        self.settings = settings
        self.streaming = streaming
        self.logprobs = logprobs
        self.obfuscate = obfuscate
        self.save = save

    async def _passed_whole(self, body: Json) -> Json:
        body = self._ours(body)
        self._account_response(body)
        if self.save is not None and body.get("status") in ("completed", "incomplete"):
            await self.save(body)
        return body

    def _made(self, source: EventSource) -> StreamedResponse:
        """A Chat Completions answer, made into a response as the local engine's is."""
        return StreamedResponse(
            source,
            self.settings,
            logprobs=self.logprobs,
            obfuscate=self.obfuscate,
            save=self.save,
            account=self._taken_account(),
        )

    async def _passed_on(self) -> AsyncIterator[Json]:
        """A Responses upstream's events, as it sent them (its sequence numbers too), the
        response objects in them made chatd's; stored before the final event is passed."""
        assert self._stream is not None
        output = ""
        try:
            pending = [self._first] if self._first is not None else []
            async for event in chain(pending, self._stream):
                response = event.get("response")
                if isinstance(response, dict):
                    event["response"] = self._ours(response)
                if event.get("type") == "response.output_text.delta":
                    output += str(event.get("delta", ""))
                if event.get("type") in ("response.completed", "response.incomplete"):
                    self._account_response(event["response"])
                    if self.save is not None:
                        await self.save(event["response"])
                yield event
        finally:
            self._settle(output)

    def _ours(self, response: Json) -> Json:
        """The upstream's response object with chatd's identity and state fields: the id
        it is stored (and chained) under, the public model id, and the request's own
        ``previous_response_id``, ``store`` and ``metadata``."""
        s = self.settings
        response.update(
            id=s.id,
            model=s.model,
            previous_response_id=s.previous_response_id,
            store=s.store,
            metadata=s.metadata,
        )
        return response

    def _account_response(self, response: Json) -> None:
        usage = response.get("usage")
        if not isinstance(usage, dict) or "input_tokens" not in usage:
            return
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
        self._record(
            SourceUsage(
                int(usage["input_tokens"]),
                int(usage.get("output_tokens", 0)),
                cached if isinstance(cached, int) else 0,
            )
        )


def prompt_text(items: list[Json], instructions: str | None) -> str:
    """The conversation's text, for estimating its tokens when an upstream tells none."""
    texts = [instructions or ""]
    for item in items:
        if item.get("type") == "message":
            texts.append(item_text(item["content"]))
        elif item.get("type") == "function_call_output":
            texts.append(item_text(item["output"]))
        elif item.get("type") == "function_call":
            texts.append(item.get("arguments", ""))
    return "\n".join(t for t in texts if t)
