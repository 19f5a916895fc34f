"""SIGTERM to a real ``chatd serve`` with requests in flight (api/drain.py,
api/shutdown.py): /health turns 503 at once, a new request gets 503
``server_shutting_down`` with ``Retry-After``, the running requests finish (or, past
``--drain-seconds``, are cut with an error event and no ``[DONE]``), the usage of every
request is in the database afterwards, and the process exits 0. The drain's duration
is printed (``pytest -s``), never asserted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from conftest import MODEL, Server
from sse import parse_events, response_events
from waiting import wait_until

WAIT = 1200  # seconds: a guard against a hang, never reached
EOG = {"0": -100, "2": -100, "4": -100}  # this model's end-of-generation tokens
STORY = [{"role": "user", "content": "Write a long story about the sea."}]


def chat(max_tokens: int, stream: bool) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": STORY,
        "max_tokens": max_tokens,
        "logit_bias": EOG,  # no early end: it runs until max_tokens or the cut
        "stream": stream,
        "stream_options": {"include_usage": True} if stream else None,
    }


def responses(max_tokens: int, stream: bool) -> dict[str, Any]:
    return {"model": MODEL, "input": STORY, "max_output_tokens": max_tokens, "stream": stream}


class InFlight:
    """Requests sent from threads; ``results`` by name: (status, headers, body text);
    ``so_far`` by name: the body received until now (a stream's first events)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.results: dict[str, tuple[int, httpx.Headers, str]] = {}
        self.so_far: dict[str, str] = {}
        self.threads: list[threading.Thread] = []

    def send(self, name: str, path: str, body: dict[str, Any]) -> None:
        def run() -> None:
            with httpx.stream("POST", self.base_url + path, json=body, timeout=WAIT) as r:
                text = ""
                for part in r.iter_text():
                    text += part
                    self.so_far[name] = text
                self.results[name] = (r.status_code, r.headers, text)

        t = threading.Thread(target=run, name=name)
        t.start()
        self.threads.append(t)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=WAIT)


def admitted(srv: Server) -> int:
    """Requests the engine has: running, or waiting for a slot (past the drain's door)."""
    stats = httpx.get(srv.base_url + "/health").json()["models"][MODEL]
    return stats["running_requests"] + stats["waiting_requests"]


def until(condition: Callable[[], bool], what: str = "the condition") -> None:
    wait_until(condition, what, interval=0.02)


