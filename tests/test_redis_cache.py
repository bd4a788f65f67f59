"""RedisCache: one token for the hosts of a fleet, against a real redis-server.

Every test gets its own ``redis-server`` (tests/redis_server.py) on a free
loopback port; some kill it halfway, as an outage would. The token server and
the API are the local ones of the pytest plugin, over real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio

from bearer_m2m import ConfigurationError, RedisCache
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from tests.redis_server import RedisServer, free_port, redis_server
from tests.test_file_cache import (
    CACHE_FAILED,
    HOLD,
    PATIENCE,
    cache_warnings,
    call,
    call_together,
    claims,
    make_auth,
    run_forked,
    run_workers,
    wait_for,
    worker_spec,
)

__all__ = ["redis_server"]  # the fixture, imported for the tests below

T = TypeVar("T")

#: How long a call may take when Redis is down or silent: a bound, never a measurement.
BOUND = 15.0


@pytest.fixture
def clients(redis_server: RedisServer) -> Iterator[Callable[..., redis.Redis]]:
    """Redis clients of the test's server, closed at the end."""
    made: list[redis.Redis] = []

    def make(**options: Any) -> redis.Redis:
        client = redis_server.client(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def look(clients: Callable[..., redis.Redis]) -> redis.Redis:
    """The test's own view of Redis."""
    return clients()


def keys(look: redis.Redis, pattern: str) -> list[bytes]:
    return sorted(key if isinstance(key, bytes) else key.encode() for key in look.keys(pattern))


def token_keys(look: redis.Redis) -> list[bytes]:
    return [key for key in keys(look, "bearer_m2m:*") if not key.endswith(b":lock")]


def within(seconds: float, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``, failing the test if it takes longer than ``seconds``."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work, *args).result(timeout=seconds)


# -- sharing ---------------------------------------------------------------------------

KINDS = ["url", "client", "decode-responses-client"]


def redis_cache(kind: str, server: RedisServer, clients: Callable[..., redis.Redis]) -> RedisCache:
    if kind == "url":
        return RedisCache(server.url)
    if kind == "client":
        return RedisCache(clients())
    return RedisCache(clients(decode_responses=True))


@pytest.mark.parametrize("kind", KINDS)
def test_two_hosts_make_one_token_request(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    clients: Callable[..., redis.Redis],
    look: redis.Redis,
    kind: str,
) -> None:
    hosts = [make_auth(m2m_server, m2m_api, redis_cache(kind, redis_server, clients)) for _ in "ab"]
    m2m_server.delay_next(HOLD)  # one host fetches under the Redis lock; the other waits

    tokens = call_together(hosts, m2m_api.url, threads=8)

    assert len(set(tokens)) == 1
    assert m2m_server.token_requests == 1
    assert len(token_keys(look)) == 1
    # A host with another kind of client reads the same entry.
    for other in KINDS:
        later = make_auth(m2m_server, m2m_api, redis_cache(other, redis_server, clients))
        assert later.token() == tokens[0]
    assert m2m_server.token_requests == 1


def test_processes_on_two_hosts_make_one_token_request(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, redis_server: RedisServer
) -> None:
    spec = worker_spec(m2m_server, m2m_api, threads=4, redis=redis_server.url)

    outcomes = run_workers([spec, spec], before_go=lambda: m2m_server.delay_next(HOLD))

    assert [status for status, _ in outcomes] == [200] * 8
    assert len({token for _, token in outcomes}) == 1
    assert m2m_server.token_requests == 1


def test_forked_workers_share_the_redis_cache_made_before_the_fork(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, redis_server: RedisServer
) -> None:
    m2m_server.delay_next(HOLD)

    forked = run_forked(worker_spec(m2m_server, m2m_api, threads=1, redis=redis_server.url))

    assert forked.returncode == 0, forked.stderr
    assert CACHE_FAILED not in forked.stderr, forked.stderr
    assert m2m_server.token_requests == 1
    assert len(set(forked.stdout.split())) == 1


def test_the_entry_is_sealed_and_expires_before_the_token(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    look: redis.Redis,
) -> None:
    token = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url)).token()

    [key] = token_keys(look)
    remaining = claims(token)["exp"] - time.time()
    ttl = look.pttl(key)
    assert 0 < ttl < remaining * 1000
    raw = look.get(key)
    assert isinstance(raw, bytes)
    for readable in (raw, base64.b64decode(raw), key):
        for part in (token, *token.split("."), m2m_server.client.client_secret):
            assert part.encode() not in readable


