"""End to end: every behaviour users rely on, written once and run on every client.

Each test takes ``connect`` (or ``connect_async``) and runs once per client of
:mod:`tests.clients`: requests, httpx and httpx2 (sync, asyncio, trio), niquests
(sync and async) and aiohttp, each opened the way the README spells it, against
the local authorization server and API (bearer_m2m.testing, through the pytest
plugin's ``m2m_server`` and ``m2m_api``), over real loopback sockets. What a test
asserts is counted at the servers, so it means the same for every client.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlencode

import pytest

from bearer_m2m import (
    ClientCredentialsAuth,
    InsecureTransportError,
    InvalidTokenResponse,
    RetryPolicy,
    TokenError,
    TokenRequestRejected,
)
from bearer_m2m._policy import RefreshPolicy
from bearer_m2m._tokens import GrantedToken
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient
from tests.clients import (
    ASYNC_CLIENTS,
    CLIENTS,
    PATIENCE,
    PER_THREAD,
    TASKS,
    THREADS,
    Client,
    OneShotBody,
)
from tests.servers import HarnessAPI

#: Retries milliseconds apart; the deadline only bounds a test on a very busy machine.
FAST_RETRY = RetryPolicy(deadline=PATIENCE, initial_backoff=0.01, max_backoff=0.05)
#: Requests made against an API that refuses every token.
QUOTA_CALLS = 50
#: How long the token endpoint sits on the fetch that the liveness ticker watches.
FETCH_HOLD = 1.0
#: The modules whose absence skips a client's tests (an extra not installed).
CLIENT_MODULES = frozenset({"httpx", "httpx2", "niquests", "aiohttp", "trio", "anyio"})

Connect = Callable[[ClientCredentialsAuth], Client]


@contextlib.contextmanager
def connecting(kind: str) -> Iterator[Connect]:
    """Opens ``kind`` clients on auth objects; closes them all at the end."""
    opened: list[Client] = []

    def open_client(auth: ClientCredentialsAuth) -> Client:
        try:
            client = CLIENTS[kind](auth)
        except ModuleNotFoundError as missing:
            if missing.name not in CLIENT_MODULES:
                raise
            pytest.skip(f"{missing.name} is not installed")
        opened.append(client)
        return client

    try:
        yield open_client
    finally:
        for client in opened:
            client.close()


@pytest.fixture(params=list(CLIENTS))
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    with connecting(request.param) as open_client:
        yield open_client


@pytest.fixture(params=ASYNC_CLIENTS)
def connect_async(request: pytest.FixtureRequest) -> Iterator[Connect]:
    with connecting(request.param) as open_client:
        yield open_client


def auth_for(
    server: AuthorizationServer,
    api: ProtectedAPI,
    client: RegisteredClient | None = None,
    **options: Any,
) -> ClientCredentialsAuth:
    client = client or server.client
    return ClientCredentialsAuth(
        server.token_url,
        client_id=options.pop("client_id", client.client_id),
        client_secret=options.pop("client_secret", client.client_secret),
        audience=api.audience,
        **options,
    )


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll until ``condition`` holds; fail after PATIENCE seconds."""
    give_up = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.002)


