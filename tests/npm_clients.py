"""Real npm-distributed clients for the end-to-end tests (Claude Code), installed once per
machine and pinned.

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
    "CLAUDE_CODE",
    "CLAUDE_CODE_VERSION",
    "CODEX",
    "CODEX_VERSION",
    "claude_code",
    "codex",
    "install",
]

CLAUDE_CODE = "@anthropic-ai/claude-code"
# The release whose requests tests/fixtures/claude_code_request.json was captured from.
CLAUDE_CODE_VERSION = "2.1.337"
CODEX = "@openai/codex"
# The release whose requests tests/fixtures/codex_request*.json were captured from.
CODEX_VERSION = "0.171.0"

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
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip(f"{package}@{version} needs node and npm on PATH (not found)")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    prefix = root / f"{package.replace('/', '+')}@{version}"
    exe = prefix / "node_modules" / ".bin" / binary
    marker = prefix / ".installed"
    with (root / f"{prefix.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if marker.is_file() and exe.exists():
            return exe
        _npm_install(npm, package, version, prefix)
        if not exe.exists():
            pytest.fail(f"npm installed {package}@{version} but {exe} is missing")
        marker.write_text(f"{package}@{version}\n")
    return exe


def _npm_install(npm: str, package: str, version: str, prefix: Path) -> None:
    """Install into a fresh temporary folder beside ``prefix``, then rename it into
    place: a failed or killed install leaves nothing half-made at ``prefix``."""
    shutil.rmtree(prefix, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{prefix.name}.", dir=prefix.parent))
    staging.chmod(0o755)  # mkdtemp makes it 0700; other users of the cache may run it
    try:
        done = subprocess.run(
            [npm, "install", "--prefix", str(staging), f"{package}@{version}"]
            + ["--no-audit", "--no-fund", "--no-save", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"npm install {package}@{version} failed ({done.returncode}):\n"
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
    """The pinned Codex CLI (``codex``): a native binary from the package's platform
    dependency (``@openai/codex-linux-x64``)."""
    return install(CODEX, CODEX_VERSION, "codex")
