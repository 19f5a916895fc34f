"""Incremental, byte-level detokenization with stop-sequence hold-back.

Tokens arrive as raw bytes. Text is released only when (a) its UTF-8 is complete, so a
streamed delta never splits a character, and (b) it cannot be the beginning of a stop
sequence, so stop text never reaches the client, streamed or not.
"""

from __future__ import annotations

import codecs


class Detokenizer:
    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._held = ""  # decoded text that may be the start of a stop sequence
        self.decoded_chars = 0  # characters decoded so far (released + held)
        self.released_chars = 0  # characters handed to the client so far
        self.stopped = False
        self.matched: str | None = None  # the stop sequence that ended the text

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; returns the text that is now safe to release."""
        if self.stopped:
            return ""
        new = self._decoder.decode(piece)
        self.decoded_chars += len(new)
        text = self._held + new
        if not self._stop:
            self._held = ""
            return self._release(text)
        cut, matched = _first_stop(text, self._stop)
        if cut is not None:
            self.stopped = True
            self.matched = matched
            self._held = ""
            return self._release(text[:cut])
        keep = _longest_stop_prefix_suffix(text, self._stop)
        self._held = text[len(text) - keep :] if keep else ""
        return self._release(text[: len(text) - keep])

    def flush(self) -> str:
        """At the end of generation: release whatever is held (an incomplete character
        at the very end becomes U+FFFD, as the bytes really are incomplete)."""
        if self.stopped:
            return ""
        tail = self._decoder.decode(b"", final=True)
        self.decoded_chars += len(tail)
        text = self._held + tail
        self._held = ""
        return self._release(text)

    def _release(self, text: str) -> str:
        self.released_chars += len(text)
        return text


def _first_stop(text: str, stops: tuple[str, ...]) -> tuple[int | None, str | None]:
    """Where the earliest stop begins, and which stop it is (the first listed, of
    those beginning there)."""
    best: int | None = None
    which: str | None = None
    for s in stops:
        i = text.find(s)
        if i != -1 and (best is None or i < best):
            best, which = i, s
    return best, which


def _longest_stop_prefix_suffix(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of a stop."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
