"""A web page must not drive chatd (docs/security.md, "Browser origins and connections"):
JSON routes refuse bodies not declared as JSON (what a page sends without asking), the
``Host`` allow-list refuses DNS-rebound names, an ``Origin`` that is neither chatd's own
nor configured is refused, and CORS is off unless ``--cors-origin`` names the page.

Each attack is sent over HTTP to the real app (in process, FakeEngine), most of them
to an open server (no key), where nothing else would stop them; and each time the test
checks that nothing was generated, stored or readable."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatd.api.origins import BrowserPolicy

from .checks import HI, URL, body, check_error
from .harness import MODEL, Chatd, run_cli, running_chatd

SERVER = "127.0.0.1:8000"  # the Host a browser on this machine sends
EVIL = "http://evil.example"
APP = "http://app.example:3000"  # the origin --cors-origin allows in the CORS tests
JSON_ROUTES = [
    "/v1/chat/completions",
    "/v1/chat/completions/{cid}",
    "/v1/responses",
    "/v1/completions",
]
NOT_JSON = [
    "text/plain",  # fetch(..., {mode: "no-cors"}) and <form enctype="text/plain">
    "text/plain;charset=UTF-8",  # what fetch() sends for a string body
    "application/x-www-form-urlencoded",  # a form; and curl -d without -H
    "multipart/form-data; boundary=x",
    "application/jsonp",
    "text/json",
    None,  # no Content-Type at all
]


@pytest.fixture(scope="module")
async def open_chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    """An open server (no key) on a loopback address, as ``chatd serve`` starts by
    default: loopback Host names, no CORS origin."""
    policy = BrowserPolicy.build([], ())
    async with running_chatd(tmp_path_factory.mktemp("open"), api_keys=[], browsers=policy) as c:
        yield c


@pytest.fixture(scope="module")
async def cors_chatd(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chatd]:
    """A keyed server that lets one other origin's pages call it, and one more name."""
    policy = BrowserPolicy.build(["chat.example.com", "*.corp.example"], [APP])
    async with running_chatd(tmp_path_factory.mktemp("cors"), browsers=policy) as c:
        yield c


def page(origin: str | None = EVIL, host: str = SERVER, **more: str) -> dict[str, str]:
    """The headers a browser sends: the page's ``Origin``, the ``Host`` it addressed."""
    headers = {"Host": host, **more}
    if origin is not None:
        headers["Origin"] = origin
    return headers


async def stored_count(chatd: Chatd) -> int:
    r = await chatd.http(None).get(URL, params={"limit": 100}, headers=page(None))
    assert r.status_code == 200 and not r.json()["has_more"], r.text
    return len(r.json()["data"])


async def stored_id(chatd: Chatd) -> str:
    r = await chatd.http(None).post(URL, json=body(store=True), headers=page(None))
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def no_cors(resp: httpx.Response) -> None:
    assert not [h for h in resp.headers if h.startswith("access-control-")], resp.headers


# -- Content-Type


