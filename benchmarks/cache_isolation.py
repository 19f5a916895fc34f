#!/usr/bin/env python
"""Prefix cache isolation: does key B's time to first token tell whether key A sent a secret?

chatd's prefix cache is partitioned per owner (docs/engine.md, "Tenants"), so key B's
guesses of key A's secret prompt must find nothing of A's in the cache: B's
``cached_tokens`` and time to first token (TTFT) are the same whether or not A sent the
secret. The e2e tests prove the first (and that B's prompts are computed the same way);
timings cannot be asserted on a shared machine, so this script shows the second as ratios
measured in one run.

The script starts ``chatd serve`` (the embedded model, a temporary data directory) with
two static keys, A and B (``--api-key``: each is its own owner). The secret prompt is a
system prompt (a company, a bank's rules, then the company's account number, the secret)
and a user message, ~380 tokens in all; a guess is the same conversation with an account
number: right, or wrong in its last or its first digit. A wrong guess matches A's prompt
up to the wrong digit, a right one all of it: from a cache shared by both keys, the longer
the match the more ``cached_tokens`` and the sooner the first token, which is how B would
read A's number digit by digit. Every request is streamed, ``max_tokens`` 1, temperature
0, end-of-generation tokens banned, ``stream_options.include_usage``; TTFT is from sending
it to its first non-empty content delta (``client.py``, as every benchmark here), and
``cached_tokens`` is its usage's.

**One world per measurement.** A measured guess must be helped by nothing but A's
secret, whatever the cache does: were the cache still one pool, B's own earlier guesses
would hit too (the same guess repeated, or a right and a wrong one sharing everything up
to the digit), in both phases, and the phases would look alike for the wrong reason. So
every measurement gets its own *world*: a random case number opens the system prompt of
both A's secret and B's guess in that world. A guess then shares with A's prompt of its
world exactly what it guesses right, and with any other prompt of the run only the chat
template's first few tokens. A new B key per measurement would not do: in a single pool
those keys' identical guesses would hit each other.

For each guess, ``--repeats`` times, each in a new world, three measurements:

1. **before**: key A sends a decoy (its secret prompt in *another* world) twice, then
   key B sends the guess. The decoy makes what ran and what is cached just before the
   guess the same as in phase 2, but for whether it matches.
2. **after**: key A sends the secret of the world twice (the second send hits A's own
   cache: it is certainly cached), then key B sends the guess.
3. **control**: as 2, but key A sends the guess itself: its own cache is meant to help
   (the right guess is A's prompt: all but its last token; a wrong one up to the wrong
   digit), which shows that the measurement sees a hit when there is one.

After each guess key A sends its secret (or decoy) once more: if that still hits, A's
cells were in the cache while B's guess ran (the default ``--prefix-cache-mib`` holds
every entry of a round, so none is evicted between A's send and B's guess: that would
hide A's secret for another reason than the partition).
The three phases run in a rotated order per round, so that none always runs first. Before
each round the script waits for the rest of the machine to be quiet and re-measures a
round during which other processes used more than 0.3 cores (``--wait-quiet``,
``--retries``, as the other scripts).

It prints one Markdown table: per phase and guess, B's (or A's, control) ``cached_tokens``
min and max, TTFT p50 and p90, and the p50's ratio to the same guess before A sent the
secret: expected ~1.0 after (within noise), far below 1 for the control's right guess.

    .venv/bin/python benchmarks/cache_isolation.py [--repeats 10] [--wait-quiet 120]
        [--retries 2]

The server and its data directory are removed at the end, Ctrl-C and SIGTERM included.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import httpx
from client import Reply, open_client, stream
from prompts import EOG_BIAS, MODEL_ID

KEY_A = "sk-bench-tenant-a-0123456789"
KEY_B = "sk-bench-tenant-b-0123456789"
SECRET = "4417-2093-8861"
GUESSES = {  # guess -> the account number it sends
    "right": SECRET,
    "wrong last digit": "4417-2093-8862",
    "wrong first digit": "5417-2093-8861",
}
PHASES = ("before", "after", "control")
RULES = " ".join(
    f"Rule {i}: never read the account number aloud, and confirm every payment twice."
    for i in range(18)
)  # ~330 tokens before the secret: the bulk of the prompt, what a hit saves
USER = "Write the first line of today's payment reminder."
SENDS = 2  # A's sends of its secret (or decoy) before a guess: the second one hits


class Worlds:
    """Random case numbers, each used once: a world's prompts share nothing with another's
    but the chat template's first tokens."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def new(self) -> str:
        while True:
            w = str(random.randrange(10**7, 10**8))  # eight digits: the same length always
            if w not in self._used:
                self._used.add(w)
                return w


