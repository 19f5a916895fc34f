"""The data directory and chatd's files in it are the user chatd runs as's alone: the
directory 0700, the SQLite database 0600 (every stored conversation, the key digests and
the server secret are in it). SQLite gives a database's ``-wal``, ``-shm`` and
``-journal`` files the database file's own mode, so creating the database 0600 before
SQLite opens it covers them; whatever the umask.

What an older chatd (or a umask) left looser is tightened at start, saying so. The
directory is tightened only when it holds nothing but chatd's files: a ``--data-dir``
that is someone's shared folder (``/srv``, ``/tmp``) is not chatd's to close, so it is
only warned about (chatd's files in it are 0600 all the same)."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = ["DATABASE_FILE", "private_data_dir", "private_database"]

log = logging.getLogger("chatd.store")

DATABASE_FILE = "chatd.db"
_SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal")
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` 0700 (its missing parents as the umask says), or tighten it
    when it holds only chatd's files; warn when it stays open to others."""
    if not data_dir.exists():
        data_dir.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(data_dir, DIR_MODE)  # mkdir's mode is masked by the umask, both ways
        return
    mode = stat.S_IMODE(data_dir.stat().st_mode)
    if not mode & 0o077:
        return
    ours = {DATABASE_FILE + s for s in _SQLITE_SUFFIXES}
    foreign = [p.name for p in data_dir.iterdir() if p.name not in ours]
    if foreign:
        log.warning(
            "data directory %s is mode %o (others may list it) and holds files that are not"
            " chatd's, so it is left as is; chatd's own files in it are %o",
            data_dir,
            mode,
            FILE_MODE,
        )
        return
    _tighten(data_dir, mode, DIR_MODE, "data directory")


def private_database(path: Path) -> None:
    """Create the SQLite database ``path`` empty and 0600 before SQLite opens it (an
    empty file is an empty database), and tighten it and its ``-wal``, ``-shm`` and
    ``-journal`` files where an earlier start left them looser."""
    try:
        # new: 0600 or less, whatever the umask
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    except FileExistsError:
        pass
    except OSError:  # no such folder, not writable...: SQLite will say so when it opens
        return
    for suffix in _SQLITE_SUFFIXES:
        p = Path(f"{path}{suffix}")
        try:
            mode = stat.S_IMODE(p.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            _tighten(p, mode, FILE_MODE, "database file")


def _tighten(path: Path, mode: int, private: int, what: str) -> None:
    try:
        os.chmod(path, mode & private)
    except OSError as e:  # not ours (another user's file): say so, carry on
        log.warning(
            "%s %s is mode %o, readable by others, and cannot be made %o: %s",
            *(what, path, mode, private, e.strerror),
        )
        return
    log.warning("%s %s was mode %o, readable by others: made %o", what, path, mode, mode & private)