@pytest.mark.parametrize("content_type", NOT_JSON)
@pytest.mark.parametrize("route", JSON_ROUTES)
async def test_a_json_route_refuses_a_body_not_declared_as_json(
    open_chatd: Chatd, route: str, content_type: str | None
) -> None:
    submitted, stored = len(open_chatd.engine.submitted), await stored_count(open_chatd)
    path = route.format(cid=await stored_id(open_chatd))
    payload = body(store=True, metadata={"k": "v"}, input="hi")
    if route == "/v1/chat/completions/{cid}":
        payload = {"metadata": {"k": "v"}}
    headers = page(None) if content_type is None else page(None, **{"Content-Type": content_type})
    r = await open_chatd.http(None).post(path, content=json.dumps(payload), headers=headers)
    shown = "Missing Content-Type" if content_type is None else f"'{content_type}'"
    check_error(
        r,
        415,
        param=None,
        code="unsupported_content_type",
        contains=(shown, "Content-Type: application/json", "curl"),
    )
    assert len(open_chatd.engine.submitted) == submitted + 1  # the stored_id() one only
    assert await stored_count(open_chatd) == stored + 1
    if route.endswith("{cid}"):
        stored_one = await open_chatd.http(None).get(path, headers=page(None))
        assert stored_one.json()["metadata"] == {}  # not updated


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "Application/JSON", "application/json;"]
)
async def test_application_json_with_parameters_is_json(
    open_chatd: Chatd, content_type: str
) -> None:
    headers = page(None, **{"Content-Type": content_type})
    http = open_chatd.http(None)
    r = await http.post(URL, content=json.dumps(body()), headers=headers)
    assert r.status_code == 200, r.text
    r = await http.post("/v1/responses", content=json.dumps({"model": MODEL, "input": "hi"}),
                        headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    cid = await stored_id(open_chatd)
    r = await http.post(f"{URL}/{cid}", content=b'{"metadata": {"k": "v"}}', headers=headers)
    assert r.status_code == 200 and r.json()["metadata"] == {"k": "v"}, r.text


async def test_the_openai_sdk_sends_application_json(chatd: Chatd) -> None:
    sent: list[str] = []

    async def note(request: httpx.Request) -> None:
        sent.append(request.headers.get("content-type", ""))

    client = chatd.sdk()
    client._client.event_hooks["request"].append(note)  # the SDK's httpx client
    await client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    await client.responses.create(model=MODEL, input="hi", store=False)
    assert sent == ["application/json", "application/json"]


async def test_the_key_is_checked_before_the_content_type(chatd: Chatd) -> None:
    r = await chatd.http("sk-wrong-0123456789").post(URL, content=b"{}")
    check_error(r, 401, param=None, code="invalid_api_key")


# -- Host


@pytest.mark.parametrize("path", [URL, "/v1/channels", "/v1/models", "/health", "/"])
@pytest.mark.parametrize(
    "host", ["attacker.example:8000", "attacker.example", "10.1.2.3:8000", "localhost.evil:8000"]
)
async def test_a_dns_rebound_name_is_refused(open_chatd: Chatd, path: str, host: str) -> None:
    """A page of attacker.example rebound to 127.0.0.1 is same-origin with chatd: no
    Origin to check, but its Host is the attacker's name."""
    r = await open_chatd.http(None).get(path, headers={"Host": host})
    check_error(r, 400, param=None, code="invalid_host", contains=("--allowed-host",))
    assert r.headers["x-request-id"].startswith("req_")
    no_cors(r)


async def test_a_rebound_page_cannot_generate_or_store(open_chatd: Chatd) -> None:
    submitted, stored = len(open_chatd.engine.submitted), await stored_count(open_chatd)
    host = "attacker.example:8000"
    for headers in (page(None, host), page(f"http://{host}", host)):  # GET-like and POST-like
        r = await open_chatd.http(None).post(URL, json=body(store=True), headers=headers)
        check_error(r, 400, param=None, code="invalid_host")
    assert len(open_chatd.engine.submitted) == submitted
    assert await stored_count(open_chatd) == stored


@pytest.mark.parametrize(
    "host", ["localhost:8000", "LOCALHOST", "localhost.", "127.0.0.1", SERVER, "[::1]:1234"]
)
async def test_loopback_names_are_served(open_chatd: Chatd, host: str) -> None:
    r = await open_chatd.http(None).get("/v1/models", headers={"Host": host})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("chat.example.com", 200),
        ("Chat.Example.com:8443", 200),
        ("a.corp.example", 200),
        ("b.a.corp.example:1", 200),
        ("corp.example", 400),  # *.corp.example: the names under it only
        ("chat.example.com.evil", 400),
        ("localhost:9", 200),  # loopback names stay allowed
    ],
)
async def test_configured_names_are_served(cors_chatd: Chatd, host: str, status: int) -> None:
    r = await cors_chatd.http().get("/v1/models", headers={"Host": host})
    assert r.status_code == status, r.text


async def test_any_name_without_a_list(chatd: Chatd) -> None:
    """create_app's default (and ``--allowed-host '*'``): no Host is refused."""
    r = await chatd.http().get("/v1/models", headers={"Host": "anything.example:1"})
    assert r.status_code == 200, r.text


# -- Origin and CORS


ATTACKS: list[tuple[str, str, dict[str, Any]]] = [
    # (method, path, request keywords): what a page's fetch() or form sends
    ("POST", URL, {"content": json.dumps(body(store=True)),
                   "headers": {"Content-Type": "text/plain;charset=UTF-8"}}),
    ("POST", URL, {"json": body(store=True)}),
    ("POST", "/v1/responses", {"json": {"model": MODEL, "input": "hi", "store": True}}),
    ("GET", URL, {}),
    ("GET", "/v1/channels", {}),
    ("GET", "/metrics", {}),
    ("GET", "/v1/models", {}),
    ("DELETE", f"{URL}/chatcmpl-x", {}),
]  # fmt: skip


@pytest.mark.parametrize("origin", [EVIL, "http://localhost:9999", "http://127.0.0.1:1", "null"])
@pytest.mark.parametrize(("method", "path", "kw"), ATTACKS)
async def test_a_page_of_another_origin_is_refused(
    open_chatd: Chatd, origin: str, method: str, path: str, kw: dict[str, Any]
) -> None:
    submitted, stored = len(open_chatd.engine.submitted), await stored_count(open_chatd)
    kw = dict(kw)  # shared by the origins' cases
    headers = {**page(origin), **kw.pop("headers", {})}
    r = await open_chatd.http(None).request(method, path, headers=headers, **kw)
    check_error(r, 403, param=None, code="origin_not_allowed", contains=("--cors-origin",))
    no_cors(r)
    assert len(open_chatd.engine.submitted) == submitted
    assert await stored_count(open_chatd) == stored


