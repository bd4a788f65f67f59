"""Tokens shared between processes and hosts, sealed at rest.

A :class:`TokenCache` is a small protocol (load, store, a lock for refreshing)
that :class:`~bearer_m2m.FileCache` and :class:`~bearer_m2m.RedisCache`
implement. :class:`SharedTokens` puts one client's tokens in such a cache:
under the cache's lock it adopts a token another process stored, or fetches
one and stores it, so that one process fetches while the others wait and then
read its token.

Everything here runs in the token source's fetch thread, never on an event
loop and never on a request's cached path, which stays in process memory; the
one exception, :meth:`SharedTokens.peek`, is ``bearer-m2m token`` reading a
cached token before it builds a client. The events (and logging) are imported
when something is to be told, not for a read.
"""

from __future__ import annotations

import hashlib
import json
import math
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

from .._config import ClientConfig
from .._policy import MIN_TOKEN_REUSE, RefreshPolicy
from .._tokens import GrantedToken, granted_token
from ..errors import ConfigurationError, InvalidTokenResponse
from ._tiered import TieredCache

_T = TypeVar("_T")
_FORMAT = b"bm1"  # blob format: version, 12-byte nonce, AES-GCM ciphertext and tag

#: The longest a cache keeps an entry, in seconds (30 days, Auth0's longest token
#: lifetime). A token said to live longer is fetched again after that, once per
#: process; no store is ever asked for an expiry it cannot represent (Redis refuses
#: one that overflows its clock, a file would hold a number nobody can read back).
MAX_CACHE_TTL = 30 * 86400.0
#: How far the clock of the host that stored an entry may run ahead of ours, in
#: seconds: its entries then seem to outlive their lifetime by that much. An entry
#: whose expiry lies further beyond its lifetime was not written by us.
TOLERATED_CLOCK_SKEW = 60.0


