"""A local model's defaults: the sampling a request gets for a field it leaves out (or
sends as null, as the live API reads null), and the output cap a request without
``max_tokens`` / ``max_output_tokens`` gets (docs/models.md, "Defaults").

Where each default comes from, first found wins, field by field:

1. the model's entry in the config file (``temperature = 0.2`` under ``[[models]]``);
2. the GGUF file's recommended sampling (``general.sampling.temp`` and its siblings,
   the keys llama.cpp reads into its own defaults);
3. for the embedded SmolLM2-135M-Instruct, what its authors' model card samples with;
4. OpenAI's: temperature 1, top_p 1, and no cap but the context window.

A request's own value always wins; the engine (engine/params.py) keeps OpenAI's
defaults, which are also the protocol-neutral core's when a model has none."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_KEYS",
    "EMBEDDED_DEFAULTS",
    "ModelDefaults",
    "OPENAI_SAMPLING",
    "file_facts",
    "gguf_defaults",
]

# The GGUF keys llama.cpp reads a model's recommended sampling from, by our field name.
GGUF_KEYS = {
    "temperature": "general.sampling.temp",
    "top_p": "general.sampling.top_p",
    "top_k": "general.sampling.top_k",
    "min_p": "general.sampling.min_p",
    "repetition_penalty": "general.sampling.penalty_repeat",
}
# OpenAI's defaults for a field not given (and the engine's: engine/params.py).
OPENAI_SAMPLING: dict[str, float | int] = {
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": 0,
    "min_p": 0.0,
    "repetition_penalty": 1.0,
}
# Each field's bounds, as a request's (the same checks as protocol/chat_fields.py).
_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "top_k": (-1, 1 << 20),
    "min_p": (0.0, 1.0),
    "repetition_penalty": (0.0, 2.0),  # vLLM allows (0, 2]
}


@dataclass(frozen=True)
class ModelDefaults:
    """None: not set here (the next source's, or OpenAI's)."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    max_output_tokens: int | None = None  # None: the rest of the context window

    def over(self, other: ModelDefaults) -> ModelDefaults:
        """These defaults, with ``other``'s where these have none."""
        mine = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(other, **{k: v for k, v in mine.items() if v is not None})

    def sampling(self) -> dict[str, Any]:
        """The engine's ``SamplingParams`` keyword arguments for the fields set (the
        output cap aside: it is no sampling field, see ``Job.max_output_default``)."""
        return {
            name: getattr(self, name) for name in OPENAI_SAMPLING if getattr(self, name) is not None
        }

    def shown(self) -> dict[str, Any]:
        """What a request gets when it leaves each field out: the model card's and
        ``chatd models``' view (OpenAI's value where this model sets none)."""
        sampling = {name: OPENAI_SAMPLING[name] for name in OPENAI_SAMPLING}
        sampling.update(self.sampling())
        return {**sampling, "max_output_tokens": self.max_output_tokens}

    @classmethod
    def from_table(cls, table: dict[str, Any], where: str) -> ModelDefaults:
        """The keys of a config entry (``[[models]]``); ValueError naming a bad one."""
        given: dict[str, Any] = {}
        for name, (least, most) in _BOUNDS.items():
            if name not in table:
                continue
            value = table[name]
            integer = name == "top_k"
            if not _number(value, integer) or not least <= value <= most:
                kind = "an integer" if integer else "a number"
                raise ValueError(f"{where}.{name}: {kind} from {least} to {most} is required")
            given[name] = int(value) if integer else float(value)
        if "max_output_tokens" in table:
            cap = table["max_output_tokens"]
            if not _number(cap, True) or cap < 1:
                raise ValueError(f"{where}.max_output_tokens: an integer >= 1 is required")
            given["max_output_tokens"] = cap
        return cls(**given)


CONFIG_KEYS = (*_BOUNDS, "max_output_tokens")  # what a [[models]] entry may set here


def _number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    if integer:
        return isinstance(value, int)
    return isinstance(value, int | float) and math.isfinite(value)


def gguf_defaults(meta: dict[str, Any]) -> ModelDefaults:
    """The recommended sampling a GGUF header carries (``general.sampling.*``); a key of
    the wrong type or out of bounds is not a recommendation, and is left out."""
    given: dict[str, Any] = {}
    for name, key in GGUF_KEYS.items():
        value = meta.get(key)
        integer = name == "top_k"
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if integer and isinstance(value, float):
            if not value.is_integer():
                continue
            value = int(value)
        least, most = _BOUNDS[name]
        if not math.isfinite(value) or not least <= value <= most:
            continue
        # f32 in the file: 0.95 reads 0.949999988; four decimals give the written value
        given[name] = int(value) if integer else round(float(value), 4)
    return ModelDefaults(**given)


def file_facts(path: Path) -> tuple[ModelDefaults, int | None]:
    """``gguf_defaults`` of a file's header and its training context (llama.cpp's
    ``n_ctx_train``: ``{arch}.context_length``); nothing when it cannot be read."""
    import struct

    from chatd.engine.memory import read_metadata

    try:
        meta = read_metadata(path)
    except (OSError, ValueError, struct.error):
        return ModelDefaults(), None
    trained = meta.get(f"{meta.get('general.architecture')}.context_length")
    n_ctx_train = trained if isinstance(trained, int) and not isinstance(trained, bool) else None
    return gguf_defaults(meta), n_ctx_train


# HuggingFaceTB/SmolLM2-135M-Instruct's model card samples with temperature 0.2 and top_p
# 0.9 (its generation_config.json sets none). The cap: at 1,024 tokens the README's
# example answers in seconds on two cores, and an answer stuck repeating itself (a 135M
# model does) stops there rather than filling the 8,192-token window (docs/models.md).
EMBEDDED_DEFAULTS = ModelDefaults(temperature=0.2, top_p=0.9, max_output_tokens=1024)
