"""Placeholder until the disk tier lands (interface only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class StoredPrefix:
    tokens: np.ndarray
    tiled: int
    partition: str
    shared: int


class PrefixDisk:
    def __init__(self, directory: Path, max_bytes: int, fingerprint: str) -> None:
        raise NotImplementedError

    def entries(self) -> list[tuple[int, StoredPrefix]]:
        return []

    def put(self, meta: StoredPrefix, data: bytes) -> None: ...

    def load(self, key: int) -> bytes | None:
        return None

    def close(self) -> None: ...
