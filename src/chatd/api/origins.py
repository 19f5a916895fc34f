"""Which names and which web pages may reach chatd: the ``Host`` allow-list, the
``Origin`` check and CORS, in one pure ASGI middleware (docs/security.md, "Browser
origins and connections").

A web page its user visits can send requests to any server the browser reaches,
``127.0.0.1`` included. Two ways would let it use an open chatd:

- **Cross-origin requests.** The browser adds ``Origin`` to every cross-origin request
  that is not a plain GET, and to every request made in CORS mode. One whose origin is
  neither chatd's own (``Origin`` naming the ``Host`` the request was sent to: the
  playground) nor configured (``--cors-origin``) is refused with 403 before any route
  runs, so a "simple" request the browser sends without asking first (a ``text/plain``
  or form POST, a ``no-cors`` fetch) does nothing either. Without ``--cors-origin`` no
  response carries a CORS header, so no other page can read one.
- **DNS rebinding.** A page whose own name the attacker then points at 127.0.0.1 is
  *same-origin* with what it reaches, so the browser sends no ``Origin`` and lets it
  read the answers; but its requests carry the attacker's name in ``Host``. A request
  whose ``Host`` is not an allowed name is refused with 400. Loopback names
  (``localhost``, ``127.0.0.1``, ``[::1]``, any port) are always allowed (no attacker
  page can be served from them); others are given with ``--allowed-host``.

The cost per request is one pass over the headers and a few set lookups; responses are
wrapped only to add CORS headers when ``--cors-origin`` is given."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatd.api.errors import error_response
from chatd.protocol.errors import Forbidden, InvalidRequest

__all__ = [
    "LOOPBACK_HOSTS",
    "BrowserPolicy",
    "OriginMiddleware",
    "host_name",
    "is_loopback",
    "normalize_host",
    "normalize_origin",
]

log = logging.getLogger("chatd.api")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
ANY = "*"
# What a preflight allows (an allowed origin's page is trusted as a curl user is: every
# header it asks for that is a valid name is allowed, e.g. Authorization, Content-Type,
# the openai SDK's x-stainless-*).
ALLOW_METHODS = b"GET, POST, DELETE"
# x-chatd-tools-not-run: the hosted tools a response was offered and nothing ran
# (docs/acceptance.md), which a browser client should see as a curl user does.
EXPOSE_HEADERS = b"x-request-id, retry-after, x-chatd-tools-not-run"
MAX_AGE = b"600"  # seconds a browser may keep a preflight's answer (Chromium: at most 7200)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name
_ORIGIN = re.compile(r"^(https?)://([^/?#@\s]+)$")


def normalize_host(text: str) -> str:
    """An ``--allowed-host`` value as it is compared with a ``Host`` header's name: lower
    case, no trailing dot, an IPv6 address in brackets; ``*`` (any) and ``*.example.com``
    (every name under example.com) as they are. ValueError for a port or an empty name:
    every port of an allowed name is allowed."""
    name = text.strip().lower().rstrip(".")
    if name == ANY:
        return name
    try:
        address = ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        address = None
    if address is not None:
        return f"[{address.compressed}]" if address.version == 6 else address.compressed
    if not re.fullmatch(r"(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*", name):
        raise ValueError(
            f"{text!r} is not a host name: give a name (chat.example.com), an address,"
            " *.example.com, or * (any), without a port (every port is allowed)"
        )
    return name


def normalize_origin(text: str) -> str:
    """A ``--cors-origin`` value as browsers write ``Origin``: ``scheme://host[:port]`` in
    lower case, no path, no trailing slash; ``*`` (any origin). ValueError otherwise."""
    origin = text.strip().lower().rstrip("/")
    if origin == ANY or _ORIGIN.match(origin):
        return origin
    raise ValueError(
        f"{text!r} is not an origin: give scheme://host[:port] as the page's address bar"
        " shows it (https://app.example.com, http://localhost:3000), or * (any)"
    )


def is_loopback(bind_host: str) -> bool:
    """Whether ``chatd serve --host`` listens only on this machine."""
    if bind_host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind_host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class BrowserPolicy:
    """``allowed_hosts``: the names a request's ``Host`` may have besides the loopback
    ones (``*.example.com`` for a domain's names); None or ``*`` in it: any name.
    ``cors_origins``: the web pages of other origins allowed to call the API (``*``:
    every one); none by default."""

    allowed_hosts: frozenset[str] | None = None
    cors_origins: frozenset[str] = frozenset()
    _suffixes: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # "*.example.com" -> ".example.com": a name under it ends with that
        suffixes = tuple(p[1:] for p in self.allowed_hosts or () if p.startswith("*."))
        object.__setattr__(self, "_suffixes", suffixes)

    @classmethod
    def build(cls, hosts: Iterable[str] | None, origins: Iterable[str] = ()) -> BrowserPolicy:
        """From the command line's values (normalized; ValueError for a bad one)."""
        allowed = None
        if hosts is not None:
            allowed = frozenset(normalize_host(h) for h in hosts)
            if ANY in allowed:
                allowed = None
        return cls(allowed, frozenset(normalize_origin(o) for o in origins))

    def allows_host(self, header: bytes | None) -> bool:
        if self.allowed_hosts is None:
            return True
        if header is None:  # HTTP/1.0 without Host: no name to check
            return False
        name = host_name(header)
        if name in LOOPBACK_HOSTS or name in self.allowed_hosts:
            return True
        return name.endswith(self._suffixes) if self._suffixes else False

    def allows_origin(self, origin: str) -> bool:
        """Whether a page of ``origin`` may call the API across origins (CORS)."""
        return origin in self.cors_origins or ANY in self.cors_origins


def host_name(header: bytes) -> str:
    """A ``Host`` header's name: lower case, without its port or a trailing dot."""
    text = header.decode("latin-1").strip().lower()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1] if end > 0 else text
    return text.partition(":")[0].rstrip(".")


