"""A prompt longer than the embedded model's 8,192-token training context is refused by a
server that does not stretch the model (Chat Completions' 400, before any work). One that
does with YaRN (``--rope-scaling yarn``, conftest.STRETCHED_ARGS) serves it: that is
tests/e2e/test_claude_code.py, whose ~12.5k-token prompt is the same proof, and whose
prefill is the cost no second long prompt should add to the suite.
"""

from __future__ import annotations

import openai
import pytest
from conftest import MODEL

# ~9,000 tokens with the embedded model's tokenizer (12.9 tokens a note).
LONG = " ".join(f"Note {i}: the lighthouse keeper logged calm seas." for i in range(700))
QUESTION = "What did the keeper log? One word."


def messages() -> list[dict[str, str]]:
    return [{"role": "system", "content": LONG}, {"role": "user", "content": QUESTION}]


def test_an_unstretched_model_refuses_a_prompt_past_its_training_context(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=MODEL, messages=messages(), max_tokens=4)
    assert e.value.code == "context_length_exceeded"
    assert "8192" in str(e.value)
