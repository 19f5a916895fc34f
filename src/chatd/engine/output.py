"""One sequence's output step: a row of logits in, a ``Delta`` out.

Everything that decides what a sampled token means for the client happens here, in this
order: the grammar's allowed tokens, sampling, the grammar consuming the token, the
detokenizer (UTF-8 and stop sequences held back), the finish reason (end of generation,
stop sequence, grammar complete, length), and logprobs that travel with the text their
tokens produced. The scheduler calls ``advance`` for every row it samples, whether from
plain decoding, a verified draft or the first token after a prompt: so "where is
``stop`` handled" has one answer.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from chatd.engine.params import Delta, FinishReason, TokenLogprob, TopLogprob
from chatd.engine.sampler import logprobs_of, top_k
from chatd.engine.sequence import Sequence, SequenceGroup

__all__ = ["OutputStep", "Vocabulary"]


class Vocabulary(Protocol):
    """What the output step needs to know of the model's tokens."""

    eog: frozenset[int]  # end-of-generation tokens
    control: frozenset[int]  # control tokens: no text, named in logprobs, bytes null
    token_bytes: list[bytes]  # each token's bytes in generated text
    token_names: list[bytes]  # each token's name in logprobs


class OutputStep:
    def __init__(self, vocab: Vocabulary, n_ctx_seq: int) -> None:
        self.vocab = vocab
        self.n_ctx_seq = n_ctx_seq  # a sequence this long finishes with "length"

    def advance(self, req: SequenceGroup, seq: Sequence, row: np.ndarray) -> list[Delta]:
        """Sample one token for ``seq`` from ``row`` and turn it into a delta (none when
        the token produced no text yet and finished nothing)."""
        p = req.params
        vocab = self.vocab
        allowed = seq.matcher.allowed() if seq.matcher is not None else None
        if seq.n_generated < p.min_tokens:
            allowed = self._without_end(allowed, row.shape[0])
        token = seq.sampler.sample(row, allowed)
        if seq.matcher is not None:
            seq.matcher.consume(token)
        seq.sampler.accept(token)
        seq.tokens.append(token)
        seq.n_generated += 1
        start_char = seq.detok.decoded_chars
        if p.logprobs and token not in vocab.eog:
            seq.pending_logprobs.append((start_char, self._logprob(row, token, p.top_logprobs)))
        if token in vocab.eog:
            text = seq.detok.flush()
            seq.finish_reason = FinishReason.END_OF_GENERATION
        else:
            text = seq.detok.push(vocab.token_bytes[token])
            if seq.detok.stopped:
                seq.finish_reason = FinishReason.STOP_SEQUENCE
            elif seq.matcher is not None and seq.matcher.finished:
                text += seq.detok.flush()
                seq.finish_reason = FinishReason.GRAMMAR_END
            elif seq.n_generated >= p.max_new_tokens or len(seq.tokens) >= self.n_ctx_seq:
                text += seq.detok.flush()
                seq.finish_reason = FinishReason.LENGTH
        logprobs = self._release_logprobs(seq) if (text or seq.finished) else ()
        if seq.drafter is not None:
            seq.drafter.advance(token)
        if not text and not logprobs and not seq.finished:
            return []
        stop = seq.detok.matched if seq.finish_reason is FinishReason.STOP_SEQUENCE else None
        return [Delta(seq.index, text, logprobs, seq.finish_reason, seq.n_generated, stop)]

    def prompt_logprobs(self, req: SequenceGroup, start: int, rows: np.ndarray) -> None:
        """The rows of prompt positions ``start``...: row ``j`` gives the logprob of the
        prompt token after it (the model's own distribution, before any sampling
        setting), with ``top_logprobs`` alternatives; the prompt's last row predicts
        the answer, not a prompt token."""
        out = req.prompt_logprobs
        assert out is not None
        k = req.params.top_logprobs
        for j in range(len(rows)):
            pos = start + j + 1
            if pos >= req.prompt_len:
                break
            out[pos] = self._logprob(rows[j], int(req.prompt[pos]), k)

    def _without_end(self, allowed: np.ndarray | None, n_vocab: int) -> np.ndarray | None:
        """``allowed`` with the end-of-generation tokens masked (``min_tokens``, as vLLM:
        the model may not end before that many tokens). Stop sequences, the grammar's end
        and the length limit still end a choice. When a grammar allows nothing but the end,
        the end stays allowed: a grammar's answer is never made invalid."""
        mask = np.ones(n_vocab, dtype=bool) if allowed is None else allowed.copy()
        mask[list(self.vocab.eog)] = False
        return mask if mask.any() else allowed

    @staticmethod
    def _release_logprobs(seq: Sequence) -> tuple[TokenLogprob, ...]:
        """Logprobs travel with the text their tokens produced; tokens that only produced
        stop text are dropped with it."""
        if not seq.pending_logprobs:
            return ()
        if seq.finished and not seq.detok.stopped:
            out = tuple(e for _, e in seq.pending_logprobs)
            seq.pending_logprobs = []
            return out
        released = seq.detok.released_chars
        out = tuple(e for start, e in seq.pending_logprobs if start < released)
        seq.pending_logprobs = (
            []
            if seq.finished
            else [(start, e) for start, e in seq.pending_logprobs if start >= released]
        )
        return out

    def _logprob(self, row: np.ndarray, token: int, k: int) -> TokenLogprob:
        best = top_k(row, k)
        lp = logprobs_of(row, np.append(best, token))
        names = self.vocab.token_names
        top = tuple(
            TopLogprob(_token_text(names[t]), _token_bytes(self.vocab, t), float(v))
            for t, v in zip(best.tolist(), lp[:-1].tolist(), strict=True)
        )
        return TokenLogprob(
            _token_text(names[token]), _token_bytes(self.vocab, token), float(lp[-1]), top
        )


def _token_text(raw: bytes) -> str:
    # A token holding part of a UTF-8 character has no text of its own; name it by its
    # bytes, as OpenAI does ("\\xe2\\x80"), while `bytes` carries the real values.
    return raw.decode("utf-8", errors="backslashreplace")


def _token_bytes(vocab: Vocabulary, token: int) -> list[int] | None:
    if token in vocab.control:
        return None
    return list(vocab.token_bytes[token])
