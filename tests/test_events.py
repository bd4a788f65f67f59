"""The events seam: what the library tells, when, and the log lines its default subscriber writes.

Each behaviour runs against the local authorization server and API (or, where time must
pass, a token source on a fake clock); a recording subscriber hears every event, the
default one writes the log lines that ``caplog`` reads.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
import requests

from bearer_m2m import (
    ClientCredentialsAuth,
    FileCache,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenRequestRejected,
)
from bearer_m2m import _events as events
from bearer_m2m._policy import RefreshPolicy
from bearer_m2m._source import TokenSource
from bearer_m2m._tokens import fingerprint
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from tests.test_fetcher_hardening import RESERVED_SECRET, basic_auth, basic_server
from tests.test_source import Clock, Fetch, wait_until_idle

E = TypeVar("E", bound=events.Event)

#: Gives up after three requests, within milliseconds.
THREE_QUICK_ATTEMPTS = RetryPolicy(
    deadline=5.0, initial_backoff=0.005, max_backoff=0.01, max_attempts=3
)
CACHED_REQUESTS = 100


class Recorder:
    """A subscriber that keeps every event, from whichever thread."""

    def __init__(self) -> None:
        self.events: list[events.Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: events.Event) -> None:
        with self._lock:
            self.events.append(event)

    def kinds(self) -> list[str]:
        return [type(event).__name__ for event in self.events]

    def of(self, kind: type[E]) -> list[E]:
        return [event for event in self.events if isinstance(event, kind)]

    def clear(self) -> None:
        with self._lock:
            self.events.clear()


@pytest.fixture
def recorder(caplog: pytest.LogCaptureFixture) -> Iterator[Recorder]:
    """Every event of the test, and the library's log lines at DEBUG in ``caplog``."""
    caplog.set_level(logging.DEBUG, logger="bearer_m2m")
    recorded = Recorder()
    with events.subscribed(events.write_log, recorded):
        yield recorded


def lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "bearer_m2m" and record.levelno == level
    ]


def netloc(url: str) -> str:
    return urlsplit(url).netloc


def auth_for(
    server: AuthorizationServer, api: ProtectedAPI, **options: object
) -> ClientCredentialsAuth:
    options.setdefault("client_id", server.client.client_id)
    options.setdefault("client_secret", server.client.client_secret)
    options.setdefault("retry", THREE_QUICK_ATTEMPTS)
    return ClientCredentialsAuth(server.token_url, audience=api.audience, **options)  # type: ignore[arg-type]


# -- fetches ------------------------------------------------------------------------------------


def test_a_fetch_is_told_from_start_to_end_with_its_server_attempts_and_token_fingerprint(
    recorder: Recorder, m2m_server: AuthorizationServer, m2m_auth: ClientCredentialsAuth
) -> None:
    token = m2m_auth.token()

    assert recorder.kinds() == ["FetchStarted", "TokenFetched"]
    started, fetched = recorder.events
    assert isinstance(started, events.FetchStarted) and isinstance(fetched, events.TokenFetched)
    assert started.server == fetched.server == netloc(m2m_server.token_url)
    assert fetched.attempts == 1 and fetched.duration >= 0
    assert fetched.fingerprint == fingerprint(token)
    assert fetched.expires_in is not None and 3500 < fetched.expires_in <= 3600


def test_the_cached_path_emits_nothing_on_any_client(
    recorder: Recorder, m2m_api: ProtectedAPI, m2m_auth: ClientCredentialsAuth
) -> None:
    url = m2m_api.url + "things"
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    assert recorder.kinds() == ["FetchStarted", "TokenFetched"]
    recorder.clear()

    with requests.Session() as session:
        session.auth = m2m_auth
        statuses = [session.get(url, timeout=10).status_code for _ in range(CACHED_REQUESTS)]
    with httpx.Client(auth=m2m_auth, timeout=10) as client:
        statuses += [client.get(url).status_code for _ in range(CACHED_REQUESTS)]

    async def calls() -> list[int]:
        async with httpx.AsyncClient(auth=m2m_auth, timeout=10) as client:
            return [(await client.get(url)).status_code for _ in range(CACHED_REQUESTS)]

    statuses += asyncio.run(calls())

    assert statuses == [200] * 3 * CACHED_REQUESTS
    assert m2m_api.requests == 3 * CACHED_REQUESTS + 1
    assert recorder.events == []


def test_each_transient_failure_is_told_with_its_status_and_logged_as_before(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
) -> None:
    m2m_server.fail_next(2, status=503)
    auth_for(m2m_server, m2m_api).token()

    assert recorder.kinds() == [
        "FetchStarted",
        "TransientFailure",
        "TransientFailure",
        "TokenFetched",
    ]
    failures = recorder.of(events.TransientFailure)
    assert [(f.status, f.error_type, f.reason) for f in failures] == [
        (503, "TokenEndpointUnavailable", "transient")
    ] * 2
    assert recorder.of(events.TokenFetched)[0].attempts == 3
    warnings = lines(caplog, logging.WARNING)
    assert len(warnings) == 2
    assert all(
        line.startswith("token request failed (token endpoint answered HTTP 503: server_error")
        and "; retrying in " in line
        for line in warnings
    )


