"""chatd as a gateway: the real app over a FakeEngine, served from a thread of this
process on 127.0.0.1 (its upstreams are reached over real sockets with aiohttp, and
``chatd channels`` and a client leaving a stream need a real port), in front of the
one fake upstream (tests/fakes/upstream.py, in another thread): routing, failover
before the first byte, truncated streams that never look complete, cooldown, usage and
store for relayed answers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fakes.upstream import UPSTREAM_KEY

from chatd.upstream import channels

from .harness import (
    API_KEY,
    MODEL,
    ThreadServer,
    chatd_in_thread,
    fake_upstream,
    free_port,
    run_cli,
)

# The second channel of the failing ids: another upstream that answers, and only with
# the key chatd reads from ``api_key_env`` (the fake's "keyed" model).
REAL = "keyed"
Server = ThreadServer


@pytest.fixture(scope="module")
def fake() -> Iterator[str]:
    with fake_upstream() as upstream:
        yield upstream.url


@pytest.fixture(scope="module")
def gateway(fake: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    real = fake + "/v1"

    def channel(name: str, url: str, models: str, priority: int, extra: str = "") -> str:
        return (
            f'[[channels]]\nname = "{name}"\nbase_url = "{url}"\nmodels = [{models}]\n'
            f"priority = {priority}\n{extra}\n"
        )

    # The local model is also a route (priority 1) for two ids served by channels.
    local = (
        f'[[models]]\nid = "{MODEL}"\npath = "embedded"\n'
        'aliases = ["mfallback", "mlocalfirst"]\npriority = 1\n'
    )
    toml = "".join(
        [
            local,
            channel("deadfirst", "http://127.0.0.1:1/v1", '"mfallback"', 0),
            channel("oklast", fake + "/v1", '{ id = "mlocalfirst", upstream = "ok" }', 2),
            channel("fake500", fake + "/v1", '{ id = "m500", upstream = "500" }', 0),
            channel("fake429", fake + "/v1", '{ id = "m429", upstream = "429" }', 0),
            channel(
                "fakehang",
                fake + "/v1",
                '{ id = "mhang", upstream = "hang" }',
                0,
                "first_token_timeout = 1\nread_timeout = 1",
            ),
            channel("fake400", fake + "/v1", '{ id = "m400", upstream = "400" }', 0),
            channel("fakehtml", fake + "/v1", '{ id = "mhtml", upstream = "html" }', 0),
            channel("fakeslow", fake + "/v1", '{ id = "mslow", upstream = "slow" }', 0),
            channel(
                "flaky",
                fake + "/v1",
                '{ id = "mflaky", upstream = "flaky" }',
                0,
                "failures_before_cooldown = 1\ncooldown_seconds = 300",
            ),
            channel("fakecut", fake + "/v1", '{ id = "mcut", upstream = "cut" }', 0),
            channel("fakeok", fake + "/v1", '{ id = "mok", upstream = "ok" }', 0),
            channel("fakenousage", fake + "/v1", '{ id = "mnousage", upstream = "nousage" }', 0),
            channel(
                "dead",
                "http://127.0.0.1:1/v1",
                '"mdead"',
                0,
                "failures_before_cooldown = 2\ncooldown_seconds = 300",
            ),
            channel(
                "real",
                real,
                ", ".join(
                    f'{{ id = "{m}", upstream = "{REAL}" }}'
                    for m in ("m500", "m429", "mhang", "m400", "mhtml")
                ),
                1,
                'api_key_env = "REAL_UPSTREAM_KEY"',
            ),
        ]
    )
    saved = os.environ.get("REAL_UPSTREAM_KEY")
    os.environ["REAL_UPSTREAM_KEY"] = UPSTREAM_KEY
    try:
        with chatd_in_thread(tmp_path_factory.mktemp("gw"), api_keys=[], config=toml) as srv:
            yield srv
    finally:
        if saved is None:
            del os.environ["REAL_UPSTREAM_KEY"]
        else:
            os.environ["REAL_UPSTREAM_KEY"] = saved


def ask(srv: Server, model: str, **kw: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, **kw}
    return httpx.post(srv.base_url + "/v1/chat/completions", json=body, timeout=60)


def usage_row(gateway: Server, model: str, requests: int) -> list[str]:
    """The `chatd usage` row of a model, once it counts ``requests`` (usage is written
    in the background, about once a second)."""
    deadline = time.monotonic() + 120  # a guard against a hang, never reached
    while True:
        out = run_cli("usage", "--data-dir", str(gateway.data_dir))[1]
        rows = [ln.split() for ln in out.splitlines() if f" {model} " in ln]
        if rows and int(rows[0][3]) >= requests or time.monotonic() > deadline:
            assert rows, out
            return rows[0]
        time.sleep(0.2)


def events(r: httpx.Response) -> list[str]:
    return [ln[6:] for ln in r.text.splitlines() if ln.startswith("data: ")]


@pytest.mark.parametrize("model", ["m500", "m429", "mhang", "mhtml"])
@pytest.mark.parametrize("stream", [False, True])
def test_failover_before_the_first_byte(gateway: Server, model: str, stream: bool) -> None:
    r = ask(gateway, model, stream=stream)
    assert r.status_code == 200, r.text
    if stream:
        ev = events(r)
        assert ev[-1] == "[DONE]"
        chunks = [json.loads(e) for e in ev[:-1]]
        assert all(c["model"] == model for c in chunks)
        assert "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
    else:
        data = r.json()
        assert data["model"] == model  # the public id, not the upstream's
        assert data["choices"][0]["message"]["content"]


def test_client_errors_are_passed_back_not_retried(gateway: Server, fake: str) -> None:
    before = httpx.get(fake + "/calls").json().get("400", 0)
    r = ask(gateway, "m400")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "foo" and "bad field" in r.json()["error"]["message"]
    assert httpx.get(fake + "/calls").json()["400"] == before + 1


def test_truncated_stream_never_looks_complete(gateway: Server) -> None:
    r = ask(gateway, "mcut", stream=True)
    ev = events(r)
    assert "[DONE]" not in ev
    assert "error" in json.loads(ev[-1])
    content = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in ev[:-1])
    assert content == "Hello"  # what arrived was relayed as it came


def test_dead_channel_cools_down_and_model_becomes_unavailable(gateway: Server) -> None:
    for _ in range(2):
        r = ask(gateway, "mdead")
        assert r.status_code == 503 and "channel" in r.json()["error"]["message"]
    listed = httpx.get(gateway.base_url + "/v1/models").json()
    assert "mdead" not in [m["id"] for m in listed["data"]]
    assert "mok" in [m["id"] for m in listed["data"]]
    r = ask(gateway, "mdead", stream=True)
    assert r.status_code == 503  # refused before any SSE byte
    assert "no channel is available" in r.json()["error"]["message"]


def test_usage_chunk_only_when_asked(gateway: Server) -> None:
    plain = [json.loads(e) for e in events(ask(gateway, "mok", stream=True))[:-1]]
    assert all("usage" not in c for c in plain)
    asked = [
        json.loads(e)
        for e in events(ask(gateway, "mok", stream=True, stream_options={"include_usage": True}))[
            :-1
        ]
    ]
    assert asked[-1]["choices"] == [] and asked[-1]["usage"]["total_tokens"] == 9


def test_store_and_usage_for_relayed_answers(gateway: Server) -> None:
    made = ask(gateway, "mok", store=True).json()
    assert made["id"] != "chatcmpl-fake"  # a stored answer gets chatd's own, unique id
    got = httpx.get(gateway.base_url + f"/v1/chat/completions/{made['id']}").json()
    assert got["choices"][0]["message"]["content"] == "Hello"
    streamed = ask(gateway, "mok", store=True, stream=True)
    ids = {json.loads(e)["id"] for e in events(streamed)[:-1]}
    assert len(ids) == 1 and made["id"] not in ids
    cid = ids.pop()
    got = httpx.get(gateway.base_url + f"/v1/chat/completions/{cid}").json()
    assert got["choices"][0]["message"]["content"] == "Hello" and got["model"] == "mok"
    _, _, _, requests, prompt, completion, _estimated = usage_row(gateway, "mok", 2)
    assert int(prompt) == 7 * int(requests) and int(completion) == 2 * int(requests)


def test_local_alias_and_unknown_model(gateway: Server) -> None:
    assert ask(gateway, MODEL).status_code == 200
    r = ask(gateway, "nobody-serves-this")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_channels_endpoint(gateway: Server) -> None:
    data = httpx.get(gateway.base_url + "/v1/channels").json()["data"]
    by_name = {c["name"]: c for c in data}
    assert by_name["real"]["healthy"] and by_name["real"]["priority"] == 1
    assert set(by_name["real"]["models"]) == {"m500", "m429", "mhang", "m400", "mhtml"}
    ask(gateway, "mdead")
    ask(gateway, "mdead")
    dead = {c["name"]: c for c in httpx.get(gateway.base_url + "/v1/channels").json()["data"]}
    assert not dead["dead"]["healthy"] and dead["dead"]["cooling_seconds_left"] > 0


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("[[channels]]\nname = 'a'\n", "channels[0].base_url"),
        ("[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = []\n", "channels[0].models"),
        (
            "[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\ncolour = 1\n",
            "colour",
        ),
        (
            "[[channels]]\nname = 'a'\nbase_url = 'http://x/v1'\nmodels = ['m']\n"
            "api_key_env = 'CHATD_TEST_UNSET_VAR'\n",
            "CHATD_TEST_UNSET_VAR",
        ),
        ("[server]\nport = 1\n", "server"),
        ("[[models]]\nid = 3\n", "models[0].id"),
        ("[[models]]\nid = 'x'\npriority = 'high'\n", "models[0].priority"),
        ("[[models]]\nid = 'x'\nweight = 0\n", "models[0].weight"),
        ("[[models]]\nid = 'x'\naliases = 'y'\n", "models[0].aliases"),
        ("not toml = = =", "chatd.toml"),
    ],
)
def test_invalid_config_fails_at_start_up(tmp_path: Path, toml: str, words: str) -> None:
    path = tmp_path / "chatd.toml"
    path.write_text(toml)
    code, _, stderr = run_cli("serve", "--config", str(path), "--port", str(free_port()))
    assert code == 1
    assert "invalid configuration" in stderr and words in stderr
    assert "Traceback" not in stderr


def test_usage_estimated_when_the_upstream_sends_none(gateway: Server) -> None:
    assert ask(gateway, "mnousage").json()["choices"][0]["message"]["content"] == "Hello"
    ev = events(ask(gateway, "mnousage", stream=True, stream_options={"include_usage": True}))
    assert ev[-1] == "[DONE]"
    _, _, _, requests, prompt, completion, estimated = usage_row(gateway, "mnousage", 2)
    assert int(requests) == int(estimated) == 2  # counted by chatd, and marked so
    assert int(prompt) > 0 and int(completion) == 2  # "Hello" is one token, twice


@pytest.mark.parametrize("stream", [False, True])
def test_local_engine_is_the_fallback_when_channels_fail(gateway: Server, stream: bool) -> None:
    """`mfallback`: a dead channel first (priority 0), then the local model (priority 1)."""
    r = ask(gateway, "mfallback", stream=stream)
    assert r.status_code == 200, r.text
    if stream:
        ev = events(r)
        assert ev[-1] == "[DONE]"
        first = json.loads(ev[0])
        assert first["model"] == "mfallback" and first["system_fingerprint"].startswith("fp_")
    else:
        data = r.json()
        assert data["model"] == "mfallback" and data["usage"]["prompt_tokens"] > 7
        assert data["choices"][0]["message"]["content"] != "Hello"  # not the fake's answer


@pytest.mark.parametrize("stream", [False, True])
def test_local_first_then_channel_for_what_local_cannot_do(gateway: Server, stream: bool) -> None:
    """`mlocalfirst`: the local model first (priority 1), a channel after it (priority 2);
    a field the local engine refuses goes to the channel, which supports it."""
    local = ask(gateway, "mlocalfirst", stream=stream)
    relayed = ask(gateway, "mlocalfirst", stream=stream, web_search_options={})
    assert local.status_code == relayed.status_code == 200, relayed.text
    if stream:
        text = [
            "".join(
                json.loads(e)["choices"][0]["delta"].get("content") or ""
                for e in events(r)[:-1]
                if json.loads(e)["choices"]
            )
            for r in (local, relayed)
        ]
    else:
        text = [r.json()["choices"][0]["message"]["content"] for r in (local, relayed)]
    assert text[0] != "Hello" and text[1] == "Hello"


def test_models_status_names_routes_and_reasons(gateway: Server) -> None:
    ask(gateway, "mdead")
    ask(gateway, "mdead")
    status = {m["id"]: m for m in httpx.get(gateway.base_url + "/v1/channels").json()["models"]}
    assert status["mfallback"]["routes"] == ["deadfirst", f"local:{MODEL}"]
    assert status["mfallback"]["available"]  # the local route is always there
    assert not status["mdead"]["available"]
    assert "no channel is available" in status["mdead"]["reason"]
    assert "dead cooling down" in status["mdead"]["reason"]
    assert status[MODEL] == {
        "id": MODEL,
        "available": True,
        "reason": None,
        "routes": [f"local:{MODEL}"],
    }


def test_model_states_show_each_route_for_pickers(gateway: Server) -> None:
    """``/chatd/models`` (the playground's and ``chatd models``' list) keeps a model whose
    only channel cools down, with that route's state, where /v1/models drops it."""
    ask(gateway, "mdead")
    ask(gateway, "mdead")
    resp = httpx.get(gateway.base_url + "/chatd/models")
    assert resp.status_code == 200
    rows = {m["id"]: m for m in resp.json()["data"]}
    dead = rows["mdead"]
    assert dead["object"] == "chatd.model_state" and not dead["available"]
    [route] = dead["routes"]
    assert route["name"] == "dead" and route["kind"] == "channel"
    assert route["state"] == "cooling_down" and route["cooling_seconds_left"] > 0
    [local] = rows[MODEL]["routes"]
    assert {k: local[k] for k in ("name", "kind", "state")} == {
        "name": f"local:{MODEL}",
        "kind": "local",
        "state": "loaded",
    }
    assert local["context_window"] == 8192 and local["defaults"]["temperature"] == 1.0
    assert [r["kind"] for r in rows["mfallback"]["routes"]] == ["channel", "local"]
    listed = {m["id"] for m in httpx.get(gateway.base_url + "/v1/models").json()["data"]}
    assert "mdead" not in listed and "mfallback" in listed


