"""The ``rss`` workload of ``serving.py``: a server's resident memory at rest and its peak
under 32 concurrent streams.

Why its own level rather than the ``streams`` levels': the figure must exist in every run
that asks for it (``--quick`` has no 32-stream level) and is measured on the same server
configuration as ``streams`` (the peer's ``-np 32``). Memory is ``VmRSS`` of the server's
whole process session (``measure.rss_mib``): the model's mapped weights, the KV cache and
whatever else the server keeps resident.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
from typing import Any

import harness
from harness import log
from measure import Server, measured_level, rss_mib
from prompts import story_body

RSS_STREAMS = 32


async def run_rss(srv: Server, args: argparse.Namespace) -> dict[str, Any]:
    """At rest: once the machine is quiet, before this workload's level (in the default
    order right after start-up and the warm-up request). Under load: the largest reading,
    every 0.5 s, during a level of 32 streams of ``args.max_tokens`` story tokens."""
    with contextlib.redirect_stdout(sys.stderr):
        await harness.wait_quiet([srv.proc] if srv.proc else [], args.wait_quiet)
    rest = rss_mib(srv.proc)
    body = functools.partial(story_body, args.max_tokens, 0.7)
    level = await measured_level(srv, f"rss c={RSS_STREAMS}", args, RSS_STREAMS, body)
    out = {
        "rest_mib": rest,
        "streams": RSS_STREAMS,
        "load_max_mib": level["rss_max_mib"],
        "level": level,
    }
    log(
        f"  [{srv.name}] rss: at rest {rest or 0:.0f} MiB, under {RSS_STREAMS} streams max "
        f"{level['rss_max_mib'] or 0:.0f} MiB ({level['tok_s']:.1f} tok/s, "
        f"{level['failed']} failed)"
    )
    return out
