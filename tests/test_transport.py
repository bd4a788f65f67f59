"""Where a secret or a token may travel: https, loopback http, and redirects.

Redirect tests use real loopback servers: the API server A answers
``/redirect-to?url=`` with a 302, and server B (another origin) rejects every
token. requests' ``Session.should_strip_auth`` treats a port change on the same
host as a new origin (it strips Authorization), so B runs both on 127.0.0.1 with
another port and on 127.0.0.2 (another host; Linux routes 127.0.0.0/8 to loopback).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import requests
import requests_mock

from bearer_m2m import (
    ClientCredentialsAuth,
    ConfigurationError,
    InsecureTransportError,
    TokenError,
)
from tests.conftest import SECRET
from tests.servers import ApiServer, TokenServer

INSECURE_API = "http://api.example.com/v1/things"


@pytest.fixture(params=["127.0.0.1", "127.0.0.2"], ids=["other-port", "other-host"])
def server_b(request: pytest.FixtureRequest) -> Iterator[ApiServer]:
    """Another origin than ``api_server``, answering 401 to any token (or none)."""
    server = ApiServer(accepts=lambda token: False, host=request.param)
    yield server
    server.close()


def make(token_url: str, **options: object) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        token_url,
        client_id="client-1",
        client_secret=SECRET,
        **options,  # type: ignore[arg-type]
    )


# -- (a) the token URL ------------------------------------------------------------------


@pytest.mark.parametrize(
    "token_url",
    [
        "http://auth.example.com/oauth/token",
        "HTTP://auth.example.com/oauth/token",
        "http://auth.example.com:8080/oauth/token",
        f"http://auth.example.com/oauth/token?client_secret={SECRET}",
        "http://10.0.0.1/oauth/token",
        "http://localhost.example.com/oauth/token",
        "http://127.0.0.1.nip.io/oauth/token",
        "http://[::ffff:10.0.0.1]/oauth/token",
        "http://127.0.0.1./oauth/token",
    ],
)
def test_plain_http_token_url_is_refused(token_url: str) -> None:
    with pytest.raises(InsecureTransportError) as raised:
        make(token_url)

    exc = raised.value
    assert isinstance(exc, ConfigurationError)
    assert isinstance(exc, TokenError)
    assert "https" in str(exc)  # it says what to do
    texts = [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
    assert all(SECRET not in text for text in texts), texts


def test_insecure_transport_error_hierarchy() -> None:
    assert issubclass(InsecureTransportError, ConfigurationError)
    assert issubclass(InsecureTransportError, TokenError)
    assert issubclass(ConfigurationError, TokenError)


def test_plain_http_token_url_is_allowed_when_opted_in() -> None:
    auth = make("http://auth.example.com/oauth/token", allow_insecure_http=True)
    assert "http://auth.example.com/oauth/token" in repr(auth)


@pytest.mark.parametrize(
    "token_url",
    [
        "http://127.0.0.1/oauth/token",
        "http://127.0.0.1:8080/oauth/token",
        "http://localhost/oauth/token",
        "http://localhost:8080/oauth/token",
        "http://[::1]/oauth/token",
        "http://[::1]:8080/oauth/token",
    ],
)
def test_loopback_http_token_url_is_allowed(token_url: str) -> None:
    assert token_url in repr(make(token_url))


@pytest.mark.parametrize("allow_insecure_http", [False, True])
def test_https_token_url_is_always_allowed(allow_insecure_http: bool) -> None:
    auth = make("https://auth.example.com/oauth/token", allow_insecure_http=allow_insecure_http)
    assert "https://auth.example.com/oauth/token" in repr(auth)


def test_loopback_http_token_url_really_works(
    token_server: TokenServer, api_server: ApiServer
) -> None:
    auth = make(token_server.token_url)
    assert requests.get(f"{api_server.origin}/ok", auth=auth, timeout=5).status_code == 200
    assert token_server.count == 1


# -- (b) a plain-http API URL -------------------------------------------------------------


def _assert_clean(exc: BaseException, token_server: TokenServer) -> None:
    forbidden = {SECRET, *token_server.issued}
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    assert all(value not in text for value in forbidden for text in texts), texts


@pytest.mark.parametrize("via", ["requests.get", "requests.Session"])
def test_requests_refuses_plain_http_api_before_sending_a_token(
    via: str, token_server: TokenServer
) -> None:
    auth = make(token_server.token_url)
    # real_http: the token request itself still reaches the loopback token server.
    with requests_mock.Mocker(real_http=True) as mocker:
        api = mocker.get(INSECURE_API, text="ok")
        with pytest.raises(InsecureTransportError) as raised:
            if via == "requests.get":
                requests.get(INSECURE_API, auth=auth, timeout=5)
            else:
                with requests.Session() as session:
                    session.auth = auth
                    session.get(INSECURE_API, timeout=5)

    assert api.call_count == 0
    assert [r.headers.get("Authorization") for r in mocker.request_history] == []
    assert "api.example.com" in str(raised.value)
    _assert_clean(raised.value, token_server)


def test_requests_judges_an_api_url_by_the_host_it_connects_to(token_server: TokenServer) -> None:
    """requests reads ``http://api.example.com\\@127.0.0.1/`` as the host api.example.com
    (its prepared URL says so, the backslash escaped into the path): the check judges that
    prepared URL, so the token is refused, as for any plain-http API elsewhere."""
    auth = make(token_server.token_url)
    tricky = "http://api.example.com\\@127.0.0.1/v1/things"
    with requests_mock.Mocker(real_http=True) as mocker:
        api = mocker.get(requests_mock.ANY, text="ok")
        with pytest.raises(InsecureTransportError, match=r"to http://api\.example\.com:") as raised:
            requests.get(tricky, auth=auth, timeout=5)

    assert api.call_count == 0
    _assert_clean(raised.value, token_server)


def test_requests_sends_the_token_over_plain_http_when_opted_in(
    token_server: TokenServer,
) -> None:
    auth = make(token_server.token_url, allow_insecure_http=True)
    with requests_mock.Mocker(real_http=True) as mocker:
        api = mocker.get(INSECURE_API, text="ok")
        response = requests.get(INSECURE_API, auth=auth, timeout=5)

    assert response.status_code == 200
    assert [r.headers.get("Authorization") for r in api.request_history] == ["Bearer tok-1"]


@dataclass
class Recorder:
    """An ``httpx.MockTransport`` handler that records what would have been sent."""

    sent: list[httpx.Request]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        return httpx.Response(200, text="ok")


def _httpx_get(mode: str, auth: ClientCredentialsAuth, recorder: Recorder) -> httpx.Response:
    if mode == "sync":
        with httpx.Client(auth=auth, transport=httpx.MockTransport(recorder)) as client:
            return client.get(INSECURE_API)

    async def main() -> httpx.Response:
        transport = httpx.MockTransport(recorder)
        async with httpx.AsyncClient(auth=auth, transport=transport) as client:
            return await client.get(INSECURE_API)

    return asyncio.run(main())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_httpx_refuses_plain_http_api_before_sending_a_token(
    mode: str, token_server: TokenServer
) -> None:
    recorder = Recorder([])
    with pytest.raises(InsecureTransportError) as raised:
        _httpx_get(mode, make(token_server.token_url), recorder)

    assert recorder.sent == []
    assert "api.example.com" in str(raised.value)
    _assert_clean(raised.value, token_server)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_httpx_sends_the_token_over_plain_http_when_opted_in(
    mode: str, token_server: TokenServer
) -> None:
    recorder = Recorder([])
    auth = make(token_server.token_url, allow_insecure_http=True)
    response = _httpx_get(mode, auth, recorder)

    assert response.status_code == 200
    assert [r.headers.get("Authorization") for r in recorder.sent] == ["Bearer tok-1"]


# -- (c), (d) redirects over real loopback servers -----------------------------------------

CLIENTS = ["requests.get", "requests.Session", "httpx", "httpx-async"]


@dataclass
class Outcome:
    status: int
    url: str
    history: list[int]


def follow(client: str, url: str, auth: ClientCredentialsAuth) -> Outcome:
    """GET ``url``, following redirects, with one of the supported client paths."""
    if client.startswith("requests"):
        if client == "requests.get":
            response = requests.get(url, auth=auth, timeout=5)
        else:
            with requests.Session() as session:
                session.auth = auth
                response = session.get(url, timeout=5)
        return Outcome(
            response.status_code, response.url, [r.status_code for r in response.history]
        )

    if client == "httpx":
        with httpx.Client(auth=auth, follow_redirects=True, timeout=5) as sync_client:
            reply = sync_client.get(url)
    else:

        async def main() -> httpx.Response:
            async with httpx.AsyncClient(
                auth=auth, follow_redirects=True, timeout=5
            ) as async_client:
                return await async_client.get(url)

        reply = asyncio.run(main())
    return Outcome(reply.status_code, str(reply.url), [r.status_code for r in reply.history])


@pytest.mark.parametrize("client", CLIENTS)
def test_cross_origin_redirect_drops_the_token_and_triggers_no_refresh(
    client: str, token_server: TokenServer, api_server: ApiServer, server_b: ApiServer
) -> None:
    auth = make(token_server.token_url)
    final = f"{server_b.origin}/final"
    start = f"{api_server.origin}/redirect-to?url={final}"

    outcome = follow(client, start, auth)

    # A got the token and redirected.
    assert api_server.seen == [(f"/redirect-to?url={final}", "Bearer tok-1", b"")]
    # B saw one request, without any Authorization header.
    assert server_b.seen == [("/final", None, b"")]
    assert server_b.unauthorized == 1
    # B's 401 is what the caller gets: no token refresh, no replay.
    assert outcome == Outcome(401, final, [302])
    assert token_server.count == 1
    assert auth.token() == "tok-1"
    assert token_server.count == 1


@pytest.mark.parametrize("location", ["absolute", "relative"])
@pytest.mark.parametrize("client", CLIENTS)
def test_same_origin_redirect_keeps_the_token(
    client: str, location: str, token_server: TokenServer, api_server: ApiServer
) -> None:
    auth = make(token_server.token_url)
    target = "/ok" if location == "relative" else f"{api_server.origin}/ok"
    start = f"{api_server.origin}/redirect-to?url={target}"

    outcome = follow(client, start, auth)

    assert outcome == Outcome(200, f"{api_server.origin}/ok", [302])
    assert api_server.seen == [
        (f"/redirect-to?url={target}", "Bearer tok-1", b""),
        ("/ok", "Bearer tok-1", b""),
    ]
    assert api_server.unauthorized == 0
    assert token_server.count == 1
