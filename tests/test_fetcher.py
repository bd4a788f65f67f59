"""The token request itself, against requests-mock: what is sent, and how answers map to errors."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

import pytest
import requests
import requests_mock

from bearer_m2m import (
    ClientCredentialsAuth,
    InvalidTokenResponse,
    RetryPolicy,
    TLSError,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
    _cli,
)
from tests.conftest import FAST_RETRY

URL = "https://tenant.eu.auth0.com/oauth/token"
GOOD = {"json": {"access_token": "tok", "token_type": "Bearer", "expires_in": 86400}}


def make(**overrides: object) -> ClientCredentialsAuth:
    options: dict[str, object] = {
        "client_id": "cid",
        "client_secret": "p@ss:word",
        "audience": "https://api.example",
        "retry": FAST_RETRY,
    }
    options.update(overrides)
    return ClientCredentialsAuth(URL, **options)  # type: ignore[arg-type]


def sent_form(m: requests_mock.Mocker, index: int = 0) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(m.request_history[index].text).items()}


def test_auth0_request_carries_every_parameter_in_the_form() -> None:
    auth = make(organization="org_123", scope=["read:things"], extra_params={"tenant": "eu"})
    with requests_mock.Mocker() as m:
        m.post(URL, **GOOD)
        assert auth.token() == "tok"
    assert sent_form(m) == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": "p@ss:word",
        "audience": "https://api.example",
        "organization": "org_123",
        "scope": "read:things",
        "tenant": "eu",
    }
    assert "Authorization" not in m.request_history[0].headers


def test_every_fetch_sends_the_audience_again() -> None:
    auth = make()
    with requests_mock.Mocker() as m:
        m.post(URL, **GOOD)
        auth.token()
        auth.invalidate()
        auth.token()
    assert m.call_count == 2
    assert sent_form(m, 1)["audience"] == "https://api.example"


def test_client_secret_basic_uses_the_authorization_header() -> None:
    auth = make(auth_method="client_secret_basic", resource="https://api.example/v2", audience=None)
    with requests_mock.Mocker() as m:
        m.post(URL, **GOOD)
        auth.token()
    header = m.request_history[0].headers["Authorization"]
    # form-encoded first, as RFC 6749 section 2.3.1 says
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "cid:p%40ss%3Aword"
    form = sent_form(m)
    assert "client_secret" not in form
    assert form["resource"] == "https://api.example/v2"


@pytest.mark.parametrize(
    "status, error",
    [
        (401, "invalid_client"),
        (403, "access_denied"),
        (403, "unauthorized_client"),
        (400, "invalid_scope"),
        (400, "invalid_request"),
    ],
)
def test_configuration_errors_raise_at_once(status: int, error: str) -> None:
    auth = make()
    with requests_mock.Mocker() as m:
        m.post(URL, status_code=status, json={"error": error, "error_description": "nope"})
        with pytest.raises(TokenRequestRejected) as caught:
            auth.token()
    assert m.call_count == 1
    exc = caught.value
    assert (exc.status_code, exc.error, exc.error_description) == (status, error, "nope")
    assert error in str(exc) and str(status) in str(exc)


def test_error_field_in_a_200_answer_is_a_rejection() -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, json={"error": "invalid_grant"})
        with pytest.raises(TokenRequestRejected, match="invalid_grant"):
            make().token()


@pytest.mark.parametrize(
    "reply, shape",
    [
        (
            {
                "status_code": 200,
                "text": "<html>Login</html>",
                "headers": {"Content-Type": "text/html"},
            },
            "text/html",
        ),
        (
            {
                "status_code": 404,
                "text": "<html>Not found</html>",
                "headers": {"Content-Type": "text/html"},
            },
            "text/html",
        ),
        ({"status_code": 200, "text": ""}, "empty body"),
        ({"status_code": 200, "json": ["a", "list"]}, "JSON object"),
    ],
)
def test_answers_that_are_not_json_objects_are_typed_errors(
    reply: dict[str, object], shape: str
) -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, **reply)
        with pytest.raises(InvalidTokenResponse, match=shape) as caught:
            make().token()
    assert caught.value.status_code == reply["status_code"]
    assert m.call_count == 1


def test_redirects_from_the_token_endpoint_are_not_followed() -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, status_code=302, headers={"Location": "https://evil.example/collect"})
        m.post("https://evil.example/collect", **GOOD)
        with pytest.raises(InvalidTokenResponse, match="redirect"):
            make().token()
    assert [r.hostname for r in m.request_history] == ["tenant.eu.auth0.com"]


def test_unparseable_expiry_is_a_typed_error() -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, json={"access_token": "t", "token_type": "Bearer", "expires_in": "1.5e3x"})
        with pytest.raises(InvalidTokenResponse):
            make().token()


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_failures_are_retried(status: int) -> None:
    with requests_mock.Mocker() as m:
        m.post(
            URL,
            [{"status_code": status, "text": "busy"}, {"status_code": status, "json": {}}, GOOD],
        )
        assert make().token() == "tok"
    assert m.call_count == 3


def test_dropped_connections_and_timeouts_are_retried() -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, [{"exc": requests.ConnectionError}, {"exc": requests.ReadTimeout}, GOOD])
        assert make().token() == "tok"
    assert m.call_count == 3


def test_retry_after_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("bearer_m2m._fetcher.time.sleep", waits.append)
    with requests_mock.Mocker() as m:
        m.post(URL, [{"status_code": 429, "headers": {"Retry-After": "1"}, "json": {}}, GOOD])
        assert make().token() == "tok"
    assert waits and waits[0] >= 1.0


def test_retries_stop_at_the_deadline_with_the_last_error() -> None:
    auth = make(retry=RetryPolicy(deadline=0.3, initial_backoff=0.02, max_backoff=0.05))
    with requests_mock.Mocker() as m:
        m.post(URL, status_code=503, json={"error": "temporarily_unavailable"})
        with pytest.raises(TokenEndpointUnavailable, match="gave up after") as caught:
            auth.token()
    assert 2 <= m.call_count <= 20
    assert caught.value.status_code == 503
    assert caught.value.error == "temporarily_unavailable"


def test_a_retry_after_beyond_the_deadline_gives_up_at_once() -> None:
    with requests_mock.Mocker() as m:
        m.post(
            URL,
            status_code=429,
            headers={"Retry-After": "3600"},
            json={"error": "too_many_requests"},
        )
        with pytest.raises(TokenEndpointUnavailable) as caught:
            make().token()
    assert m.call_count == 1
    assert caught.value.retry_after == 3600


def test_extra_params_cannot_steer_authlib() -> None:
    # names that are also keywords of Authlib's fetch_token or of requests
    extras = {"method": "GET", "timeout": "5", "headers": "x", "state": "s", "json": "j"}
    with requests_mock.Mocker() as m:
        m.post(URL, **GOOD)
        assert make(extra_params=extras).token() == "tok"
    assert m.request_history[0].method == "POST"
    assert {k: sent_form(m)[k] for k in extras} == extras


def test_tls_failures_are_not_retried() -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, exc=requests.exceptions.SSLError("certificate verify failed"))
        with pytest.raises(TLSError, match="TLS") as caught:
            make().token()
    assert m.call_count == 1
    assert not isinstance(caught.value, TokenEndpointUnavailable)
    assert _cli._exit_code(caught.value) == _cli.EXIT_UNAVAILABLE


def test_other_transport_errors_are_typed() -> None:
    with requests_mock.Mocker() as m:
        m.post(URL, exc=requests.exceptions.ContentDecodingError("bad gzip"))
        with pytest.raises(TokenError, match="ContentDecodingError"):
            make().token()
