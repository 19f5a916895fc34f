"""Sealing a compaction summary: the ``encrypted_content`` of a ``compaction`` item.

A compaction item is the model's own summary of a conversation, which the client keeps
and sends back in later turns. Like OpenAI's, chatd's is opaque to the client and
cannot be forged or altered by it: the summary is what the model wrote, so a client
cannot slip text into the conversation under the model's name, nor read another key's.

Format (a version prefix, then base64url without padding)::

    cmp1.<base64url(nonce[12] || AES-256-GCM(summary JSON) || tag[16])>

* key: HKDF-SHA256 of the database's secret (``server_secrets``, the one owner ids of
  static keys come from, store/owners.py) with the info ``chatd compaction seal v1``:
  every replica sharing the database opens what another sealed; a new database (or its
  secret replaced) opens none of the old ones (docs/compaction.md, "Keys").
* associated data: the owner id of the key that made it and the model it was made for,
  so a blob made for one key's owner does not open for another's (tenants stay apart),
  nor for another model.
* plaintext: ``{"summary": text, "created_at": unix seconds}`` as JSON.

Anything else (garbage, tampered bytes, another owner's or model's blob, another
server's) fails to open: :class:`SealError`, which the caller makes a 400 naming the
item's field."""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Awaitable, Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["PREFIX", "CompactionSeal", "SealError"]

PREFIX = "cmp1."
_INFO = b"chatd compaction seal v1"
_NONCE = 12
_TAG = 16


class SealError(ValueError):
    """The content is not a compaction item this server sealed for this owner and model."""


def _key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def _associated(owner: str, model: str) -> bytes:
    return b"\0".join((_INFO, owner.encode(), model.encode()))


class CompactionSeal:
    """Seals and opens compaction summaries with the database's secret, read once
    (``load``, awaited before the first use) and kept."""

    def __init__(self, secret: Callable[[], Awaitable[bytes]] | bytes | None = None) -> None:
        """``secret``: the database's secret, or how to read it; None: a random one of
        this process (a server without a database: its items open until it stops)."""
        self._source = secret
        self._aead: AESGCM | None = None
        if isinstance(secret, bytes):
            self._aead = AESGCM(_key(secret))
        elif secret is None:
            self._aead = AESGCM(_key(os.urandom(32)))

    async def load(self) -> None:
        if self._aead is None:
            assert callable(self._source)
            self._aead = AESGCM(_key(await self._source()))

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            raise RuntimeError("CompactionSeal.load() was not awaited")
        return self._aead

    def seal(self, summary: str, owner: str, model: str) -> str:
        plain = json.dumps(
            {"summary": summary, "created_at": int(time.time())}, ensure_ascii=False
        ).encode()
        nonce = os.urandom(_NONCE)
        sealed = self._cipher().encrypt(nonce, plain, _associated(owner, model))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def open(self, content: str, owner: str, model: str) -> str:
        """The summary sealed in ``content``; raises SealError for anything else."""
        if not content.startswith(PREFIX):
            raise SealError("not a chatd compaction item")
        body = content[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SealError("not base64url") from None
        if len(raw) < _NONCE + _TAG:
            raise SealError("too short")
        try:
            plain = self._cipher().decrypt(raw[:_NONCE], raw[_NONCE:], _associated(owner, model))
        except InvalidTag:
            raise SealError("does not verify") from None
        summary = json.loads(plain).get("summary")
        if not isinstance(summary, str):  # sealed by us, so never; kept an error anyway
            raise SealError("no summary")
        return summary
