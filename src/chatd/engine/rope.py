"""RoPE scaling: a model's context stretched past the length it was trained on, as
llama.cpp's server does (``--rope-scaling``, ``--rope-scale``, ``--rope-freq-base``,
``--rope-freq-scale``, ``--yarn-orig-ctx``, ``--yarn-ext-factor``).

Pure: the settings, their checks (each refusal names the key) and what they resolve to
for one model once its training context is known. model_runner.py hands the resolved
values to llama.cpp's context parameters; docs/models.md ("Stretching a model's context")
says what a user gets.

Why a module of its own: the same settings come from ``chatd serve`` flags and from a
``[[models]]`` entry of the config file, are merged key by key (an entry's own keys over
the flags), and must be checked the same way wherever they come from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

__all__ = ["ROPE_KEYS", "SCALING_TYPES", "ResolvedRope", "RopeError", "RopeScaling"]

# llama.cpp's enum llama_rope_scaling_type (-1: the model's own, from its GGUF header).
SCALING_TYPES = {"none": 0, "linear": 1, "yarn": 2}
_UNSPECIFIED = -1

# Config-file key -> the flag that sets it server-wide.
ROPE_KEYS = {
    "rope_scaling": "--rope-scaling",
    "rope_scale": "--rope-scale",
    "rope_freq_base": "--rope-freq-base",
    "rope_freq_scale": "--rope-freq-scale",
    "yarn_orig_ctx": "--yarn-orig-ctx",
    "yarn_ext_factor": "--yarn-ext-factor",
}


class RopeError(ValueError):
    """A RoPE setting that cannot be honoured; the message starts with its key."""


@dataclass(frozen=True)
class RopeScaling:
    """What the operator asked for; ``None`` everywhere: the model's own (its GGUF).

    - ``rope_scaling``: "none", "linear" or "yarn" (None: the model's type, which is
      linear for a model whose header names none, as in llama.cpp).
    - ``rope_scale``: the context expansion factor N (llama.cpp's ``--rope-scale``;
      frequencies are scaled by 1/N). ``rope_freq_scale`` is the same thing as llama.cpp's
      ``--rope-freq-scale`` (1/N); give one of them. With a scaling type and neither,
      chatd picks N = context window / original context (rounded up to what fits).
    - ``rope_freq_base``: the base frequency (None: the model's).
    - ``yarn_orig_ctx``: the context the model was trained on, for YaRN (None: the
      header's ``context_length``).
    - ``yarn_ext_factor``: YaRN's extrapolation mix, 0..1 (None: 1 with yarn).
    """

    rope_scaling: str | None = None
    rope_scale: float | None = None
    rope_freq_base: float | None = None
    rope_freq_scale: float | None = None
    yarn_orig_ctx: int | None = None
    yarn_ext_factor: float | None = None

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> RopeScaling:
        """The RoPE keys of a config-file table, each type-checked (other keys ignored)."""
        own: dict[str, Any] = {}
        for key in ROPE_KEYS:
            if key in table:
                own[key] = _typed(key, table[key])
        rope = cls(**own)
        rope.check()
        return rope

    def over(self, defaults: RopeScaling) -> RopeScaling:
        """These settings, each unset key taken from ``defaults`` (the server's flags).

        A factor given on one side only ever replaces a factor of the other kind:
        ``rope_scale`` here drops the flags' ``rope_freq_scale`` and the other way round,
        so an entry's own factor is never refused for clashing with a flag's.
        """
        own = {f.name: getattr(self, f.name) for f in fields(self)}
        merged = replace(defaults, **{k: v for k, v in own.items() if v is not None})
        if self.rope_scale is not None and self.rope_freq_scale is None:
            merged = replace(merged, rope_freq_scale=None)
        if self.rope_freq_scale is not None and self.rope_scale is None:
            merged = replace(merged, rope_scale=None)
        return merged

    @property
    def is_default(self) -> bool:
        return self == RopeScaling()

    def check(self) -> None:
        """Refuse settings that contradict each other (each value's own range is checked
        where it is read: ``from_table``, the flags' argparse types)."""
        for key in ROPE_KEYS:
            value = getattr(self, key)
            if value is not None:
                _typed(key, value)
        if self.rope_scale is not None and self.rope_freq_scale is not None:
            raise RopeError(
                "rope_scale: give rope_scale (the expansion factor N) or rope_freq_scale"
                " (1/N), not both"
            )
        kind = self.rope_scaling
        if kind == "none" and (self.rope_scale or self.rope_freq_scale):
            key = "rope_scale" if self.rope_scale else "rope_freq_scale"
            raise RopeError(f"{key}: rope_scaling none never scales; use linear or yarn to stretch")
        if kind in ("none", "linear"):
            for key in ("yarn_orig_ctx", "yarn_ext_factor"):
                if getattr(self, key) is not None:
                    raise RopeError(f"{key}: applies to rope_scaling yarn only, not {kind}")

    def resolve(self, n_ctx_train: int, wanted: int) -> ResolvedRope:
        """The values for llama.cpp's context parameters, for a model trained on
        ``n_ctx_train`` tokens whose requests may hold ``wanted`` tokens (the context
        window), and the longest sequence the model can then take."""
        self.check()
        kind = _UNSPECIFIED if self.rope_scaling is None else SCALING_TYPES[self.rope_scaling]
        orig = self.yarn_orig_ctx or n_ctx_train
        derived = False
        if self.rope_freq_scale is not None:
            freq_scale = self.rope_freq_scale
        elif self.rope_scale is not None:
            freq_scale = 1.0 / self.rope_scale
        elif kind in (SCALING_TYPES["linear"], SCALING_TYPES["yarn"]) and wanted > orig > 0:
            freq_scale = orig / wanted  # the factor that makes the context window fit
            derived = True
        else:
            freq_scale = 0.0  # llama.cpp: the model's own
        if kind == SCALING_TYPES["none"] or freq_scale == 0.0 or n_ctx_train <= 0:
            stretched = n_ctx_train
        else:
            # llama.cpp's own arithmetic (llama_init_from_model, "n_ctx_train adjusted").
            stretched = max(n_ctx_train, math.floor(orig / freq_scale + 1e-6))
        return ResolvedRope(
            scaling_type=kind,
            freq_base=self.rope_freq_base or 0.0,
            freq_scale=freq_scale,
            yarn_orig_ctx=self.yarn_orig_ctx or 0,
            yarn_ext_factor=-1.0 if self.yarn_ext_factor is None else self.yarn_ext_factor,
            n_ctx_train=n_ctx_train,
            n_ctx_stretched=stretched,
            derived=derived,
        )


@dataclass(frozen=True)
class ResolvedRope:
    """llama_context_params' RoPE fields (0 / -1: the model's own, llama.cpp's
    convention) and the sequence length they allow."""

    scaling_type: int
    freq_base: float
    freq_scale: float
    yarn_orig_ctx: int
    yarn_ext_factor: float
    n_ctx_train: int
    n_ctx_stretched: int  # the longest sequence the model is meant to take with them
    derived: bool = False  # freq_scale chosen by chatd from the context window

    @property
    def custom(self) -> bool:
        """Whether anything differs from the model's own RoPE (worth a log line)."""
        return (
            self.scaling_type != _UNSPECIFIED
            or bool(self.freq_base or self.freq_scale or self.yarn_orig_ctx)
            or self.yarn_ext_factor >= 0
        )

    @property
    def factor(self) -> float:
        return 1.0 / self.freq_scale if self.freq_scale else 1.0

    def describe(self) -> str:
        """One log line's worth: what llama.cpp is told."""
        names = {v: k for k, v in SCALING_TYPES.items()}
        kind = names.get(self.scaling_type, "the model's")
        how = "chosen for the context window" if self.derived else "as set"
        parts = [f"rope scaling {kind}, factor {self.factor:g} ({how})"]
        if self.freq_base:
            parts.append(f"freq base {self.freq_base:g}")
        if self.yarn_orig_ctx:
            parts.append(f"yarn original context {self.yarn_orig_ctx}")
        if self.yarn_ext_factor >= 0:
            parts.append(f"yarn ext factor {self.yarn_ext_factor:g}")
        parts.append(f"training context {self.n_ctx_train} -> {self.n_ctx_stretched} tokens")
        return ", ".join(parts)


def _typed(key: str, value: Any) -> Any:
    """``value`` if it is a valid ``key``, else a RopeError naming the key."""
    if key == "rope_scaling":
        if value not in SCALING_TYPES:
            raise RopeError(f"{key}: one of {', '.join(map(repr, SCALING_TYPES))} is required")
        return value
    if key == "yarn_orig_ctx":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RopeError(f"{key}: an integer >= 1 is required")
        return value
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise RopeError(f"{key}: a number is required")
    if key == "yarn_ext_factor":
        if not 0 <= value <= 1:
            raise RopeError(f"{key}: a number from 0 to 1 is required")
    elif value <= 0:
        raise RopeError(f"{key}: a number > 0 is required")
    return float(value)
