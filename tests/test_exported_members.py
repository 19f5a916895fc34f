"""``__all__`` is each module's real interface, in the spirit of httpx's test of the same name.

A module that declares ``__all__`` says "this is what the rest of chatd may use of me". The
declaration is only worth something if it is true, so for every such module under ``chatd``:

- every name listed exists in the module;
- every name another module takes from it (``from chatd.x import a, b`` anywhere in ``src/``,
  ``tests/`` or ``benchmarks/``, at any depth, ``TYPE_CHECKING`` blocks included) is listed.
  Tests may reach for underscore names, which are private by definition and not checked;
- nothing is listed that nobody takes, for the modules that declare their ``__all__`` as
  exactly what is imported from them (``EXACT``).

No server, no model: the modules are imported and the sources parsed.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

import pytest

import chatd

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "benchmarks")
# Modules whose __all__ is exactly what other modules import from them (no more, no less).
EXACT_PACKAGES = ("chatd.protocol.",)


def _declaring_modules() -> dict[str, ModuleType]:
    """The chatd modules whose source assigns ``__all__`` at top level, imported.

    Found by parsing rather than importing everything: some modules only run inside a tool
    (the alembic migration environment).
    """
    src = Path(chatd.__file__).resolve().parent
    found = {}
    for path in sorted(src.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        if any(
            isinstance(node, ast.Assign | ast.AnnAssign)
            and any(
                isinstance(t, ast.Name) and t.id == "__all__"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            for node in tree.body
        ):
            parts = path.relative_to(src.parent).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = importlib.import_module(name)
    return found


def imported_names(paths: Iterable[Path]) -> dict[str, dict[str, set[str]]]:
    """``{module: {name: {file:line, ...}}}`` for every ``from chatd.x import name``."""
    uses: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if node.module != "chatd" and not node.module.startswith("chatd."):
                continue
            for alias in node.names:
                uses[node.module][alias.name].add(f"{_shown(path)}:{node.lineno}")
    return uses


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _sources() -> list[Path]:
    return sorted(p for d in SCANNED if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


MODULES = _declaring_modules()
DECLARING = sorted(MODULES)
USES = imported_names(_sources())


def missing_from_all(module: ModuleType, uses: dict[str, set[str]]) -> dict[str, set[str]]:
    """Names taken from ``module`` elsewhere that its ``__all__`` does not list."""
    listed = set(module.__all__)
    return {
        name: where
        for name, where in uses.items()
        if name not in listed
        and not name.startswith("_")
        # a submodule imported from its package is not a member
        and not isinstance(getattr(module, name, None), ModuleType)
    }


def test_some_modules_declare_all() -> None:
    assert "chatd.protocol.chat_request" in DECLARING


@pytest.mark.parametrize("name", DECLARING)
def test_listed_members_exist(name: str) -> None:
    module = MODULES[name]
    assert len(module.__all__) == len(set(module.__all__)), "duplicates in __all__"
    absent = [member for member in module.__all__ if not hasattr(module, member)]
    assert not absent, f"{name}.__all__ lists names it does not define: {absent}"


@pytest.mark.parametrize("name", DECLARING)
def test_imported_members_are_listed(name: str) -> None:
    missing = missing_from_all(MODULES[name], USES.get(name, {}))
    assert not missing, f"imported from {name} but not in its __all__: {missing}"


@pytest.mark.parametrize("name", [n for n in DECLARING if n.startswith(EXACT_PACKAGES)])
def test_listed_members_are_imported(name: str) -> None:
    unused = set(MODULES[name].__all__) - set(USES.get(name, {}))
    assert not unused, f"{name}.__all__ lists names no other module imports: {sorted(unused)}"


def test_the_check_catches_an_unlisted_import(tmp_path: Path) -> None:
    """A concrete failure: a module importing an unlisted name is reported, with its place."""
    user = tmp_path / "user.py"
    user.write_text(
        "from chatd.protocol.chat_request import ChatCompletionRequest, StreamOptions\n"
    )
    module = MODULES["chatd.protocol.chat_request"]
    uses = imported_names([user]).get("chatd.protocol.chat_request", {})
    assert "StreamOptions" not in module.__all__  # the premise of this test
    missing = {
        name: {w.rsplit(":", 1)[1] for w in where}
        for name, where in missing_from_all(module, uses).items()
    }
    assert missing == {"StreamOptions": {"1"}}
