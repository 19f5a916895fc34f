"""The processes ``relay.py`` measures: the upstream stub and the gateways in front of it.

The stub is tests/fakes/upstream.py (the tests' fake upstream too) run as its own process
(``python STUB PORT TTFT_MS INTERVAL_MS CHUNKS``), not a coroutine in the load generator:
its CPU and the load generator's must stay apart, and a gateway must reach it over a real
socket, as it would a real upstream.
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

# The one fake OpenAI-compatible upstream, shared with the gateway tests: its benchmark
# stub ("paced" and "instant" ids) is what this script measures the gateways against.
STUB = Path(__file__).resolve().parent.parent / "tests" / "fakes" / "upstream.py"


def start_stub(args: argparse.Namespace, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    cmd = [sys.executable, str(STUB), str(port)]
    cmd += [str(args.ttft_ms), str(args.interval_ms), str(args.chunks)]
    return harness.Managed("stub", cmd, port, "/health", log_dir=tmp)


def start_chatd(stub: harness.Managed, tmp: Path) -> harness.Managed:
    port = harness.free_port()
    config = tmp / "chatd.toml"
    config.write_text(
        f'[[channels]]\nname = "stub"\nbase_url = "{stub.base_url}/v1"\n'
        f"models = {json.dumps(list(MODES))}\n"
    )
    cmd = [*harness.chatd_command(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--config", str(config), "--data-dir", str(tmp / "chatd-data")]
    # one load generator is one key: its levels measure the relay, not the in-flight limit
    cmd += ["--log-level", "warning", "--max-in-flight-per-key", "0"]
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