def test_channels_cli(gateway: Server) -> None:
    ask(gateway, "mdead")
    ask(gateway, "mdead")
    code, stdout, stderr = run_cli("channels", "--url", gateway.base_url)
    assert code == 0, stdout + stderr
    lines = stdout.splitlines()
    dead = next(ln for ln in lines if ln.startswith("dead "))
    assert "cooling down" in dead
    mdead = lines.index(next(ln for ln in lines if ln.startswith("mdead ")))
    assert "UNAVAILABLE" in lines[mdead] and "no channel is available" in lines[mdead + 1]
    assert "available" in next(ln for ln in lines if ln.startswith("mok "))


def test_models_cli(gateway: Server) -> None:
    """``chatd models``: each id with its routes' states, a cooled channel and why."""
    ask(gateway, "mdead")
    ask(gateway, "mdead")
    code, stdout, stderr = run_cli("models", "--url", gateway.base_url)
    assert code == 0, stdout + stderr
    lines = stdout.splitlines()
    local = next(ln for ln in lines if ln.startswith(MODEL + " "))
    assert local.split()[1:] == ["yes", f"local:{MODEL}", "(loaded)"]
    mdead = lines.index(next(ln for ln in lines if ln.startswith("mdead ")))
    assert lines[mdead].split()[1:4] == ["NO", "dead", "(cooling_down"]
    assert "no channel is available" in lines[mdead + 1]
    fallback = next(ln for ln in lines if ln.startswith("mfallback "))
    assert fallback.split()[1] == "yes"  # the local route serves it, whatever deadfirst's state
    assert fallback.endswith(f", local:{MODEL} (loaded)") and " deadfirst (" in fallback
    code, stdout, _ = run_cli("models", "--url", gateway.base_url, "--json")
    assert code == 0
    body = json.loads(stdout)
    assert body["object"] == "list" and "mdead" in {m["id"] for m in body["data"]}


