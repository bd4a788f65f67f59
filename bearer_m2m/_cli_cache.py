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

:func:`cached_token` is the command's fast path: it names the configuration as
the library does and reads its token from the file, without the lock, without
building a client (so without importing requests, Authlib or filelock), and
says ``None`` whenever the full path might answer otherwise.
"""

from __future__ import annotations

import math
import os
import re
import stat
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, suppress

from ._config import build_config
from ._env import KNOWN, settings_from_env
from ._policy import RefreshPolicy
from .caches._file import FileCache
from .caches._shared import SharedTokens, TokenCache

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


#: The keyword arguments the fast path can give ``build_config`` exactly as the full path
#: would: a secret, a token URL and the request's fields. Any other (an issuer, a key,
#: a certificate, DPoP, one added later) leaves the token to the full path.
FAST_SETTINGS = frozenset(
    {"token_url", "client_id", "client_secret", "audience", "organization", "scope", "resource"}
    | {"auth_method", "verify"}
)


def cached_token(
    prefix: str,
    settings: Mapping[str, str],
    setting: str | None,
    environ: Mapping[str, str],
    *,
    lock_timeout: float,
    allow_insecure_http: bool,
) -> tuple[str, str, int] | None:
    """The cached token of the configuration ``settings`` (``{prefix}*`` variables, as
    ``ClientCredentialsAuth.from_env`` reads them) describes, if it is good and not
    due for refresh: the token, its type and the epoch second the command's
    ``--json`` calls ``expires_at``. ``None`` for anything else (no usable entry, a
    configuration this path does not handle, any error): the caller then builds the
    client, which reports what is wrong or fetches.

    ``setting`` and ``lock_timeout`` are :func:`command_cache`'s; the lock is never taken.
    """
    values = {name: value for name, value in settings.items() if value != ""}
    if any(not name.startswith(prefix) or name[len(prefix) :] not in KNOWN for name in values):
        return None  # the full path warns of an unknown setting, once
    secret_file = values.get(prefix + "CLIENT_SECRET_FILE")
    if secret_file is not None and not _regular_file(secret_file):
        return None  # a pipe (<(...)) can be read once: by the full path
    try:
        options = settings_from_env(prefix, values)
        if not options.keys() <= FAST_SETTINGS or "client_secret" not in options:
            return None
        if "token_url" not in options:
            return None
        config = build_config(
            options["token_url"],
            client_id=options["client_id"],
            client_secret=options["client_secret"],
            private_key=None,
            private_key_id=None,
            signing_algorithm=None,
            assertion_audience=None,
            audience=options.get("audience"),
            organization=options.get("organization"),
            scope=options.get("scope"),
            resource=options.get("resource"),
            extra_params=None,
            auth_method=options.get("auth_method"),
            timeout=10.0,  # ClientCredentialsAuth's default; neither key depends on it
            verify=options.get("verify", True),
            cert=None,
            allow_insecure_http=allow_insecure_http,
        )
        cache = command_cache(setting, environ, lock_timeout=lock_timeout)
        if cache is None:
            return None
        policy = RefreshPolicy()  # the command's: ClientCredentialsAuth's defaults
        granted = SharedTokens(cache, config, policy).peek()
    except Exception:  # a bad setting, an unreadable cache: the full path will say
        return None
    if granted is None:
        return None
    # As the token source would schedule it (see the command's _expires_at), on the wall clock.
    expires_at = math.floor(time.time() + policy.schedule(granted, now=0.0).expires_at)
    return granted.access_token, config.token_type, expires_at


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


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
