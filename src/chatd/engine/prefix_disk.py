"""The prefix cache's disk tier: finished sequences' KV state kept across restarts.

Under the host tier (serialized KV in memory), this keeps the same entries in files, so
a restarted server, or a replica given a copy of the folder, answers a long system
prompt at hit speed. Pure Python: the payload is whatever ``llama_state_seq_get_data``
gave, opaque here; the file format is in ``prefix_disk_format``.

Why it is shaped as it is (docs/engine.md, "Prefix cache: the disk tier"):

- Entries live in ``directory/<fingerprint>/``, the fingerprint covering the model file
  and the build (KV bytes from another model or build are not this one's KV). Other
  fingerprints' folders are never read, only removed when the bound needs their room.
- The engine thread never waits for a write: ``put`` queues it for a writer thread. The
  index takes the entry at once (optimistically); until its file is written, ``load``
  answers from the payload held in memory, so a lookup never sees garbage nor waits.
- Nothing on disk is trusted: headers and payloads carry digests, a file that fails any
  check is a miss and is deleted, never an exception to the engine.
- Bounded in bytes (file sizes): least recently used (``put`` or ``load``, kept across
  restarts as the file's mtime) first out; an entry larger than the bound is not kept.
- The partition is part of an entry's identity, as in the KV cells: two partitions'
  identical prompts are two entries, and one never makes the other redundant.

``put``/``load``/``entries``/``discard`` come from the engine thread while the writer
runs: one lock guards the index and the writer's queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path

from chatd.engine.prefix_disk_format import (
    MAGIC,
    CorruptEntry,
    StoredPrefix,
    encode_header,
    header_size,
    payload_digest,
    read_header,
)

__all__ = ["PrefixDisk", "StoredPrefix"]

log = logging.getLogger("chatd.engine")

SUFFIX = ".chatdkv"
TMP_SUFFIX = SUFFIX + ".tmp"
_FINGERPRINT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_PENDING_BYTES = 1 << 30  # payloads held for the writer beyond this: the put is dropped
_CLOSE_WAIT = 30.0  # seconds close() waits for pending writes


@dataclass(eq=False)
class _Entry:
    meta: StoredPrefix
    name: str  # file name in the folder: random, never derived from the partition
    size: int  # the file's length, header included
    payload: bytes | None  # held until written (load answers from it meanwhile)


def _is_prefix(short: StoredPrefix, long: StoredPrefix) -> bool:
    n = len(short.tokens)
    return n <= len(long.tokens) and bool((short.tokens == long.tokens[:n]).all())


def _covers(kept: StoredPrefix, new: StoredPrefix) -> bool:
    """``kept`` serves every hit ``new`` would: same partition, computed the same way,
    sharing as much, and ``new``'s tokens a prefix of its own."""
    return (
        kept.partition == new.partition
        and kept.tiled == new.tiled
        and kept.shared >= new.shared
        and _is_prefix(new, kept)
    )


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as error:
        log.warning("prefix disk: cannot delete %s: %s", path, error)


