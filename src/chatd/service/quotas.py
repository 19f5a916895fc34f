"""The server's per-key quotas (``chatd serve`` flags): requests in flight, bytes stored,
and how long stored records stay. A database key may have its own in-flight limit and
storage quota (``chatd keys create``); 0 turns a limit off. Plain values, importable
without the store (config.py holds them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "PURGE_INTERVAL", "Quotas"]

# Far above what one user's tools send at once (the playground, `chatd chat`, an SDK
# script), and a quarter of the engine's default queue (--max-waiting 256): four keys at
# their limit cannot fill it.
DEFAULT_MAX_IN_FLIGHT = 64
PURGE_INTERVAL = 3600.0  # seconds: expired records are invisible meanwhile


@dataclass(frozen=True)
class Quotas:
    max_in_flight_per_key: int = DEFAULT_MAX_IN_FLIGHT  # service/in_flight.py
    max_stored_bytes_per_owner: int = 0  # service/storage.py; 0: unlimited
    store_retention_days: float = 0.0  # 0: kept until deleted
    purge_interval: float = PURGE_INTERVAL  # seconds between purges of expired records