class TokenCache(Protocol):
    """Where tokens are kept for other processes to find.

    ``load`` and ``store`` move opaque, already encrypted blobs; ``refresh_lock``
    is held while one process checks the cache and fetches. Implementations raise
    whatever their store raises: failures are caught and reported by the caller,
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
    """A decrypted cache entry; only :func:`_stored_from` makes one from a blob."""

    access_token: str
    expires_at: float  # epoch seconds: processes share the wall clock, not the monotonic one
    lifetime: float  # finite and positive


class SharedTokens:
    """One client's tokens in a shared cache, encrypted and bound to the client.

    The cache key names the token URL, client, audience, organization, scope,
    resource and DPoP key thumbprint (hashed: never the secret); the same fields are the AES-GCM
    associated data, so a blob copied under another client's key does not open.
    """

    def __init__(self, cache: TokenCache, config: ClientConfig, policy: RefreshPolicy) -> None:
        self._cache = cache
        self._layers = _layers_of(cache)
        self._policy = policy
        self._key = cache_key(config)
        if cache.encryption_key is not None and (
            not isinstance(cache.encryption_key, bytes) or len(cache.encryption_key) < 16
        ):
            raise ConfigurationError("a cache's encryption_key must be at least 16 bytes")
        self._aead = AESGCM(_derive_key(cache.encryption_key or _credential_material(config)))
        # Taken by the first failure and never released: exactly one is logged.
        self._first_failure = threading.Lock()

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
            self._failed("lock", failure)
            return fetch()
        try:
            return self._adopt_or_fetch(fetch, avoid)
        finally:
            try:
                lock.__exit__(None, None, None)
            except Exception as exc:  # an expired Redis lock, say: the token is safe anyway
                self._failed("unlock", exc)

    def peek(self) -> GrantedToken | None:
        """The cached token, read without the refresh lock, if it is good and not due
        for refresh (the rule :meth:`obtain` adopts by); ``None`` for anything else,
        a failing cache included, which is neither logged nor counted: the caller
        then goes the usual way, through :meth:`obtain`, which will meet it again.

        Nothing is written (no backfill of a tiered cache's nearer layers): this is
        ``bearer-m2m token``'s fast path, which must cost a file read and a decryption.
        """
        for layer in self._layers:
            try:
                blob = layer.load(self._key)
            except Exception:
                return None
            granted = self._granted_from(blob, None) if blob is not None else None
            if granted is not None:
                return granted
        return None

    def _adopt_or_fetch(self, fetch: Callable[[], GrantedToken], avoid: str | None) -> GrantedToken:
        from .. import _events as events

        try:
            adopted = self._adoptable(avoid)
        except _CacheFailure as failure:
            self._failed("load", failure)
        else:
            if adopted is not None:
                events.emit(events.CacheAdopted(adopted.fingerprint))
                return adopted
            events.emit(events.CacheMissed())
        granted = fetch()
        try:
            self._store(granted)
        except _CacheFailure as failure:
            self._failed("store", failure)
        return granted

    def _adoptable(self, avoid: str | None) -> GrantedToken | None:
        """The first good token of the cache's layers, nearest first.

        Each layer is judged on its own: a stale or damaged entry in a host's file
        must not hide the fresh token another host put in Redis (every host would
        then fetch its own). The nearer layers that lacked it are given it, so the
        host's other processes find it there.
        """
        for depth, layer in enumerate(self._layers):
            blob = self._call(layer.load, self._key)
            granted = self._granted_from(blob, avoid) if blob is not None else None
            if granted is not None:
                assert blob is not None
                self._backfill(self._layers[:depth], blob, granted)
                return granted
        return None

    def _granted_from(self, blob: bytes, avoid: str | None) -> GrantedToken | None:
        """The token a blob holds, if it is ours, sane and not yet due for refresh."""
        stored = self._open(blob)
        if stored is None or stored.access_token == avoid:
            return None
        left = stored.expires_at - time.time()
        if not 0 < left <= stored.lifetime + TOLERATED_CLOCK_SKEW:
            return None  # expired, or an expiry its lifetime cannot reach: not an entry of ours
        # Never more than its whole lifetime, whichever host's clock runs ahead.
        remaining = min(left, stored.lifetime)
        answer = {"access_token": stored.access_token, "token_type": "Bearer"}
        try:  # the gate a server's token passes: sendable in a header, of bounded size
            checked = granted_token({**answer, "expires_in": remaining})
        except InvalidTokenResponse:
            return None
        granted = GrantedToken(checked.access_token, checked.expires_in, lifetime=stored.lifetime)
        return granted if not self._due_for_refresh(granted) else None

    def _due_for_refresh(self, granted: GrantedToken) -> bool:
        """Whether the policy would refresh this token now rather than use it.

        The schedule never sets a refresh sooner than MIN_TOKEN_REUSE from now, which
        hides whether one is due; asked about the token as it was MIN_TOKEN_REUSE
        earlier in its life (same ``lifetime``, so the same margins), it tells.
        """
        assert granted.expires_in is not None and granted.lifetime is not None
        earlier = GrantedToken(
            granted.access_token, granted.expires_in + MIN_TOKEN_REUSE, lifetime=granted.lifetime
        )
        return self._policy.schedule(earlier, now=0.0).refresh_at <= MIN_TOKEN_REUSE

    def _backfill(self, layers: tuple[TokenCache, ...], blob: bytes, granted: GrantedToken) -> None:
        for layer in layers:
            try:
                layer.store(self._key, blob, self._ttl(granted))
            except Exception as exc:  # the token is good all the same
                self._failed("store", exc)
                return

    def _store(self, granted: GrantedToken) -> None:
        lifetime = self._policy.lifetime_of(granted)
        stored = _Stored(granted.access_token, time.time() + lifetime, lifetime)
        ttl = self._ttl(granted)
        if ttl > 0:
            self._call(self._cache.store, self._key, self._seal(stored), ttl)

    def _ttl(self, granted: GrantedToken) -> float:
        """How long a store keeps the entry: it ends before the token does, and is bounded."""
        return min(self._policy.schedule(granted, now=0.0).expires_at, MAX_CACHE_TTL)

    def _seal(self, stored: _Stored) -> bytes:
        nonce = os.urandom(12)
        plain = json.dumps(
            {"t": stored.access_token, "e": stored.expires_at, "l": stored.lifetime}
        ).encode()
        return _FORMAT + nonce + self._aead.encrypt(nonce, plain, self._key.encode())

    def _open(self, blob: bytes) -> _Stored | None:
        """The stored token, or ``None`` for anything foreign, corrupted or not ours."""
        if not isinstance(blob, bytes) or not blob.startswith(_FORMAT):
            return None
        if len(blob) < len(_FORMAT) + 12 + 16:
            return None
        nonce, sealed = blob[len(_FORMAT) : len(_FORMAT) + 12], blob[len(_FORMAT) + 12 :]
        try:
            plain = self._aead.decrypt(nonce, sealed, self._key.encode())
        except InvalidTag:
            return None
        return _stored_from(plain)

    def _call(self, method: Callable[..., _T], *args: object) -> _T:
        try:
            return method(*args)
        except Exception as exc:
            raise _CacheFailure from exc

    def _failed(self, operation: str, error: BaseException) -> None:
        """Tell of a failure at ``operation``: every one counts, the first is also logged."""
        from .. import _events as events

        cause = error.__cause__ if isinstance(error, _CacheFailure) else error
        first = self._first_failure.acquire(blocking=False)
        events.emit(events.CacheFailed(self._cache, operation, cause or error, first=first))


class _CacheFailure(Exception):
    """The cache failed; the caller falls back to fetching on its own."""


def _stored_from(plain: bytes) -> _Stored | None:
    """The entry a decrypted blob holds, or ``None`` for anything this module would
    not have written: not a JSON object, nested beyond reason, a token that is not a
    string, an expiry or lifetime that is not a finite number (NaN, infinity, a
    400-digit integer, a string), a lifetime that is not positive.

    Such an entry is a miss: the token is fetched and the entry overwritten.
    """
    try:
        fields = json.loads(plain)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, huge integers, deep nesting
        return None
    if not isinstance(fields, dict):
        return None
    token, expires_at, lifetime = fields.get("t"), finite(fields.get("e")), finite(fields.get("l"))
    if not isinstance(token, str) or expires_at is None or lifetime is None or lifetime <= 0:
        return None
    return _Stored(token, expires_at, lifetime)


def finite(value: object) -> float | None:
    """A JSON number as a finite float, or ``None``: for booleans, strings, NaN,
    infinities and integers too large for a float (which would raise ``OverflowError``
    in any arithmetic). The one test of a number read back from a store."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _layers_of(cache: TokenCache) -> tuple[TokenCache, ...]:
    """The stores to read, nearest first: a tiered cache's layers, else the cache itself."""
    if isinstance(cache, TieredCache):
        return tuple(layer for inner in cache.layers for layer in _layers_of(inner))
    return (cache,)


def cache_key(config: ClientConfig) -> str:
    """A name for one client's tokens that reveals nothing, the secret least of all.

    A DPoP-bound token is useless without its key, so the key's thumbprint is part of
    the name: processes share a token only when they share the key.
    """
    fields = [config.token_url, config.client_id, config.auth_method, sorted(config.form.items())]
    if config.dpop_key is not None:
        fields.append(["dpop", config.dpop_key.thumbprint])
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