def usage_requests(data_dir: Path) -> tuple[int, int]:
    """(requests, completion tokens) of MODEL in ``chatd usage``."""
    exe = Path(sys.executable).parent / "chatd"
    out = subprocess.run(
        [str(exe), "usage", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    row = next(line.split() for line in out.splitlines() if MODEL in line)
    return int(row[3]), int(row[5])


def check_shutting_down(status: int, headers: httpx.Headers, text: str) -> None:
    assert status == 503, (status, text)
    assert headers["retry-after"] == "5"
    assert json.loads(text)["error"]["code"] == "server_shutting_down"


class SlowUpload:
    """A request whose body is not all sent: in flight (its route waits for the body)
    until ``finish``, so the drain cannot end before the test has looked at it."""

    def __init__(self, port: int) -> None:
        body = json.dumps({"model": MODEL, "messages": STORY, "max_tokens": 3}).encode()
        self.rest = body[10:]
        self.sock = socket.create_connection(("127.0.0.1", port))
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head + body[:10])

    def finish(self) -> str:
        self.sock.sendall(self.rest)
        self.sock.settimeout(300)
        data = b""
        while chunk := self.sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, rest = data.partition(b"\r\n\r\n")
                length = [
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length")
                ]
                if length and len(rest) >= length[0]:
                    break
        self.sock.close()
        return data.decode()


def test_sigterm_lets_running_requests_finish_then_exits_0() -> None:
    # a deadline no busy machine reaches: this test is about requests that finish (at
    # 120 s a loaded 2-core machine cut the stream before its 30 tokens)
    srv = Server("--drain-seconds", "3600")
    try:
        upload = SlowUpload(srv.port)
        flight = InFlight(srv.base_url)
        flight.send("chat-stream", "/v1/chat/completions", chat(30, stream=True))
        flight.send("chat-whole", "/v1/chat/completions", chat(30, stream=False))
        flight.send("responses-stream", "/v1/responses", responses(20, stream=True))
        until(lambda: admitted(srv) >= 3, "the three requests admitted")  # none refused
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        until(lambda: httpx.get(srv.base_url + "/health").status_code == 503)
        health = httpx.get(srv.base_url + "/health")
        assert health.json()["status"] == "draining"
        assert health.headers["retry-after"] == "5"
        new = httpx.post(srv.base_url + "/v1/chat/completions", json=chat(3, stream=False))
        check_shutting_down(new.status_code, new.headers, new.text)
        answer = upload.finish()  # it came before the drain: it is answered
        assert answer.startswith("HTTP/1.1 200"), answer
        flight.join()
        code = srv.proc.wait(timeout=WAIT)
        drained = time.monotonic() - t0
        print(f"\ndrain with requests finishing: exit {code} {drained:.2f}s after SIGTERM")
        assert code == 0, srv.log()
        status, _, text = flight.results["chat-stream"]
        events = parse_events(text)
        assert status == 200 and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 30
        status, _, text = flight.results["chat-whole"]
        assert status == 200 and json.loads(text)["choices"][0]["finish_reason"] == "length"
        status, _, text = flight.results["responses-stream"]
        assert status == 200
        assert response_events(text)[-1]["type"] in ("response.completed", "response.incomplete")
        requests, tokens = usage_requests(srv.data_dir)
        assert requests == 4  # the three, and the slow upload; never the refused one
        assert tokens >= 30 + 30 + 3
        assert "drained in" in srv.log()
    finally:
        srv.stop()


def test_sigterm_past_the_deadline_cuts_streams_with_an_error_event() -> None:
    srv = Server("--drain-seconds", "1")
    try:
        flight = InFlight(srv.base_url)
        flight.send("chat-stream", "/v1/chat/completions", chat(4000, stream=True))
        flight.send("chat-whole", "/v1/chat/completions", chat(4000, stream=False))
        flight.send("responses-stream", "/v1/responses", responses(4000, stream=True))
        flight.send("responses-whole", "/v1/responses", responses(4000, stream=False))
        # all four admitted, and the chat stream has words out: the 1 s deadline then
        # cuts something running, whatever this machine's speed (prefill included)
        until(lambda: admitted(srv) >= 4, "the four requests admitted")
        until(
            lambda: flight.so_far.get("chat-stream", "").count("data: ") >= 3,
            "the chat stream's first events",
        )
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        code = srv.proc.wait(timeout=WAIT)
        drained = time.monotonic() - t0
        print(f"\ndrain cut at --drain-seconds 1: exit {code} {drained:.2f}s after SIGTERM")
        flight.join()
        assert code == 0, srv.log()
        status, _, text = flight.results["chat-stream"]
        events = parse_events(text)
        assert status == 200 and "[DONE]" not in events  # a cut never looks complete
        assert json.loads(events[-1])["error"]["code"] == "server_shutting_down"
        assert len(events) > 2  # it had streamed before the cut
        check_shutting_down(*flight.results["chat-whole"])
        # Responses may have ended on their own (the model chose to stop): then normally.
        status, _, text = flight.results["responses-stream"]
        last = response_events(text)[-1]
        assert status == 200
        assert last["type"] in ("response.completed", "response.incomplete") or (
            last["type"] == "error" and last["code"] == "server_shutting_down"
        )
        status, headers, text = flight.results["responses-whole"]
        if status != 200:
            check_shutting_down(status, headers, text)
        requests, tokens = usage_requests(srv.data_dir)
        assert requests == 4  # cut or not, every request's usage was flushed
        assert tokens > 0
        assert "drain: cutting" in srv.log()
    finally:
        srv.stop()


def test_a_second_sigterm_cuts_at_once() -> None:
    srv = Server("--drain-seconds", "600")
    try:
        flight = InFlight(srv.base_url)
        flight.send("chat-stream", "/v1/chat/completions", chat(4000, stream=True))
        until(lambda: flight.so_far.get("chat-stream", "").count("data: ") >= 1, "a first event")
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        until(lambda: httpx.get(srv.base_url + "/health").status_code == 503)
        srv.proc.send_signal(signal.SIGTERM)  # the operator will not wait 600 s
        code = srv.proc.wait(timeout=WAIT)
        print(f"\ndrain cut by a second SIGTERM: exit {code} {time.monotonic() - t0:.2f}s")
        flight.join()
        assert code == 0, srv.log()
        status, _, text = flight.results["chat-stream"]
        events = parse_events(text)
        assert status == 200 and "[DONE]" not in events
        assert json.loads(events[-1])["error"]["code"] == "server_shutting_down"
        assert usage_requests(srv.data_dir)[0] == 1
    finally:
        srv.stop()
