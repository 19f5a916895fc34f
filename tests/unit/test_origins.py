"""The Host and origin rules of api/origins.py as pure functions, and the default the
command line picks for ``--allowed-host`` from ``--host`` (cli.py)."""

from __future__ import annotations

import logging

import pytest

from chatd.api.origins import (
    BrowserPolicy,
    host_name,
    is_loopback,
    normalize_host,
    normalize_origin,
)
from chatd.cli import _browser_policy
from chatd.config import Settings


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("Chat.Example.COM.", "chat.example.com"),
        ("*.Corp.Example", "*.corp.example"),
        ("::1", "[::1]"),
        ("[0:0::1]", "[::1]"),
        ("10.0.0.1", "10.0.0.1"),
        ("*", "*"),
    ],
)
def test_allowed_hosts_are_normalized(given: str, kept: str) -> None:
    assert normalize_host(given) == kept


@pytest.mark.parametrize("bad", ["", "a:80", "a/b", "a b", "user@host", "*.*.x"])
def test_a_bad_allowed_host_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a host name"):
        normalize_host(bad)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("HTTPS://App.Example.com/", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("*", "*"),
    ],
)
def test_origins_are_normalized(given: str, kept: str) -> None:
    assert normalize_origin(given) == kept


@pytest.mark.parametrize(
    "bad", ["app.example.com", "ftp://x", "https://x/path", "https://u@x", "null", ""]
)
def test_a_bad_origin_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        normalize_origin(bad)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        (b"Example.com:8000", "example.com"),
        (b"[::1]:80", "[::1]"),
        (b"[::1]", "[::1]"),
        (b"localhost.", "localhost"),
        (b" 127.0.0.1 ", "127.0.0.1"),
    ],
)
def test_a_host_headers_name(header: bytes, name: str) -> None:
    assert host_name(header) == name


def test_no_host_header_is_refused_by_a_list_only() -> None:
    assert not BrowserPolicy.build([]).allows_host(None)
    assert BrowserPolicy.build(None).allows_host(None)
    assert BrowserPolicy.build(["*"]).allowed_hosts is None


@pytest.mark.parametrize(
    ("bind", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("chat.example.com", False),
    ],
)
def test_loopback_bind_addresses(bind: str, loopback: bool) -> None:
    assert is_loopback(bind) is loopback


def test_a_loopback_server_answers_to_loopback_names_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        policy = _browser_policy(Settings(host="127.0.0.1"))
    assert policy.allowed_hosts == frozenset()
    assert not policy.allows_host(b"attacker.example:8000")
    assert policy.allows_host(b"localhost:8000")
    assert not caplog.records


def test_a_server_on_every_address_answers_any_name_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        policy = _browser_policy(Settings(host="0.0.0.0"))
    assert policy.allowed_hosts is None
    assert "DNS rebinding" in caplog.text and "--allowed-host" in caplog.text


def test_named_hosts_and_an_explicit_any_do_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        named = _browser_policy(Settings(host="0.0.0.0", allowed_hosts=["chat.example.com"]))
        anyone = _browser_policy(Settings(host="0.0.0.0", allowed_hosts=["*"]))
    assert named.allows_host(b"chat.example.com") and not named.allows_host(b"x.example")
    assert anyone.allowed_hosts is None
    assert not caplog.records