def test_the_lock_is_held_during_the_fetch_and_released_after(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    look: redis.Redis,
) -> None:
    auth = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url, lock_timeout=20.0))
    m2m_server.delay_next(HOLD)

    with ThreadPoolExecutor(max_workers=1) as pool:
        fetching = pool.submit(call, auth, m2m_api.url)
        wait_for(lambda: bool(keys(look, "bearer_m2m:*:lock")), "the Redis lock")
        [lock] = keys(look, "bearer_m2m:*:lock")
        # it outlives the wait of others (a fetch may retry for 40 s) yet expires should its owner die
        assert 20_000 < look.pttl(lock) <= 60_000
        assert token_keys(look) == []  # nothing stored yet: the fetch is under way
        status, _ = fetching.result(timeout=PATIENCE)

    assert status == 200
    assert look.exists(lock) == 0
    assert token_keys(look) == [lock.removesuffix(b":lock")]


def test_a_lock_left_by_a_dead_host_expires(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    look: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    make_auth(m2m_server, m2m_api, RedisCache(redis_server.url)).token()
    [key] = token_keys(look)
    look.delete(key)
    look.set(key + b":lock", b"a host that died", px=700)

    auth = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url, lock_timeout=5.0))
    assert call(auth, m2m_api.url)[0] == 200

    assert m2m_server.token_requests == 2
    assert cache_warnings(caplog) == []  # the lock was taken, not given up on...
    assert token_keys(look) == [key]  # ...and the token stored under it


@pytest.mark.parametrize(
    "foreign",
    [b"not ours at all", b"bm1" + os.urandom(60), ["a", "list"]],
    ids=["text", "random-blob", "list"],
)
def test_a_foreign_value_under_our_key_is_replaced(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    look: redis.Redis,
    foreign: bytes | list[str],
) -> None:
    old = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url)).token()
    [key] = token_keys(look)
    look.delete(key)
    if isinstance(foreign, list):
        look.rpush(key, *foreign)
    else:
        look.set(key, foreign)

    status, new = call(make_auth(m2m_server, m2m_api, RedisCache(redis_server.url)), m2m_api.url)

    assert status == 200
    assert new != old
    assert m2m_server.token_requests == 2
    assert make_auth(m2m_server, m2m_api, RedisCache(redis_server.url)).token() == new
    assert m2m_server.token_requests == 2


# -- Redis down ------------------------------------------------------------------------


def test_requests_keep_succeeding_when_redis_is_killed(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    auth = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url))
    first = call(auth, m2m_api.url)
    assert first[0] == 200

    redis_server.kill()
    # The token in memory is still good: the cached path never reaches Redis.
    assert [call(auth, m2m_api.url) for _ in range(20)] == [first] * 20
    assert m2m_server.token_requests == 1
    assert cache_warnings(caplog) == []
    # Without it, tokens are fetched locally.
    tokens = []
    for _ in range(3):
        auth.invalidate()
        status, token = within(BOUND, call, auth, m2m_api.url)
        assert status == 200
        tokens.append(token)

    assert len({first[1], *tokens}) == 4
    assert m2m_server.token_requests == 4
    [warning] = cache_warnings(caplog)
    assert "failed" in warning


def test_a_token_expiring_while_redis_is_down_is_replaced(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    short = m2m_server.register_client(token_lifetime=1)
    auth = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url), client=short)
    status, old = call(auth, m2m_api.url)
    assert status == 200
    redis_server.kill()

    outcomes: list[tuple[int, str]] = []

    def replaced() -> bool:
        outcomes.append(within(BOUND, call, auth, m2m_api.url))
        return outcomes[-1][1] != old

    wait_for(replaced, "a new token")

    assert {status for status, _ in outcomes} == {200}
    assert m2m_server.token_requests == 2
    assert len(cache_warnings(caplog)) == 1


