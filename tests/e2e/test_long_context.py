"""A prompt longer than the embedded model's 8,192-token training context: refused by a
server that does not stretch the model (Chat Completions' 400, before any work), served
by one that does with YaRN (``--rope-scaling yarn``, conftest.STRETCHED_ARGS).

One long request only: its prefill (~9k tokens) is the cost of this module. The answer's
quality is not checked (a 135M model stretched 4x says little of use); that the model
takes the prompt and answers is.
"""

from __future__ import annotations

import openai
import pytest
from conftest import API_KEY, MODEL, Server

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


def test_a_yarn_stretched_model_serves_it(stretched_server: Server) -> None:
    client = openai.OpenAI(
        base_url=stretched_server.base_url + "/v1", api_key=API_KEY, max_retries=0, timeout=1800
    )
    r = client.chat.completions.create(
        model=MODEL, messages=messages(), max_tokens=4, temperature=0
    )
    assert r.usage is not None and r.usage.prompt_tokens > 8192
    assert r.usage.completion_tokens >= 1
    assert r.choices[0].finish_reason in ("length", "stop")
    log = stretched_server.log()
    assert "rope scaling yarn, factor 4 (chosen for the context window)" in log
    assert "context window 32768 tokens" in log
