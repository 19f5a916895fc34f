"""A Completions request's prompts as the engine takes them: token ids, no chat template.

Text is tokenized as the model reads a document (its BOS first when it wants one,
special tokens' text read as those tokens); token ids go in as given, each checked
against the model's vocabulary (a 400 naming ``prompt``). With ``suffix`` the prompt
is the model's fill-in-the-middle layout, prefix-suffix-middle as llama.cpp's infill
writes it: ``<fim_pre>prompt<fim_suf>suffix<fim_mid>`` (no BOS: code models that fill
middles are trained without one); a model without those tokens
cannot fill a middle, and the request is refused naming ``suffix``."""

from __future__ import annotations

from dataclasses import dataclass

from chatd.protocol.completions_request import CompletionRequest
from chatd.protocol.errors import APIError, InvalidRequest, Unsupported
from chatd.service.engine_api import EngineLike

__all__ = ["EncodedPrompt", "check_before_load", "encode_prompts", "too_long"]


@dataclass(frozen=True)
class EncodedPrompt:
    """One prompt: the ids the engine runs, the text ``echo`` gives back, and where the
    client's own tokens are among the ids (``span``: not the BOS the server put first,
    nor the fill-in-the-middle markers and suffix), for echo's logprobs; ``first`` names
    the first of them when nothing comes before it (its logprob is null)."""

    tokens: list[int]
    text: str
    span: tuple[int, int]
    first: str = ""


def check_before_load(req: CompletionRequest, n_vocab: int | None) -> None:
    """What can be refused before the model loads: ids beyond its vocabulary (when the
    file's header told it)."""
    if n_vocab is not None:
        check_ids(req, n_vocab)


def check_ids(req: CompletionRequest, n_vocab: int) -> None:
    for i, prompt in enumerate(req.prompts()):
        if isinstance(prompt, list):
            bad = next((t for t in prompt if not 0 <= t < n_vocab), None)
            if bad is not None:
                where = "prompt" if len(req.prompts()) == 1 else f"prompt[{i}]"
                raise InvalidRequest(
                    f"Invalid token id {bad} in '{where}': this model's vocabulary has"
                    f" {n_vocab} tokens (ids 0 to {n_vocab - 1}).",
                    param="prompt",
                    code="invalid_value",
                )
    for token in req.logit_bias_map():
        if token >= n_vocab:
            raise InvalidRequest(
                f"Invalid key in 'logit_bias': {token} is not a token id of this model"
                f" (its vocabulary has {n_vocab} tokens).",
                param="logit_bias",
                code="invalid_value",
            )


def encode_prompts(req: CompletionRequest, engine: EngineLike) -> list[EncodedPrompt]:
    """Every prompt as ids, under the loaded model; refuses ids beyond its vocabulary and a
    ``suffix`` the model cannot fill before."""
    check_ids(req, engine.n_vocab)
    fim = engine.fim_tokens if req.suffix is not None else None
    if req.suffix is not None and fim is None:
        raise Unsupported(
            "suffix",
            "needs a model with fill-in-the-middle tokens; this model has none.",
        )
    out = []
    for prompt in req.prompts():
        if isinstance(prompt, str):
            text = prompt
            ids = engine.encode_prompt(prompt, start=fim is None)
            own = len(engine.encode_prompt(prompt, start=False)) if fim is None else len(ids)
            start = len(ids) - own  # what the model's tokenizer put first (its BOS)
        else:
            text, ids, start = engine.detokenize(prompt), list(prompt), 0
        span = (start, len(ids))
        if fim is not None and req.suffix is not None:
            pre, suf, mid = fim
            suffix = engine.encode_prompt(req.suffix, start=False)
            span = (1, 1 + len(ids))
            ids = [pre, *ids, suf, *suffix, mid]
        first = engine.detokenize(ids[:1]) if span[0] == 0 and ids else ""
        out.append(EncodedPrompt(ids, text, span, first))
    return out


def too_long(prompt_tokens: int, budget: int, window: int) -> APIError:
    """OpenAI's words for a prompt and completion longer than the model's window."""
    return InvalidRequest(
        f"This model's maximum context length is {window} tokens, however you requested"
        f" {prompt_tokens + budget} tokens ({prompt_tokens} in your prompt; {budget} for the"
        " completion). Please reduce your prompt; or completion length.",
        param="prompt",
        code="context_length_exceeded",
    )
