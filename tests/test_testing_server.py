"""bearer_m2m.testing: the local authorization server and protected API, over real sockets."""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from bearer_m2m import (
    ClientCredentialsAuth,
    InvalidTokenResponse,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenRequestRejected,
)
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient
from bearer_m2m.testing._cli import _parser, main, serve
from bearer_m2m.testing._http import LoopbackServer, Request, Response
from tests.conftest import FAST_RETRY

AUDIENCE = "https://api.example"
GRANT = {"grant_type": "client_credentials"}


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(token_lifetime=3600) as server:
        yield server


@pytest.fixture(scope="module")
def api(server: AuthorizationServer) -> Iterator[ProtectedAPI]:
    with ProtectedAPI(server, audience=AUDIENCE) as api:
        yield api


@pytest.fixture(autouse=True)
def fresh(server: AuthorizationServer, api: ProtectedAPI) -> None:
    server.reset()
    api.reset()


@pytest.fixture(scope="module")
def restricted(server: AuthorizationServer) -> RegisteredClient:
    """A client with Auth0-style client grants: one API, two scopes, one organization."""
    return server.register_client(
        audiences=[AUDIENCE], scopes=["read", "write"], organizations=["org_1"]
    )


def token_request(
    server: AuthorizationServer,
    client: RegisteredClient | None = None,
    how: str = "post",
    **parameters: str,
) -> requests.Response:
    """POST to the token endpoint, authenticating as ``how`` says: post, basic or json."""
    client = client or server.client
    fields = {**GRANT, "audience": AUDIENCE, **parameters}
    credentials = {"client_id": client.client_id, "client_secret": client.client_secret}
    if how == "basic":
        return requests.post(
            server.token_url, data=fields, auth=(client.client_id, client.client_secret)
        )
    if how == "json":
        return requests.post(server.token_url, json={**fields, **credentials})
    return requests.post(server.token_url, data={**fields, **credentials})


def access_token(
    server: AuthorizationServer, client: RegisteredClient | None = None, **kw: str
) -> str:
    response = token_request(server, client, **kw)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def unverified_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(extract_compact(token.encode()).payload)
    return claims


def make_auth(server: AuthorizationServer, **overrides: Any) -> ClientCredentialsAuth:
    options: dict[str, Any] = {
        "client_id": server.client.client_id,
        "client_secret": server.client.client_secret,
        "audience": AUDIENCE,
        "retry": FAST_RETRY,
        **overrides,
    }
    return ClientCredentialsAuth(server.token_url, **options)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- discovery and keys -----------------------------------------------------------------


def test_both_discovery_documents_describe_the_server(server: AuthorizationServer) -> None:
    documents = [
        requests.get(server.issuer + path).json()
        for path in (".well-known/openid-configuration", ".well-known/oauth-authorization-server")
    ]
    assert documents[0] == documents[1] == server.metadata
    assert documents[0]["issuer"] == server.issuer
    assert server.issuer.endswith("/") and server.issuer.startswith("http://127.0.0.1:")
    assert documents[0]["token_endpoint"] == server.token_url == server.issuer + "oauth/token"
    assert documents[0]["jwks_uri"] == server.jwks_url
    assert documents[0]["grant_types_supported"] == ["client_credentials"]
    assert set(documents[0]["token_endpoint_auth_methods_supported"]) == {
        "client_secret_post",
        "client_secret_basic",
    }
    assert requests.post(server.jwks_url).status_code == 405


