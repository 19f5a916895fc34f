"""What ``throughput.py`` and ``serving.py`` send: their prompts and request bodies.

Two rules shape them. A prompt must be new to a server (a request number or a random tag
leads it), or a server with a prompt cache answers it from the KV of an earlier one and
measures something else; and a request whose tok/s is measured must generate all the tokens
it asks for, or a server that stops early looks fast: ``EOG_BIAS`` bans the end-of-generation
tokens, and the JSON schema asks for more items than fit.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sys
from collections.abc import Iterator
from typing import Any

import harness

MODEL_ID = "smollm2-135m-instruct"  # the alias every server is started with
# SmolLM2's end-of-generation tokens (0 <|endoftext|>, 2 <|im_end|>, 4 <reponame>, the ones
# llama.cpp flags as EOG), banned: a request generates all the tokens it asks for
EOG_BIAS = {"0": -100, "2": -100, "4": -100}
TOPICS = [  # of the story prompts
    "a lighthouse keeper",
    "a lost robot",
    "the first snow of winter",
    "a dragon who cannot fly",
    "a bakery at midnight",
    "an old map",
    "a talking cat",
    "a journey to the moon",
    "a forgotten library",
    "a storm at sea",
    "a garden on Mars",
    "a clockmaker's apprentice",
    "a haunted train station",
    "a friendly ghost",
    "a desert caravan",
    "a city under the ocean",
]


_request_ids = itertools.count()


def story_body(max_tokens: int, temperature: float) -> dict[str, Any]:
    """A prompt never sent before in this run (number first), so no server can answer it
    from a cached KV of an identical earlier prompt; what all prompts share is the chat
    template's default system prompt, as real traffic would."""
    n = next(_request_ids)
    topic = TOPICS[n % len(TOPICS)]
    return {
        "model": MODEL_ID,
        "messages": [
            {"role": "user", "content": f"Story {n}: write a long, detailed story about {topic}."},
        ],
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "logit_bias": EOG_BIAS,
    }


