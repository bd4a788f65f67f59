"""A token cache in Redis, shared by the processes of many hosts."""

from __future__ import annotations

import base64
from contextlib import AbstractContextManager
from typing import Any

import redis

from ..errors import ConfigurationError


class RedisCache:
    """Keeps tokens in Redis, where every host of a fleet finds them.

    A token is stored with a TTL that ends before the token does. One host
    fetches under a Redis lock (redis-py's: released only by its owner, expiring
    if the owner dies) while the others wait for it, within ``lock_timeout``.
    When Redis is unreachable or slow, tokens are fetched locally (with one
    warning), and no call waits longer than ``socket_timeout``. ``lock_expiry``
    must exceed the longest fetch (the retry deadline plus the timeout).

    Pass a URL, or a synchronous redis-py client (``Redis``, ``RedisCluster``,
    or a Sentinel's ``master_for(...)``): ``cache=RedisCache("redis://cache:6379/0")``.
    """

    def __init__(
        self,
        client_or_url: str | Any,
        *,
        encryption_key: bytes | None = None,
        lock_timeout: float = 30.0,
        lock_expiry: float = 60.0,
        socket_timeout: float = 1.0,
    ) -> None:
        self._owns_client = isinstance(client_or_url, str)
        if isinstance(client_or_url, str):
            client_or_url = redis.Redis.from_url(
                client_or_url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout
            )
        elif _is_async(client_or_url) or not callable(getattr(client_or_url, "lock", None)):
            raise ConfigurationError(
                "RedisCache takes a URL or a synchronous redis-py client "
                "(it runs in bearer_m2m's fetch thread, never on the event loop)"
            )
        elif _without_timeout(client_or_url):
            raise ConfigurationError(
                "give the redis-py client a socket_timeout (Redis(..., socket_timeout=1.0)): "
                "without one, a stalled Redis would stall every token fetch"
            )
        self._redis = client_or_url
        self.encryption_key = encryption_key
        self.lock_timeout = lock_timeout
        self.lock_expiry = lock_expiry

    def __repr__(self) -> str:
        # Host, port and database only: a client's own repr may show more than a log should.
        pool = getattr(self._redis, "connection_pool", None)
        settings = getattr(pool, "connection_kwargs", {})
        where = f"{settings.get('host', '?')}:{settings.get('port', '?')}/{settings.get('db', 0)}"
        return f"RedisCache({where if settings else type(self._redis).__name__})"

    def refresh_lock(self, key: str) -> AbstractContextManager[object]:
        # The lock must outlive the longest fetch (retries included: 40 s by default),
        # or a second host would fetch too; and it expires should its owner die.
        lock: AbstractContextManager[object] = self._redis.lock(
            f"{key}:lock", timeout=self.lock_expiry, blocking_timeout=self.lock_timeout
        )
        return lock

    def close(self) -> None:
        """Close the connections of a client this cache made from a URL."""
        if self._owns_client:
            self._redis.close()

    def load(self, key: str) -> bytes | None:
        # base64, so that clients made with decode_responses=True read it too
        try:
            value = self._redis.get(key)
            return base64.b64decode(value, validate=True) if value is not None else None
        except (redis.ResponseError, ValueError, TypeError):
            # Something else under our key: another type (WRONGTYPE), text that is not
            # base64 or not ASCII, bytes a decode_responses client cannot decode. A miss,
            # overwritten by the next store; only Redis being unreachable is a failure.
            return None

    def store(self, key: str, blob: bytes, ttl: float) -> None:
        self._redis.set(key, base64.b64encode(blob), px=max(1, int(ttl * 1000)))


def _without_timeout(client: object) -> bool:
    """True for a client known to wait forever on a stalled server (clusters are not inspected)."""
    settings = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None)
    return isinstance(settings, dict) and settings.get("socket_timeout") is None


def _is_async(client: object) -> bool:
    return type(client).__module__.startswith("redis.asyncio")
