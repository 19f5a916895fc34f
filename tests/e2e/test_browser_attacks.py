"""A real web page tries to drive an open ``chatd serve`` (no key, the embedded model)
from a real headless Chromium (tests/playground_browser.py), and fails
(docs/security.md, "Browser origins and connections"):

- from another origin (a second local HTTP server: 127.0.0.1 on another port), it sends
  what a page can send without asking (a ``text/plain`` POST in ``no-cors`` mode, a form
  posting ``enctype="text/plain"`` into a hidden frame) and what needs the server's
  consent (a JSON POST, reading the stored completions and ``/v1/channels``). The
  server's request log shows every one arrived and was refused; nothing was generated
  or stored, and the page read nothing.
- through DNS rebinding: Chromium resolves attacker.example to 127.0.0.1 (a resolver
  rule), the page is served as http://attacker.example:PORT/ (PORT: chatd's), and its
  same-origin requests reach chatd with ``Host: attacker.example:PORT``: refused, so the
  page reads only the refusal.

Controls show the page's code would have worked: chatd's own page (the playground's
origin) generates and stores with the same fetch, and the one origin the server allows
(``--cors-origin http://localhost:PORT2``: the same attacker server under another name)
reads an answer."""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from conftest import MODEL, Server, free_port
from playground_browser import launch, skip_without_browser

REBOUND = "attacker.example"
PAGE = b"<!doctype html><title>a page on the web</title><p>nothing to see"
# Chromium's local-network checks would stop the rebound page's requests before they
# leave the browser; other browsers (and older Chromiums) have none: chatd must stop
# them itself, so the test turns them off.
ARGS = (
    f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1",
    "--disable-features=LocalNetworkAccessChecks,PrivateNetworkAccessSendPreflights,"
    "PrivateNetworkAccessRespectPreflightResults,BlockInsecurePrivateNetworkRequests",
)

# Every way in, run by the page: each result is what the page could see.
ATTACK = """async ([target, model]) => {
  const ask = JSON.stringify({model, store: true, max_tokens: 4,
                              messages: [{role: 'user', content: 'hi'}]});
  const results = {};
  async function attempt(name, request) {
    try {
      const r = await request();
      results[name] = {status: r.status, type: r.type,
                       text: r.type === 'opaque' ? '' : await r.text()};
    } catch (e) {
      results[name] = {error: String(e)};
    }
  }
  await attempt('text_plain', () => fetch(target + '/v1/chat/completions', {
    method: 'POST', mode: 'no-cors', headers: {'Content-Type': 'text/plain'}, body: ask}));
  await attempt('responses_text_plain', () => fetch(target + '/v1/responses', {
    method: 'POST', mode: 'no-cors', body: JSON.stringify({model, input: 'hi'})}));
  await attempt('json', () => fetch(target + '/v1/chat/completions', {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: ask}));
  await attempt('stored', () => fetch(target + '/v1/chat/completions'));
  await attempt('channels', () => fetch(target + '/v1/channels'));
  await attempt('models', () => fetch(target + '/v1/models'));
  // a form: a navigation, not a fetch; its body is JSON with a key holding the '='
  await new Promise(resolve => {
    const frame = document.createElement('iframe');
    frame.name = 'sink';
    frame.onload = resolve;
    document.body.append(frame);
    const form = document.createElement('form');
    Object.assign(form, {method: 'POST', action: target + '/v1/chat/completions',
                         enctype: 'text/plain', target: 'sink'});
    const field = document.createElement('input');
    field.name = ask.slice(0, -1) + ', "x": "';
    field.value = '"}';
    form.append(field);
    document.body.append(form);
    form.submit();
    setTimeout(resolve, 30000);
  });
  return results;
}"""


