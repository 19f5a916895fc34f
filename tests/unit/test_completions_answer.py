"""The legacy Completions answer's pure parts: best_of's ranking (mean logprob per token,
the n best, best first) and text offsets counted in characters, not bytes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from chatd.engine.params import Delta, FinishReason, TokenLogprob
from chatd.protocol.completions_request import validate_completion_request
from chatd.protocol.completions_response import TextEnvelope
from chatd.service.completions.answer import LocalCompletion, PromptRun
from chatd.service.events import ChoiceReader


def _reader(index: int, logprobs: list[float], text: str = "t") -> ChoiceReader:
    reader = ChoiceReader(index, None)
    lps = tuple(TokenLogprob(text, list(text.encode()), lp, ()) for lp in logprobs)
    reader.read(Delta(index, text * len(logprobs), lps, FinishReason.LENGTH, len(logprobs)))
    return reader


def _answer(body: dict[str, Any], readers: list[ChoiceReader]) -> LocalCompletion:
    req = validate_completion_request({"model": "m", "prompt": "p", **body})
    run: Any = SimpleNamespace(choices=readers)
    return LocalCompletion(req, [PromptRun("p", 1, run)], TextEnvelope("m", "fp"), None)


def test_best_of_keeps_the_n_highest_mean_logprobs_best_first() -> None:
    readers = [
        _reader(0, [-1.0, -1.0]),  # mean -1.0
        _reader(1, [-0.1, -3.0, -0.1]),  # mean -1.07: a low total, but long
        _reader(2, [-0.2]),  # mean -0.2: the best
    ]
    answer = _answer({"best_of": 3, "n": 2}, readers)
    picked = answer._chosen(0, answer.prompts[0])
    assert [(c.index, c.reader.index if c.reader else None) for c in picked] == [(0, 2), (1, 0)]


def test_text_offsets_count_characters() -> None:
    word = "é"  # two bytes, one character
    readers = [_reader(0, [-0.5, -0.5], word)]
    answer = _answer({"logprobs": 0}, readers)
    (choice,) = answer._chosen(0, answer.prompts[0])
    body = choice.whole()
    assert body["text"] == "éé"
    assert body["logprobs"]["text_offset"] == [0, 1]
