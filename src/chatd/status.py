"""``chatd channels`` and ``chatd models``: what a running server can serve now, asked
over HTTP (the state is per process, so it is read from the server, not from the config
file)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import httpx

from chatd.remote import DEFAULT_URL, ModelList, Remote, RemoteError, api_key


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser("channels", help="a running server's channels and models, with health")
    cmd.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    cmd.add_argument(
        "--api-key",
        default=None,
        help="an operator key (--api-key of serve); default: env CHATD_API_KEY",
    )


def run(args: argparse.Namespace) -> int:
    key = args.api_key or os.environ.get("CHATD_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    url = args.url.rstrip("/") + "/v1/channels"
    try:
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.HTTPError as e:
        print(f"chatd: cannot reach {url}: {type(e).__name__}: {e}")
        return 1
    if response.status_code != 200:
        message = _error_message(response)
        print(f"chatd: {url} answered {response.status_code}: {message}")
        return 1
    print(format_status(response.json()))
    return 0


def format_status(data: dict[str, Any]) -> str:
    lines = [f"{'channel':<20} {'state':<22} {'prio':>4} {'weight':>6}  base_url / models"]
    for c in data.get("data", []):
        if c["healthy"]:
            state = "healthy" + (f" ({c['failures']} failed)" if c["failures"] else "")
        else:
            state = f"cooling down {c['cooling_seconds_left']:.0f}s"
            if c.get("cooled_elsewhere"):  # another replica saw it fail (--redis-url)
                state = f"cooling {c['cooling_seconds_left']:.0f}s (shared)"
        lines.append(
            f"{c['name']:<20} {state:<22} {c['priority']:>4} {c['weight']:>6g}  {c['base_url']}"
        )
        lines.append(f"{'':<57}{', '.join(c['models'])}")
    if len(lines) == 1:
        lines.append("(no channels)")
    lines += ["", f"{'model':<32} {'state':<12} routes"]
    for m in data.get("models", []):
        state = "available" if m["available"] else "UNAVAILABLE"
        lines.append(f"{m['id']:<32} {state:<12} {', '.join(m['routes'])}")
        if m.get("reason"):
            lines.append(f"{'':<33}{m['reason']}")
    return "\n".join(lines)


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def add_models_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    cmd = sub.add_parser(
        "models", help="a running server's models, available or not, with each route's state"
    )
    cmd.add_argument("--url", default=DEFAULT_URL, help="the server's base URL")
    cmd.add_argument(
        "--api-key", default=None, help="a key of the server; default: env CHATD_API_KEY"
    )
    cmd.add_argument(
        "--json", action="store_true", help="the server's JSON as it came, for scripts"
    )


def run_models(args: argparse.Namespace) -> int:
    """``GET /chatd/models`` (``/v1/models`` from a server without it) as a table; an
    error (unreachable, a refused key) is the server's message on stderr and exit 1."""
    try:
        with Remote(args.url, api_key(args.api_key)) as remote:
            listed = remote.models()
    except RemoteError as e:
        print(f"chatd: {e.message}", file=sys.stderr)
        return 1
    print(json.dumps(listed.body, indent=2) if args.json else format_models(listed))
    return 0


def format_models(listed: ModelList) -> str:
    """One line a model id: available or not, its routes with their states (the order
    the router tries them), and why it is not available, on the next line."""
    lines = [f"{'model':<32} {'available':<9}  routes"]
    for row in listed.rows:
        routes = ", ".join(_route(r) for r in row.get("routes") or []) or "?"
        lines.append(f"{row['id']:<32} {'yes' if row.get('available') else 'NO':<9}  {routes}")
        if row.get("reason"):
            lines.append(f"{'':<43}{row['reason']}")
        for route in row.get("routes") or []:
            if isinstance(route.get("defaults"), dict):  # a local model's (chatd >= 0.x)
                lines.append(f"{'':<43}{_defaults(route)}")
    if not listed.rows:
        lines.append("(no models for this key)")
    if listed.source != "/chatd/models":
        lines.append(
            f"(from {listed.source}: this server has no /chatd/models, route states unknown)"
        )
    return "\n".join(lines)


# Sampling fields shown even at OpenAI's value (the others only when a model sets them).
_ALWAYS_SHOWN = ("temperature", "top_p")
_OPENAI = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}


def _defaults(route: dict[str, Any]) -> str:
    """What a request that leaves them out gets from this local model: its defaults."""
    shown = route["defaults"]
    parts = [f"{k} {shown[k]:g}" for k in _ALWAYS_SHOWN if isinstance(shown.get(k), int | float)]
    parts += [
        f"{k} {shown[k]:g}"
        for k, openai in _OPENAI.items()
        if isinstance(shown.get(k), int | float) and shown[k] != openai
    ]
    cap = shown.get("max_output_tokens")
    parts.append(f"max output {cap} tokens" if cap else "max output: the window")
    window = route.get("context_window")
    if window:
        parts.append(f"window {window} tokens")
    return "defaults: " + ", ".join(parts)


def _route(route: dict[str, Any]) -> str:
    state = str(route.get("state", "?"))
    left = route.get("cooling_seconds_left")
    if state == "cooling_down" and isinstance(left, int | float):
        state += f" {left:.0f}s"
    return f"{route.get('name', '?')} ({state})"
