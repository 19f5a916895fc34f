"""The request log of a real `chatd serve --log-format json`: every line it writes (its
own and uvicorn's) is one JSON object, each request's line has the id the openai SDK
read, its tokens and TTFT, and neither the prompt, the output nor the key."""

from __future__ import annotations

import json

import openai
from conftest import MODEL, Server

KEY = "sk-request-log-test-key"
PROMPT = "Name a colour of the ocean walrus"


def test_json_log_lines_name_the_sdk_request_id() -> None:
    srv = Server("--api-key", KEY, "--log-format", "json")
    try:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key=KEY, max_retries=0)
        messages = [{"role": "user", "content": PROMPT}]
        whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)  # type: ignore[arg-type]
        with client.chat.completions.create(
            model=MODEL,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=4,
            stream=True,
            extra_headers={"X-Client-Request-Id": "trace-7"},
        ) as stream:
            streamed_id = stream.response.headers["x-request-id"]
            output = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    finally:
        srv.stop()
    # llama.cpp writes its model-loading progress dots itself, past Python's logging
    lines = [json.loads(line) for line in srv.log().splitlines() if line.strip(". ")]
    by_id = {line.get("request_id"): line for line in lines}
    first, second = by_id[whole._request_id], by_id[streamed_id]
    for line in (first, second):
        assert line["status"] == 200 and line["route"] == "local" and line["model"] == MODEL
        assert line["prompt_tokens"] > 0 and 0 < line["completion_tokens"] <= 4
        assert 0 <= line["ttft_ms"] <= line["total_ms"]
    assert second["client_request_id"] == "trace-7"
    log = srv.log()
    assert KEY not in log and "walrus" not in log
    assert whole.choices[0].message.content not in log and output not in log
