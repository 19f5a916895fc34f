"""The playground's files over HTTP (api/playground_routes.py): ``/`` and its assets are
served without a key, with a self-only Content-Security-Policy, from the package (the
files pyproject's package-data ships), naming no other host; anything else under
/playground/ is the API's 404. The page itself is tested in a real browser in
tests/e2e/test_playground.py."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import httpx
import pytest

from chatd.api.playground_routes import ASSETS, CSP

from .harness import Chatd

ROOT = Path(__file__).parents[2]
FILES = resources.files("chatd.api").joinpath("playground")


def packaged() -> set[str]:
    return {f.name for f in FILES.iterdir() if f.is_file()}


async def test_index_is_served_without_a_key_with_a_self_only_policy(chatd: Chatd) -> None:
    resp = await chatd.http(key=None).get("/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/html; charset=utf-8"
    assert resp.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "connect-src 'self'" in CSP
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["x-request-id"].startswith("req_")
    assert resp.text == FILES.joinpath("index.html").read_text()
    assert '<script type="module" src="/playground/main.js">' in resp.text


@pytest.mark.parametrize("name", ASSETS)
async def test_every_asset_is_served_with_its_type(chatd: Chatd, name: str) -> None:
    resp = await chatd.http(key=None).get(f"/playground/{name}")
    assert resp.status_code == 200
    kind = "text/css" if name.endswith(".css") else "text/javascript"
    assert resp.headers["content-type"] == f"{kind}; charset=utf-8"
    assert resp.headers["content-security-policy"] == CSP
    assert resp.content == FILES.joinpath(name).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/playground/nope.js",
        "/playground/index.html",  # served at / only
        "/playground/..%2Fapp.py",
        "/playground/../api/app.py",
        "/playground/sub/main.js",
        "/playground/",
    ],
)
async def test_other_paths_are_the_api_404(chatd: Chatd, path: str) -> None:
    resp = await chatd.http(key=None).get(path)
    assert resp.status_code == 404
    assert resp.json()["error"]["message"].startswith("Invalid URL")


async def test_posting_to_the_page_is_refused(http: httpx.AsyncClient) -> None:
    resp = await http.post("/", json={})
    assert resp.status_code == 405
    assert "error" in resp.json()


def test_the_assets_are_exactly_the_packaged_files() -> None:
    assert packaged() == {"index.html", *ASSETS}


def test_pyproject_ships_every_playground_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["chatd.api"]
    for name in packaged():
        assert any(fnmatch(f"playground/{name}", g) for g in globs), name


def test_modules_import_only_packaged_modules() -> None:
    for name in ASSETS:
        if name.endswith(".js"):
            text = FILES.joinpath(name).read_text()
            for target in re.findall(r'from\s+"([^"]+)"', text):
                assert target.startswith("./") and target[2:] in ASSETS, (name, target)
    index = FILES.joinpath("index.html").read_text()
    assert set(re.findall(r'(?:src|href)="/playground/([^"]+)"', index)) == {
        "main.js",
        "playground.css",
    }


def test_no_file_names_another_host() -> None:
    """Offline: no CDN, no font or image from elsewhere (the browser test also aborts
    and counts any request leaving the server)."""
    for name in packaged():
        text = FILES.joinpath(name).read_text()
        assert not re.search(r"https?:|//[a-z0-9.-]+\.[a-z]{2,}|@import", text, re.I), name
        assert all(u.startswith("data:") for u in re.findall(r"url\(([^)]*)\)", text)), name
