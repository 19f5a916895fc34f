"""What only a real ``chatd serve`` shows about refusals: a server started without keys
is open, and says so in its log. Every other error test runs in-process
(tests/service/test_contract.py, test_capabilities.py, test_refusals.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from conftest import MODEL, Server
from service.checks import check_ok

URL = "/v1/chat/completions"
HI = [{"role": "user", "content": "hi"}]


def body(**fields: Any) -> dict[str, Any]:
    """A minimal valid request, with ``fields`` added or replaced (tiny completion)."""
    return {"model": MODEL, "messages": HI, "max_tokens": 1, **fields}


def test_open_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATD_API_KEYS", raising=False)
    srv = Server()
    try:
        check_ok(httpx.post(srv.base_url + URL, json=body(), timeout=120))
        resp = httpx.get(srv.base_url + "/v1/models", headers={"Authorization": "Bearer any"})
        assert resp.status_code == 200, resp.text
        assert "open" in srv.log().lower(), srv.log()
    finally:
        srv.stop()
