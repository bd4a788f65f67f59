"""The client secret and access tokens never reach reprs, errors, tracebacks, logs or warnings.

Every scenario runs through requests, httpx sync and httpx async. Whatever the
library (or Authlib, urllib3, httpx, httpcore below it) logs at DEBUG on any
logger is inspected, as is every warning issued meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
import requests

from bearer_m2m import (
    ClientCredentialsAuth,
    InvalidTokenResponse,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)
from bearer_m2m._policy import MIN_TOKEN_REUSE
from bearer_m2m._tokens import fingerprint
from tests.conftest import SECRET
from tests.servers import ApiServer, Reply, TokenServer, json_reply

#: Gives up on a failing endpoint after 0.15 s, retrying a few times first.
QUICK_RETRY = RetryPolicy(deadline=0.15, initial_backoff=0.005, max_backoff=0.02)
CLIENTS = ["requests", "httpx", "httpx-async"]


# -- helpers -------------------------------------------------------------------------


def get_status(client: str, url: str, auth: ClientCredentialsAuth) -> int:
    """GET ``url`` with ``auth`` through one of the three supported client paths."""
    if client == "requests":
        return requests.get(url, auth=auth, timeout=5).status_code
    if client == "httpx":
        with httpx.Client(auth=auth, timeout=5) as sync_client:
            return sync_client.get(url).status_code

    async def main() -> int:
        async with httpx.AsyncClient(auth=auth, timeout=5) as async_client:
            return (await async_client.get(url)).status_code

    return asyncio.run(main())


@contextmanager
def observed(caplog: pytest.LogCaptureFixture) -> Iterator[list[warnings.WarningMessage]]:
    """Capture every log record at DEBUG (root logger, so every logger) and every warning."""
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught


def record_texts(records: Iterable[logging.LogRecord]) -> list[str]:
    texts: list[str] = []
    for record in records:
        texts += [record.getMessage(), repr(record.msg), repr(record.args)]
        if record.exc_info and record.exc_info[1] is not None:
            texts.append("".join(traceback.format_exception(record.exc_info[1])))
        if record.exc_text:
            texts.append(record.exc_text)
        if record.stack_info:
            texts.append(record.stack_info)
    return texts


def warning_texts(caught: Iterable[warnings.WarningMessage]) -> list[str]:
    return [f"{w.category.__name__}: {w.message}" for w in caught]


def error_texts(exc: BaseException) -> list[str]:
    """Everything a caller could print or log about an exception, cause chain included."""
    texts = [str(exc), repr(exc), repr(exc.args), *map(str, exc.args), repr(vars(exc))]
    texts.append("".join(traceback.format_exception(exc)))
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            texts += [str(linked), repr(linked)]
    return texts


def auth_texts(auth: ClientCredentialsAuth) -> list[str]:
    return [repr(auth), str(auth), f"{auth}", f"{auth!r}"]


def assert_no_leak(texts: Iterable[str], forbidden: Iterable[str], where: str) -> None:
    forbidden = set(forbidden)
    assert SECRET in forbidden
    for text in texts:
        for value in forbidden:
            assert value not in text, f"{value!r} leaked in {where}: {text[:600]!r}"


def closed_port() -> int:
    """A loopback port nobody listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- repr / str ----------------------------------------------------------------------


def test_repr_and_str_of_auth_hide_secret_and_cached_token(
    make_auth: Callable[..., ClientCredentialsAuth],
    token_server: TokenServer,
    api_server: ApiServer,
) -> None:
    auth = make_auth(extra_params={"tenant": "acme"})
    before = auth_texts(auth)
    assert get_status("requests", f"{api_server.origin}/ok", auth) == 200
    assert auth.token() == "tok-1"  # the token is cached inside the object now

    after = auth_texts(auth)
    assert_no_leak(before + after, {SECRET, *token_server.issued}, "repr(auth)/str(auth)")
    # The repr is still informative, so this test is not passing on an empty string.
    assert "client-1" in repr(auth) and token_server.token_url in repr(auth)
    # extra_params values could be secrets too: the repr names them only
    assert "extra_params=['tenant']" in repr(auth) and "acme" not in repr(auth)


# -- successful fetches, refresh and 401 replay ----------------------------------------


