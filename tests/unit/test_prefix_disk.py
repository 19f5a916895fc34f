"""The prefix cache's disk tier (engine/prefix_disk.py) on a temporary folder: round
trip, restart, fingerprints, every kind of damage a miss (never an exception), the byte
bound with least-recently-used eviction (kept across restarts), redundant entries,
partitions kept apart, and the writer thread (pending entries served from memory,
close() flushing). The writer is waited for with flush()/close(), or held still with a
blocking job: no test depends on timing."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from chatd.engine import prefix_disk
from chatd.engine.prefix_disk import PrefixDisk, StoredPrefix
from chatd.engine.prefix_disk_format import header_size

FP = "fp_0123abcd"
BIG = 1 << 20


def meta(tokens: list[int], partition: str = "", tiled: int = 0, shared: int = 0) -> StoredPrefix:
    return StoredPrefix(
        tokens=np.array(tokens, dtype=np.int32), tiled=tiled, partition=partition, shared=shared
    )


def payload(seed: int, size: int = 1000) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def files(disk: PrefixDisk) -> list[Path]:
    return sorted(disk.folder.glob("*" + prefix_disk.SUFFIX))


def metas(disk: PrefixDisk) -> list[StoredPrefix]:
    return [m for _, m in disk.entries()]


def key_of(disk: PrefixDisk, wanted: StoredPrefix) -> int:
    (key,) = [k for k, m in disk.entries() if m == wanted]
    return key


def path_of(disk: PrefixDisk, key: int) -> Path:
    return disk.folder / disk._index[key].name


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[PrefixDisk]]:
    """Every PrefixDisk a test opens, closed at its end (a failing test leaves no thread)."""
    disks: list[PrefixDisk] = []
    yield disks
    for disk in disks:
        disk.close()


@pytest.fixture
def make(tmp_path: Path, opened: list[PrefixDisk]):  # type: ignore[no-untyped-def]
    def make(max_bytes: int = BIG, fingerprint: str = FP, **kwargs: int) -> PrefixDisk:
        disk = PrefixDisk(tmp_path, max_bytes, fingerprint, **kwargs)  # type: ignore[arg-type]
        opened.append(disk)
        return disk

    return make


class Held:
    """Holds the writer thread still (a job that waits), so pending state can be seen."""

    def __init__(self, disk: PrefixDisk) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        disk._enqueue(self._job)
        assert self.started.wait(60), "the writer never ran the holding job"

    def _job(self) -> None:
        self.started.set()
        self.release.wait()


def test_round_trip(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    m, data = meta([1, 2, 3, 4], partition="tenant", tiled=2, shared=3), payload(1)
    disk.put(m, data)
    assert metas(disk) == [m]
    assert disk.flush(60)
    (path,) = files(disk)
    assert disk.bytes_used == path.stat().st_size == header_size(m, FP) + len(data)
    assert disk.load(key_of(disk, m)) == data
    assert disk.stats()["pending_bytes"] == 0


def test_restart_sees_the_entries(make) -> None:  # type: ignore[no-untyped-def]
    first = make()
    kept = {meta([1, 2, 3], "a"): payload(1), meta([7, 8], "b", tiled=1, shared=2): payload(2)}
    for m, data in kept.items():
        first.put(m, data)
    first.close()
    again = make()
    assert set(metas(again)) == set(kept)
    for key, m in again.entries():
        assert again.load(key) == kept[m]
    assert again.bytes_used == first.bytes_used


def test_a_pending_entry_is_served_from_memory(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    held = Held(disk)
    m, data = meta([5, 6, 7]), payload(3)
    disk.put(m, data)
    assert files(disk) == []  # not written yet, yet indexed (optimistically) and loadable
    assert disk.load(key_of(disk, m)) == data
    held.release.set()
    assert disk.flush(60)
    assert len(files(disk)) == 1 and disk.load(key_of(disk, m)) == data


def test_wrong_fingerprint_ignored(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = make(fingerprint="fp_old")
    old.put(meta([1, 2, 3]), payload(1))
    old.close()
    new = make(fingerprint="fp_new")
    assert new.entries() == []
    assert new.flush(60)  # the stale sweep ran: under the bound, the old folder stays
    assert len(files(old)) == 1
    # An entry copied into another fingerprint's folder says whose it is: refused, deleted.
    (path,) = files(old)
    (new.folder / path.name).write_bytes(path.read_bytes())
    assert make(fingerprint="fp_new").entries() == []
    assert files(new) == []


def test_other_fingerprints_removed_when_over_the_bound(make, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = make(fingerprint="fp_old")
    old.put(meta([1, 2, 3]), payload(1, 4000))
    old.close()
    (old.folder / "notes.txt").write_text("not the cache's")
    new = make(max_bytes=3000, fingerprint="fp_new")
    assert new.flush(60)
    assert files(old) == []
    assert (old.folder / "notes.txt").exists()  # only the tier's own files are deleted


def test_flipped_payload_byte_is_a_miss(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    m = meta([1, 2, 3])
    disk.put(m, payload(1))
    assert disk.flush(60)
    key = key_of(disk, m)
    raw = bytearray(path_of(disk, key).read_bytes())
    raw[-1] ^= 0x01
    path_of(disk, key).write_bytes(bytes(raw))
    assert disk.load(key) is None
    assert disk.entries() == [] and disk.bytes_used == 0
    assert disk.flush(60)
    assert files(disk) == []
    assert disk.stats()["corrupt"] == 1


def test_every_flipped_byte_is_refused(make) -> None:  # type: ignore[no-untyped-def]
    """Every byte of a file is covered by a check: a flip anywhere (magic, lengths,
    fingerprint, partition, tokens, digests, payload) is refused, at the restart's scan
    (header) or at the load (payload), and the file deleted."""
    m, data = meta([3, 1, 4, 1, 5], partition="p\u00e9", tiled=2, shared=1), payload(9, 16)
    disk = make()
    disk.put(m, data)
    disk.close()
    (path,) = files(disk)
    good = path.read_bytes()
    for at in range(len(good)):
        damaged = bytearray(good)
        damaged[at] ^= 0x40
        path.write_bytes(bytes(damaged))
        again = make()
        loaded = [again.load(key) for key, _ in again.entries()]
        assert loaded in ([], [None]), f"byte {at} flipped was not refused"
        assert again.entries() == [], f"byte {at}"
        again.close()
        assert not path.exists(), f"byte {at}: the damaged file was kept"


def test_truncated_file(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    a, b = meta([1, 2]), meta([3, 4])
    disk.put(a, payload(1))
    disk.put(b, payload(2))
    assert disk.flush(60)
    key_a, key_b = key_of(disk, a), key_of(disk, b)
    for key, keep in ((key_a, 100), (key_b, 10)):  # in the payload; in the header
        with open(path_of(disk, key), "r+b") as file:
            file.truncate(keep)
    assert disk.load(key_a) is None and disk.load(key_b) is None
    assert disk.entries() == []
    disk.close()
    assert files(disk) == []


def test_truncated_file_deleted_at_restart(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    disk.put(meta([1, 2]), payload(1))
    disk.close()
    (path,) = files(disk)
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 1)
    assert make().entries() == []
    assert not path.exists()


def test_garbage_in_the_folder(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    m, data = meta([1, 2, 3]), payload(1)
    disk.put(m, data)
    disk.close()
    folder = disk.folder
    (folder / "junk.chatdkv").write_bytes(payload(2, 300))
    (folder / "empty.chatdkv").write_bytes(b"")
    (folder / "magic-only.chatdkv").write_bytes(prefix_disk.MAGIC)
    (folder / "cut.chatdkv.tmp").write_bytes(payload(3, 50))  # a write a crash cut short
    (folder / "notes.txt").write_text("someone else's")
    (folder / "sub.chatdkv").mkdir()
    again = make()
    assert metas(again) == [m] and again.load(key_of(again, m)) == data
    names = {p.name for p in folder.iterdir()}
    assert names == {path_of(again, key_of(again, m)).name, "notes.txt", "sub.chatdkv"}


def test_byte_bound_evicts_the_least_recently_used(make) -> None:  # type: ignore[no-untyped-def]
    size = header_size(meta([1]), FP) + 1000
    disk = make(max_bytes=3 * size)
    a, b, c, d = (meta([t]) for t in (1, 2, 3, 4))
    for m in (a, b, c):
        disk.put(m, payload(1))
    assert disk.load(key_of(disk, a)) is not None  # a is now the most recently used
    disk.put(d, payload(2))
    assert metas(disk) == [c, a, d]
    assert disk.bytes_used == 3 * size
    assert disk.flush(60)
    assert len(files(disk)) == 3


def test_lru_order_survives_a_restart(make) -> None:  # type: ignore[no-untyped-def]
    size = header_size(meta([1]), FP) + 1000
    disk = make(max_bytes=3 * size)
    a, b, c, d = (meta([t]) for t in (1, 2, 3, 4))
    for m in (a, b, c):
        disk.put(m, payload(1))
    assert disk.flush(60)
    for seconds, m in ((1000, a), (2000, b), (3000, c)):  # distinct, old last uses
        os.utime(path_of(disk, key_of(disk, m)), (seconds, seconds))
    assert disk.load(key_of(disk, a)) is not None  # recorded in the file's mtime
    disk.close()
    again = make(max_bytes=3 * size)
    assert metas(again) == [b, c, a]
    again.put(d, payload(2))
    assert metas(again) == [c, a, d]


def test_a_smaller_bound_at_restart_evicts(make) -> None:  # type: ignore[no-untyped-def]
    size = header_size(meta([1]), FP) + 1000
    disk = make()
    for t in (1, 2, 3):
        disk.put(meta([t]), payload(t))
    disk.close()
    again = make(max_bytes=2 * size)
    assert len(again.entries()) == 2 and len(files(again)) == 2


def test_redundant_entries_removed(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    short = meta([1, 2, 3], "a", shared=1)
    other_partition = meta([1, 2, 3], "b")
    other_tiling = meta([1, 2, 3], "a", tiled=2)
    more_shared = meta([1, 2], "a", shared=5)
    not_a_prefix = meta([1, 2, 9], "a")
    for m in (short, other_partition, other_tiling, more_shared, not_a_prefix):
        disk.put(m, payload(1))
    long = meta([1, 2, 3, 4, 5], "a", shared=2)
    disk.put(long, payload(2))
    assert set(metas(disk)) == {other_partition, other_tiling, more_shared, not_a_prefix, long}
    assert disk.flush(60)
    assert len(files(disk)) == 5


def test_a_put_an_entry_covers_is_not_stored(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    long, short = meta([1, 2, 3, 4], "a", shared=2), meta([1, 2, 3], "a", shared=1)
    disk.put(long, payload(1))
    disk.put(short, payload(2))
    disk.put(long, payload(1))  # the same again: kept once
    assert metas(disk) == [long]


def test_oversized_entry_not_stored(make) -> None:  # type: ignore[no-untyped-def]
    small = meta([1])
    disk = make(max_bytes=header_size(small, FP) + 1000)
    disk.put(small, payload(1))
    disk.put(meta([2]), payload(2, 1001))
    assert metas(disk) == [small]  # and nothing evicted for it
    assert disk.stats()["oversized"] == 1
    assert disk.flush(60)
    assert len(files(disk)) == 1


def test_close_flushes_pending_writes(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    written = {meta([t, t + 1], str(t)): payload(t) for t in range(10)}
    for m, data in written.items():
        disk.put(m, data)
    disk.close()
    assert len(files(disk)) == 10
    again = make()
    assert {m: again.load(k) for k, m in again.entries()} == written
    disk.put(meta([99]), payload(99))  # after close: ignored
    assert len(files(disk)) == 10


def test_partitions_are_two_entries(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    odd = "../..\x00/\ud800 tenant\n*"  # any characters: never part of a file name
    a, b = meta([1, 2, 3], "tenant-a"), meta([1, 2, 3], odd)
    disk.put(a, payload(1))
    disk.put(b, payload(2))
    disk.close()
    again = make()
    assert set(metas(again)) == {a, b}
    assert again.load(key_of(again, b)) == payload(2)
    assert all("tenant" not in p.name for p in disk.folder.iterdir())


def test_discard(make) -> None:  # type: ignore[no-untyped-def]
    disk = make()
    written, pending = meta([1]), meta([2])
    disk.put(written, payload(1))
    assert disk.flush(60)
    held = Held(disk)
    disk.put(pending, payload(2))
    disk.discard(key_of(disk, written))
    disk.discard(key_of(disk, pending))  # before its write: the writer skips it
    disk.discard(12345)  # unknown: ignored
    assert disk.entries() == [] and disk.bytes_used == 0
    held.release.set()
    assert disk.flush(60)
    assert list(disk.folder.iterdir()) == []
    assert disk.load(1) is None


def test_writer_behind_drops_puts(make) -> None:  # type: ignore[no-untyped-def]
    size = header_size(meta([1]), FP) + 1000
    disk = make(max_pending_bytes=size + 10)
    held = Held(disk)
    disk.put(meta([1]), payload(1))
    disk.put(meta([2]), payload(2))  # the first still waits: memory is bounded, dropped
    assert metas(disk) == [meta([1])] and disk.stats()["dropped"] == 1
    held.release.set()
    assert disk.flush(60)
    disk.put(meta([3]), payload(3))
    assert len(disk.entries()) == 2


def test_a_failed_write_is_forgotten(make, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    disk = make()

    def fail(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(prefix_disk.os, "replace", fail)
    disk.put(meta([1]), payload(1))
    assert disk.flush(60)
    assert disk.entries() == [] and disk.bytes_used == 0
    assert disk.stats()["write_errors"] == 1
    assert list(disk.folder.iterdir()) == []  # the temporary file removed too


def test_caller_array_changes_do_not_reach_the_index() -> None:
    tokens = np.array([1, 2, 3], dtype=np.int32)
    m = StoredPrefix(tokens=tokens, tiled=0, partition="", shared=0)
    tokens[0] = 9
    assert m.tokens.tolist() == [1, 2, 3] and not m.tokens.flags.writeable
    assert m == meta([1, 2, 3]) and hash(m) == hash(meta([1, 2, 3]))


def test_fingerprint_must_be_a_plain_name(tmp_path: Path) -> None:
    for bad in ("", "..", "a/b", "../x", "fp x"):
        with pytest.raises(ValueError):
            PrefixDisk(tmp_path, BIG, bad)


def test_fsync_writes_the_same_files(make) -> None:  # type: ignore[no-untyped-def]
    disk = make(fsync=True)
    m, data = meta([1, 2]), payload(1)
    disk.put(m, data)
    disk.close()
    again = make()
    assert again.load(key_of(again, m)) == data


def test_random_operations_stay_consistent(make) -> None:  # type: ignore[no-untyped-def]
    """Puts, loads and discards in a random order while the writer runs: a load gives the
    exact payload put under that meta or nothing, the bound always holds, and once
    flushed the folder holds exactly the indexed entries (and a restart agrees)."""
    rng = np.random.default_rng(7)
    size = header_size(meta([0, 0, 0]), FP) + 300
    disk = make(max_bytes=6 * size)
    truth: dict[StoredPrefix, bytes] = {}
    for step in range(400):
        action = rng.integers(3)
        if action == 0 or not disk.entries():
            tokens = rng.integers(0, 4, size=int(rng.integers(1, 4))).tolist()
            m = meta(tokens, partition=str(rng.integers(2)))
            disk.put(m, truth.setdefault(m, payload(step, 300)))
        else:
            entries = disk.entries()
            key, m = entries[int(rng.integers(len(entries)))]
            if action == 1:
                assert disk.load(key) == truth[m]
            else:
                disk.discard(key)
        assert disk.bytes_used <= 6 * size
        if step % 50 == 0:
            assert disk.flush(60)
    disk.close()
    indexed = {disk._index[k].name for k, _ in disk.entries()}
    assert {p.name for p in disk.folder.iterdir()} == indexed
    again = make(max_bytes=6 * size)
    assert set(metas(again)) == set(metas(disk))
    for key, m in again.entries():
        assert again.load(key) == truth[m]