class PrefixDisk:
    """Prefix-cache entries (token prefix -> serialized KV) in files, bounded in bytes."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        fingerprint: str,
        *,
        fsync: bool = False,
        max_pending_bytes: int = _PENDING_BYTES,
    ) -> None:
        """Entries live in directory/<fingerprint>/ (fingerprint: a short string such as
        'fp_0123abcd', covering the model file and the build). Scans that folder's headers
        only (not payloads) into an in-memory index. Other fingerprints' folders are never
        read; they are removed (oldest first) when they and this one exceed ``max_bytes``.
        Creates the folder if missing. An unreadable/corrupt header is deleted and skipped.

        ``fsync``: sync each file before renaming it into place (survives a power cut,
        costs the writer a disk flush per entry; without it a crash may leave a damaged
        file, which the checks turn into a miss). ``max_pending_bytes``: payloads waiting
        for the writer are held in memory up to this much; a put beyond it is dropped
        (the engine never waits for the disk, and memory is not unbounded)."""
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise ValueError(f"fingerprint {fingerprint!r} is not a plain folder name")
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.folder = self.directory / fingerprint
        self.max_bytes = max_bytes
        self.max_pending_bytes = max_pending_bytes
        self._fsync = fsync
        self._cond = threading.Condition(threading.RLock())  # guards everything below
        self._index: OrderedDict[int, _Entry] = OrderedDict()  # least recently used first
        self._keys = count(1)
        self._bytes = 0
        self._pending_bytes = 0
        self._jobs: deque[Callable[[], None]] = deque()
        self._busy = False
        self._stopping = False
        self._closed = False
        self.counters = {"dropped": 0, "oversized": 0, "corrupt": 0, "write_errors": 0}
        self.folder.mkdir(parents=True, exist_ok=True)
        self._scan()
        self._thread = threading.Thread(target=self._run, name="chatd-prefix-disk", daemon=True)
        self._thread.start()
        self._enqueue(self._sweep_stale_folders)

    # --- the engine thread's side -------------------------------------------------

    def entries(self) -> list[tuple[int, StoredPrefix]]:
        """(key, meta) of every entry, for lookups (cheap: in memory). Includes entries
        put but not yet written (optimistic): ``load`` serves those from memory."""
        with self._cond:
            return [(key, entry.meta) for key, entry in self._index.items()]

    @property
    def bytes_used(self) -> int:
        """The entries' file sizes (headers included), written or pending."""
        with self._cond:
            return self._bytes

    def put(self, meta: StoredPrefix, data: bytes) -> None:
        """Store an entry: returns at once; the write happens on the writer thread.
        The index reflects it at once. Entries it makes redundant (same partition, same
        tiled, shared <= its shared, tokens a prefix of its tokens) are deleted; a put
        that an entry already covers (the converse) only marks that one used. Over
        ``max_bytes``, least recently used entries go; an entry larger than ``max_bytes``
        is not stored, nor one that would hold more than ``max_pending_bytes`` waiting."""
        if not isinstance(data, bytes):
            data = bytes(data)  # held until written: must not change under the writer
        size = header_size(meta, self.fingerprint) + len(data)
        with self._cond:
            if self._closed:
                return
            if size > self.max_bytes:
                self.counters["oversized"] += 1
                return
            if self._pending_bytes and self._pending_bytes + size > self.max_pending_bytes:
                self.counters["dropped"] += 1
                return
            for key, entry in self._index.items():
                if _covers(entry.meta, meta):
                    self._index.move_to_end(key)
                    self._enqueue(lambda name=entry.name: self._touch(name))
                    return
            for key in [k for k, e in self._index.items() if _covers(meta, e.meta)]:
                self._forget(key)
            while self._index and self._bytes + size > self.max_bytes:
                self._forget(next(iter(self._index)))
            key = next(self._keys)
            entry = _Entry(meta, secrets.token_hex(12) + SUFFIX, size, data)
            self._index[key] = entry
            self._bytes += size
            self._pending_bytes += size
            self._enqueue(lambda: self._write(key, entry))

    def load(self, key: int) -> bytes | None:
        """The payload, verified against the digest in its header, or None (and the entry
        deleted) when missing, corrupt or truncated. Marks it recently used. Reads the
        file on the calling thread (the caller asked for the bytes now)."""
        with self._cond:
            entry = self._index.get(key)
            if entry is None:
                return None
            self._index.move_to_end(key)
            if entry.payload is not None:
                return entry.payload
        payload = self._read(entry)
        with self._cond:
            if self._index.get(key) is not entry:
                return payload  # forgotten meanwhile (another thread): nothing to record
            if payload is None:
                self.counters["corrupt"] += 1
                self._forget(key)
            else:
                self._enqueue(lambda: self._touch(entry.name))
        return payload

    def discard(self, key: int) -> None:
        """Forget an entry and delete its file (on the writer thread). Unknown keys are
        ignored."""
        with self._cond:
            if key in self._index:
                self._forget(key)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write and deletion is done; False if ``timeout``
        (seconds) passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout)

    def close(self, timeout: float = _CLOSE_WAIT) -> None:
        """Flush pending writes (waiting at most ``timeout`` seconds), stop the thread.
        Later puts are ignored; entries already indexed can still be loaded."""
        with self._cond:
            self._closed = True
        if not self.flush(timeout):
            log.warning("prefix disk: closing with writes still pending after %.0f s", timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def stats(self) -> dict[str, int]:
        """Entries, bytes, bytes waiting for the writer, and the counts of puts dropped
        (writer behind), puts too large, corrupt files met, and failed writes."""
        with self._cond:
            return {
                "entries": len(self._index),
                "bytes": self._bytes,
                "pending_bytes": self._pending_bytes,
                **self.counters,
            }

    # --- under the lock -------------------------------------------------------------

    def _forget(self, key: int) -> None:
        """Drop ``key`` from the index; its file goes on the writer thread. A write still
        queued or in flight sees the entry gone and cleans up after itself."""
        entry = self._index.pop(key)
        self._bytes -= entry.size
        if entry.payload is not None:
            self._pending_bytes -= entry.size
            entry.payload = None  # not written yet: the writer skips it
        else:
            self._enqueue(lambda: _unlink(self.folder / entry.name))

    def _enqueue(self, job: Callable[[], None]) -> None:
        with self._cond:  # an RLock: callers may already hold it
            if self._stopping:
                job()  # no writer any more: do it here (close() already waited)
                return
            self._jobs.append(job)
            self._cond.notify_all()

    # --- the writer thread ----------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._stopping)
                if self._stopping:
                    return
                job = self._jobs.popleft()
                self._busy = True
            try:
                job()
            except Exception:  # a failing job must not stop the writer
                log.exception("prefix disk: writer job failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, key: int, entry: _Entry) -> None:
        """Write ``entry`` to a temporary file and rename it into place, unless it was
        forgotten meanwhile (then nothing, or the file deleted again)."""
        with self._cond:
            payload = entry.payload
            if payload is None or self._index.get(key) is not entry:
                return
        path = self.folder / entry.name
        tmp = path.with_name(entry.name + ".tmp")
        try:
            with open(tmp, "wb") as file:
                file.write(encode_header(entry.meta, self.fingerprint, payload))
                file.write(payload)
                file.flush()
                if self._fsync:
                    os.fsync(file.fileno())
            os.replace(tmp, path)
            if self._fsync:
                self._sync_folder()
        except OSError as error:
            log.warning("prefix disk: cannot write %s: %s", path, error)
            _unlink(tmp)
            with self._cond:
                self.counters["write_errors"] += 1
                if self._index.get(key) is entry:
                    self._forget(key)
            return
        with self._cond:
            if self._index.get(key) is entry and entry.payload is not None:
                entry.payload = None
                self._pending_bytes -= entry.size
                return
        _unlink(path)  # forgotten while it was being written

    def _sync_folder(self) -> None:
        """Make the rename itself durable (POSIX: the directory's own entry list)."""
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _touch(self, name: str) -> None:
        """Record a use in the file's mtime: the LRU order a restart reads back."""
        with contextlib.suppress(OSError):  # gone: the next load finds out
            os.utime(self.folder / name)

    # --- files (the constructor and the writer) -------------------------------------

    def _read(self, entry: _Entry) -> bytes | None:
        """``entry``'s payload from its file, or None if the file is not exactly that
        entry, whole and sound."""
        try:
            with open(self.folder / entry.name, "rb") as file:
                header = read_header(file, self.fingerprint)
                if header.meta != entry.meta or header.size + header.payload_length != entry.size:
                    raise CorruptEntry("not the indexed entry")
                payload = file.read(header.payload_length)
                if len(payload) != header.payload_length or file.read(1):
                    raise CorruptEntry("payload length")
        except (OSError, CorruptEntry) as error:
            log.warning("prefix disk: entry %s refused: %s", entry.name, error)
            return None
        if payload_digest(payload) != header.payload_digest:
            log.warning("prefix disk: entry %s refused: payload digest", entry.name)
            return None
        return payload

    def _scan(self) -> None:
        """The folder's entries into the index, oldest use first; damaged files and
        leftover temporary files deleted; then the bound enforced."""
        found: list[tuple[int, _Entry]] = []
        for path in self.folder.iterdir():
            if path.name.endswith(TMP_SUFFIX):
                _unlink(path)  # a write cut short by a crash
                continue
            if not path.name.endswith(SUFFIX) or not path.is_file():
                continue  # not ours: left alone
            try:
                with open(path, "rb") as file:
                    header = read_header(file, self.fingerprint)
                    stat = os.fstat(file.fileno())
                if stat.st_size != header.size + header.payload_length:
                    raise CorruptEntry("file length")
            except (OSError, CorruptEntry) as error:
                log.warning("prefix disk: deleting %s: %s", path.name, error)
                self.counters["corrupt"] += 1
                _unlink(path)
                continue
            found.append((stat.st_mtime_ns, _Entry(header.meta, path.name, stat.st_size, None)))
        for _, entry in sorted(found, key=lambda pair: pair[0]):
            self._index[next(self._keys)] = entry
            self._bytes += entry.size
        while self._bytes > self.max_bytes:
            entry = self._index.popitem(last=False)[1]
            self._bytes -= entry.size
            _unlink(self.folder / entry.name)

    def _sweep_stale_folders(self) -> None:
        """Other fingerprints' folders, oldest first, while they and this folder exceed
        the bound. Only this tier's files are deleted (and then the folder if empty):
        ``directory`` may hold anything else."""
        stale: list[tuple[int, Path, list[Path], int]] = []
        for folder in self.directory.iterdir():
            if folder.name == self.fingerprint or not folder.is_dir():
                continue
            files: list[Path] = []
            size = newest = 0
            try:
                for path in folder.iterdir():
                    if _is_ours(path):
                        stat = path.stat()
                        files.append(path)
                        size += stat.st_size
                        newest = max(newest, stat.st_mtime_ns)
            except OSError as error:  # unreadable, or changing under us: not ours to judge
                log.warning("prefix disk: skipping %s: %s", folder, error)
                continue
            if files:
                stale.append((newest, folder, files, size))
        total = self.bytes_used + sum(size for *_, size in stale)
        for _, folder, files, size in sorted(stale, key=lambda s: s[0]):
            if total <= self.max_bytes:
                break
            log.info("prefix disk: removing %s (another model or build)", folder)
            for path in files:
                _unlink(path)
            total -= size
            with contextlib.suppress(OSError):  # something else lives there
                folder.rmdir()


def _is_ours(path: Path) -> bool:
    """A file this tier wrote: a temporary one by name, an entry by name and magic."""
    if path.name.endswith(TMP_SUFFIX):
        return True
    if not path.name.endswith(SUFFIX) or not path.is_file():
        return False
    try:
        with open(path, "rb") as file:
            return file.read(len(MAGIC)) == MAGIC
    except OSError:
        return False
