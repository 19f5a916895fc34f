"""``chatd serve``'s option groups that bound what callers may do (request limits,
per-key quotas, browsers and connections) or stretch a model's context (RoPE scaling),
and the settings read back from them: kept out of cli.py, which builds the server."""

from __future__ import annotations

import argparse
import re

from chatd.arg_types import count, days, seconds
from chatd.config import ConfigError, Settings, gpu_layers_value
from chatd.engine.rope import ROPE_KEYS, SCALING_TYPES, RopeError, RopeScaling
from chatd.protocol.request_limits import Limits
from chatd.service.quotas import Quotas

__all__ = [
    "add_browser_options",
    "add_limit_options",
    "add_quota_options",
    "add_rope_options",
    "gpu_layers_arg",
    "limits_from",
    "quotas_from",
    "rope_from",
]


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(
        max_body_bytes=args.max_body_bytes,
        max_messages=args.max_messages,
        max_chars=args.max_chars,
        max_tools=args.max_tools,
        max_schema_bytes=args.max_schema_bytes,
        grammar_timeout=args.grammar_timeout,
        request_timeout=args.request_timeout,
    )


def quotas_from(args: argparse.Namespace) -> Quotas:
    return Quotas(
        max_in_flight_per_key=args.max_in_flight_per_key,
        max_stored_bytes_per_owner=args.max_stored_bytes_per_owner,
        store_retention_days=args.store_retention_days,
    )


def rope_from(args: argparse.Namespace) -> RopeScaling:
    """The RoPE flags as settings; flags that contradict each other are a ConfigError
    naming them (``--rope-scale`` with ``--rope-freq-scale``, ``--yarn-orig-ctx`` with
    ``--rope-scaling linear``...)."""
    rope = RopeScaling(**{key: getattr(args, key) for key in ROPE_KEYS})
    try:
        rope.check()
    except RopeError as e:
        raise ConfigError(_flag_names(str(e))) from None
    return rope


def _flag_names(message: str) -> str:
    """A RopeError's message with its config-file keys named as the flags that set them."""
    keys = "|".join(sorted(ROPE_KEYS, key=len, reverse=True))
    return re.sub(rf"\b({keys})\b", lambda m: ROPE_KEYS[m.group(1)], message)


def add_rope_options(s: argparse.ArgumentParser) -> None:
    """RoPE scaling, as llama.cpp's server names it (docs/models.md, "Stretching a
    model's context"); a [[models]] entry's own keys override these for that model."""
    g = s.add_argument_group("context stretching (RoPE scaling)")
    g.add_argument(
        "--rope-scaling",
        choices=list(SCALING_TYPES),
        default=None,
        help="how positions past the training context are encoded: none, linear or yarn"
        " (default: the model's own). With linear or yarn and no --rope-scale, the factor"
        " is --context-window / the training context",
    )
    g.add_argument(
        "--rope-scale",
        type=_positive,
        default=None,
        metavar="N",
        help="context expansion factor: the training context times N (llama.cpp's"
        " --rope-scale; the same as --rope-freq-scale 1/N)",
    )
    g.add_argument(
        "--rope-freq-base",
        type=_positive,
        default=None,
        metavar="N",
        help="RoPE base frequency (default: the model's)",
    )
    g.add_argument(
        "--rope-freq-scale",
        type=_positive,
        default=None,
        metavar="N",
        help="RoPE frequency scaling factor: the context grows by 1/N",
    )
    g.add_argument(
        "--yarn-orig-ctx",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="YaRN: the context the model was trained on (default: the GGUF's)",
    )
    g.add_argument(
        "--yarn-ext-factor",
        type=_fraction,
        default=None,
        metavar="F",
        help="YaRN extrapolation mix factor, 0..1 (default: 1 with yarn)",
    )


def gpu_layers_arg(text: str) -> int:
    """``--gpu-layers``: a number of layers, or ``all`` / -1 (an argparse type)."""
    digits = text[1:] if text.startswith("-") else text
    try:
        return gpu_layers_value(int(text) if digits.isascii() and digits.isdigit() else text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r}: {e}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a number > 0 is required")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a number from 0 to 1 is required")
    return value


def _at_least_one(text: str) -> int:
    value = count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1 is required")
    return value


