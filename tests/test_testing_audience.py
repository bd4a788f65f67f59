"""The local server refuses an audience it does not know, as an Auth0 tenant does.

Auth0 answers a token request for an API identifier the tenant lacks with 403
``{"error": "access_denied", "error_description": "Service not enabled within domain: <aud>"}``;
so must ``AuthorizationServer``, or a typo in ``audience`` surfaces only as the API's 401.
Known: the default audience, every ``ProtectedAPI`` built on the server, ``audiences=``,
``add_audience()``, and the audiences clients are registered with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import requests
from joserfc.jws import extract_compact

from bearer_m2m import ClientCredentialsAuth, TokenRequestRejected
from bearer_m2m._cli import EXIT_REJECTED, main
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient
from bearer_m2m.testing.pytest_plugin import fast_retry

GRANT = {"grant_type": "client_credentials"}
TYPO = "https://api.exmaple.com"  # what the user meant: https://api.example.com


def not_enabled(audience: str) -> dict[str, str]:
    """Auth0's answer, word for word, to a token request for an audience it does not know."""
    return {
        "error": "access_denied",
        "error_description": f"Service not enabled within domain: {audience}",
    }


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(server: AuthorizationServer) -> None:
    server.reset()


def token_request(
    server: AuthorizationServer, client: RegisteredClient | None = None, **fields: str
) -> requests.Response:
    client = client or server.client
    credentials = {"client_id": client.client_id, "client_secret": client.client_secret}
    return requests.post(server.token_url, data={**GRANT, **credentials, **fields}, timeout=5)


def audience_of(response: requests.Response) -> str:
    """The ``aud`` of the token in a successful answer (read, not verified)."""
    assert response.status_code == 200, response.text
    payload = extract_compact(response.json()["access_token"].encode()).payload
    audience: str = json.loads(payload)["aud"]
    return audience


def auth_for(server: AuthorizationServer, audience: str | None) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        audience=audience,
        retry=fast_retry(),
    )


def test_an_unknown_audience_is_refused_as_auth0_refuses_it(server: AuthorizationServer) -> None:
    response = token_request(server, audience=TYPO)
    assert (response.status_code, response.json()) == (403, not_enabled(TYPO))
    assert server.token_requests == 1 and server.tokens_issued == 0


def test_an_unknown_resource_is_refused_the_same_way(server: AuthorizationServer) -> None:
    """``resource`` (RFC 8707) names the API just as ``audience`` does on this server."""
    response = token_request(server, resource="urn:nobody:here")
    assert (response.status_code, response.json()) == (403, not_enabled("urn:nobody:here"))


def test_a_request_without_an_audience_gets_the_default_one(server: AuthorizationServer) -> None:
    assert audience_of(token_request(server)) == server.default_audience == server.issuer
    with AuthorizationServer(default_audience="urn:default") as other:
        assert audience_of(token_request(other)) == "urn:default"
        assert audience_of(token_request(other, audience="urn:default")) == "urn:default"
        assert other.audiences == {"urn:default"}


def test_the_library_raises_token_request_rejected(server: AuthorizationServer) -> None:
    auth = auth_for(server, TYPO)
    with pytest.raises(TokenRequestRejected) as raised:
        auth.token()
    error = raised.value
    assert (error.status_code, error.error) == (403, "access_denied")
    assert TYPO in (error.error_description or "")
    assert server.client.client_secret not in f"{error} {error!r}"
    assert server.token_requests == 1  # a refusal is not retried


def test_the_audience_of_an_api_built_on_the_server_is_known(
    server: AuthorizationServer,
) -> None:
    assert "https://orders.example" not in server.audiences
    assert token_request(server, audience="https://orders.example").status_code == 403
    with ProtectedAPI(server, "https://orders.example") as api:
        assert "https://orders.example" in server.audiences
        response = requests.get(api.url + "orders", auth=auth_for(server, api.audience), timeout=5)
        assert response.status_code == 200
    assert api.unauthorized == 0


def test_audiences_given_or_added_are_known() -> None:
    with AuthorizationServer(audiences=["urn:api:given"]) as server:
        assert audience_of(token_request(server, audience="urn:api:given")) == "urn:api:given"
        assert token_request(server, audience="urn:api:later").status_code == 403
        server.add_audience("urn:api:later")
        server.add_audience("urn:api:later")  # twice is harmless
        assert audience_of(token_request(server, resource="urn:api:later")) == "urn:api:later"
        assert server.audiences == {server.default_audience, "urn:api:given", "urn:api:later"}


def test_a_client_registered_for_an_audience_makes_it_known(server: AuthorizationServer) -> None:
    """An Auth0 client grant names an existing API: registering one declares the API."""
    granted = server.register_client(audiences=["urn:api:granted"])
    assert audience_of(token_request(server, granted, audience="urn:api:granted")) == (
        "urn:api:granted"
    )
    # Known now for every client; the default client may ask for anything known.
    assert audience_of(token_request(server, audience="urn:api:granted")) == "urn:api:granted"


def test_an_unknown_audience_is_told_before_one_the_client_may_not_use(
    server: AuthorizationServer,
) -> None:
    narrow = server.register_client(audiences=["urn:api:narrow"])
    server.add_audience("urn:api:other")
    not_granted = token_request(server, narrow, audience="urn:api:other")
    assert not_granted.status_code == 403
    assert "not authorized to access resource server" in not_granted.json()["error_description"]
    unknown = token_request(server, narrow, audience=TYPO)
    assert (unknown.status_code, unknown.json()) == (403, not_enabled(TYPO))


def test_a_client_that_cannot_authenticate_learns_nothing_about_the_apis(
    server: AuthorizationServer,
) -> None:
    fields = {**GRANT, "client_id": server.client.client_id, "client_secret": "wrong"}
    response = requests.post(server.token_url, data={**fields, "audience": TYPO}, timeout=5)
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")


@pytest.mark.parametrize("bad", ["", "has space", 42])
def test_an_audience_must_be_an_identifier(server: AuthorizationServer, bad: object) -> None:
    with pytest.raises(TypeError, match="audience"):
        server.add_audience(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="audience"):
        AuthorizationServer(audiences=[bad])  # type: ignore[list-item]


def test_audiences_must_be_a_list_not_a_string() -> None:
    with pytest.raises(TypeError, match="not a string"):
        AuthorizationServer(audiences="urn:api:a")


def test_the_cli_exits_3_for_an_unknown_audience(
    server: AuthorizationServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in list(os.environ):
        if name.startswith("BEARER_M2M_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("BEARER_M2M_TOKEN_URL", server.token_url)
    monkeypatch.setenv("BEARER_M2M_CLIENT_ID", server.client.client_id)
    monkeypatch.setenv("BEARER_M2M_CLIENT_SECRET", server.client.client_secret)
    monkeypatch.setenv("BEARER_M2M_AUDIENCE", TYPO)
    assert main(["token"]) == EXIT_REJECTED == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "access_denied" in err and TYPO in err
    assert server.client.client_secret not in err
