"""Tokens that die before their ``expires_in`` ends, as on real servers, never reach the user
as a 401: the local server's ``expiry_skew`` reproduces them over real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from bearer_m2m import ClientCredentialsAuth
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from bearer_m2m.testing._cli import _parser
from tests.conftest import FAST_RETRY

LIFETIME = 2.0  # seconds: a few lifetimes fit in a short test


@pytest.fixture
def early_server() -> Iterator[tuple[AuthorizationServer, ProtectedAPI]]:
    server = AuthorizationServer(token_lifetime=LIFETIME, expiry_skew=1.0)
    with server, ProtectedAPI(server) as api:
        yield server, api


def test_the_api_refuses_a_token_before_its_announced_end(
    early_server: tuple[AuthorizationServer, ProtectedAPI],
) -> None:
    server, api = early_server
    with requests.Session() as session:
        assert_refused_early(session, server, api)


def assert_refused_early(
    session: requests.Session, server: AuthorizationServer, api: ProtectedAPI
) -> None:
    answer = session.post(
        server.token_url,
        data={"grant_type": "client_credentials"},
        auth=(server.client.client_id, server.client.client_secret),
        timeout=5,
    ).json()
    announced_end = time.monotonic() + answer["expires_in"]
    headers = {"Authorization": f"Bearer {answer['access_token']}"}
    assert session.get(api.url, headers=headers, timeout=5).status_code == 200
    while session.get(api.url, headers=headers, timeout=5).status_code == 200:
        assert time.monotonic() < announced_end, "the token outlived its expires_in"
        time.sleep(0.05)
    assert time.monotonic() < announced_end  # refused early: the skew is in force


def test_users_see_no_401_when_tokens_die_early(
    early_server: tuple[AuthorizationServer, ProtectedAPI],
) -> None:
    server, api = early_server
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        audience=api.audience,
        retry=FAST_RETRY,
    )
    statuses = []
    replayed = 0
    end = time.monotonic() + 4 * LIFETIME
    with requests.Session() as session:
        while time.monotonic() < end:
            response = session.get(api.url, auth=auth, timeout=5)
            statuses.append(response.status_code)
            replayed += bool(response.history)
            time.sleep(0.05)
    assert set(statuses) == {200}
    # The early ends did happen, and each cost one new token (no guard trip), so the
    # 401s were the servers' doing, answered by a replay.
    assert api.unauthorized == replayed
    assert server.tokens_issued <= 4 * 2 + 2


def test_expiry_skew_is_checked() -> None:
    with pytest.raises(ValueError, match="expiry_skew"):
        AuthorizationServer(expiry_skew=-1)
    with pytest.raises(SystemExit):
        _parser().parse_args(["--expiry-skew", "nan"])
    assert _parser().parse_args(["--expiry-skew", "1"]).expiry_skew == 1.0
