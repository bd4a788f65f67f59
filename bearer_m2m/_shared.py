"""Tokens shared between processes and hosts, sealed at rest.

A :class:`TokenCache` is a small protocol (load, store, a lock for refreshing)
that :class:`~bearer_m2m.FileCache` and :class:`~bearer_m2m.RedisCache`
implement. :class:`SharedTokens` puts one client's tokens in such a cache:
under the cache's lock it adopts a token another process stored, or fetches
one and stores it, so that one process fetches while the others wait and then
read its token.

Everything here runs in the token source's fetch thread, never on an event
loop and never on a request's cached path, which stays in process memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ._config import ClientConfig
from ._policy import RefreshPolicy
from ._tokens import GrantedToken
from .errors import ConfigurationError

logger = logging.getLogger("bearer_m2m")

_T = TypeVar("_T")
_FORMAT = b"bm1"  # blob format: version, 12-byte nonce, AES-GCM ciphertext and tag


class TokenCache(Protocol):
    """Where tokens are kept for other processes to find.

    ``load`` and ``store`` move opaque, already encrypted blobs; ``refresh_lock``
    is held while one process checks the cache and fetches. Implementations raise
    whatever their store raises: failures are caught and logged by the caller,
    which then fetches on its own.
    """

    #: Seconds a process waits for another one's fetch before fetching on its own.
    lock_timeout: float
    #: A key of the cache's own, or ``None`` to derive one from the client's credentials.
    encryption_key: bytes | None

    def load(self, key: str) -> bytes | None: ...

    def store(self, key: str, blob: bytes, ttl: float) -> None: ...

    def refresh_lock(self, key: str) -> AbstractContextManager[object]:
        """Held by one process at a time; waiting for it gives up after ``lock_timeout`` s."""
        ...


@dataclass(frozen=True)
class _Stored:
    access_token: str
    expires_at: float  # epoch seconds: processes share the wall clock, not the monotonic one
    lifetime: float


class SharedTokens:
    """One client's tokens in a shared cache, encrypted and bound to the client.

    The cache key names the token URL, client, audience, organization, scope and
    resource (hashed: never the secret); the same fields are the AES-GCM
    associated data, so a blob copied under another client's key does not open.
    """

    def __init__(self, cache: TokenCache, config: ClientConfig, policy: RefreshPolicy) -> None:
        self._cache = cache
        self._policy = policy
        self._key = cache_key(config)
        if cache.encryption_key is not None and (
            not isinstance(cache.encryption_key, bytes) or len(cache.encryption_key) < 16
        ):
            raise ConfigurationError("a cache's encryption_key must be at least 16 bytes")
        self._aead = AESGCM(_derive_key(cache.encryption_key or _credential_material(config)))
        self._warned = threading.Event()

    def __repr__(self) -> str:
        return f"<SharedTokens {self._key} in {self._cache!r}>"

    @property
    def lock_timeout(self) -> float:
        return self._cache.lock_timeout

    def obtain(self, fetch: Callable[[], GrantedToken], avoid: str | None) -> GrantedToken:
        """A token from the cache if another process stored a good one, else a fetched one.

        ``avoid`` is a token an API rejected: it is not adopted again. When the
        cache fails at any step, the token is fetched all the same.
        """
        try:
            lock = self._call(self._cache.refresh_lock, self._key)
            self._call(lock.__enter__)
        except _CacheFailure as failure:
            self._warn_once(failure)
            return fetch()
        try:
            return self._adopt_or_fetch(fetch, avoid)
        finally:
            try:
                lock.__exit__(None, None, None)
            except Exception as exc:  # an expired Redis lock, say: the token is safe anyway
                self._warn_once(exc)

    def _adopt_or_fetch(self, fetch: Callable[[], GrantedToken], avoid: str | None) -> GrantedToken:
        try:
            adopted = self._adoptable(avoid)
        except _CacheFailure as failure:
            self._warn_once(failure)
            adopted = None
        if adopted is not None:
            logger.debug("adopted token %s from the shared cache", adopted.fingerprint)
            return adopted
        granted = fetch()
        try:
            self._store(granted)
        except _CacheFailure as failure:
            self._warn_once(failure)
        return granted

    def _adoptable(self, avoid: str | None) -> GrantedToken | None:
        blob = self._call(self._cache.load, self._key)
        stored = self._open(blob) if blob is not None else None
        if stored is None or stored.access_token == avoid:
            return None
        remaining = stored.expires_at - time.time()
        granted = GrantedToken(stored.access_token, remaining, lifetime=stored.lifetime)
        cached = self._policy.schedule(granted, now=0.0)
        return granted if cached.refresh_at > 0 else None  # not due for refresh yet

    def _store(self, granted: GrantedToken) -> None:
        lifetime = self._policy.lifetime_of(granted)
        stored = _Stored(granted.access_token, time.time() + lifetime, lifetime)
        ttl = self._policy.schedule(granted, now=0.0).expires_at  # ends before the token does
        if ttl > 0:
            self._call(self._cache.store, self._key, self._seal(stored), ttl)

    def _seal(self, stored: _Stored) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps(
            {"t": stored.access_token, "e": stored.expires_at, "l": stored.lifetime}
        ).encode()
        return _FORMAT + nonce + self._aead.encrypt(nonce, plain, self._key.encode())

    def _open(self, blob: bytes) -> _Stored | None:
        """The stored token, or ``None`` for anything foreign, corrupted or not ours."""
        if not blob.startswith(_FORMAT) or len(blob) < len(_FORMAT) + 12 + 16:
            return None
        nonce, sealed = blob[len(_FORMAT) : len(_FORMAT) + 12], blob[len(_FORMAT) + 12 :]
        try:
            fields = json.loads(self._aead.decrypt(nonce, sealed, self._key.encode()))
            return _Stored(str(fields["t"]), float(fields["e"]), float(fields["l"]))
        except (InvalidTag, ValueError, KeyError, TypeError):
            return None

    def _call(self, method: Callable[..., _T], *args: object) -> _T:
        try:
            return method(*args)
        except Exception as exc:
            raise _CacheFailure from exc

    def _warn_once(self, error: BaseException) -> None:
        cause = error.__cause__ if isinstance(error, _CacheFailure) else error
        if not self._warned.is_set():
            self._warned.set()
            logger.warning(
                "the shared token cache %r failed (%s); fetching tokens without it",
                self._cache,
                type(cause).__name__,
            )


class _CacheFailure(Exception):
    """The cache failed; the caller falls back to fetching on its own."""


def cache_key(config: ClientConfig) -> str:
    """A name for one client's tokens that reveals nothing, the secret least of all."""
    fields = [config.token_url, config.client_id, config.auth_method, sorted(config.form.items())]
    digest = hashlib.sha256(json.dumps(fields).encode()).hexdigest()
    return f"bearer_m2m:{digest[:40]}"


def _credential_material(config: ClientConfig) -> bytes:
    """What only this client holds: its secret, its private key, or its TLS key file."""
    if config.client_secret:
        return config.client_secret.encode()
    if config.signing_key is not None:
        return config.signing_key.as_pem(private=True)
    if isinstance(config.cert, tuple):
        with open(config.cert[1], "rb") as file:
            return file.read()
    if isinstance(config.cert, str):
        with open(config.cert, "rb") as file:
            return file.read()
    raise AssertionError("a configured client always has a credential")  # pragma: no cover


def _derive_key(material: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bearer_m2m token cache v1"
    ).derive(material)
