"""What a local model's ``/v1/models`` card tells agent clients besides OpenAI's four
fields, and the model metadata Codex reads from a provider's catalogue (docs/models.md,
"Model cards").

OpenAI's ``Model`` has only ``id``, ``object``, ``created`` and ``owned_by``; clients
that need more read it where the server they know puts it. Each fact is written under
the names those clients read, so none has to guess:

* the context window: ``context_window`` (Codex), ``max_model_len`` (vLLM),
  ``context_length`` (OpenRouter), ``max_input_tokens`` (LiteLLM), and llama.cpp's
  ``meta.n_ctx_train`` for the file's training context;
* the output cap a request gets when it sets none: ``max_output_tokens`` (LiteLLM);
* what the model takes: ``capabilities`` (tools, vision, reasoning) and
  ``input_modalities`` (Codex, OpenRouter);
* the sampling a request gets for a field it leaves out: ``sampling_defaults``.

Codex (0.171) reads none of these from ``data``: given ``model_catalog_url`` on its
provider it fetches ``GET {url}?client_version=...`` and reads ``models``, a list of its
own ``ModelInfo`` (codex_model_info); without a model there it warns "Model metadata
for `X` not found" and runs on fallback metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chatd.service.models import LocalModel

__all__ = ["CODEX_INSTRUCTIONS", "card_facts", "codex_model_info"]


def card_facts(model: LocalModel) -> dict[str, Any]:
    """The card's extra fields for ``model`` (a field not known is left out)."""
    window = model.context_window
    defaults = model.defaults.shown()
    facts: dict[str, Any] = {}
    if window is not None:
        facts.update(
            context_window=window,
            max_model_len=window,
            context_length=window,
            max_input_tokens=window,
            max_output_tokens=min(defaults["max_output_tokens"] or window, window),
        )
    facts.update(
        # chatd constrains any local model's tool calls to the tools' schemas (a grammar)
        capabilities={"tools": True, "vision": False, "reasoning": False},
        input_modalities=["text"],
        sampling_defaults=defaults,
    )
    meta = {"n_ctx_train": model.n_ctx_train, "n_vocab": model.n_vocab}
    meta = {k: v for k, v in meta.items() if v is not None}
    if meta:
        facts["meta"] = meta
    return facts


# The instructions Codex sends a local model as its first developer message. Codex needs
# a text here (its ModelInfo requires one) and would otherwise send its own, written for
# its hosted models: thousands of tokens of a small local model's window.
CODEX_INSTRUCTIONS = (
    "You are a coding agent working in the user's workspace through the Codex CLI."
    " Use the tools you are given to read files, run commands and make changes, one"
    " step at a time. Keep your messages short and say what you changed."
)


def codex_model_info(model: LocalModel, public_id: str) -> dict[str, Any]:
    """``model`` as one entry of Codex's ``ModelsResponse.models`` (its ``ModelInfo``:
    the fields Codex 0.171 requires, and what it reads of the window and tools)."""
    window = model.context_window
    info: dict[str, Any] = {
        "slug": public_id,
        "display_name": public_id,
        "description": f"{public_id}, served by chatd's own engine",
        "supported_reasoning_levels": [],
        "shell_type": "shell_command",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 0,
        "model_messages": {"instructions_template": CODEX_INSTRUCTIONS},
        "base_instructions": CODEX_INSTRUCTIONS,  # older Codex versions' required field
        "supports_reasoning_summaries": False,
        "support_verbosity": False,
        "default_verbosity": None,
        "apply_patch_tool_type": None,
        # a tool's output Codex keeps in the conversation: a quarter of the window
        "truncation_policy": {"mode": "tokens", "limit": max(256, (window or 8192) // 4)},
        "supports_parallel_tool_calls": False,
        "experimental_supported_tools": [],
        "input_modalities": ["text"],
    }
    if window is not None:
        info["context_window"] = window
    return info
