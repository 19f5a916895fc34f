"""Several models in one real ``chatd serve`` (the embedded model twice, under two ids):
with ``--max-loaded 1`` asking the unloaded one loads it and unloads the other (the
server's log says so, /chatd/models and /v1/models show it) and both answer as the
model does; without it both stay loaded, and the idle one's threads sleep while the
other generates (their CPU time, read from /proc, does not move)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import httpx
from conftest import Server, bearer
from waiting import wait_until

KEY = "sk-models-on-demand-test"
SMALL = ("--n-ctx", "2048", "--context-window", "1024")
TWO = ("--model", "a=embedded", "--model", "b=embedded")
PROMPT = "Name three colours."


def ask(srv: Server, model: str, max_tokens: int = 8, min_tokens: int = 0) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        **({"min_tokens": min_tokens} if min_tokens else {}),
    }
    r = httpx.post(
        srv.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def states(srv: Server) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {KEY}"}
    rows = httpx.get(srv.base_url + "/chatd/models", headers=headers).json()["data"]
    cards = httpx.get(srv.base_url + "/v1/models", headers=headers).json()["data"]
    by_route = {row["id"]: row["routes"][0]["state"] for row in rows}
    assert by_route == {card["id"]: card["status"]["value"] for card in cards}
    return by_route


def test_max_loaded_one_loads_on_demand_and_unloads_the_other() -> None:
    srv = Server("--api-key", KEY, *TWO, "--max-loaded", "1", *SMALL)
    try:
        assert states(srv) == {"a": "loaded", "b": "unloaded"}
        first = ask(srv, "a")
        assert first.strip()
        assert ask(srv, "b") == first  # the same weights, greedy: the same answer
        assert states(srv) == {"a": "unloaded", "b": "loaded"}
        health = httpx.get(srv.base_url + "/health", headers=bearer(KEY)).json()["models"]
        assert health["a"] == {"loaded": False, "state": "unloaded"}
        assert health["b"]["loaded"] is True and health["b"]["running_requests"] == 0
    finally:
        srv.stop()
    log = srv.log()
    assert "model b: not loaded until a request needs it" in log
    assert "loading model b for a request (LRU: unloading a)" in log
    assert "model a unloaded (least recently used)" in log
    assert re.search(r"model b loaded in \d+\.\d s", log)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each thread of ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue  # a thread that just ended
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def used(before: dict[int, float], after: dict[int, float]) -> dict[int, float]:
    return {t: after[t] - before.get(t, 0.0) for t in after}


def test_two_loaded_models_answer_and_the_idle_ones_threads_sleep() -> None:
    srv = Server("--api-key", KEY, *TWO, *SMALL)
    pid = srv.proc.pid
    try:
        assert states(srv) == {"a": "loaded", "b": "loaded"}
        assert ask(srv, "a") == ask(srv, "b") != ""
        # The threads that work for b: its engine thread and llama.cpp's (OpenMP) workers.
        before = thread_cpu(pid)
        ask(srv, "b", max_tokens=40, min_tokens=40)
        b_threads = {t for t, s in used(before, thread_cpu(pid)).items() if s > 0 and t != pid}
        assert b_threads
        # While a generates, b's threads use no CPU: none of them spins.
        before = thread_cpu(pid)
        ask(srv, "a", max_tokens=40, min_tokens=40)
        during_a = used(before, thread_cpu(pid))
        a_threads = {t for t, s in during_a.items() if s > 0 and t != pid}
        assert a_threads - b_threads  # a has threads of its own, and they worked
        idle_b = sum(during_a.get(t, 0.0) for t in b_threads - a_threads)
        print(f"\nb's threads during a's generation: {idle_b:.2f} s CPU")
        assert idle_b <= 0.02
        # And once nothing runs, the whole process sleeps: a second comes in which it
        # uses (almost) no CPU. Waited for (the last answer's threads wind down at the
        # machine's pace); a process that spins never gets there.
        seconds: list[float] = []

        def a_quiet_second() -> bool:
            before = thread_cpu(pid)
            time.sleep(1.0)
            seconds.append(sum(used(before, thread_cpu(pid)).values()))
            return seconds[-1] <= 0.05

        wait_until(a_quiet_second, "a second of <= 0.05 s CPU in the idle process", deadline=60)
        print(f"idle process, CPU seconds per second until quiet: {seconds}")
    finally:
        srv.stop()