@dataclass
class Site:
    """An attacker's web server: another origin than chatd's."""

    port: int

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/"


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), _PageHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield Site(port)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def open_server(site: Site) -> Iterator[Server]:
    """No key; one origin allowed (``localhost`` on the attacker's port), one more name."""
    srv = Server(
        "--cors-origin",
        site.url("localhost").rstrip("/"),
        "--allowed-host",
        "chat.example.com",
        "--n-ctx",
        "4096",
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    skip_without_browser()
    with launch(*ARGS) as b:
        yield b


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(120_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def stored(server: Server) -> list[dict[str, Any]]:
    r = httpx.get(server.base_url + "/v1/chat/completions", params={"limit": 100})
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def request_lines(server: Server) -> list[str]:
    return [line for line in server.log().splitlines() if "chatd.requests" in line]


def refused(server: Server, method: str, path: str, status: int) -> bool:
    pattern = re.compile(rf"method={method} path={re.escape(path)} status={status}\b")
    return any(pattern.search(line) for line in request_lines(server))


def test_a_page_of_another_origin_cannot_drive_an_open_server(
    page: Any, site: Site, open_server: Server
) -> None:
    page.goto(site.url())
    seen = page.evaluate(ATTACK, [open_server.base_url, MODEL])

    # what the page got: opaque answers and network errors, nothing to read
    assert seen["text_plain"] == {"status": 0, "type": "opaque", "text": ""}, seen
    assert seen["responses_text_plain"]["type"] == "opaque", seen
    for name in ("json", "stored", "channels", "models"):
        assert "Failed to fetch" in seen[name].get("error", ""), (name, seen)
    # the server saw each one and refused it before any route ran (a request's log line
    # is written when its response has ended: waited for, never assumed already there)
    expected = [
        ("POST", "/v1/chat/completions"),  # the no-cors fetch, the form
        ("POST", "/v1/responses"),
        ("OPTIONS", "/v1/chat/completions"),  # the JSON POST's preflight
        ("GET", "/v1/chat/completions"),
        ("GET", "/v1/channels"),
        ("GET", "/v1/models"),
    ]

    def all_refused() -> bool:
        n_403 = len([ln for ln in request_lines(open_server) if "status=403" in ln])
        return n_403 >= 7 and all(refused(open_server, m, p, 403) for m, p in expected)

    deadline = time.monotonic() + 120
    while not all_refused() and time.monotonic() < deadline:
        time.sleep(0.2)
    for method, path in expected:
        assert refused(open_server, method, path, 403), (method, path, request_lines(open_server))
    assert len([ln for ln in request_lines(open_server) if "status=403" in ln]) >= 7
    # nothing generated, nothing stored
    assert not [ln for ln in request_lines(open_server) if "route=local" in ln]
    assert stored(open_server) == []


def test_a_dns_rebound_page_reads_only_refusals(page: Any, open_server: Server) -> None:
    port = open_server.port
    origin = f"http://{REBOUND}:{port}"

    def serve_the_attackers_page(route: Any) -> None:
        if route.request.url == origin + "/":  # the first answer, from the attacker's IP
            route.fulfill(status=200, content_type="text/html", body=PAGE)
        else:  # then attacker.example is 127.0.0.1 (the resolver rule)
            route.continue_()

    page.route("**/*", serve_the_attackers_page)
    page.goto(origin + "/")
    seen = page.evaluate(ATTACK, [origin, MODEL])
    for name in ("text_plain", "json", "stored", "channels", "models"):
        assert seen[name]["status"] == 400, (name, seen)
        assert '"invalid_host"' in seen[name]["text"], (name, seen)
    assert "resp_" not in seen["responses_text_plain"].get("text", "")
    assert refused(open_server, "GET", "/v1/channels", 400)
    assert refused(open_server, "POST", "/v1/chat/completions", 400)
    assert stored(open_server) == []


def test_a_rebound_host_is_refused_over_raw_http(open_server: Server) -> None:
    for path in ("/v1/chat/completions", "/v1/channels", "/"):
        r = httpx.get(open_server.base_url + path, headers={"Host": f"{REBOUND}:1"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_host", r.text
    ok = httpx.get(open_server.base_url + "/v1/models", headers={"Host": "chat.example.com"})
    assert ok.status_code == 200, ok.text  # --allowed-host


def test_the_servers_own_page_and_the_allowed_origin_get_through(
    page: Any, site: Site, open_server: Server
) -> None:
    """The controls: the same requests from chatd's own origin (the playground's) are
    served; from the allowed origin, the JSON one is served and read across origins."""
    before = len(stored(open_server))
    page.goto(open_server.base_url + "/")
    own = page.evaluate(ATTACK, [open_server.base_url, MODEL])
    assert own["json"]["status"] == 200 and "chat.completion" in own["json"]["text"], own
    assert own["stored"]["status"] == 200 and own["channels"]["status"] == 200, own
    # a text/plain body is still no JSON, even from chatd's own origin
    assert own["text_plain"]["status"] == 415 and "Content-Type" in own["text_plain"]["text"]
    assert len(stored(open_server)) == before + 1

    page.goto(site.url("localhost"))
    allowed = page.evaluate(ATTACK, [open_server.base_url, MODEL])
    assert allowed["json"]["status"] == 200, allowed
    assert "chat.completion" in allowed["json"]["text"], allowed
    assert allowed["channels"]["status"] == 200, allowed
    assert len(stored(open_server)) == before + 2