def test_redis_killed_while_a_fetch_holds_its_lock(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    look: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    auth = make_auth(m2m_server, m2m_api, RedisCache(redis_server.url))
    m2m_server.delay_next(HOLD)

    with ThreadPoolExecutor(max_workers=1) as pool:
        fetching = pool.submit(call, auth, m2m_api.url)
        wait_for(lambda: bool(keys(look, "bearer_m2m:*:lock")), "the Redis lock")
        redis_server.kill()  # neither the store nor the release can reach it now
        status, token = fetching.result(timeout=BOUND)

    assert status == 200
    assert m2m_server.token_requests == 1
    assert len(cache_warnings(caplog)) == 1
    assert call(auth, m2m_api.url) == (200, token)


def test_unreachable_redis_does_not_stop_requests(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    closed_port = free_port()
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        silent_port = silent.getsockname()[1]
        nobody = make_auth(m2m_server, m2m_api, RedisCache(f"redis://127.0.0.1:{closed_port}/0"))
        mute = make_auth(
            m2m_server,
            m2m_api,
            RedisCache(f"redis://127.0.0.1:{silent_port}/0", socket_timeout=0.3),
        )

        for auth in (nobody, mute):
            assert within(BOUND, call, auth, m2m_api.url)[0] == 200
            auth.invalidate()
            assert within(BOUND, call, auth, m2m_api.url)[0] == 200

    assert m2m_server.token_requests == 4
    warnings = cache_warnings(caplog)
    assert len(warnings) == 2  # one per cache, not one per fetch
    assert f"127.0.0.1:{closed_port}/0" in warnings[0]
    assert f"127.0.0.1:{silent_port}/0" in warnings[1]


# -- configuration and secrets -----------------------------------------------------------


def test_an_asyncio_client_is_refused() -> None:
    client = redis.asyncio.Redis(host="127.0.0.1", port=free_port())
    try:
        with pytest.raises(ConfigurationError, match="synchronous"):
            RedisCache(client)
    finally:
        asyncio.run(client.aclose())
    with pytest.raises(ConfigurationError):
        RedisCache(42)


def test_a_password_is_used_and_never_shown(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "s3cret-redis-pw"
    secret = m2m_server.client.client_secret
    with RedisServer(password=password) as server:
        url = server.url
        assert password in url
        caches = [RedisCache(url), RedisCache(url)]
        with server.client() as passed:
            caches.append(RedisCache(passed))
            assert repr(caches[0]) == f"RedisCache(127.0.0.1:{server.port}/0)"
            assert repr(caches[2]) == f"RedisCache(127.0.0.1:{server.port}/0)"
            auths = [make_auth(m2m_server, m2m_api, cache) for cache in caches]

            tokens = {call(auth, m2m_api.url)[1] for auth in auths}
            assert len(tokens) == 1  # they got in with the password, and shared
            assert m2m_server.token_requests == 1

            server.kill()
            auths[0].invalidate()
            status, token = call(auths[0], m2m_api.url)  # logs the cache's failure
            assert status == 200
            tokens.add(token)

    assert len(cache_warnings(caplog)) == 1
    shown = [
        *map(repr, caches),
        *map(repr, auths),
        *(record.getMessage() for record in caplog.records),
        caplog.text,
    ]
    for text in shown:
        for forbidden in (password, secret, *tokens):
            assert forbidden not in text


def test_repr_shows_where_without_connecting_or_the_password() -> None:
    port = free_port()  # nobody listens: repr must not try
    cache = RedisCache(f"redis://:pw-in-url@127.0.0.1:{port}/3")

    assert repr(cache) == f"RedisCache(127.0.0.1:{port}/3)"


def test_a_client_without_a_socket_timeout_is_refused() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_timeout=None)  # never connects
    try:
        with pytest.raises(ConfigurationError, match="socket_timeout"):
            RedisCache(client)
    finally:
        client.close()