_nonce = random.Random()  # unseeded: every run's texts are new to a server's caches too
NOUNS = ["crate", "lantern", "barrel", "compass", "anchor", "kettle", "ledger", "rope", "sail"]
ADJS = ["red", "old", "heavy", "small", "brass", "wooden", "cracked", "polished", "spare"]
PLACES = ["the dock", "the attic", "the north shed", "the galley", "the cellar", "the pier"]
_tokenizer: Any = None


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (C libraries write there directly, past ``sys.stderr``)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` with the GGUF's own vocabulary (llama_cpp, vocab only), so that
    prompts are sized like chatd counts them; ~4 characters a token without llama_cpp."""
    global _tokenizer
    if _tokenizer is None:
        try:
            import llama_cpp

            with quiet_stderr():  # llama.cpp logs to fd 2 even with verbose=False
                _tokenizer = llama_cpp.Llama(
                    str(harness.gguf_path()), vocab_only=True, verbose=False
                )
        except Exception:  # noqa: BLE001 - any failure: fall back to the estimate
            _tokenizer = False
    if _tokenizer is False:
        return len(text) // 4
    return len(_tokenizer.tokenize(text.encode(), add_bos=False, special=False))


def filler(n_tokens: int) -> str:
    """About ``n_tokens`` of text never sent before: numbered inventory lines with random
    words and weights, led by a random tag so that no prefix of it is in any cache."""
    rng = random.Random(_nonce.getrandbits(64))
    lines = [f"Inventory {rng.getrandbits(40):010x}."]
    total = count_tokens(lines[0])
    i = 0
    while total < n_tokens:
        i += 1
        line = (
            f"Item {i}: the {rng.choice(ADJS)} {rng.choice(NOUNS)} in {rng.choice(PLACES)} "
            f"weighs {rng.randint(2, 9999)} grams and was checked on day {rng.randint(1, 365)}."
        )
        lines.append(line)
        total += count_tokens("\n" + line)
    return "\n".join(lines) + "\n\nTools (call one as JSON):\n" + json.dumps(AGENT_TOOLS)


def short_body(content: str, max_tokens: int, system: str | None = None) -> dict[str, Any]:
    """A request at temperature 0 (greedy): repeatable answers, so that the edit's texts with
    and without prediction can be compared."""
    messages = [{"role": "system", "content": system}] if system is not None else []
    messages.append({"role": "user", "content": content})
    return {"model": MODEL_ID, "messages": messages, "max_tokens": max_tokens, "temperature": 0}


JSON_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        # more items than fit in the token budget: every constrained answer runs to "length",
        # so both variants generate the same number of tokens
        "cities": {"type": "array", "items": {"type": "string"}, "minItems": 60},
    },
    "required": ["title", "cities"],
    "additionalProperties": False,
}


def json_body(max_tokens: int, constrained: bool) -> dict[str, Any]:
    """Cities as JSON, with ``response_format`` json_schema (strict) or without: the same
    request otherwise, so the difference is the constraint alone."""
    tag = _nonce.getrandbits(32)
    body: dict[str, Any] = {
        "model": MODEL_ID,
        "messages": [
            {
                "role": "user",
                "content": f"Request {tag:08x}: list sixty cities of the world as JSON, "
                'an object with a "title" and a "cities" array of names.',
            }
        ],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "logit_bias": EOG_BIAS,
    }
    if constrained:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "cities", "strict": True, "schema": JSON_SCHEMA},
        }
    return body


EDIT_SOURCE = '''"""Nightly inventory report: totals per warehouse, mailed to the team."""

import csv
import smtplib
from collections import defaultdict
from email.message import EmailMessage
from pathlib import Path

MAX_RETRIES = 3
REPORT_DIR = Path("/var/reports")
SENDER = "inventory@example.com"


def load_rows(path: Path) -> list[dict[str, str]]:
    """Read the day's export; skip rows without a warehouse."""
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if row.get("warehouse")]


def totals(rows: list[dict[str, str]]) -> dict[str, float]:
    """Sum the stock value per warehouse."""
    result: dict[str, float] = defaultdict(float)
    for row in rows:
        result[row["warehouse"]] += float(row["quantity"]) * float(row["unit_price"])
    return dict(result)


def render(summary: dict[str, float]) -> str:
    lines = [f"{name:<20} {value:>12.2f}" for name, value in sorted(summary.items())]
    lines.append(f"{'total':<20} {sum(summary.values()):>12.2f}")
    return "\\n".join(lines)


def send(body: str, recipients: list[str]) -> None:
    msg = EmailMessage()
    msg["Subject"] = "Inventory report"
    msg["From"] = SENDER
    msg["To"] = ", ".join(recipients)
    msg.set_content(body)
    for attempt in range(MAX_RETRIES):
        try:
            with smtplib.SMTP("localhost") as server:
                server.send_message(msg)
            return
        except OSError:
            if attempt == MAX_RETRIES - 1:
                raise


if __name__ == "__main__":
    rows = load_rows(REPORT_DIR / "export.csv")
    send(render(totals(rows)), ["team@example.com"])
'''
EDIT_PROMPT = (
    "Here is a Python file:\n\n```python\n{code}```\n\n"
    "Rewrite the whole file with exactly one change: `MAX_RETRIES = 3` becomes "
    "`MAX_RETRIES = 5`. Keep every other line exactly as it is. Reply with the complete file "
    "in one ```python code block and nothing else."
)


def edit_body(max_tokens: int, prediction: bool) -> dict[str, Any]:
    body = short_body(EDIT_PROMPT.format(code=EDIT_SOURCE), max_tokens)
    if prediction:
        # the original file, as a client would send it, in the fence the reply is asked for
        body["prediction"] = {"type": "content", "content": f"```python\n{EDIT_SOURCE}```"}
    return body


# ------------------------------------------------------------------ agent and long history

AGENT_VERBS = ["read", "check", "search", "compare", "summarize", "list", "verify", "trace"]
AGENT_THINGS = [
    "the failing test",
    "the config loader",
    "the migration scripts",
    "the request handler",
    "the build log",
    "the retry policy",
    "the cache layer",
    "the CLI entry point",
    "the release notes",
    "the dependency pins",
]
AGENT_TOOLS_USED = ["read_file", "search_code", "run_command", "list_directory", "apply_patch"]
AGENT_TASKS = [
    "what does the retry policy in src/net/retry.py do?",
    "which tests cover the config loader?",
    "is the cache layer thread-safe?",
    "what changed in the last release notes?",
    "where is the CLI entry point defined?",
    "why might the build log show a linker warning?",
    "which dependency pins are out of date?",
    "how are migration scripts ordered?",
]


def _tool(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {
                "type": "object",
                "properties": properties,
                "required": list(properties)[:1],
            },
        },
    }


def _prop(kind: str, description: str) -> dict[str, str]:
    return {"type": kind, "description": description}