def test_models_cli_without_a_server_or_with_a_bad_key(tmp_path: Path) -> None:
    code, stdout, stderr = run_cli("models", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and stdout == "" and "cannot reach" in stderr
    with chatd_in_thread(tmp_path, api_keys=[API_KEY]) as server:
        code, stdout, stderr = run_cli("models", "--url", server.base_url, "--api-key", "sk-bad9")
        assert code == 1 and stdout == ""
        assert "answered 401: Incorrect API key provided" in stderr and "sk-bad9" not in stderr


def test_channels_cli_without_a_server_or_with_a_bad_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, stdout, _ = run_cli("channels", "--url", f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach" in stdout
    with chatd_in_thread(tmp_path, api_keys=[API_KEY]) as server:
        code, stdout, _ = run_cli("channels", "--url", server.base_url, "--api-key", "sk-wrong")
        assert code == 1 and "401" in stdout
        assert "sk-wrong" not in stdout  # the key is redacted in the server's message
        monkeypatch.setenv("CHATD_API_KEY", API_KEY)
        code, stdout, _ = run_cli("channels", "--url", server.base_url)
        assert code == 0 and "(no channels)" in stdout and MODEL in stdout


def test_a_cooled_channel_is_probed_again_and_recovers(
    gateway: Server, fake: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cooldown (300 s) is lived on the channels' clock (``time.monotonic`` in
    upstream/channels.py, moved forward by the test): the checks made during it cannot
    see it end early on a slow run, and its end needs no real wait."""
    skew = [0.0]
    monkeypatch.setattr(
        channels, "time", SimpleNamespace(monotonic=lambda: time.monotonic() + skew[0])
    )
    httpx.post(fake + "/flaky/down")
    r = ask(gateway, "mflaky")
    assert r.status_code == 503  # its only channel failed, and now cools down
    models = httpx.get(gateway.base_url + "/v1/models").json()["data"]
    assert "mflaky" not in [m["id"] for m in models]
    assert ask(gateway, "mflaky", stream=True).status_code == 503  # skipped: not even tried
    calls = httpx.get(fake + "/calls").json()["flaky"]
    httpx.post(fake + "/flaky/up")
    skew[0] = 301.0  # the cooldown is over: the next request probes the channel
    models = httpx.get(gateway.base_url + "/v1/models").json()["data"]
    assert "mflaky" in [m["id"] for m in models]
    r = ask(gateway, "mflaky", stream=True)
    assert r.status_code == 200 and events(r)[-1] == "[DONE]"
    assert httpx.get(fake + "/calls").json()["flaky"] == calls + 1
    state = {c["name"]: c for c in httpx.get(gateway.base_url + "/v1/channels").json()["data"]}
    assert state["flaky"]["healthy"] and state["flaky"]["failures"] == 0


def test_requests_for_upstream_only_models_pass_values_through_and_drop_unknown_fields(
    gateway: Server, fake: str
) -> None:
    """The upstream judges the values of the fields OpenAI's API defines (a value chatd's
    engine would refuse reaches it as sent); a field no channel allows (newer than the
    contract, chatd's sampling extensions on a default channel) is dropped, not sent."""
    sent = {
        "temperature": 7,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "reasoning_effort": "max",
    }
    dropped = {
        "future_param": {"x": [1, 2]},
        "top_k": -5,
        "min_p": 3,
        "repetition_penalty": 0,
        "min_tokens": 10**6,
    }
    for stream in (False, True):
        r = ask(gateway, "mok", stream=stream, **sent, **dropped)
        assert r.status_code == 200, r.text
        got = httpx.get(fake + "/last").json()["ok"]
        assert got["model"] == "ok"  # mapped to the upstream's id
        assert {k: got[k] for k in sent} == sent
        assert not set(dropped) & set(got)
        if stream:
            assert got["stream_options"] == {"include_usage": True}  # asked for accounting


def test_ids_with_a_local_route_keep_the_whole_contract(gateway: Server) -> None:
    for model in (MODEL, "mlocalfirst"):
        r = ask(gateway, model, future_param=1)
        assert r.status_code == 400
        assert (
            r.json()["error"]["message"] == "Unrecognized request argument supplied: future_param"
        )


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"stream": "yes"}, "stream"),
        ({"store": 1}, "store"),
        (
            {"stream": True, "stream_options": {"include_usage": "no"}},
            "stream_options.include_usage",
        ),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k" * 65: "v"}}, "metadata." + "k" * 65),
        ({"messages": []}, "messages"),
        ({"messages": ["Hi"]}, "messages[0]"),
    ],
)
def test_relayed_requests_check_the_fields_chatd_acts_on(
    gateway: Server, fields: dict, param: str
) -> None:
    r = ask(gateway, "mok", **fields)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param, err


def test_a_relayed_stored_completion_keeps_the_messages_as_sent(gateway: Server) -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "ann"},
    ]
    made = ask(gateway, "mok", store=True, messages=messages, metadata={"run": "relay"}).json()
    got = httpx.get(gateway.base_url + f"/v1/chat/completions/{made['id']}/messages").json()
    assert [m["role"] for m in got["data"]] == ["developer", "user"]
    assert got["data"][1]["content"] == "Hi" or got["data"][1]["content_parts"]
    listed = httpx.get(
        gateway.base_url + "/v1/chat/completions", params={"metadata[run]": "relay"}
    ).json()
    assert [c["id"] for c in listed["data"]] == [made["id"]]


def test_a_client_leaving_a_relayed_stream_closes_the_upstream(gateway: Server, fake: str) -> None:
    """The upstream stops generating for nobody: its connection is closed too."""
    body = {"model": "mslow", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # one chunk, then the client goes away
    deadline = time.monotonic() + 120
    while httpx.get(fake + "/calls").json().get("slow_closed", 0) < 1:
        assert time.monotonic() < deadline, "the upstream stream was not closed"
        time.sleep(0.1)
