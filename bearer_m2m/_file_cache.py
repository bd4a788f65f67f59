"""A token cache in a file, shared by the processes of one host."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from contextlib import AbstractContextManager
from typing import Any

from filelock import FileLock


class FileCache:
    """Keeps tokens in one file (mode 0600) that the processes of a host share.

    Writes are atomic (a temporary file renamed over the old one); a lock file
    beside it (``path + ".lock"``, an OS lock that dies with its process, so a
    crashed process blocks nobody) lets one process fetch while the others wait
    for its token. A corrupted, truncated or foreign file is ignored and
    rewritten. Tokens are encrypted (see ``encryption_key``).

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
        # (gunicorn --preload, Celery prefork), and fetches are rare.
        return FileLock(self.path + ".lock", timeout=self.lock_timeout, mode=0o600)

    def load(self, key: str) -> bytes | None:
        entry = self._entries().get(key)
        if not isinstance(entry, dict):
            return None
        try:
            if float(entry["until"]) <= time.time():
                return None
            return base64.b64decode(entry["blob"], validate=True)
        except (KeyError, TypeError, ValueError):
            return None

    def store(self, key: str, blob: bytes, ttl: float) -> None:
        now = time.time()
        entries = {
            name: entry
            for name, entry in self._entries().items()
            if isinstance(entry, dict) and _still_valid(entry, now)
        }
        entries[key] = {"blob": base64.b64encode(blob).decode(), "until": now + ttl}
        self._write({"bearer_m2m": 1, "tokens": entries})

    def _entries(self) -> dict[str, Any]:
        try:
            with open(self.path, encoding="utf-8") as file:
                document = json.load(file)
        except (OSError, ValueError, RecursionError):  # unreadable, not JSON, absurdly nested
            return {}
        tokens = document.get("tokens") if isinstance(document, dict) else None
        return tokens if isinstance(tokens, dict) else {}

    def _write(self, document: dict[str, Any]) -> None:
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


def _still_valid(entry: dict[str, Any], now: float) -> bool:
    try:
        return float(entry["until"]) > now
    except (KeyError, TypeError, ValueError):
        return False