@dataclass
class RevocableApi:
    server: ApiServer
    revoked: set[str]


@pytest.fixture
def revocable_api(token_server: TokenServer) -> Iterator[RevocableApi]:
    revoked: set[str] = set()
    server = ApiServer(accepts=lambda token: token in token_server.issued and token not in revoked)
    yield RevocableApi(server, revoked)
    server.close()


@pytest.mark.parametrize("client", CLIENTS)
def test_fetch_refresh_and_replay_log_tokens_only_as_fingerprints(
    client: str,
    make_auth: Callable[..., ClientCredentialsAuth],
    token_server: TokenServer,
    revocable_api: RevocableApi,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"{revocable_api.server.origin}/things"
    with observed(caplog) as caught:
        auth = make_auth()
        # 1. first fetch: tok-1, which lives 0.2 s
        token_server.expires_in = 0.2
        assert get_status(client, url, auth) == 200
        token_server.expires_in = 3600
        # 2. refresh once tok-1 is past its expiry (a token is used for at least
        #    MIN_TOKEN_REUSE, however short its life): tok-2
        time.sleep(MIN_TOKEN_REUSE + 0.05)
        assert get_status(client, url, auth) == 200
        # 3. tok-2 is revoked: 401, a forced refresh to tok-3 and a replay
        revocable_api.revoked.add("tok-2")
        assert get_status(client, url, auth) == 200
        texts = auth_texts(auth)

    assert token_server.issued == ["tok-1", "tok-2", "tok-3"]
    assert [authorization for _, authorization, _ in revocable_api.server.seen] == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
        "Bearer tok-3",
    ]

    forbidden = {SECRET, *token_server.issued}
    assert_no_leak(texts, forbidden, "repr(auth)")
    assert_no_leak(record_texts(caplog.records), forbidden, "log records")
    assert_no_leak(warning_texts(caught), forbidden, "warnings")

    # Records of other loggers were captured too (the token request goes through urllib3)...
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    # ...and each token appears in bearer_m2m's DEBUG records, as its fingerprint.
    ours = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("bearer_m2m") and record.levelno == logging.DEBUG
    ]
    for token in token_server.issued:
        mark = fingerprint(token)
        assert len(mark) == 8 and int(mark, 16) >= 0
        assert any(mark in message for message in ours), f"no DEBUG record names {mark}"


# -- failures ------------------------------------------------------------------------


@dataclass
class Failure:
    """A token endpoint misbehaving: what it answers and what the caller must get."""

    script: list[Reply]
    expected: type[TokenError]
    status_code: int | None
    error: str | None = None
    #: Access tokens that appear in the server's answers and must not reach the caller.
    tokens: tuple[str, ...] = ()
    #: Text from the server that the error should still relay (proves the field was read).
    relayed: str | None = None
    refused: bool = False


_HTML = (
    "<html><body><h1>500 Internal Server Error</h1>"
    f"<pre>form: grant_type=client_credentials&client_secret={SECRET}</pre>"
    "<pre>cached: access_token=tok-html-7a1f</pre></body></html>"
).encode()