def test_the_jwks_publishes_the_public_signing_key_only(server: AuthorizationServer) -> None:
    response = requests.get(server.jwks_url)
    assert response.headers["Content-Type"] == "application/json"
    (key,) = response.json()["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    assert "d" not in key and "p" not in key


def test_unknown_paths_answer_404(server: AuthorizationServer, api: ProtectedAPI) -> None:
    assert requests.get(server.url + "nope").status_code == 404


# -- tokens -------------------------------------------------------------------------------


def test_tokens_are_rfc_9068_jwts_that_verify_against_the_jwks(server: AuthorizationServer) -> None:
    keys = KeySet.import_key_set(requests.get(server.jwks_url).json())
    before = time.time()
    response = token_request(server, scope="read write", organization="org_42")
    after = time.time()
    payload = response.json()
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert payload["token_type"] == "Bearer"
    assert payload["expires_in"] == 3600 and payload["scope"] == "read write"

    token = jwt.decode(payload["access_token"], keys, algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt" and token.header["kid"] == keys.keys[0].kid
    claims = token.claims
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": server.issuer},
        aud={"essential": True, "value": AUDIENCE},
        exp={"essential": True},
    ).validate(claims)
    client_id = server.client.client_id
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["scope"] == "read write" and claims["org_id"] == "org_42"
    # Whole seconds: iat never in the future, exp never before issue + lifetime.
    assert math.floor(before) <= claims["iat"] <= after
    assert math.ceil(before + 3600) <= claims["exp"] <= math.ceil(after + 3600)
    assert 3600 <= claims["exp"] - claims["iat"] <= 3601

    again = unverified_claims(access_token(server))
    assert again["jti"] != claims["jti"]
    assert "scope" not in again and "org_id" not in again


@pytest.mark.parametrize("how", ["post", "basic", "json"])
def test_clients_authenticate_in_the_body_with_basic_or_in_json(
    server: AuthorizationServer, how: str
) -> None:
    token = access_token(server, how=how)
    assert unverified_claims(token)["client_id"] == server.client.client_id


def test_the_audience_comes_from_audience_or_resource_or_the_default(
    server: AuthorizationServer,
) -> None:
    server.add_audience("urn:api:r")
    assert (
        unverified_claims(access_token(server, audience="", resource="urn:api:r"))["aud"]
        == "urn:api:r"
    )
    response = requests.post(
        server.token_url,
        data={**GRANT},
        auth=(server.client.client_id, server.client.client_secret),
    )
    assert unverified_claims(response.json()["access_token"])["aud"] == server.default_audience
    assert server.default_audience == server.issuer
    with AuthorizationServer(default_audience="urn:default") as other:
        token = access_token(other, other.client, audience="")  # blank means absent
        assert unverified_claims(token)["aud"] == "urn:default"


def test_a_restricted_client_gets_its_scopes_when_it_asks_for_none(
    server: AuthorizationServer, restricted: RegisteredClient
) -> None:
    response = token_request(server, restricted)
    assert response.json()["scope"] == "read write"
    assert unverified_claims(response.json()["access_token"])["scope"] == "read write"
    assert token_request(server, restricted, scope="read").json()["scope"] == "read"


def test_each_client_can_have_its_own_token_lifetime(server: AuthorizationServer) -> None:
    short = server.register_client(token_lifetime=2.5)
    before = time.time()
    response = token_request(server, short)
    claims = unverified_claims(response.json()["access_token"])
    # expires_in rounds down and exp rounds up: the client never overestimates a token.
    assert response.json()["expires_in"] == 2
    assert math.ceil(before + 2.5) <= claims["exp"] <= math.ceil(time.time() + 2.5)
    assert short.token_lifetime == 2.5 and server.client.token_lifetime == 3600


# -- errors -------------------------------------------------------------------------------


def test_a_wrong_secret_in_basic_is_401_with_a_basic_challenge(server: AuthorizationServer) -> None:
    response = requests.post(server.token_url, data=GRANT, auth=(server.client.client_id, "bad"))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


@pytest.mark.parametrize(
    ("case", "status", "error"),
    [
        ("wrong secret in the body", 401, "invalid_client"),
        ("unknown client", 401, "invalid_client"),
        ("no credentials", 401, "invalid_client"),
        ("audience not granted", 403, "access_denied"),
        ("organization not granted", 403, "access_denied"),
        ("scope not granted", 400, "invalid_scope"),
        ("grant type not allowed", 403, "unauthorized_client"),
        ("no grant_type", 400, "invalid_request"),
        ("unsupported grant_type", 400, "unsupported_grant_type"),
        ("repeated parameter", 400, "invalid_request"),
        ("audience and resource disagree", 400, "invalid_request"),
        ("broken JSON", 400, "invalid_request"),
        ("JSON that is not an object of strings", 400, "invalid_request"),
        ("plain text body", 400, "invalid_request"),
        ("body not in UTF-8", 400, "invalid_request"),
    ],
)
def test_refusals_have_auth0s_status_and_rfc_6749s_shape(
    server: AuthorizationServer,
    restricted: RegisteredClient,
    case: str,
    status: int,
    error: str,
) -> None:
    client = server.client
    secret = {"client_id": client.client_id, "client_secret": client.client_secret}
    url = server.token_url
    requests_by_case = {
        "wrong secret in the body": lambda: token_request(
            server, RegisteredClient(client.client_id, "bad")
        ),
        "unknown client": lambda: token_request(server, RegisteredClient("nobody", "x")),
        "no credentials": lambda: requests.post(url, data=GRANT),
        "audience not granted": lambda: token_request(server, restricted, audience="urn:other"),
        "organization not granted": lambda: token_request(server, restricted, organization="org_2"),
        "scope not granted": lambda: token_request(server, restricted, scope="read admin"),
        "grant type not allowed": lambda: token_request(
            server, server.register_client(grant_types=["authorization_code"])
        ),
        "no grant_type": lambda: requests.post(url, data=secret),
        "unsupported grant_type": lambda: token_request(server, grant_type="password"),
        "repeated parameter": lambda: requests.post(
            url, data=[*GRANT.items(), *secret.items(), ("scope", "a"), ("scope", "b")]
        ),
        "audience and resource disagree": lambda: token_request(server, resource="urn:x"),
        "broken JSON": lambda: requests.post(
            url, data=b"{", headers={"Content-Type": "application/json"}
        ),
        "JSON that is not an object of strings": lambda: requests.post(
            url, json={**GRANT, **secret, "audience": ["a", "b"]}
        ),
        "plain text body": lambda: requests.post(
            url, data=b"grant_type=client_credentials", headers={"Content-Type": "text/plain"}
        ),
        "body not in UTF-8": lambda: requests.post(
            url,
            data=b"grant_type=client_credentials&scope=\xff",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
    }
    response = requests_by_case[case]()
    assert (response.status_code, response.json()["error"]) == (status, error), response.text
    assert response.json()["error_description"]
    assert "WWW-Authenticate" not in response.headers  # no Basic attempt, no Basic challenge
    assert server.tokens_issued == 0


def test_the_token_endpoint_wants_post(server: AuthorizationServer) -> None:
    response = requests.get(server.token_url)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_bearer_m2m_raises_refusals_at_once(server: AuthorizationServer) -> None:
    auth = make_auth(server, client_secret="wrong")
    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()
    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")
    assert server.token_requests == 1


# -- scripted faults ------------------------------------------------------------------------


def test_scripted_failures_are_answered_in_order_then_tokens_again(
    server: AuthorizationServer,
) -> None:
    server.fail_next(2, status=502, headers={"X-Why": "scripted"})
    server.fail_next(status=400, json={"error": "invalid_request", "error_description": "no"})
    server.fail_next(status=500, body="oops")
    answers = [token_request(server) for _ in range(5)]
    assert [a.status_code for a in answers] == [502, 502, 400, 500, 200]
    assert (
        answers[0].json()["error"] == "server_error" and answers[0].headers["X-Why"] == "scripted"
    )
    assert answers[2].json() == {"error": "invalid_request", "error_description": "no"}
    assert answers[3].content == b"oops"
    assert (server.token_requests, server.tokens_issued) == (5, 1)


def test_rate_limiting_answers_like_auth0(server: AuthorizationServer) -> None:
    server.rate_limit_next(retry_after=7)
    response = token_request(server)
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_requests"
    assert response.headers["Retry-After"] == "7"
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-limit"]) > 0
    assert int(response.headers["x-ratelimit-reset"]) >= time.time() + 6


def test_malformed_json_html_drops_and_delays(server: AuthorizationServer) -> None:
    server.malformed_json_next()
    server.html_next(status=403)
    server.drop_next()
    server.delay_next(0.3)
    malformed = token_request(server)
    assert malformed.status_code == 200
    with pytest.raises(ValueError):
        malformed.json()
    html = token_request(server)
    assert html.status_code == 403 and html.headers["Content-Type"] == "text/html"
    assert html.text.startswith("<!DOCTYPE html>")
    with pytest.raises(requests.ConnectionError):
        token_request(server)
    started = time.monotonic()
    assert token_request(server).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert (server.token_requests, server.tokens_issued) == (4, 1)


@pytest.mark.parametrize("script", ["fail_next", "drop_next"])
def test_bearer_m2m_retries_failures_and_dropped_connections(
    server: AuthorizationServer, script: str
) -> None:
    getattr(server, script)()
    assert make_auth(server).token()
    assert (server.token_requests, server.tokens_issued) == (2, 1)


def test_bearer_m2m_waits_as_long_as_retry_after_asks(server: AuthorizationServer) -> None:
    server.rate_limit_next(retry_after=1)
    started = time.monotonic()
    make_auth(server).token()
    assert time.monotonic() - started >= 1.0
    assert server.token_requests == 2


@pytest.mark.parametrize("script", ["malformed_json_next", "html_next"])
def test_bearer_m2m_reports_unreadable_answers(server: AuthorizationServer, script: str) -> None:
    getattr(server, script)()
    with pytest.raises(InvalidTokenResponse):
        make_auth(server).token()
    assert server.token_requests == 1


def test_bearer_m2m_gives_up_on_an_endpoint_that_keeps_failing(server: AuthorizationServer) -> None:
    server.fail_next(100)
    auth = make_auth(server, retry=RetryPolicy(deadline=0.3, initial_backoff=0.01))
    with pytest.raises(TokenEndpointUnavailable) as caught:
        auth.token()
    assert caught.value.status_code == 503 and server.token_requests > 1


def test_reset_clears_counters_and_scripted_faults(server: AuthorizationServer) -> None:
    server.fail_next(3)
    token_request(server)
    server.reject_all_tokens = True
    server.reset()
    assert (server.token_requests, server.tokens_issued, server.reject_all_tokens) == (0, 0, False)
    assert token_request(server).status_code == 200


def test_fault_arguments_are_checked(server: AuthorizationServer) -> None:
    with pytest.raises(ValueError):
        server.fail_next(0)
    with pytest.raises(ValueError):
        server.fail_next(status=42)
    with pytest.raises(ValueError):
        server.fail_next(json={}, body="both")
    with pytest.raises(ValueError):
        server.delay_next(-1)
    with pytest.raises(ValueError):
        server.rate_limit_next(retry_after=-1)


# -- the protected API ----------------------------------------------------------------------


def test_the_api_describes_requests_made_with_a_valid_token(
    server: AuthorizationServer, api: ProtectedAPI
) -> None:
    token = access_token(server, scope="read", organization="org_1")
    chunks = iter([b"abc", b"defg"])
    response = requests.put(api.url + "things/1?x=1", data=chunks, headers=bearer(token))
    assert response.json() == {
        "path": "/things/1",
        "method": "PUT",
        "client_id": server.client.client_id,
        "scope": "read",
        "org_id": "org_1",
        "body_length": 7,
    }
    assert api.last_authorization == f"Bearer {token}"
    assert (api.requests, api.unauthorized) == (1, 0)


def test_a_request_without_a_bearer_token_gets_the_bare_challenge(api: ProtectedAPI) -> None:
    for headers in ({}, {"Authorization": "Basic eDp5"}, {"Authorization": "Bearer"}):
        response = requests.get(api.url, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == f'Bearer realm="{AUDIENCE}"'
    assert api.last_authorization == "Bearer"
    assert (api.requests, api.unauthorized) == (3, 3)


def assert_invalid_token(response: requests.Response | httpx.Response) -> None:
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert response.json()["error"] == "invalid_token"


def test_the_api_refuses_tokens_for_another_audience_issuer_or_signature(
    server: AuthorizationServer, api: ProtectedAPI
) -> None:
    server.add_audience("https://elsewhere.example")  # an API, but not this one
    other_audience = access_token(server, audience="https://elsewhere.example")
    with AuthorizationServer(audiences=[AUDIENCE]) as other:
        other_issuer = access_token(other, other.client)
    header, payload, signature = access_token(server).split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    with pytest.raises(BadSignatureError):
        jwt.decode(tampered, KeySet.import_key_set(server.jwks))
    for token in (other_audience, other_issuer, tampered, "not-a-jwt"):
        assert_invalid_token(requests.get(api.url, headers=bearer(token)))
    assert api.unauthorized == 4


def test_the_api_refuses_expired_tokens(server: AuthorizationServer, api: ProtectedAPI) -> None:
    token = access_token(server, server.register_client(token_lifetime=1))
    assert requests.get(api.url, headers=bearer(token)).status_code == 200
    # Authlib's validator counts whole seconds: a token is good through the second of its exp.
    time.sleep(max(0.0, unverified_claims(token)["exp"] + 1 - time.time()) + 0.05)
    assert_invalid_token(requests.get(api.url, headers=bearer(token)))


def test_revoke_all_refuses_earlier_tokens_only(
    server: AuthorizationServer, api: ProtectedAPI
) -> None:
    earlier = access_token(server)
    server.revoke_all()
    later = access_token(server)
    assert server.is_revoked(earlier) and not server.is_revoked(later)
    assert_invalid_token(requests.get(api.url, headers=bearer(earlier)))
    assert requests.get(api.url, headers=bearer(later)).status_code == 200


def test_bearer_m2m_replays_once_after_a_revocation(
    server: AuthorizationServer, api: ProtectedAPI
) -> None:
    auth = make_auth(server)
    with httpx.Client(auth=auth) as client:
        assert client.get(api.url).status_code == 200
        server.revoke_all()
        response = client.post(api.url + "again", content=b"payload")
    assert response.status_code == 200 and response.json()["body_length"] == 7
    assert (api.requests, api.unauthorized, server.tokens_issued) == (3, 1, 2)


def test_reject_all_tokens_refuses_even_fresh_ones_while_set(
    server: AuthorizationServer, api: ProtectedAPI
) -> None:
    auth = make_auth(server)
    server.reject_all_tokens = True
    response = requests.get(api.url, auth=auth)
    assert_invalid_token(response)
    assert api.unauthorized == 2 and server.tokens_issued == 2  # one replay, then given up
    server.reject_all_tokens = False
    assert requests.get(api.url, auth=auth).status_code == 200


def test_redirects_to_another_origin_carry_no_token(
    server: AuthorizationServer, api: ProtectedAPI
) -> None:
    with ProtectedAPI(server, AUDIENCE) as elsewhere:
        target = elsewhere.url + "landing"
        response = requests.get(api.url + "redirect", params={"to": target}, auth=make_auth(server))
        assert [r.status_code for r in response.history] == [302]
        assert response.status_code == 401 and elsewhere.last_authorization is None
    assert api.last_authorization is not None and api.unauthorized == 0
    moved = requests.get(api.url + "redirect?to=/x&status=307", allow_redirects=False)
    assert moved.status_code == 307 and moved.headers["Location"] == "/x"
    assert requests.get(api.url + "redirect").status_code == 400


def test_the_api_needs_a_running_server_and_an_audience(server: AuthorizationServer) -> None:
    with pytest.raises(RuntimeError, match="not running"):
        ProtectedAPI(AuthorizationServer())
    with pytest.raises(ValueError, match="audience"):
        ProtectedAPI(server, audience="")
    assert ProtectedAPI(server).audience == server.default_audience  # never started


# -- lifecycle, clients, secrets -------------------------------------------------------------


def test_start_and_stop() -> None:
    server = AuthorizationServer()
    with pytest.raises(RuntimeError):
        server.url
    assert repr(server) == "<AuthorizationServer not running>"
    assert server.start() is server.start()
    url = server.url
    server.stop()
    server.close()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + ".well-known/jwks.json")
    with pytest.raises(RuntimeError, match="stopped"):
        server.start()


def test_a_stopped_server_drops_delayed_answers_and_kept_alive_connections() -> None:
    server = AuthorizationServer().start()
    server.delay_next(30)
    outcomes: list[str] = []

    def call() -> None:
        try:
            token_request(server)
        except requests.ConnectionError:
            outcomes.append("dropped")

    caller = threading.Thread(target=call)
    caller.start()
    jwks_url = server.jwks_url
    with requests.Session() as session:
        assert session.get(jwks_url).status_code == 200  # the connection stays open
        while server.token_requests == 0:
            time.sleep(0.01)
        started = time.monotonic()
        server.stop()
        caller.join(timeout=5)
        assert time.monotonic() - started < 2 and outcomes == ["dropped"]
        with pytest.raises(requests.ConnectionError):
            session.get(jwks_url)


def test_a_failing_handler_answers_500_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(LoopbackServer):
        def handle(self, request: Request) -> Response | None:
            raise RuntimeError("bug")

    with Broken() as broken:
        response = requests.get(broken.url)
    assert response.status_code == 500 and response.json()["error"] == "server_error"
    assert "Broken failed on GET /" in caplog.text


def test_registered_clients(server: AuthorizationServer) -> None:
    client = server.register_client("fixed-id", "fixed-secret", scopes=("a",))
    assert client == RegisteredClient(
        "fixed-id", "fixed-secret", token_lifetime=3600, scopes=("a",)
    )
    assert "fixed-secret" not in repr(client) and "fixed-id" in repr(client)
    assert len(server.client.client_secret) >= 32
    with pytest.raises(ValueError, match="already registered"):
        server.register_client("fixed-id")
    with pytest.raises(TypeError, match="not a string"):
        server.register_client(audiences="https://api.example")
    with pytest.raises(TypeError):
        server.register_client(scopes=["read write"])
    with pytest.raises(ValueError):
        server.register_client(client_secret="")
    with pytest.raises(ValueError, match="token_lifetime"):
        server.register_client(token_lifetime=0.5)
    with pytest.raises(ValueError, match="token_lifetime"):
        AuthorizationServer(token_lifetime=0)


def test_no_secret_or_token_reaches_the_logs(
    server: AuthorizationServer, api: ProtectedAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = access_token(server, how="basic")
    requests.get(api.url, headers=bearer(token))
    token_request(server, RegisteredClient(server.client.client_id, "wrong-secret"))
    assert caplog.records  # Authlib logs at debug level...
    for secret in (server.client.client_secret, token, "wrong-secret"):
        assert secret not in caplog.text  # ...but none of these


def test_a_burst_of_simultaneous_connections_is_served(server: AuthorizationServer) -> None:
    soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    count = min(1000, (soft_limit - 100) // 2)  # each connection costs two descriptors here
    address = ("127.0.0.1", int(server.url.rsplit(":", 1)[1].rstrip("/")))
    connections = [socket.create_connection(address) for _ in range(count)]
    try:
        for connection in connections:
            connection.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nConnection: close\r\n\r\n")
        for connection in connections:
            with connection.makefile("rb") as answer:
                assert answer.readline().startswith(b"HTTP/1.1 200")
    finally:
        for connection in connections:
            connection.close()


# -- command line -----------------------------------------------------------------------------


def test_serve_prints_where_everything_is(tmp_path: Path) -> None:
    out, stop = StringIO(), threading.Event()
    options = _parser().parse_args(["--token-lifetime", "60", "--audience", "urn:demo"])
    runner = threading.Thread(target=serve, args=(options, stop, out))
    runner.start()
    try:
        while "client_secret" not in out.getvalue():
            time.sleep(0.01)
        lines = dict(line.split(None, 1) for line in out.getvalue().splitlines()[1:])
        secret = lines["client_secret"].split()[0]
        assert "throwaway" in lines["client_secret"]
        auth = ClientCredentialsAuth(
            lines["token_url"],
            client_id=lines["client_id"],
            client_secret=secret,
            audience="urn:demo",
        )
        response = requests.get(lines["api_url"].split()[0], auth=auth)
        assert response.status_code == 200
    finally:
        stop.set()
        runner.join()


def test_main_writes_the_secret_to_a_private_file_and_stops_on_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("stale")

    def written() -> bool:
        try:
            return secret_file.read_text() != "stale"
        except FileNotFoundError:  # between the old file's removal and the new one
            return False

    def stop_when_ready() -> None:
        deadline = time.monotonic() + 10
        while not written() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    handler_before = signal.getsignal(signal.SIGTERM)
    helper = threading.Thread(target=stop_when_ready)
    helper.start()
    assert main(["--secret-file", str(secret_file)]) == 0
    helper.join()
    secret = secret_file.read_text().strip()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600 and len(secret) >= 32
    output = capsys.readouterr().out
    assert secret not in output and str(secret_file) in output
    assert signal.getsignal(signal.SIGTERM) is handler_before


def test_main_refuses_bad_options_and_busy_ports(
    server: AuthorizationServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["--token-lifetime", "0.5"])
    assert "at least 1" in capsys.readouterr().err
    busy = server.url.rsplit(":", 1)[1].rstrip("/")
    assert main(["--port", busy]) == 1
    assert "bearer-m2m serve:" in capsys.readouterr().err


def test_python_m_bearer_m2m_testing_runs_until_terminated() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bearer_m2m.testing", "--token-lifetime", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(7)]
        token_url = next(line.split()[1] for line in lines if "token_url" in line)
        assert requests.get(token_url).status_code == 405
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()