def _same_origin(origin: str, host: bytes | None) -> bool:
    """Whether ``origin`` is the address this request was sent to: the page is chatd's
    own (the playground). Schemes are not compared: behind a TLS proxy the page is
    https and the hop to chatd http; ``Host`` is what the browser wrote, port included
    when not the scheme's default, as in ``Origin``."""
    if host is None:
        return False
    _, sep, authority = origin.partition("://")
    return bool(sep) and authority == host.decode("latin-1").strip().lower()


_BAD_HOST = InvalidRequest(
    "Invalid Host header: this server does not answer to that name. A server reached"
    " through a name of its own must be started with --allowed-host NAME.",
    param=None,
    code="invalid_host",
)
_BAD_ORIGIN = Forbidden(
    "Requests from web pages of other origins are not allowed. Start the server with"
    " --cors-origin ORIGIN to allow a page's origin.",
    code="origin_not_allowed",
)


class OriginMiddleware:
    """Refuses a ``Host`` that is no allowed name (400) and an ``Origin`` that is neither
    the server's own nor allowed (403); answers allowed origins' preflights and adds
    CORS headers to their responses."""

    def __init__(self, app: ASGIApp, policy: BrowserPolicy) -> None:
        self.app = app
        self.policy = policy
        self.cors = bool(policy.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = origin = None
        for k, v in scope["headers"]:
            if k == b"host":
                host = v
            elif k == b"origin":
                origin = v
        if not self.policy.allows_host(host):
            log.info("refused Host %r", (host or b"").decode("latin-1")[:100])
            await error_response(_BAD_HOST)(scope, receive, send)
            return
        if origin is None:  # no web page, or a page of this origin reading with GET
            if self.cors:
                send = _with_headers(send, [(b"vary", b"Origin")])
            await self.app(scope, receive, send)
            return
        text = origin.decode("latin-1").strip().lower()
        if self.cors and self.policy.allows_origin(text):
            if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
                await _preflight(scope, origin, send)
                return
            headers = [
                (b"access-control-allow-origin", origin),
                (b"access-control-expose-headers", EXPOSE_HEADERS),
                (b"vary", b"Origin"),
            ]
            await self.app(scope, receive, _with_headers(send, headers))
            return
        if not _same_origin(text, host):
            log.info("refused Origin %r", text[:100])
            await error_response(_BAD_ORIGIN)(scope, receive, send)
            return
        if self.cors:
            send = _with_headers(send, [(b"vary", b"Origin")])
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


async def _preflight(scope: Scope, origin: bytes, send: Send) -> None:
    """An allowed origin's preflight: 204, the methods, the headers it asked for (each a
    valid header name), and private-network access when Chromium asks for it (a public
    page calling a server on this machine or network)."""
    asked = (_header(scope, b"access-control-request-headers") or b"").decode("latin-1")
    names = [n.strip() for n in asked.split(",") if _TOKEN.match(n.strip())]
    headers = [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-methods", ALLOW_METHODS),
        (b"access-control-max-age", MAX_AGE),
        (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
        (b"content-length", b"0"),
    ]
    if names:
        headers.append((b"access-control-allow-headers", ", ".join(names).encode("latin-1")))
    if _header(scope, b"access-control-request-private-network") == b"true":
        headers.append((b"access-control-allow-private-network", b"true"))
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return sending