FAILURES = {
    "401-invalid_client-echoing-secret": Failure(
        script=[
            json_reply(
                {
                    "error": "invalid_client",
                    "error_description": f"Client authentication failed: secret '{SECRET}' "
                    f"is not valid for client-1 (got {SECRET})",
                },
                status=401,
            )
        ],
        expected=TokenRequestRejected,
        status_code=401,
        error="invalid_client",
        relayed="Client authentication failed",
    ),
    "400-invalid_request": Failure(
        script=[
            json_reply(
                {
                    "error": "invalid_request",
                    "error_description": f"Unexpected parameter value {SECRET}",
                },
                status=400,
            )
        ],
        expected=TokenRequestRejected,
        status_code=400,
        error="invalid_request",
        relayed="Unexpected parameter value",
    ),
    "html-500-until-deadline": Failure(
        script=[Reply(500, _HTML, {"Content-Type": "text/html"}) for _ in range(500)],
        expected=TokenEndpointUnavailable,
        status_code=500,
        tokens=("tok-html-7a1f",),
    ),
    "200-not-json": Failure(
        script=[
            Reply(
                200,
                f"access_token=tok-form-93c2&token_type=bearer&echo={SECRET}".encode(),
                {"Content-Type": "application/x-www-form-urlencoded"},
            )
        ],
        expected=InvalidTokenResponse,
        status_code=200,
        tokens=("tok-form-93c2",),
    ),
    "200-token_type-mac": Failure(
        script=[
            json_reply(
                {
                    "access_token": "tok-mac-5be0d4",
                    "token_type": "mac",
                    "expires_in": 3600,
                    "mac_key": "mac-key-e11f",
                }
            )
        ],
        expected=InvalidTokenResponse,
        status_code=200,
        tokens=("tok-mac-5be0d4", "mac-key-e11f"),
        relayed="mac",
    ),
    "connection-refused": Failure(
        script=[],
        expected=TokenEndpointUnavailable,
        status_code=None,
        refused=True,
    ),
}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", list(FAILURES))
def test_failures_do_not_leak_secret_or_tokens(
    name: str,
    client: str,
    token_server: TokenServer,
    api_server: ApiServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = FAILURES[name]
    token_server.script.extend(failure.script)
    token_url = (
        f"http://127.0.0.1:{closed_port()}/oauth/token"
        if failure.refused
        else token_server.token_url
    )

    with observed(caplog) as caught:
        auth = ClientCredentialsAuth(
            token_url,
            client_id="client-1",
            client_secret=SECRET,
            audience="https://api.example",
            retry=QUICK_RETRY,
        )
        with pytest.raises(TokenError) as raised:
            get_status(client, f"{api_server.origin}/things", auth)
        texts = auth_texts(auth)

    exc = raised.value
    # The scenario produced the failure it is meant to test.
    assert type(exc) is failure.expected, repr(exc)
    assert exc.status_code == failure.status_code
    assert exc.error == failure.error
    if failure.relayed is not None:
        assert failure.relayed in str(exc)
    if failure.refused:
        assert token_server.count == 0
        assert isinstance(exc.__cause__, TokenEndpointUnavailable)
        assert isinstance(exc.__cause__.__cause__, requests.ConnectionError)
    elif failure.expected is TokenEndpointUnavailable:
        assert token_server.count >= 2  # it retried until the deadline
    else:
        assert token_server.count == 1
    assert api_server.seen == []  # no request left without a token
    assert token_server.issued == []
    assert caplog.records  # the capture works: urllib3 at least logged the connection

    forbidden = {SECRET, *failure.tokens}
    assert_no_leak(error_texts(exc), forbidden, f"the {type(exc).__name__}")
    assert_no_leak(texts, forbidden, "repr(auth)")
    assert_no_leak(record_texts(caplog.records), forbidden, "log records")
    assert_no_leak(warning_texts(caught), forbidden, "warnings")


def test_secret_cut_by_the_description_length_limit_is_not_partly_relayed(
    make_auth: Callable[..., ClientCredentialsAuth],
    token_server: TokenServer,
    api_server: ApiServer,
) -> None:
    """A long error_description is shortened; the secret must not survive in part.

    Here the secret starts at character 290 of the description, so a cut at 300
    characters made before redaction keeps its first 10 characters.
    """
    description = "x" * 290 + SECRET
    token_server.script.append(
        json_reply({"error": "invalid_client", "error_description": description}, status=401)
    )
    with pytest.raises(TokenRequestRejected) as raised:
        requests.get(f"{api_server.origin}/things", auth=make_auth(), timeout=5)

    fragments = {SECRET[i : i + 8] for i in range(len(SECRET) - 7)}
    assert_no_leak(error_texts(raised.value), {SECRET, *fragments}, "the TokenRequestRejected")


def test_secret_echoed_in_the_error_field_is_redacted(
    make_auth: Callable[..., ClientCredentialsAuth],
    token_server: TokenServer,
    api_server: ApiServer,
) -> None:
    """errors.py promises the secret never reaches a message, whichever field echoes it."""
    token_server.script.append(
        json_reply({"error": f"invalid_client: bad secret {SECRET}"}, status=401)
    )
    with pytest.raises(TokenRequestRejected) as raised:
        requests.get(f"{api_server.origin}/things", auth=make_auth(), timeout=5)

    assert raised.value.status_code == 401
    assert_no_leak(error_texts(raised.value), {SECRET}, "the TokenRequestRejected")
