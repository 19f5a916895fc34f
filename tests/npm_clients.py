"""Real npm-distributed clients for the end-to-end tests (Claude Code, Codex CLI, the
Vercel AI SDK), installed once per machine and pinned.

Why pinned and cached: a client's requests change from release to release (Claude Code's
beta headers, fields and tools do), so a test run must say which release it checked;
and installing takes seconds to minutes, so each ``<package>@<version>`` is installed once
into ``~/.cache/chatd-tests/npm/`` (``CHATD_TEST_NPM_CACHE`` overrides it) and reused.
A lock file serializes installs of one package between parallel runs (pytest-xdist
workers, two checkouts): the second waits, then finds it installed. A half-finished
install (killed run) is never used: the ``.installed`` marker is written last.

Without node and npm on PATH the caller's test is skipped, saying so.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

__all__ = [
    "AI_SDK",
    "AI_SDK_OPENAI",
    "AI_SDK_OPENAI_VERSION",
    "AI_SDK_VERSION",
    "CLAUDE_CODE",
    "CLAUDE_CODE_VERSION",
    "CODEX",
    "CODEX_VERSION",
    "ai_sdk",
    "claude_code",
    "codex",
    "install",
    "install_all",
]

CLAUDE_CODE = "@anthropic-ai/claude-code"
# The release whose requests tests/fixtures/claude_code_request.json was captured from.
CLAUDE_CODE_VERSION = "2.1.337"
CODEX = "@openai/codex"
# The release whose requests tests/fixtures/codex_request*.json were captured from.
CODEX_VERSION = "0.171.0"
# The Vercel AI SDK and its OpenAI provider (tests/fixtures/ai_sdk_request*.json): a node
# script imports both, so they are installed together into one prefix.
AI_SDK = "ai"
AI_SDK_VERSION = "7.0.185"
AI_SDK_OPENAI = "@ai-sdk/openai"
AI_SDK_OPENAI_VERSION = "4.0.126"

INSTALL_TIMEOUT = 900  # seconds: a cold npm cache on a slow link


def cache_root() -> Path:
    override = os.environ.get("CHATD_TEST_NPM_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatd-tests" / "npm"


def install(package: str, version: str, binary: str) -> Path:
    """The path of ``binary`` from ``package@version``, installed on first use; skips
    the calling test when node or npm is missing, fails it when the install fails."""
    prefix = install_all([(package, version)])
    exe = prefix / "node_modules" / ".bin" / binary
    if not exe.exists():
        pytest.fail(f"npm installed {package}@{version} but {exe} is missing")
    return exe


def install_all(packages: list[tuple[str, str]]) -> Path:
    """The npm prefix (its ``node_modules`` inside) holding every ``(package, version)``
    of ``packages``, installed together on first use: what a node script importing
    several of them runs against. Skips the calling test when node or npm is missing,
    fails it when the install fails."""
    specs = [f"{package}@{version}" for package, version in packages]
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip(f"{' '.join(specs)} needs node and npm on PATH (not found)")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    prefix = root / "+".join(spec.replace("/", "+") for spec in specs)
    marker = prefix / ".installed"
    with (root / f"{prefix.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if marker.is_file():
            return prefix
        _npm_install(npm, specs, prefix)
        marker.write_text("\n".join(specs) + "\n")
    return prefix


def _npm_install(npm: str, specs: list[str], prefix: Path) -> None:
    """Install into a fresh temporary folder beside ``prefix``, then rename it into
    place: a failed or killed install leaves nothing half-made at ``prefix``."""
    shutil.rmtree(prefix, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{prefix.name}.", dir=prefix.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; other users of the cache may run it
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(staging), *specs]
            + ["--no-audit", "--no-fund", "--no-save", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"npm install {' '.join(specs)} failed ({done.returncode}):\n"
                f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            )
        staging.rename(prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def claude_code() -> Path:
    """The pinned Claude Code CLI (``claude``): a native binary the package's postinstall
    puts in place of its stub."""
    return install(CLAUDE_CODE, CLAUDE_CODE_VERSION, "claude")


def codex() -> Path:
    """The pinned Codex CLI (``codex``): a node launcher of the native binary that its
    platform package (``@openai/codex-linux-x64`` ...) brings."""
    return install(CODEX, CODEX_VERSION, "codex")


def ai_sdk() -> Path:
    """The npm prefix holding the pinned Vercel AI SDK (``ai``) and its OpenAI provider
    (``@ai-sdk/openai``), for tests/clients/ai_sdk_stream.mjs (AI_SDK_PREFIX)."""
    return install_all([(AI_SDK, AI_SDK_VERSION), (AI_SDK_OPENAI, AI_SDK_OPENAI_VERSION)])
