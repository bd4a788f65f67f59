"""End to end: the core behaviours against the local authorization server, over real sockets.

Each test is written once and runs with requests, httpx and httpx async (asyncio),
through the small clients below. The servers come from the pytest plugin
(``m2m_server``, ``m2m_api``), so these tests also use it the way a user would.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import httpx
import pytest
import requests

from bearer_m2m import (
    ClientCredentialsAuth,
    InvalidTokenResponse,
    RetryPolicy,
    TokenRequestRejected,
)
from bearer_m2m._policy import RefreshPolicy
from bearer_m2m._tokens import GrantedToken
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient

#: Retries in milliseconds rather than seconds.
FAST_RETRY = RetryPolicy(deadline=2, initial_backoff=0.01, max_backoff=0.05)
#: The cold start: threads x requests each for the sync clients, tasks for the async one.
THREADS, PER_THREAD, TASKS = 64, 10, 1000
#: Requests made against an API that refuses every token.
QUOTA_CALLS = 200
#: Connections of the async client, and requests it lets into httpcore's pool at once.
ASYNC_CONNECTIONS = 10
#: Upper bound on any wait for the servers to reach a state (never a measurement).
PATIENCE = 10.0


@dataclass(frozen=True)
class Answer:
    """One call's outcome, alike for the three clients."""

    status: int
    #: Statuses of the responses that came before it: redirects, the 401 that was replayed.
    history: tuple[int, ...]
    #: The Authorization header of the request that drew the final response.
    authorization: str | None
    #: The API's description of the request when it accepted the token.
    payload: dict[str, Any] | None


class Client(Protocol):
    """requests, httpx or httpx async, driven the same way."""

    kind: str

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        content: bytes | None = None,
        follow_redirects: bool = False,
    ) -> Answer: ...

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        """Many concurrent callers at once (threads or tasks); ``on_start`` runs in each
        just before its first request."""
        ...

    def close(self) -> None: ...


def _payload(status: int, content_type: str, data: Callable[[], Any]) -> dict[str, Any] | None:
    if status != 200 or not content_type.startswith("application/json"):
        return None
    payload: dict[str, Any] = data()
    return payload


def _from_requests(response: requests.Response) -> Answer:
    return Answer(
        status=response.status_code,
        history=tuple(r.status_code for r in response.history),
        authorization=response.request.headers.get("Authorization"),
        payload=_payload(
            response.status_code, response.headers.get("Content-Type", ""), response.json
        ),
    )


def _from_httpx(response: httpx.Response) -> Answer:
    return Answer(
        status=response.status_code,
        history=tuple(r.status_code for r in response.history),
        authorization=response.request.headers.get("Authorization"),
        payload=_payload(
            response.status_code, response.headers.get("Content-Type", ""), response.json
        ),
    )


def _in_threads(work: Callable[[], list[Answer]]) -> list[Answer]:
    """``work`` in THREADS threads released together; their answers, in one list."""
    barrier = threading.Barrier(THREADS)

    def released() -> list[Answer]:
        barrier.wait(timeout=PATIENCE)
        return work()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(released) for _ in range(THREADS)]
        return [answer for future in futures for answer in future.result()]


class RequestsClient:
    kind = "requests"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        self._auth = auth
        self._session = requests.Session()
        self._session.auth = auth

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        content: bytes | None = None,
        follow_redirects: bool = False,
    ) -> Answer:
        response = self._session.request(
            method, url, data=content, allow_redirects=follow_redirects, timeout=PATIENCE
        )
        return _from_requests(response)

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        def work() -> list[Answer]:
            # A session per thread, as requests advises; one auth object for all.
            with requests.Session() as session:
                session.auth = self._auth
                on_start()
                return [
                    _from_requests(session.get(url, timeout=PATIENCE)) for _ in range(PER_THREAD)
                ]

        return _in_threads(work)

    def close(self) -> None:
        self._session.close()