AGENT_TOOLS = [
    _tool(
        "read_file",
        "Read a text file of the repository. Returns its lines with line numbers; use "
        "start_line and end_line for long files instead of reading them whole.",
        {
            "path": _prop("string", "path relative to the repository root"),
            "start_line": _prop("integer", "first line to return, 1-based"),
            "end_line": _prop("integer", "last line to return, inclusive"),
        },
    ),
    _tool(
        "search_code",
        "Search the repository for a regular expression. Returns matching lines with their "
        "paths and line numbers, at most max_results of them.",
        {
            "query": _prop("string", "a regular expression (Rust regex syntax)"),
            "path_glob": _prop("string", "only files matching this glob, e.g. src/**/*.py"),
            "max_results": _prop("integer", "at most this many matches (default 50)"),
        },
    ),
    _tool(
        "run_command",
        "Run a shell command in the repository root, in a sandbox without network access. "
        "Returns its exit status, standard output and standard error (each cut at 20 kB).",
        {
            "command": _prop("string", "the command line, run by /bin/sh -c"),
            "timeout_s": _prop("integer", "stop the command after this many seconds"),
        },
    ),
    _tool(
        "list_directory",
        "List the entries of a directory of the repository, with their sizes.",
        {
            "path": _prop("string", "directory relative to the repository root"),
            "recursive": _prop("boolean", "descend into subdirectories"),
        },
    ),
    _tool(
        "apply_patch",
        "Apply a unified diff to the working tree. Fails without changing anything when a "
        "hunk does not apply; then read the file again and make a new patch.",
        {"patch": _prop("string", "the diff, with ---/+++ headers and @@ hunks")},
    ),
    _tool(
        "web_fetch",
        "Fetch a web page and return its text. Only for documentation the repository "
        "names; never for code to paste into it.",
        {
            "url": _prop("string", "an https URL"),
            "max_chars": _prop("integer", "cut the text at this many characters"),
        },
    ),
]


def agent_system(n_tokens: int) -> str:
    """An agent's instructions of about ``n_tokens``: a role, then numbered rules that name
    the tools, led by a random tag so that no server has any of it cached. The same text
    goes to every session of a run (the point: a shared prefix)."""
    rng = random.Random(_nonce.getrandbits(64))
    lines = [
        f"Deployment {rng.getrandbits(40):010x}. You are Harbor, a coding agent working in a "
        "user's repository through the tools below. Work step by step, say what you did in "
        "one short paragraph, and never invent file contents you have not read.",
        "",
        "Rules:",
    ]
    total = count_tokens("\n".join(lines))
    i = 0
    while total < n_tokens:
        i += 1
        line = (
            f"{i}. Before you {rng.choice(AGENT_VERBS)} {rng.choice(AGENT_THINGS)}, use "
            f"{rng.choice(AGENT_TOOLS_USED)} on it and {rng.choice(AGENT_VERBS)} "
            f"{rng.choice(AGENT_THINGS)} as well; keep the answer under {rng.randint(2, 9)} "
            f"sentences unless the user asks for more (rule set {rng.randint(1, 99)})."
        )
        lines.append(line)
        total += count_tokens("\n" + line)
    return "\n".join(lines) + "\n\nTools (call one as JSON):\n" + json.dumps(AGENT_TOOLS)


def agent_body(messages: list[dict[str, Any]], max_tokens: int) -> dict[str, Any]:
    """One agent turn: the whole conversation so far, temperature 0, EOG tokens banned so
    every answer is exactly ``max_tokens`` long (streamed with usage by ``client.stream``).
    The tools are written in the system prompt (``agent_system``), not sent as ``tools``:
    llama-server's rendering of this model's template drops ``tools`` while chatd's
    renders them, and both servers must compute the same prompt."""
    return {
        "model": MODEL_ID,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "logit_bias": EOG_BIAS,
    }


def agent_question(session: int, turn: int) -> str:
    """A new short user message per session and turn: the sessions' histories differ from
    their first user message on, and share only the system prompt and tools."""
    task = AGENT_TASKS[(session * 3 + turn) % len(AGENT_TASKS)]
    return f"Session {session}, step {turn}: {task}"


def history_messages(n_tokens: int) -> list[dict[str, Any]]:
    """A conversation of about ``n_tokens`` (user notes and short assistant answers, new
    text), ending with a user request for a long report: a long-context decode."""
    messages: list[dict[str, Any]] = []
    total = 0
    turn = 0
    while total < n_tokens - 100:
        turn += 1
        notes = filler(min(400, max(50, n_tokens - 100 - total)))
        messages.append({"role": "user", "content": f"Notes, part {turn}:\n{notes}"})
        answer = f"Noted part {turn}: {notes.count(chr(10)) + 1} lines of inventory."
        messages.append({"role": "assistant", "content": answer})
        total += count_tokens(notes) + count_tokens(answer) + 20
    messages.append(
        {
            "role": "user",
            "content": "Now write a long, detailed report on everything in these notes.",
        }
    )
    return messages
