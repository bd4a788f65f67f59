"""Where ``bearer-m2m token`` and ``inspect`` keep a token between invocations.

A shell script that calls ``bearer-m2m token`` before every ``curl`` would
otherwise spend one token request (and, with Auth0, one unit of quota) per
call. The command therefore hands ``ClientCredentialsAuth`` a shared cache, as
a fleet of workers would: the library's :class:`~bearer_m2m.FileCache` does the
sealing (AES-GCM under a key derived from the credentials), the atomic writes
and the refresh lock that makes twenty parallel invocations cost one request.
This module only decides *where*: by default one file per configuration in the
user's cache directory, named by the library's cache key (a hash that reveals
neither the client nor its secret).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress

from .caches._file import FileCache
from .caches._shared import TokenCache

#: The value of ``--cache``-like settings that turns the cache off.
OFF = "off"
#: The directory under the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``).
DIRECTORY_NAME = "bearer-m2m"
#: What the library's ``cache_key`` looks like; anything else never becomes a file name.
_CACHE_KEY = re.compile(r"bearer_m2m:([0-9a-f]{16,64})")


def command_cache(
    setting: str | None, environ: Mapping[str, str], lock_timeout: float
) -> TokenCache | None:
    """The cache the command uses: none for ``off``, the file a path names, or by
    default one file per configuration in the user's cache directory.

    ``lock_timeout`` bounds how long an invocation waits for another one's fetch
    before it fetches on its own.
    """
    if setting is not None and setting.strip().lower() == OFF:
        return None
    if setting:
        return FileCache(os.path.expanduser(setting), lock_timeout=lock_timeout)
    return DirectoryCache(user_cache_directory(environ), lock_timeout=lock_timeout)


def user_cache_directory(environ: Mapping[str, str]) -> str:
    """``$XDG_CACHE_HOME/bearer-m2m``, else ``~/.cache/bearer-m2m``.

    The XDG Base Directory specification says a relative ``XDG_CACHE_HOME`` is
    invalid and to be ignored: a cache that moved with the working directory
    would be a new cache (and a new token) in every directory.
    """
    base = environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, DIRECTORY_NAME)


class DirectoryCache:
    """A :class:`~bearer_m2m.FileCache` per configuration, in a directory only its owner can enter.

    Each method is handed the library's cache key, which names the file: the
    configurations of one user never queue on each other's lock, and a file
    holds one token. The directory is made (mode 0700) when first needed, so a
    read-only home shows up as a failing cache, which the library reports once
    and works around by fetching; it never fails the command.
    """

    #: Tokens are sealed with a key derived from the client's credentials.
    encryption_key: bytes | None = None

    def __init__(self, directory: str, *, lock_timeout: float) -> None:
        self.directory = directory
        self.lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"DirectoryCache({self.directory!r})"

    def load(self, key: str) -> bytes | None:
        return self._file_for(key).load(key)

    def store(self, key: str, blob: bytes, ttl: float) -> None:
        self._file_for(key).store(key, blob, ttl)

    def refresh_lock(self, key: str) -> AbstractContextManager[object]:
        return self._file_for(key).refresh_lock(key)

    def file_path(self, key: str) -> str:
        """The file that holds the token of the configuration ``key`` names."""
        found = _CACHE_KEY.fullmatch(key)
        if found is None:  # never a path built from something that could hold a separator
            raise ValueError("not a cache key of bearer_m2m")
        return os.path.join(self.directory, found.group(1) + ".token")

    def _file_for(self, key: str) -> FileCache:
        path = self.file_path(key)
        make_private_directory(self.directory)
        return FileCache(path, lock_timeout=self.lock_timeout)


def make_private_directory(path: str) -> None:
    """Make ``path`` (and any missing parent) a directory only its owner can enter.

    An existing one is accepted only if it is a real directory of this user;
    one that others may enter is closed (mode 0700), as it is ours. Each
    refusal raises an ``OSError``, which the caller treats as a failing cache.
    """
    if not os.path.isabs(path):
        raise FileNotFoundError("no home directory to keep the token cache in")
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)  # a symbolic link planted here is refused, not followed
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError("the token cache directory is not a directory")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError("the token cache directory belongs to another user")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