class HttpxClient:
    kind = "httpx"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        self._client = httpx.Client(auth=auth, timeout=PATIENCE)

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        content: bytes | None = None,
        follow_redirects: bool = False,
    ) -> Answer:
        response = self._client.request(
            method, url, content=content, follow_redirects=follow_redirects
        )
        return _from_httpx(response)

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        def work() -> list[Answer]:
            # One httpx.Client shared by every thread.
            on_start()
            return [_from_httpx(self._client.get(url)) for _ in range(PER_THREAD)]

        return _in_threads(work)

    def close(self) -> None:
        self._client.close()


class _Throttled(httpx.AsyncBaseTransport):
    """A real transport that lets ASYNC_CONNECTIONS requests into its pool at a time.

    httpcore's pool scans every queued request whenever a connection frees up, so
    a thousand requests queued at once take it seconds; queued here instead, they
    take a fraction of that. The auth flow runs in the client, before the
    transport: all the tasks still race for the token at once.
    """

    def __init__(self) -> None:
        limits = httpx.Limits(max_connections=ASYNC_CONNECTIONS)
        self._transport = httpx.AsyncHTTPTransport(limits=limits)
        self._slots = asyncio.Semaphore(ASYNC_CONNECTIONS)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        async with self._slots:
            response = await self._transport.handle_async_request(request)
            await response.aread()  # the connection is free again before the slot is
            return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class AsyncHttpxClient:
    """An httpx.AsyncClient on an asyncio loop of its own, run for each call."""

    kind = "httpx-async"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = self._loop.run_until_complete(self._open(auth))

    @staticmethod
    async def _open(auth: ClientCredentialsAuth) -> httpx.AsyncClient:
        return httpx.AsyncClient(auth=auth, timeout=PATIENCE, transport=_Throttled())

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        content: bytes | None = None,
        follow_redirects: bool = False,
    ) -> Answer:
        request = self._client.request(
            method, url, content=content, follow_redirects=follow_redirects
        )
        return _from_httpx(self._loop.run_until_complete(request))

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        async def one() -> httpx.Response:
            on_start()
            return await self._client.get(url)

        async def burst() -> list[httpx.Response]:
            return await asyncio.gather(*(one() for _ in range(TASKS)))

        return [_from_httpx(response) for response in self._loop.run_until_complete(burst())]

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.aclose())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        finally:
            self._loop.close()


CLIENTS: dict[str, Callable[[ClientCredentialsAuth], Client]] = {
    "requests": RequestsClient,
    "httpx": HttpxClient,
    "httpx-async": AsyncHttpxClient,
}

Connect = Callable[[ClientCredentialsAuth], Client]


@pytest.fixture(params=list(CLIENTS))
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Opens the test's kind of client on an auth object; closes them all afterwards."""
    opened: list[Client] = []

    def open_client(auth: ClientCredentialsAuth) -> Client:
        client = CLIENTS[request.param](auth)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


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

    expected = TASKS if client.kind == "httpx-async" else THREADS * PER_THREAD
    assert len(answers) == expected
    assert {answer.status for answer in answers} == {200}
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    assert len({answer.authorization for answer in answers}) == 1
    assert m2m_api.requests == expected
    # The race was real: callers asked for a token while none had been issued yet.
    assert before_any_token.count(True) > 1


# -- refresh ahead ------------------------------------------------------------------------

#: Tokens of the refresh-ahead test live this long; the refresh is held this long.
LIFETIME, HOLD = 2, 0.4
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
    during += [client.call(url) for _ in range(5)]
    # All of these were answered while the server still held the refresh: none waited.
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 1)
    assert [answer.status for answer in during] == [200] * 6
    assert {answer.authorization for answer in during} == {first.authorization}

    wait_for(lambda: m2m_server.tokens_issued == 2, "the held refresh to be answered")
    after = [client.call(url) for _ in range(3)]
    assert [answer.status for answer in after] == [200] * 3
    assert len({answer.authorization for answer in after}) == 1
    assert after[0].authorization not in (None, first.authorization)
    assert (m2m_server.token_requests, m2m_api.unauthorized) == (2, 0)


# -- 401s -------------------------------------------------------------------------------------


