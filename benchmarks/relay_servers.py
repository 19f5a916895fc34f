"""The processes ``relay.py`` measures: the upstream stub and the gateways in front of it.

The stub is a script run as its own process (``python -c STUB``), not a coroutine in the
load generator: its CPU and the load generator's must stay apart, and a gateway must reach
it over a real socket, as it would a real upstream.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import harness

MODES = ("paced", "instant")

STUB = r"""
import asyncio, json, sys, time
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

PORT, N = int(sys.argv[1]), int(sys.argv[4])
TTFT, INTERVAL = float(sys.argv[2]) / 1e3, float(sys.argv[3]) / 1e3
USAGE = {"prompt_tokens": 5, "completion_tokens": N, "total_tokens": N + 5}

def event(obj):
    return ("data: " + json.dumps(obj) + "\n\n").encode()

def chunk(model, delta, finish=None):
    return event({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
        "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

async def completions(request):
    arrived = time.monotonic()
    body = json.loads(await request.body())
    model = body.get("model", "")
    mode = request.query_params.get("mode") or ("instant" if "instant" in model else "paced")
    paced = mode == "paced"
    hold = request.query_params.get("hold") == "1"  # headers go with the first event
    usage = (body.get("stream_options") or {}).get("include_usage") is True
    if not body.get("stream"):
        if paced:
            await asyncio.sleep(TTFT + (N - 1) * INTERVAL)
        text = "".join(f" word{i}" for i in range(N))
        return JSONResponse({"id": "chatcmpl-stub", "object": "chat.completion",
            "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": "stop"}], "usage": USAGE})

    async def events():
        for i in range(N):
            if paced:  # fixed schedule from arrival: no drift, the same for every path
                await asyncio.sleep(max(0.0, arrived + TTFT + i * INTERVAL - time.monotonic()))
            delta = {"content": f" word{i}"}
            yield chunk(model, {"role": "assistant", **delta} if i == 0 else delta)
        yield chunk(model, {}, "stop")
        if usage:
            yield event({"id": "chatcmpl-stub", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
                "choices": [], "usage": USAGE})
        yield b"data: [DONE]\n\n"
    if hold and paced:
        await asyncio.sleep(max(0.0, arrived + TTFT - time.monotonic()))
    return StreamingResponse(events(), media_type="text/event-stream")

async def health(request):
    return PlainTextResponse("ok")

app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"]),
                        Route("/health", health)])
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
"""


def start_stub(args: argparse.Namespace, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    cmd = [sys.executable, "-c", STUB, str(port)]
    cmd += [str(args.ttft_ms), str(args.interval_ms), str(args.chunks)]
    return harness.Managed("stub", cmd, port, "/health", log_dir=tmp)


def start_chatd(stub: harness.Managed, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    config = tmp / "chatd.toml"
    config.write_text(
        f'[[channels]]\nname = "stub"\nbase_url = "{stub.base_url}/v1"\n'
        f"models = {json.dumps(list(MODES))}\n"
    )
    exe = Path(sys.executable).parent / "chatd"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "chatd.cli"]
    cmd += ["serve", "--host", "127.0.0.1", "--port", str(port), "--config", str(config)]
    cmd += ["--data-dir", str(tmp / "chatd-data"), "--log-level", "warning"]
    return harness.Managed("chatd", cmd, port, "/health", log_dir=tmp, env=harness.chatd_env())


LITELLM_CONFIG = """\
model_list:
{models}
litellm_settings:
  telemetry: false        # no usage reports
  cache: false            # no response cache
  callbacks: []           # no logging / observability integrations
  success_callback: []
  failure_callback: []
general_settings:
  dangerously_permit_weak_or_unset_master_key: true  # no key, as chatd without --api-key
  disable_spend_logs: true          # no spend rows (there is no database anyway)
  background_health_checks: false   # no periodic calls to the upstream
"""


def litellm_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LITELLM_", "DATABASE_", "OPENAI_", "REDIS_"))
        and k not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(
        LITELLM_LOG="WARNING",  # logging at warning; also uvicorn's (no access log lines)
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the cost map from GitHub at start
    )
    return env


def start_litellm(exe: str, stub: harness.Managed, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    models = "".join(
        f"  - model_name: {m}\n    litellm_params:\n      model: openai/{m}\n"
        f"      api_base: {stub.base_url}/v1\n      api_key: x\n"
        for m in MODES
    )
    config = tmp / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(models=models.rstrip("\n")))
    cmd = [exe, "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--num_workers", "1"]
    return harness.Managed(
        "litellm", cmd, port, "/health/liveliness", log_dir=tmp, env=litellm_env()
    )


def litellm_version(exe: str) -> str:
    python = Path(exe).parent / "python"
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"