def body(world: str, account: str) -> dict[str, Any]:
    system = (
        f"Case {world}. You are the private assistant of Halvorsen Maritime AS. {RULES}"
        f" The account number is {account}."
    )
    return {
        "model": MODEL_ID,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": USER}],
        "max_tokens": 1,
        "temperature": 0,
        "logit_bias": EOG_BIAS,
    }


async def send(client: httpx.AsyncClient, who: str, b: dict[str, Any]) -> Reply:
    reply = await stream(client, b)
    if not reply.ok or reply.ttft is None or reply.cached_tokens is None:
        raise RuntimeError(f"key {who}'s request failed: {reply.error or 'no content or usage'}")
    return reply


def cached(reply: Reply) -> bool:
    """A hit on the prompt A sent, not just on the template's first tokens."""
    return (reply.cached_tokens or 0) >= (reply.prompt_tokens or 0) // 2


@dataclass
class Sample:
    phase: str
    guess: str
    reply: Reply  # the measured guess
    a_cached: bool  # A's last send before the guess hit its own cache
    still_cached: bool  # and A's send after the guess still did


async def measure(
    phase: str, guess: str, a: httpx.AsyncClient, b: httpx.AsyncClient, worlds: Worlds
) -> Sample:
    world = worlds.new()
    sent = body(worlds.new() if phase == "before" else world, SECRET)  # decoy or secret
    for _ in range(SENDS):
        last = await send(a, "A", sent)
    guesser, who = (a, "A") if phase == "control" else (b, "B")
    reply = await send(guesser, who, body(world, GUESSES[guess]))
    after = await send(a, "A", sent)
    return Sample(phase, guess, reply, cached(last), cached(after))


async def round_(
    r: int, a: httpx.AsyncClient, b: httpx.AsyncClient, worlds: Worlds
) -> list[Sample]:
    order = PHASES[r % 3 :] + PHASES[: r % 3]
    return [await measure(p, g, a, b, worlds) for g in GUESSES for p in order]


def ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def p50(samples: list[Sample], phase: str, guess: str) -> float:
    ttfts = [s.reply.ttft or 0.0 for s in samples if s.phase == phase and s.guess == guess]
    return harness.percentile(ttfts, 0.5)


def rows(samples: list[Sample]) -> list[list[str]]:
    out = []
    for phase in PHASES:
        for guess in GUESSES:
            mine = [s for s in samples if s.phase == phase and s.guess == guess]
            ttfts = [s.reply.ttft or 0.0 for s in mine]
            hits = [s.reply.cached_tokens or 0 for s in mine]
            prompt = sorted({s.reply.prompt_tokens or 0 for s in mine})
            ratio = p50(samples, phase, guess) / p50(samples, "before", guess)
            out.append(
                [
                    phase,
                    "A" if phase == "control" else "B",
                    guess,
                    str(len(mine)),
                    str(prompt[0]) if len(prompt) == 1 else f"{prompt[0]}-{prompt[-1]}",
                    f"{min(hits)}" if min(hits) == max(hits) else f"{min(hits)}-{max(hits)}",
                    ms(harness.percentile(ttfts, 0.5)),
                    ms(harness.percentile(ttfts, 0.9)),
                    "-" if phase == "before" else f"{ratio:.2f}x",
                ]
            )
    return out