def test_a_fetch_that_fails_is_told_with_its_error_type_status_and_attempts(
    recorder: Recorder, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    auth = auth_for(m2m_server, m2m_api, client_secret="not-the-secret")
    with pytest.raises(TokenRequestRejected):
        auth.token()
    (failed,) = recorder.of(events.FetchFailed)
    assert (failed.error_type, failed.status, failed.attempts) == ("TokenRequestRejected", 401, 1)
    assert failed.server == netloc(m2m_server.token_url)

    recorder.clear()
    m2m_server.fail_next(3, status=503)
    auth = auth_for(m2m_server, m2m_api)
    with pytest.raises(TokenEndpointUnavailable):
        auth.token()
    (failed,) = recorder.of(events.FetchFailed)
    assert (failed.error_type, failed.status, failed.attempts) == (
        "TokenEndpointUnavailable",
        503,
        3,
    )
    assert len(recorder.of(events.TransientFailure)) == 2  # the third is not retried


def test_a_refusal_of_basic_credentials_is_told_as_a_retry_with_the_other_encoding(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    with basic_server(decodes=False) as server:
        basic_auth(server, RESERVED_SECRET).token()
    (switched,) = recorder.of(events.BasicEncodingSwitched)
    assert (switched.status, switched.raw, switched.reason) == (403, True, "basic_encoding")
    assert lines(caplog, logging.INFO) == [
        "token endpoint refused client_secret_basic (HTTP 403); trying the raw encoding of "
        "the credentials"
    ]


def test_a_low_quota_is_told_and_warned_about(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
) -> None:
    client = m2m_server.register_client()  # a quota of its own: the session's server is shared
    m2m_server.set_quota(client.client_id, per_hour=10, remaining_per_hour=2)
    auth = auth_for(
        m2m_server, m2m_api, client_id=client.client_id, client_secret=client.client_secret
    )
    auth.token()
    (low,) = recorder.of(events.QuotaLow)
    assert "client quota per_hour 1/10 left" in str(low.rate_limit)
    assert [line for line in lines(caplog, logging.WARNING) if "quota runs low" in line] == [
        f"the M2M token quota runs low: {low.rate_limit}"
    ]


# -- 401s and replays ---------------------------------------------------------------------------


def test_a_401_is_told_as_a_rejection_a_fetch_and_a_replay_with_a_new_token(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    url = m2m_api.url + "things"
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    first = m2m_auth.token()
    m2m_server.revoke_all()
    recorder.clear()

    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200

    assert recorder.kinds() == ["TokenRejected", "FetchStarted", "TokenFetched", "Replayed"]
    assert recorder.of(events.TokenRejected)[0].fingerprint == fingerprint(first)
    assert recorder.of(events.Replayed)[0].reason == "new_token"
    assert f"token {fingerprint(first)} was rejected with 401; replacing it" in lines(
        caplog, logging.INFO
    )
    # Nothing told names a token or the secret.
    told = [repr(event) for event in recorder.events] + [str(e) for e in recorder.events]
    for text in told:
        for forbidden in (first, m2m_auth.token(), m2m_server.client.client_secret):
            assert forbidden not in text


def test_no_replacement_after_a_401_is_told_and_the_401_returned(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    url = m2m_api.url + "things"
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    m2m_server.revoke_all()
    m2m_server.fail_next(1, status=401, json={"error": "invalid_client"})
    recorder.clear()

    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 401

    (failed,) = recorder.of(events.ReplacementFailed)
    assert (failed.error_type, failed.status) == ("TokenRequestRejected", 401)
    assert recorder.of(events.Replayed) == []
    assert any(
        line.startswith("no new token after a 401; returning the 401: token endpoint refused")
        for line in lines(caplog, logging.WARNING)
    )


def test_the_quota_guard_is_told_at_every_401_it_returns_and_logged_once_per_token(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    m2m_server.reject_all_tokens = True
    url = m2m_api.url + "things"
    statuses = [requests.get(url, auth=m2m_auth, timeout=10).status_code for _ in range(5)]

    assert statuses == [401] * 5
    assert m2m_server.token_requests == 2  # the first token and one replacement
    trips = recorder.of(events.QuotaGuardTripped)
    assert [trip.first for trip in trips] == [True, False, False, False]
    assert len({trip.fingerprint for trip in trips}) == 1
    assert trips[0].strikes == 2
    assert len(recorder.of(events.Replayed)) == 1  # the first call's, with the replacement
    assert len([line for line in lines(caplog, logging.WARNING) if "quota guard" in line]) == 1


@pytest.fixture(scope="module")
def nonce_servers() -> Iterator[tuple[AuthorizationServer, ProtectedAPI]]:
    """A token endpoint and an API that both want DPoP proofs with their nonce."""
    audience = "https://nonces.api.example"
    with (
        AuthorizationServer(require_dpop_nonce=True, audiences=[audience]) as server,
        ProtectedAPI(server, audience, require_dpop_nonce=True) as api,
    ):
        yield server, api


def test_dpop_nonces_are_told_at_the_token_endpoint_and_as_replays_with_a_new_proof(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    nonce_servers: tuple[AuthorizationServer, ProtectedAPI],
) -> None:
    server, api = nonce_servers
    server.reset()
    api.reset()
    auth = auth_for(server, api, dpop=True)

    assert requests.get(api.url + "things", auth=auth, timeout=10).status_code == 200

    assert recorder.kinds() == ["FetchStarted", "DPoPNonceRequested", "TokenFetched", "Replayed"]
    assert recorder.of(events.DPoPNonceRequested)[0].server == netloc(server.token_url)
    assert recorder.of(events.Replayed)[0].reason == "new_proof"
    assert f"token endpoint {netloc(server.token_url)} asked for a DPoP nonce; sending it" in lines(
        caplog, logging.INFO
    )


# -- refresh ahead -----------------------------------------------------------------------------


def test_a_failed_refresh_is_told_and_the_current_token_kept(
    recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    fetch, clock = Fetch(), Clock()
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=5, clock=clock)
    assert source.token() == "t1"
    clock.now += 85  # inside the refresh-ahead window of a 100 s token
    fetch.fail_with = TokenEndpointUnavailable("token endpoint answered HTTP 503", status_code=503)

    assert source.token() == "t1"
    wait_until_idle(source)

    (failed,) = recorder.of(events.RefreshFailed)
    assert (failed.error_type, failed.status) == ("TokenEndpointUnavailable", 503)
    assert lines(caplog, logging.WARNING) == [
        "refreshing the token failed; still using the current one: token endpoint answered HTTP 503"
    ]


def test_a_fetch_runs_in_the_context_of_the_caller_that_started_it(
    recorder: Recorder, m2m_auth: ClientCredentialsAuth
) -> None:
    """What a subscriber sees as the current context during a fetch is the caller's
    (the OpenTelemetry subscriber's parent span comes from there), in another thread."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
    seen: list[tuple[str, str]] = []

    def look(event: events.Event) -> None:
        if isinstance(event, events.FetchStarted):
            seen.append((request_id.get(), threading.current_thread().name))

    async def caller() -> str:
        request_id.set("async-caller")
        return await m2m_auth.atoken()

    with events.subscribed(look):
        request_id.set("sync-caller")
        m2m_auth.token()
        m2m_auth.invalidate()
        asyncio.run(caller())
        request_id.set("-")

    assert [who for who, _ in seen] == ["sync-caller", "async-caller"]
    assert all(thread != threading.current_thread().name for _, thread in seen)


# -- the shared cache ----------------------------------------------------------------------------


def test_the_shared_cache_tells_a_miss_then_an_adoption(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens"
    first = auth_for(m2m_server, m2m_api, cache=FileCache(path))
    token = first.token()
    assert recorder.kinds() == ["CacheMissed", "FetchStarted", "TokenFetched"]
    recorder.clear()

    assert auth_for(m2m_server, m2m_api, cache=FileCache(path)).token() == token

    assert recorder.kinds() == ["CacheAdopted"]
    assert recorder.of(events.CacheAdopted)[0].fingerprint == fingerprint(token)
    assert f"adopted token {fingerprint(token)} from the shared cache" in lines(
        caplog, logging.DEBUG
    )
    assert m2m_server.token_requests == 1


def test_every_cache_failure_is_told_and_the_first_logged(
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("")
    cache = FileCache(tmp_path / "a-file" / "tokens")  # its lock file cannot be made
    auth = auth_for(m2m_server, m2m_api, cache=cache)
    assert auth.token()
    auth.invalidate()
    assert auth.token()

    failures = recorder.of(events.CacheFailed)
    assert [(f.operation, f.first) for f in failures] == [("lock", True), ("lock", False)]
    assert failures[0].cache is cache
    assert m2m_server.token_requests == 2
    warned = [line for line in lines(caplog, logging.WARNING) if "shared token cache" in line]
    assert warned == [
        f"the shared token cache {cache!r} failed ({failures[0].error_type}); "
        "fetching tokens without it"
    ]


# -- delivery ----------------------------------------------------------------------------------


def test_a_failing_subscriber_changes_nothing_for_the_caller_or_the_others(
    recorder: Recorder, m2m_auth: ClientCredentialsAuth
) -> None:
    def broken(event: events.Event) -> None:
        raise RuntimeError("an exporter that fell over")

    with events.subscribed(broken, recorder):
        assert m2m_auth.token()
    assert recorder.kinds() == ["FetchStarted", "TokenFetched"]