def add_browser_options(s: argparse.ArgumentParser) -> None:
    """Who may reach the server: Host names, web pages' origins, connections
    (docs/security.md, "Browser origins and connections"; docs/deployment.md)."""
    g = s.add_argument_group("browsers and connections")
    g.add_argument(
        "--allowed-host",
        action="append",
        type=_host_arg,
        default=None,
        metavar="NAME",
        help="a Host name this server answers to besides localhost, 127.0.0.1 and [::1]"
        " (any port; *.example.com: every name under it; *: any name); repeatable. Other"
        " names get 400, which stops DNS rebinding. Default: loopback names only when"
        " --host is a loopback address, else any name (with a warning)",
    )
    g.add_argument(
        "--cors-origin",
        action="append",
        type=_origin_arg,
        default=[],
        metavar="ORIGIN",
        help="a web page origin (https://app.example.com) allowed to call the API from a"
        " browser (CORS); repeatable; *: any. Default: none: a request from another"
        " origin's page gets 403 and no response carries CORS headers",
    )
    g.add_argument(
        "--header-timeout",
        type=seconds,
        default=Settings.header_timeout,
        help="seconds a connection has to send its request's headers, from its opening or"
        " its next request's first byte, before it is closed (0: no limit; default:"
        " %(default)s)",
    )
    g.add_argument(
        "--max-connections",
        type=count,
        default=Settings.max_connections,
        help="open connections; one more gets 503 at once and is closed, the open ones"
        " are untouched (0: no limit; default: %(default)s)",
    )


def _host_arg(text: str) -> str:
    from chatd.api.origins import normalize_host

    try:
        return normalize_host(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _origin_arg(text: str) -> str:
    from chatd.api.origins import normalize_origin

    try:
        return normalize_origin(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_limit_options(s: argparse.ArgumentParser) -> None:
    """What one request may cost (docs/limits.md); 0 turns a limit off."""
    d = Limits()
    g = s.add_argument_group("request limits (0: no limit)")
    g.add_argument(
        "--max-body-bytes",
        type=int,
        default=d.max_body_bytes,
        help="request body size; a bigger one gets 413 (default: %(default)s)",
    )
    g.add_argument(
        "--max-messages",
        type=int,
        default=d.max_messages,
        help="messages (Responses: input items) of one request (default: %(default)s)",
    )
    g.add_argument(
        "--max-chars",
        type=int,
        default=d.max_chars,
        help="characters of text in one request's conversation (default: %(default)s)",
    )
    g.add_argument(
        "--max-tools",
        type=int,
        default=d.max_tools,
        help="tools of one request (default: %(default)s)",
    )
    g.add_argument(
        "--max-schema-bytes",
        type=int,
        default=d.max_schema_bytes,
        help="JSON bytes of all tool definitions, and of a response format (default: %(default)s)",
    )
    g.add_argument(
        "--grammar-timeout",
        type=float,
        default=d.grammar_timeout,
        help="seconds to compile a JSON schema or tools grammar before the request gets 400"
        " (default: %(default)s)",
    )
    g.add_argument(
        "--request-timeout",
        type=float,
        default=d.request_timeout,
        help="wall-clock seconds of one local generation, queue included, before it is"
        " stopped with 504 (default: %(default)s)",
    )


def add_quota_options(s: argparse.ArgumentParser) -> None:
    """What one key may hold (docs/limits.md, docs/storage.md); 0 turns a quota off. A
    database key may have its own (chatd keys create --max-in-flight/--max-stored-bytes)."""
    d = Quotas()
    g = s.add_argument_group("per-key quotas (0: no limit)")
    g.add_argument(
        "--max-in-flight-per-key",
        type=count,
        default=d.max_in_flight_per_key,
        metavar="N",
        help="requests of one key running at once, streams included, before its next get"
        " 429 + Retry-After; counted per process (default: %(default)s)",
    )
    g.add_argument(
        "--max-stored-bytes-per-owner",
        type=count,
        default=d.max_stored_bytes_per_owner,
        metavar="N",
        help="bytes of stored completions and responses one key may keep; a store: true"
        " request past it gets 400 before anything is generated (default: %(default)s)",
    )
    g.add_argument(
        "--store-retention-days",
        type=days,
        default=d.store_retention_days,
        metavar="DAYS",
        help="stored completions and responses older than this are gone (OpenAI keeps"
        " them 30 days); 0 keeps them until deleted (default: %(default)s)",
    )