@pytest.mark.parametrize("origin", [EVIL, APP, "null"])
async def test_without_cors_origins_a_preflight_is_never_allowed(
    open_chatd: Chatd, origin: str
) -> None:
    r = await open_chatd.http(None).options(
        URL,
        headers=page(
            origin,
            **{
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        ),
    )
    assert r.status_code == 403, r.text
    no_cors(r)


async def test_the_servers_own_page_is_served(open_chatd: Chatd) -> None:
    """The playground: its Origin is the address the browser sent the request to."""
    for origin, host in [
        (f"http://{SERVER}", SERVER),
        ("http://localhost:8000", "localhost:8000"),
        ("https://localhost", "localhost"),  # behind a TLS proxy that keeps the Host
        ("http://[::1]:8000", "[::1]:8000"),
    ]:
        r = await open_chatd.http(None).post(URL, json=body(), headers=page(origin, host))
        assert r.status_code == 200, (origin, r.text)
        no_cors(r)
        r = await open_chatd.http(None).get("/", headers=page(origin, host))
        assert r.status_code == 200, origin


async def test_an_allowed_origin_gets_a_preflight_answer(cors_chatd: Chatd) -> None:
    asked = (
        "authorization, content-type, x-stainless-os, x-stainless-retry-count,"
        " x-stainless-package-version, x-client-request-id, bad header"
    )
    r = await cors_chatd.http(None).options(
        URL,
        headers=page(
            APP,
            **{
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": asked,
                "Access-Control-Request-Private-Network": "true",
            },
        ),
    )
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert set(r.headers["access-control-allow-methods"].split(", ")) == {"GET", "POST", "DELETE"}
    allowed = {h.strip() for h in r.headers["access-control-allow-headers"].split(",")}
    assert allowed == {
        "authorization",
        "content-type",
        "x-stainless-os",
        "x-stainless-retry-count",
        "x-stainless-package-version",
        "x-client-request-id",
    }
    assert "Origin" in r.headers["vary"]
    assert int(r.headers["access-control-max-age"]) > 0
    assert r.headers["access-control-allow-private-network"] == "true"
    assert "access-control-allow-credentials" not in r.headers  # keys go in a header
    assert r.headers["x-request-id"].startswith("req_")


async def test_an_allowed_origin_calls_and_reads(cors_chatd: Chatd) -> None:
    r = await cors_chatd.http().post(URL, json=body(), headers=page(APP))
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == APP
    assert "x-request-id" in r.headers["access-control-expose-headers"]
    assert "x-chatd-tools-not-run" in r.headers["access-control-expose-headers"]
    assert r.headers["vary"] == "Origin"
    # its errors are readable too (the SDK shows them)
    r = await cors_chatd.http(None).get(URL, headers=page(APP))
    check_error(r, 401, param=None, code=None, contains=("API key",))
    assert r.headers["access-control-allow-origin"] == APP


async def test_an_allowed_origin_still_needs_a_key(cors_chatd: Chatd) -> None:
    submitted = len(cors_chatd.engine.submitted)
    r = await cors_chatd.http(None).post(URL, json=body(store=True), headers=page(APP))
    assert r.status_code == 401, r.text
    assert len(cors_chatd.engine.submitted) == submitted


@pytest.mark.parametrize("origin", [EVIL, "http://app.example", "https://app.example:3000"])
async def test_other_origins_stay_refused_when_one_is_allowed(
    cors_chatd: Chatd, origin: str
) -> None:
    r = await cors_chatd.http().post(URL, json=body(), headers=page(origin))
    check_error(r, 403, param=None, code="origin_not_allowed")
    no_cors(r)
    r = await cors_chatd.http(None).options(
        URL, headers=page(origin, **{"Access-Control-Request-Method": "POST"})
    )
    assert r.status_code == 403
    no_cors(r)


async def test_without_origin_a_cors_server_answers_without_cors_headers(
    cors_chatd: Chatd,
) -> None:
    r = await cors_chatd.http().get("/v1/models", headers={"Host": SERVER})
    assert r.status_code == 200
    no_cors(r)
    assert r.headers["vary"] == "Origin"  # a cache keeps answers apart per origin


async def test_any_origin(tmp_path: Path) -> None:
    async with running_chatd(tmp_path, browsers=BrowserPolicy.build(None, ["*"])) as c:
        r = await c.http().post(URL, json=body(), headers=page(EVIL, "x.example"))
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == EVIL


# -- the command line


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--allowed-host", "chat.example.com:8000", "without a port"),
        ("--allowed-host", "a/b", "is not a host name"),
        ("--cors-origin", "app.example.com", "is not an origin"),
        ("--cors-origin", "https://app.example.com/path", "is not an origin"),
        ("--header-timeout", "-1", "not a number of seconds"),
        ("--max-connections", "-1", "not a whole number"),
    ],
)
def test_bad_flags_are_refused(flag: str, value: str, says: str) -> None:
    code, _, err = run_cli("serve", flag, value)
    assert code == 2 and says in err, err
