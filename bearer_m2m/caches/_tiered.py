"""Caches in front of caches: a host's file before the fleet's Redis."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING

from ..errors import ConfigurationError

if TYPE_CHECKING:  # _shared reads a TieredCache's layers one by one
    from ._shared import TokenCache


class TieredCache:
    """Asks its layers in order, nearest first, and stores in all of them.

    ``TieredCache(FileCache("/run/app/token.cache"), RedisCache("redis://cache:6379/0"))``:
    the processes of a host queue on the file lock, so only one per host asks
    Redis, and one host of the fleet fetches. The token source judges each
    layer's entry on its own: a stale or damaged entry in the file does not hide
    a good token in Redis, and a token adopted from Redis is copied into the
    file for the host's other processes. A layer that fails fails the whole
    cache for that fetch, which then happens locally, as with one cache.
    """

    def __init__(self, *layers: TokenCache, encryption_key: bytes | None = None) -> None:
        if not layers:
            raise ConfigurationError("TieredCache needs at least one layer")
        self.layers = layers
        self.encryption_key = encryption_key
        self.lock_timeout = sum(layer.lock_timeout for layer in layers)

    def __repr__(self) -> str:
        return f"TieredCache({', '.join(map(repr, self.layers))})"

    def refresh_lock(self, key: str) -> AbstractContextManager[object]:
        return _all_locks(self.layers, key)

    def load(self, key: str) -> bytes | None:
        for layer in self.layers:
            blob = layer.load(key)
            if blob is not None:
                return blob
        return None

    def store(self, key: str, blob: bytes, ttl: float) -> None:
        for layer in self.layers:
            layer.store(key, blob, ttl)


@contextmanager
def _all_locks(layers: Sequence[TokenCache], key: str) -> Iterator[None]:
    # Always nearest first, so that every process takes the locks in one order.
    with ExitStack() as stack:
        for layer in layers:
            stack.enter_context(layer.refresh_lock(key))
        yield
