"""A token cache in a file, shared by the processes of one host."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from contextlib import AbstractContextManager
from typing import Any

from ._shared import finite

#: A token file larger than this (16 MiB, room for hundreds of clients' tokens) is
#: not ours: it is treated as empty, never read into memory.
MAX_FILE_BYTES = 16 * 1024 * 1024


class FileCache:
    """Keeps tokens in one file (mode 0600) that the processes of a host share.

    Writes are atomic (a temporary file renamed over the old one); a lock file
    beside it (``path + ".lock"``, an OS lock that dies with its process, so a
    crashed process blocks nobody) lets one process fetch while the others wait
    for its token. A corrupted, truncated, oversized or foreign file, or an
    entry that makes no sense (an expiry that is not a finite number, say), is
    ignored and rewritten by the next store. Tokens are encrypted (see
    ``encryption_key``).

    ``ClientCredentialsAuth(..., cache=FileCache("/run/app/token.cache"))``
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encryption_key: bytes | None = None,
        lock_timeout: float = 30.0,
    ) -> None:
        self.path = os.fspath(path)
        self.encryption_key = encryption_key
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"FileCache({self.path!r})"

    def refresh_lock(self, key: str) -> AbstractContextManager[object]:
        # A new lock object each time: filelock refuses one inherited across fork
        # (gunicorn --preload, Celery prefork), and fetches are rare. filelock is
        # imported here: reading the file (``bearer-m2m token``'s fast path) needs no lock.
        from filelock import FileLock

        return FileLock(self.path + ".lock", timeout=self.lock_timeout, mode=0o600)

    def load(self, key: str) -> bytes | None:
        return _live_blob(self._entries().get(key), time.time())

    def store(self, key: str, blob: bytes, ttl: float) -> None:
        now = time.time()
        entries = {
            name: entry
            for name, entry in self._entries().items()
            if _live_blob(entry, now) is not None  # expired or damaged entries are dropped
        }
        entries[key] = {"blob": base64.b64encode(blob).decode(), "until": now + ttl}
        self._write({"bearer_m2m": 1, "tokens": entries})

    def _entries(self) -> dict[str, Any]:
        document = _read_json(self.path)
        tokens = document.get("tokens") if isinstance(document, dict) else None
        return tokens if isinstance(tokens, dict) else {}

    def _write(self, document: dict[str, Any]) -> None:
        import tempfile  # for writers only: a read (the command's fast path) needs none

        directory = os.path.dirname(os.path.abspath(self.path))
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".bearer_m2m-")  # 0600
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(document, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            os.unlink(temporary)
            raise


def _read_json(path: str) -> object:
    """The file's JSON, or ``None`` when there is none to be had.

    Missing, unreadable, not a regular file (a FIFO would block the open, a device
    never end), larger than :data:`MAX_FILE_BYTES`, not JSON, nested beyond
    reason: all the same to the caller, a file to ignore and replace.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(descriptor, "rb") as file:
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):
                return None
            raw = file.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_FILE_BYTES:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, huge integers, deep nesting
        return None


def _live_blob(entry: object, now: float) -> bytes | None:
    """An entry's sealed blob while the entry is valid; ``None`` for an expired one
    and for anything this class would not have written (an ``until`` that is not a
    finite number, a blob that is not base64 text)."""
    if not isinstance(entry, dict):
        return None
    until, blob = finite(entry.get("until")), entry.get("blob")
    if until is None or until <= now or not isinstance(blob, str):
        return None
    try:
        return base64.b64decode(blob, validate=True)
    except ValueError:  # binascii.Error, and non-ASCII text
        return None
