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

from chatd.protocol.errors import ModelUnavailable, ServerError
from chatd.protocol.responses_response import ResponseSettings
from chatd.service.event_sources import (
    ChatChunkSource,
    ChatCompletionSource,
    EventSource,
    SourceUsage,
    chain,
)
from chatd.service.relayed import Relayed
from chatd.service.responses.answer import Account, ResponseAnswer, Save, StreamedResponse
from chatd.service.responses.conversation import item_text
from chatd.upstream.relay import UpstreamCall
from chatd.upstream.wires import ChatWire

__all__ = ["RelayedResponse", "prompt_text"]

Json = dict[str, Any]
CountTokens = Callable[[str], int]


class RelayedResponse(Relayed[ResponseAnswer]):
    """An upstream's answer to one Responses request (``ResponseAnswer``)."""

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
        super().__init__(call, fallback)
        self.settings = settings
        self.streaming = streaming
        self.logprobs = logprobs
        self.obfuscate = obfuscate
        self.save = save
        self.account = account
        self.count_tokens = count_tokens
        self.prompt_text = prompt_text

    async def result(self) -> Json:
        try:
            body = await self.call.result()
        except ModelUnavailable as e:
            return await (await self._fall_back(e)).result()
        except BaseException:
            self._settle("")
            raise
        if isinstance(self.call.wire, ChatWire):
            return await self._made(ChatCompletionSource(body, self._estimate)).result()
        body = self._ours(body)
        self._account_response(body)
        if self.save is not None and body.get("status") in ("completed", "incomplete"):
            await self.save(body)
        return body

    async def events(self) -> AsyncIterator[Json]:
        if self._delegate is not None:
            async for event in self._delegate.events():
                yield event
            return
        if self._stream is None:
            raise ServerError("The response stream was not opened.")
        if isinstance(self.call.wire, ChatWire):
            source = ChatChunkSource(self._first, self._stream, self.call, self._estimate)
            async for event in self._made(source).events():
                yield event
            return
        async for event in self._passed_on():
            yield event

    def _made(self, source: EventSource) -> StreamedResponse:
        """A Chat Completions answer, made into a response as the local engine's is."""
        account, self.account = self.account, None
        return StreamedResponse(
            source,
            self.settings,
            logprobs=self.logprobs,
            obfuscate=self.obfuscate,
            save=self.save,
            account=account,
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
        if self.account is None or not isinstance(usage, dict) or "input_tokens" not in usage:
            return
        account, self.account = self.account, None
        cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
        account(
            SourceUsage(
                int(usage["input_tokens"]),
                int(usage.get("output_tokens", 0)),
                cached if isinstance(cached, int) else 0,
            )
        )

    def _estimate(self, output: str) -> SourceUsage:
        """chatd's own count of the prompt and the output, when the upstream told none."""
        if self.count_tokens is None:
            return SourceUsage(0, 0, estimated=True)
        return SourceUsage(
            self.count_tokens(self.prompt_text), self.count_tokens(output), estimated=True
        )

    def _settle(self, output: str) -> None:
        """chatd's own estimate, unless the upstream's usage was recorded already."""
        if self.account is not None:
            account, self.account = self.account, None
            account(self._estimate(output))


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