def test_a_revoked_token_draws_one_401_then_a_new_token_and_one_replay(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    first = client.call(m2m_api.url + "orders")
    m2m_server.revoke_all()

    replayed = client.call(m2m_api.url + "orders", method="POST", content=b"payload")
    assert replayed.status == 200 and replayed.history == (401,)
    assert replayed.payload is not None
    assert (replayed.payload["method"], replayed.payload["body_length"]) == ("POST", 7)
    assert replayed.authorization not in (None, first.authorization)
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 2)
    assert (m2m_api.requests, m2m_api.unauthorized) == (3, 1)

    following = client.call(m2m_api.url + "orders")
    assert following.status == 200 and following.history == ()
    assert following.authorization == replayed.authorization
    assert m2m_server.token_requests == 2


def test_an_api_that_rejects_every_token_gets_one_new_token_not_a_loop(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    client = connect(m2m_auth)
    m2m_server.reject_all_tokens = True
    calls = QUOTA_CALLS

    answers = [client.call(m2m_api.url + "things") for _ in range(calls)]

    assert {answer.status for answer in answers} == {401}
    # The first 401 forces one new token and one replay; the quota guard stops there.
    assert [answer.history for answer in answers[:3]] == [(401,), (), ()]
    assert {answer.history for answer in answers[1:]} == {()}
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 2)
    assert (m2m_api.requests, m2m_api.unauthorized) == (calls + 1, calls + 1)


# -- the token endpoint misbehaving ---------------------------------------------------------


def test_transient_token_endpoint_failures_are_retried(
    connect: Connect, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    client = connect(auth_for(m2m_server, m2m_api, retry=FAST_RETRY))
    m2m_server.fail_next(2, status=503)
    m2m_server.rate_limit_next(1, retry_after=0)
    m2m_server.drop_next(1)

    answer = client.call(m2m_api.url + "things")

    assert answer.status == 200 and answer.history == ()
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (5, 1)
    assert (m2m_api.requests, m2m_api.unauthorized) == (1, 0)


@pytest.mark.parametrize(
    ("refusal", "status", "error"),
    [("wrong secret", 401, "invalid_client"), ("scripted 400", 400, "invalid_request")],
)
def test_a_refusal_raises_at_once_without_retries(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    refusal: str,
    status: int,
    error: str,
) -> None:
    if refusal == "wrong secret":
        auth = auth_for(m2m_server, m2m_api, client_secret="not-the-secret", retry=FAST_RETRY)
    else:
        auth = auth_for(m2m_server, m2m_api, retry=FAST_RETRY)
        m2m_server.fail_next(1, status=400)
    client = connect(auth)

    with pytest.raises(TokenRequestRejected) as raised:
        client.call(m2m_api.url + "things")

    assert (raised.value.status_code, raised.value.error) == (status, error)
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 0)
    assert m2m_api.requests == 0


@pytest.mark.parametrize(
    ("fault", "status"),
    [("malformed json", 200), ("html page", 200), ("html error page", 404)],
)
def test_an_answer_that_is_not_a_token_raises_invalid_token_response(
    connect: Connect,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    fault: str,
    status: int,
) -> None:
    client = connect(auth_for(m2m_server, m2m_api, retry=FAST_RETRY))
    if fault == "malformed json":
        m2m_server.malformed_json_next()
    else:
        m2m_server.html_next(status=status)

    with pytest.raises(InvalidTokenResponse) as raised:
        client.call(m2m_api.url + "things")

    assert raised.value.status_code == status
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 0)
    assert m2m_api.requests == 0
    # The next request asks again and gets a token.
    assert client.call(m2m_api.url + "things").status == 200
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (2, 1)


# -- origins --------------------------------------------------------------------------------


def test_a_redirect_to_another_origin_carries_no_token(
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
        assert same_origin.status == 200 and same_origin.history == (302,)
        assert same_origin.authorization is not None  # the token does follow within the origin

        other_origin = client.call(
            redirect(m2m_api, elsewhere.url + "there"), follow_redirects=True
        )
        assert other_origin.status == 401 and other_origin.history == (302,)
        assert other_origin.authorization is None
        assert elsewhere.last_authorization is None
        assert (elsewhere.requests, elsewhere.unauthorized) == (1, 1)

    # The first API saw the token on the redirecting request; no refresh, no replay.
    assert m2m_api.last_authorization == same_origin.authorization
    assert (m2m_api.requests, m2m_api.unauthorized) == (3, 0)
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