def redirect(api: ProtectedAPI, to: str) -> str:
    return f"{api.url}redirect?{urlencode({'to': to})}"


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a Cookie request header."""
    cookies: SimpleCookie = SimpleCookie()
    cookies.load(header or "")
    morsel = cookies.get(name)
    return None if morsel is None else morsel.value


# -- reuse and single flight ---------------------------------------------------------------


def test_one_token_serves_every_request(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    answers = [client.call(m2m_api.url + "things") for _ in range(20)]

    assert [answer.status for answer in answers] == [200] * 20
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    assert {answer.authorization for answer in answers} == {m2m_api.last_authorization}
    assert (m2m_api.requests, m2m_api.unauthorized) == (20, 0)
    assert answers[0].payload is not None
    assert answers[0].payload["client_id"] == m2m_server.client.client_id


def test_a_cold_start_burst_makes_one_token_request(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    m2m_server.delay_next(0.2)  # a slow token endpoint makes the race real
    before_any_token: list[bool] = []

    answers = client.cold_start(
        m2m_api.url + "burst",
        on_start=lambda: before_any_token.append(m2m_server.tokens_issued == 0),
    )

    expected = TASKS if client.is_async else THREADS * PER_THREAD
    assert len(answers) == expected
    assert {answer.status for answer in answers} == {200}
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    assert len({answer.authorization for answer in answers}) == 1
    assert m2m_api.requests == expected
    # The race was real: callers asked for a token while none had been issued yet.
    assert before_any_token.count(True) > 1


def test_one_object_serves_every_client_with_one_token(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, m2m_auth: ClientCredentialsAuth
) -> None:
    """requests, httpx2, aiohttp and the rest, in one process, on one auth object."""
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(connecting(kind))(m2m_auth) for kind in CLIENTS]
        answers = {client.kind: client.call(m2m_api.url + "shared") for client in clients}

    assert {kind: answer.status for kind, answer in answers.items()} == dict.fromkeys(CLIENTS, 200)
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    assert len({answer.authorization for answer in answers.values()}) == 1


# -- refresh ahead, and an event loop that never waits on a fetch -----------------------------

#: Tokens of the refresh-ahead test live this long (the shortest whole lifetime past the
#: 1 s minimum reuse); the server holds the refresh this long, for the calls made meanwhile.
LIFETIME, HOLD = 2, 0.5
#: When, after a fetch, the client starts its background refresh and stops using the token.
SCHEDULE = RefreshPolicy().schedule(GrantedToken("token", LIFETIME), now=0.0)


def test_the_token_is_refreshed_ahead_of_expiry_while_requests_go_on(
    connect: Connect, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    # Requests made between refresh_at and expires_at need no wait; later ones would
    # wait for the held refresh, so it outlasts that window.
    assert SCHEDULE.expires_at - SCHEDULE.refresh_at < HOLD
    short_lived = m2m_server.register_client(token_lifetime=LIFETIME)
    client = connect(auth_for(m2m_server, m2m_api, short_lived))
    url = m2m_api.url + "things"

    first = client.call(url)
    fetched_by = time.monotonic()
    time.sleep(max(0.0, fetched_by + SCHEDULE.refresh_at + 0.01 - time.monotonic()))

    m2m_server.delay_next(HOLD)  # the server sits on the refresh
    during = [client.call(url)]  # due now: starts the refresh, and is served at once
    wait_for(lambda: m2m_server.token_requests == 2, "the refresh to reach the server")
    during += [client.call(url) for _ in range(3)]
    # All of these were answered while the server still held the refresh: none waited.
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 1)
    assert [answer.status for answer in during] == [200] * 4
    assert {answer.authorization for answer in during} == {first.authorization}

    wait_for(lambda: m2m_server.tokens_issued == 2, "the held refresh to be answered")
    after = [client.call(url) for _ in range(3)]
    assert [answer.status for answer in after] == [200] * 3
    assert len({answer.authorization for answer in after}) == 1
    assert after[0].authorization not in (None, first.authorization)
    assert (m2m_server.token_requests, m2m_api.unauthorized) == (2, 0)


def test_a_token_fetch_never_blocks_the_event_loop(
    connect_async: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    """While the server sits on the first fetch, another task on the loop keeps ticking.

    A fetch that blocked the loop would hold every task until it ended: the ticker
    could not run once while the server held the request.
    """
    client = connect_async(m2m_auth)
    m2m_server.delay_next(FETCH_HOLD)
    while_held: list[bool] = []

    def tick() -> None:
        while_held.append(m2m_server.token_requests == 1 and m2m_server.tokens_issued == 0)

    answer = client.call_while_ticking(m2m_api.url + "things", tick)

    assert answer.status == 200
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    assert while_held.count(True) >= 2  # it ticked, and went on ticking, during the fetch


# -- 401s -------------------------------------------------------------------------------------


def test_a_401_to_our_token_draws_one_new_token_and_one_replay_with_the_401s_cookies(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    with HarnessAPI(m2m_server, audience=m2m_api.audience) as api:
        client = connect(m2m_auth)
        first = client.call(api.url + "orders")
        m2m_server.revoke_all()

        replayed = client.call(api.url + "orders", method="POST", body=b"payload")
        assert replayed.status == 200
        assert replayed.payload is not None
        assert (replayed.payload["method"], replayed.payload["body_length"]) == ("POST", 7)
        assert replayed.authorization not in (None, first.authorization)
        assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 2)
        assert (api.requests, api.unauthorized) == (3, 1)
        # The replay carried the cookie its 401 set (a load balancer's affinity, say).
        assert api.cookies[:2] == [None, None]
        assert cookie_value(api.cookies[2], HarnessAPI.COOKIE) == "401-1"

        following = client.call(api.url + "orders")
        assert following.status == 200
        assert following.authorization == replayed.authorization
        assert m2m_server.token_requests == 2


def test_a_replay_answered_by_a_redirect_follows_it_with_the_new_token_and_no_second_replay(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    with HarnessAPI(m2m_server, audience=m2m_api.audience) as api:
        client = connect(m2m_auth)
        first = client.call(api.url + "orders")
        m2m_server.revoke_all()
        guarded = (
            f"{api.url.rstrip('/')}{api.GUARDED_REDIRECT}?{urlencode({'to': api.url + 'landing'})}"
        )

        answer = client.call(guarded, follow_redirects=True)

        assert (answer.status, answer.redirects) == (200, 1)
        assert answer.payload is not None and answer.payload["path"] == "/landing"
        assert answer.authorization not in (None, first.authorization)
        # first call; 401; the replay, answered 302; the redirect, with the new token
        assert (api.requests, api.unauthorized) == (4, 1)
        assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 2)


def test_a_body_that_cannot_be_sent_twice_is_not_replayed(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    url = m2m_api.url + "uploads"
    assert client.call(url).status == 200
    m2m_server.revoke_all()

    streamed = client.call(url, method="POST", body=OneShotBody((b"sent ", b"once")))

    assert streamed.status == 401  # the caller gets the 401: its body is gone
    assert (m2m_api.requests, m2m_api.unauthorized) == (2, 1)
    # The next request is served with a new token.
    assert client.call(url).status == 200
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 2)


def test_an_api_that_rejects_every_token_costs_two_tokens_not_a_loop(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    """The quota guard: the first token refused before any success is replaced at once
    (a key rotation looks like that); its replacement refused too, the next one waits
    rejection_backoff (30 s) after the last token request, so a test sees two."""
    client = connect(m2m_auth)
    m2m_server.reject_all_tokens = True

    answers = [client.call(m2m_api.url + "things") for _ in range(QUOTA_CALLS)]

    assert {answer.status for answer in answers} == {401}
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 2)
    # One replay, for the first call; every later 401 is returned as it is.
    assert (m2m_api.requests, m2m_api.unauthorized) == (QUOTA_CALLS + 1, QUOTA_CALLS + 1)


def test_when_no_new_token_can_be_had_the_401_is_returned_and_the_next_call_raises(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    url = m2m_api.url + "things"
    assert client.call(url).status == 200
    m2m_server.revoke_all()
    refusal = {"error": "invalid_client", "error_description": "client disabled"}
    m2m_server.fail_next(2, status=401, json=refusal)

    answer = client.call(url)  # the replacement is refused: the API's 401 is the answer
    assert answer.status == 401
    assert (m2m_api.requests, m2m_api.unauthorized) == (2, 1)
    with pytest.raises(TokenRequestRejected) as raised:
        client.call(url)  # no token to send: the token endpoint's refusal is raised
    assert raised.value.error == "invalid_client"
    assert m2m_api.requests == 2

    assert client.call(url).status == 200  # the client is enabled again
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (4, 2)


# -- the token endpoint misbehaving ---------------------------------------------------------


def test_transient_token_endpoint_failures_are_retried(
    connect: Connect, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    client = connect(auth_for(m2m_server, m2m_api, retry=FAST_RETRY))
    m2m_server.fail_next(1, status=503)
    m2m_server.rate_limit_next(1, retry_after=0)
    m2m_server.drop_next(1)

    answer = client.call(m2m_api.url + "things")

    assert answer.status == 200
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (4, 1)
    assert (m2m_api.requests, m2m_api.unauthorized) == (1, 0)


@pytest.mark.parametrize(
    ("fault", "raised", "status", "error"),
    [
        ("wrong secret", TokenRequestRejected, 401, "invalid_client"),
        ("html error page", InvalidTokenResponse, 404, None),
    ],
)
def test_a_token_endpoint_error_reaches_the_caller_as_itself_without_retries(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    fault: str,
    raised: type[TokenError],
    status: int,
    error: str | None,
) -> None:
    """No client wraps it in an error of its own, and none sends the API anything."""
    secret = "not-the-secret" if fault == "wrong secret" else m2m_server.client.client_secret
    client = connect(auth_for(m2m_server, m2m_api, client_secret=secret, retry=FAST_RETRY))
    if fault == "html error page":
        m2m_server.html_next(status=status)

    with pytest.raises(TokenError) as caught:
        client.call(m2m_api.url + "things")

    assert type(caught.value) is raised
    assert (caught.value.status_code, caught.value.error) == (status, error)
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 0)
    assert m2m_api.requests == 0


# -- origins and transports -----------------------------------------------------------------


def test_a_redirect_to_another_origin_carries_no_token_and_its_401_draws_no_replay(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    # Same audience: had the token followed the redirect, this API would accept it.
    with ProtectedAPI(m2m_server, audience=m2m_api.audience) as elsewhere:
        assert elsewhere.url != m2m_api.url  # another port: another origin

        same_origin = client.call(redirect(m2m_api, m2m_api.url + "here"), follow_redirects=True)
        assert (same_origin.status, same_origin.redirects) == (200, 1)
        assert same_origin.authorization is not None  # the token does follow within the origin

        other_origin = client.call(
            redirect(m2m_api, elsewhere.url + "there"), follow_redirects=True
        )
        assert (other_origin.status, other_origin.redirects) == (401, 1)
        assert other_origin.authorization is None
        assert elsewhere.last_authorization is None
        assert (elsewhere.requests, elsewhere.unauthorized) == (1, 1)  # no replay there

    # The first API saw the token on the redirecting requests; no new token, no replay.
    assert m2m_api.last_authorization == same_origin.authorization
    assert (m2m_api.requests, m2m_api.unauthorized) == (3, 0)
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    # And the client's next call to the API still carries the token.
    assert client.call(m2m_api.url + "back").authorization == same_origin.authorization


def test_a_chain_that_left_the_origin_gets_no_token_when_it_comes_back(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    with ProtectedAPI(m2m_server, audience=m2m_api.audience) as elsewhere:
        # Ours -> elsewhere -> back to ours, on a path the other server chose.
        back = redirect(elsewhere, m2m_api.url + "chosen-elsewhere")
        answer = client.call(redirect(m2m_api, back), follow_redirects=True)

    assert (answer.status, answer.redirects) == (401, 2)
    assert answer.authorization is None  # as requests and httpx do, aiohttp too
    assert m2m_api.last_authorization is None
    assert (m2m_server.token_requests, m2m_api.unauthorized) == (1, 1)


def test_plain_http_to_another_host_is_refused_before_anything_is_sent(
    connect: Connect, m2m_server: AuthorizationServer, m2m_auth: ClientCredentialsAuth
) -> None:
    """``.invalid`` never resolves (RFC 6761): had the client tried to connect, it
    would have failed with its own connection error, not with ours."""
    client = connect(m2m_auth)

    with pytest.raises(InsecureTransportError):
        client.call("http://api.invalid/things")

    assert m2m_server.token_requests == 0  # no token was spent on it either
