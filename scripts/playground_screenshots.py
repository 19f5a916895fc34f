"""Screenshots of the playground for the README: starts ``chatd serve`` on the embedded
model (a temporary data dir, a throwaway key), drives the page in Debian's headless
``chromium`` through Playwright (as tests/e2e/test_playground.py does) and writes
1280x800 PNGs: the chat with a tool call answered (``docs/playground-chat.png``), the
logprobs view (``docs/playground-logprobs.png``) and the stored-completions browser
(``docs/playground-stored.png``).

    python scripts/playground_screenshots.py [--out docs]

Needs the test extra (playwright) and ``apt-get install chromium``."""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from playground_browser import launch, open_page, ready  # noqa: E402

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_chatd(key: str, data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "chatd.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--api-key", key, "--data-dir", data_dir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("chatd exited early")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit("chatd did not become healthy")


def send(page: Any, prompt: str) -> None:
    before = page.get_by_test_id("answer").count()
    page.get_by_test_id("prompt").fill(prompt)
    page.get_by_test_id("send").click()
    page.get_by_test_id("answer").nth(before).locator(
        "[data-testid=answer-status]:not([data-state=streaming])"
    ).wait_for(timeout=120_000)


def section(page: Any, name: str) -> None:
    page.get_by_test_id(f"section-{name}").locator("summary").click()


def chat(page: Any, out: Path) -> None:
    page.get_by_test_id("system-prompt").fill("You are a friendly assistant. Answer briefly.")
    page.get_by_test_id("param-temperature").fill("0.7")
    page.get_by_test_id("param-max_tokens").fill("48")
    page.get_by_test_id("param-seed").fill("7")
    send(page, "Write a haiku about the sea.")
    section(page, "tools")
    page.get_by_test_id("tools-text").fill(json.dumps([WEATHER], indent=1))
    page.get_by_test_id("tool-choice").select_option("required")
    page.get_by_test_id("param-parallel_tool_calls").uncheck()
    send(page, "What is the weather in Lisbon?")
    # the call answered: a result typed under it, sent back, the model goes on in text
    page.get_by_test_id("tool-result").fill(
        '{"city": "Lisbon", "sky": "clear", "temperature_c": 21}'
    )
    page.get_by_test_id("tool-choice").select_option("none")
    before = page.get_by_test_id("answer").count()
    page.get_by_test_id("send-tool-results").click()
    page.get_by_test_id("answer").nth(before).locator(
        "[data-testid=answer-status]:not([data-state=streaming])"
    ).wait_for(timeout=120_000)
    section(page, "tools")  # folded: the sidebar shows the model and parameters
    page.screenshot(path=str(out / "playground-chat.png"))


def logprobs(page: Any, out: Path) -> None:
    page.get_by_test_id("clear").click()
    section(page, "tools")
    page.get_by_test_id("tools-text").fill("")
    page.get_by_test_id("tool-choice").select_option("")
    section(page, "tools")  # folded again
    section(page, "logprobs")
    page.get_by_test_id("param-logprobs").check()
    page.get_by_test_id("param-max_tokens").fill("40")
    send(page, "Tell me one fact about octopuses.")
    tokens = page.get_by_test_id("token")
    tokens.nth(min(6, tokens.count() - 1)).hover()
    page.screenshot(path=str(out / "playground-logprobs.png"))


def stored(page: Any, out: Path) -> None:
    page.get_by_test_id("clear").click()
    page.get_by_test_id("param-logprobs").uncheck()
    section(page, "logprobs")  # folded again
    section(page, "store")
    page.get_by_test_id("param-store").check()
    page.get_by_test_id("metadata-key").fill("project")
    page.get_by_test_id("metadata-value").fill("demo")
    page.get_by_test_id("param-max_tokens").fill("32")
    for prompt in ("Suggest a name for a cat.", "What is a good first programming language?"):
        send(page, prompt)
        page.get_by_test_id("clear").click()
    page.get_by_test_id("tab-stored").click()
    page.get_by_test_id("stored-meta-key").fill("project")
    page.get_by_test_id("stored-meta-value").fill("demo")
    page.get_by_test_id("stored-search").click()
    page.wait_for_function(
        "() => document.querySelectorAll('[data-testid=stored-row]').length === 2"
    )
    page.get_by_test_id("stored-row").first.locator("button").click()
    page.get_by_test_id("stored-detail-id").wait_for()
    page.screenshot(path=str(out / "playground-stored.png"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    key = "sk-screenshots-" + secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="chatd-shots-") as data_dir:
        proc, base = start_chatd(key, data_dir)
        try:
            with launch() as browser, open_page(browser, base, key=key) as guarded:
                page = guarded.page
                ready(page, base)
                chat(page, args.out)
                logprobs(page, args.out)
                stored(page, args.out)
                if guarded.external:
                    raise SystemExit(f"requests left the server: {guarded.external}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for name in ("chat", "logprobs", "stored"):
        print(args.out / f"playground-{name}.png")


if __name__ == "__main__":
    main()
