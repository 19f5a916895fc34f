"""Raw-socket helpers for tests that talk to a server below HTTP clients (connections
held open, half-sent headers): shared by tests/service/ and tests/e2e/."""

from __future__ import annotations

import socket


def until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