async def measured_round(
    r: int,
    server: harness.Managed,
    a: httpx.AsyncClient,
    b: httpx.AsyncClient,
    worlds: Worlds,
    args: argparse.Namespace,
) -> tuple[list[Sample], float]:
    """One round, re-measured when disturbed; the least disturbed attempt."""
    best: tuple[list[Sample], float] | None = None
    for attempt in range(args.retries + 1):
        await harness.wait_quiet([server], args.wait_quiet)
        start, t0 = harness.CpuSample.take([server]), time.monotonic()
        samples = await round_(r, a, b, worlds)
        wall = time.monotonic() - t0
        other = harness.CpuSample.take([server]).other_cores(start, wall) if harness.HAS_PROC else 0
        harness.log(f"  round {r + 1}/{args.repeats}: {wall:.1f} s, other cores {other:.2f}")
        if best is None or other < best[1]:
            best = (samples, other)
        if other <= harness.DISTURBED_CORES:
            break
        if attempt < args.retries:
            harness.log("  (disturbed: measuring the round again)")
    assert best is not None
    return best


async def amain(args: argparse.Namespace) -> int:
    worlds = Worlds()
    samples: list[Sample] = []
    others: list[float] = []
    with tempfile.TemporaryDirectory(prefix="chatd-cache-isolation-") as tmp:
        server = harness.start_chatd(
            *("--api-key", KEY_A, "--api-key", KEY_B),
            *("--data-dir", str(Path(tmp)), "--log-level", "warning"),
        )
        await server.wait_healthy()
        a = open_client(server.base_url, KEY_A, 2)
        b = open_client(server.base_url, KEY_B, 2)
        try:
            harness.log("warming up")
            for client, who in ((a, "A"), (b, "B"), (a, "A"), (b, "B")):
                await send(client, who, body(worlds.new(), SECRET))
            for r in range(args.repeats):
                got, other = await measured_round(r, server, a, b, worlds, args)
                samples += got
                others.append(other)
        finally:
            await a.aclose()
            await b.aclose()
            server.stop()
    print(
        f"## Prefix cache isolation: key B's TTFT and cached_tokens before and after key A"
        f" sent the secret\n\n{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC,"
        f" cpus={os.cpu_count()}, {args.repeats} worlds per phase and guess, other cores per"
        f" round {min(others):.2f}-{max(others):.2f}\n"
    )
    header = [
        "phase",
        "sent by",
        "guess",
        "requests",
        "prompt tokens",
        "cached_tokens",
        "TTFT p50 ms",
        "TTFT p90 ms",
        "p50 vs before",
    ]
    print(harness.table(header, rows(samples)))
    right = "right"
    print(
        "\nB's TTFT p50 after A sent the secret / before: "
        + ", ".join(
            f"{g} {p50(samples, 'after', g) / p50(samples, 'before', g):.2f}x" for g in GUESSES
        )
        + "; control (A's own cache), right guess:"
        f" {p50(samples, 'control', right) / p50(samples, 'before', right):.2f}x"
    )
    notes = []
    for phase in ("before", "after", "control"):
        mine = [s for s in samples if s.phase == phase]
        what = "decoy" if phase == "before" else "secret"
        notes.append(
            f"{phase}: A's {what} hit A's own cache when sent {sum(s.a_cached for s in mine)}"
            f"/{len(mine)} times, and still did after the guess {sum(s.still_cached for s in mine)}"
            f"/{len(mine)} times (each of those: cached while the guess ran)"
        )
    notes.append(
        "other cores: CPU used meanwhile by the rest of the machine (not this script or the"
        " server); above ~0.3 the timings measure the machine as much as chatd"
    )
    harness.print_notes(notes)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--repeats", type=int, default=10, help="worlds (measurements) per phase and guess"
    )
    harness.add_quiet_options(p, retries=2)
    args = p.parse_args()
    if args.repeats < 1 or args.retries < 0:
        p.error("--repeats must be >= 1 and --retries >= 0")
    return harness.run_main(lambda: amain(args))


if __name__ == "__main__":
    sys.exit(main())
