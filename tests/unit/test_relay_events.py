"""Reading an upstream's SSE body: events split across reads, several in one read, CRLF."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from chatd.upstream.relay import _events


class _Body:
    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def iter_any(self) -> AsyncIterator[bytes]:
        for r in self.reads:
            yield r


class _Response:
    def __init__(self, reads: list[bytes]) -> None:
        self.content = _Body(reads)


async def events(reads: list[bytes]) -> list[str]:
    return [e async for e in _events(cast(Any, _Response(reads)))]


@pytest.mark.parametrize(
    "reads",
    [
        [b'data: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n'],  # all in one read
        [b'data: {"a"', b":1}\n", b'\ndata: {"b":2}\n\nda', b"ta: [DONE]\n\n"],  # split anyhow
        [b'data: {"a":1}\r\n\r\n: a comment\r\ndata:{"b":2}\r\n\r\ndata: [DONE]'],  # CRLF, no end
    ],
)
async def test_data_payloads_whatever_the_reads(reads: list[bytes]) -> None:
    assert await events(reads) == ['{"a":1}', '{"b":2}', "[DONE]"]


async def test_multibyte_text_split_between_reads() -> None:
    raw = 'data: {"c":"é"}\n\n'.encode()
    cut = raw.index(b"\xa9")  # inside the two bytes of "é"
    assert await events([raw[:cut], raw[cut:]]) == ['{"c":"é"}']
