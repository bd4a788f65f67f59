"""TieredCache: a host's FileCache in front of the fleet's RedisCache."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
import requests

from bearer_m2m import ClientCredentialsAuth, ConfigurationError, FileCache, RedisCache, TieredCache
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from bearer_m2m.testing.pytest_plugin import TEST_RETRY
from tests.redis_server import RedisServer, redis_server

__all__ = ["redis_server"]  # the fixture


def auth_for(
    server: AuthorizationServer, api: ProtectedAPI, cache: TieredCache
) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        audience=api.audience,
        retry=TEST_RETRY,
        cache=cache,
    )


def host(directory: Path, redis_url: str) -> TieredCache:
    """A host's view: its own token file, and the fleet's Redis."""
    return TieredCache(FileCache(directory / "token.cache"), RedisCache(redis_url))


def test_two_hosts_of_two_processes_make_one_token_request(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    hosts = [tmp_path / "host-a", tmp_path / "host-b"]
    for directory in hosts:
        directory.mkdir()
    # four "processes": each its own auth object, two per host
    auths = [
        auth_for(m2m_server, m2m_api, host(d, redis_server.url)) for d in hosts for _ in range(2)
    ]
    m2m_server.delay_next(0.3)  # the first fetch is slow: everybody else has to wait for it
    tokens: list[str] = []
    threads = [threading.Thread(target=lambda a=auth: tokens.append(a.token())) for auth in auths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 4 and len(set(tokens)) == 1
    assert m2m_server.token_requests == 1
    # both hosts' files were not needed to hold it: the one that fetched stored it in both layers
    assert (hosts[0] / "token.cache").exists() or (hosts[1] / "token.cache").exists()
    response = requests.get(
        m2m_api.url + "x", headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=5
    )
    assert response.status_code == 200


def test_the_nearest_layer_answers_first(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    first = auth_for(m2m_server, m2m_api, host(tmp_path, redis_server.url))
    token = first.token()
    redis_server.kill()  # the fleet's cache is gone; the host's file still holds the token
    second = auth_for(m2m_server, m2m_api, TieredCache(FileCache(tmp_path / "token.cache")))
    assert second.token() == token and m2m_server.token_requests == 1


def test_a_failing_layer_means_a_local_fetch_with_one_warning(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    redis_server: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = redis_server.url
    redis_server.kill()
    auth = auth_for(m2m_server, m2m_api, host(tmp_path, url))
    with caplog.at_level(logging.WARNING, logger="bearer_m2m"):
        assert auth.token()
        auth.invalidate()
        assert auth.token()
    assert m2m_server.token_requests == 2
    assert (
        len([r for r in caplog.records if "shared token cache TieredCache" in r.getMessage()]) == 1
    )


def test_a_tiered_cache_needs_a_layer() -> None:
    with pytest.raises(ConfigurationError, match="at least one layer"):
        TieredCache()
