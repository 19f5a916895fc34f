"""No 5xx and no broken contract for any input: schemathesis fuzzes chatd from chatd's own
``/openapi.json``, every operation, with positive and negative data, and every check it
has (not a server error, documented status codes, content types and headers, response
schemas, schema-valid requests accepted, schema-invalid ones rejected, 405s with
``Allow``, auth not ignored, stateful links between the operations).

The app runs in this process over the FakeEngine, on a real port (serve_in_thread);
schemathesis's command line runs in a subprocess against it, with a fixed seed, and its
JSON report is read: how many cases, which failures. On a failure its own output, with a
``curl`` line for each, is the assertion's message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from service.harness import API_KEY, chatd_in_thread

# 16 operations; with the coverage phase's cases and the stateful scenarios this is
# above 2,000 cases in about a minute on two shared cores.
MAX_EXAMPLES = 80
SEED = 12
MIN_CASES = 2000
TESTS = Path(__file__).parent.parent  # fuzz_hooks.py imports as service.fuzz_hooks


def run_schemathesis(base_url: str, report: Path) -> subprocess.CompletedProcess[str]:
    """``st run`` in ``report``'s folder (its cache goes there, not in the worktree)."""
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        base_url + "/openapi.json",
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
        "--output-sanitize",
        "false",  # the test key is no secret; "[Filtered]" would hide max_output_tokens
    ]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "service.fuzz_hooks"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    return subprocess.run(
        command, capture_output=True, text=True, check=False, env=env, cwd=report.parent
    )


def test_fuzzing_the_documented_api_finds_nothing(tmp_path: Path) -> None:
    report = tmp_path / "schemathesis.json"
    with chatd_in_thread(tmp_path / "chatd") as server:
        done = run_schemathesis(server.base_url, report)
    assert report.exists(), done.stdout + done.stderr
    result = json.loads(report.read_text())
    output = done.stdout[-20000:] + done.stderr[-5000:]
    assert result["complete"], output
    assert result["operations"]["tested"] == result["operations"]["total"] >= 16, output
    assert result["failures"] == [], output
    assert result["errors"] == [], output
    assert result["test_cases"]["errored"] == 0, output
    assert result["test_cases"]["generated"] >= MIN_CASES, result["test_cases"]
    assert done.returncode == 0, output
    print(f"schemathesis: {result['test_cases']}, {result['running_time']:.0f} s")
