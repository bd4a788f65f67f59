"""DPoP as users configure it: the keyword, the environment, discovery, the answers a
token endpoint may give, and what never reaches a message or a log."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bearer_m2m import ClientCredentialsAuth, ConfigurationError, InvalidTokenResponse
from bearer_m2m._config import build_config
from bearer_m2m._dpop import DPoPKey
from bearer_m2m.caches._shared import cache_key
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from tests.conftest import FAST_RETRY, SECRET
from tests.servers import Reply, TokenServer, _Base, json_reply

AUDIENCE = "https://dpop.config.example"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[AuthorizationServer, ProtectedAPI]]:
    with AuthorizationServer() as server, ProtectedAPI(server, AUDIENCE) as api:
        yield server, api


def pem_file(tmp_path: Path, key: DPoPKey) -> Path:
    path = tmp_path / "dpop-key.pem"
    pem = key._key.as_pem(private=True)
    path.write_bytes(pem if isinstance(pem, bytes) else pem.encode())
    return path


def _auth(token_url: str, **options: object) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        token_url,
        client_id="client",
        client_secret=SECRET,
        retry=FAST_RETRY,
        allow_insecure_http=True,
        **options,  # type: ignore[arg-type]
    )


# -- the answers -----------------------------------------------------------------------


def test_a_bearer_answer_to_a_dpop_request_is_a_clear_error(token_server: TokenServer) -> None:
    auth = _auth(token_server.token_url, dpop=True)

    with pytest.raises(InvalidTokenResponse) as caught:
        auth.token()

    message = str(caught.value)
    assert "'Bearer'" in message and "DPoP" in message
    assert "tok-1" not in message


def test_a_dpop_answer_to_a_bearer_client_says_how_to_turn_dpop_on(
    token_server: TokenServer,
) -> None:
    token_server.script.append(json_reply({"access_token": "tok-x", "token_type": "DPoP"}))
    with pytest.raises(InvalidTokenResponse, match=r"set dpop=True"):
        _auth(token_server.token_url).token()


def test_token_types_compare_in_any_case(token_server: TokenServer) -> None:
    token_server.script.append(json_reply({"access_token": "tok-x", "token_type": "dpop"}))
    assert _auth(token_server.token_url, dpop=True).token() == "tok-x"


class EchoingTokenEndpoint(_Base):
    """A token endpoint that quotes the request's headers back in its error."""

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        quoted = " ".join(f"{name}={value}" for name, value in headers.items())
        return json_reply({"error": "invalid_request", "error_description": quoted}, 400)


def test_a_proof_echoed_by_the_token_endpoint_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    server = EchoingTokenEndpoint()
    caplog.set_level(logging.DEBUG)
    try:
        with pytest.raises(Exception) as caught:
            _auth(server.origin + "/oauth/token", dpop=True).token()
    finally:
        server.close()
    text = str(caught.value) + caplog.text
    assert "***" in text
    assert "eyJ0eXAiOiJkcG9wK2p3dCI" not in text  # the proof's header, {"typ":"dpop+jwt"...


# -- configuration ---------------------------------------------------------------------


def test_the_thumbprint_is_the_keys_and_none_without_dpop(tmp_path: Path) -> None:
    key = DPoPKey.generate("ES384")
    url = "https://tenant.example/oauth/token"
    assert _auth(url).dpop_thumbprint is None
    assert _auth(url, dpop=str(pem_file(tmp_path, key))).dpop_thumbprint == key.thumbprint
    made = _auth(url, dpop=True, dpop_algorithm="PS256")
    assert made.dpop_thumbprint not in (None, key.thumbprint)


def test_the_cache_key_names_the_dpop_key() -> None:
    def key_for(dpop: object) -> str:
        config = build_config(
            "https://tenant.example/oauth/token",
            client_id="client",
            client_secret=SECRET,
            private_key=None,
            private_key_id=None,
            signing_algorithm=None,
            assertion_audience=None,
            audience=AUDIENCE,
            organization=None,
            scope=None,
            resource=None,
            extra_params=None,
            auth_method=None,
            timeout=5,
            verify=True,
            cert=None,
            allow_insecure_http=False,
            dpop=dpop,  # type: ignore[arg-type]
        )
        return cache_key(config)

    one = DPoPKey.generate()
    assert key_for(None) != key_for(True) != key_for(True)
    assert key_for(one._key.as_dict(private=True)) == key_for(one._key.as_dict(private=True))


def test_from_env_turns_dpop_on_with_a_key_file_or_a_switch(tmp_path: Path) -> None:
    key = DPoPKey.generate()
    base = {
        "BEARER_M2M_TOKEN_URL": "https://tenant.example/oauth/token",
        "BEARER_M2M_CLIENT_ID": "client",
        "BEARER_M2M_CLIENT_SECRET": SECRET,
    }
    with_file = {**base, "BEARER_M2M_DPOP_KEY_FILE": str(pem_file(tmp_path, key))}
    assert ClientCredentialsAuth.from_env(environ=with_file).dpop_thumbprint == key.thumbprint
    switched = {**base, "BEARER_M2M_DPOP": "true", "BEARER_M2M_DPOP_ALGORITHM": "EdDSA"}
    assert ClientCredentialsAuth.from_env(environ=switched).dpop_thumbprint is not None
    assert (
        ClientCredentialsAuth.from_env(environ={**base, "BEARER_M2M_DPOP": "off"}).dpop_thumbprint
        is None
    )

    with pytest.raises(ConfigurationError, match="BEARER_M2M_DPOP must be true or false"):
        ClientCredentialsAuth.from_env(environ={**base, "BEARER_M2M_DPOP": "maybe"})
    with pytest.raises(ConfigurationError, match="DPOP is false but"):
        ClientCredentialsAuth.from_env(environ={**with_file, "BEARER_M2M_DPOP": "false"})


def test_from_issuer_signs_with_an_algorithm_the_server_lists(tmp_path: Path) -> None:
    with AuthorizationServer(dpop_signing_algorithms=["PS256"]) as server:
        options = {
            "client_id": server.client.client_id,
            "client_secret": server.client.client_secret,
            "allow_insecure_http": True,
        }
        chosen = ClientCredentialsAuth.from_issuer(server.issuer, dpop=True, **options)
        assert chosen.token()  # the server took its PS256 proof
        assert server.last_dpop_proof is not None
        assert server.last_dpop_proof[0]["alg"] == "PS256"

        with pytest.raises(ConfigurationError, match=r"PS256, not ES256"):
            ClientCredentialsAuth.from_issuer(
                server.issuer, dpop=True, dpop_algorithm="ES256", **options
            )
        es256_file = str(pem_file(tmp_path, DPoPKey.generate()))
        with pytest.raises(ConfigurationError, match=r"not ES256"):
            ClientCredentialsAuth.from_issuer(server.issuer, dpop=es256_file, **options)


# -- secrets ---------------------------------------------------------------------------


def test_no_key_proof_or_token_in_repr_or_logs(
    servers: tuple[AuthorizationServer, ProtectedAPI], caplog: pytest.LogCaptureFixture
) -> None:
    server, api = servers
    jwk = DPoPKey.generate()._key.as_dict(private=True)
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        audience=AUDIENCE,
        dpop=jwk,
    )
    caplog.set_level(logging.DEBUG)

    first = requests.get(api.url + "things", auth=auth)
    server.revoke_all()
    replayed = requests.get(api.url + "things", auth=auth)

    assert (first.status_code, replayed.status_code) == (200, 200)
    sent = [r.request for r in (first, *replayed.history, replayed)]
    secrets_seen = {jwk["d"], server.client.client_secret}
    for request in sent:
        token = request.headers["Authorization"].removeprefix("DPoP ")
        secrets_seen |= {token, request.headers["DPoP"]}
    shown = repr(auth) + repr(auth._scheme) + repr(auth._config) + caplog.text
    for secret in secrets_seen:
        assert secret not in shown
        assert base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=") not in shown
    assert json.dumps(jwk["d"])[1:-1] not in shown


def test_a_server_that_answers_bearer_to_dpop_is_asked_once_a_minute_not_per_call(
    token_server: TokenServer,
) -> None:
    auth = _auth(token_server.token_url, dpop=True)
    for _ in range(20):
        with pytest.raises(InvalidTokenResponse, match="DPoP"):
            auth.token()
    assert token_server.count == 1  # each ask would cost a token the client cannot use

    auth.invalidate()  # the operator fixed the server: ask again now
    with pytest.raises(InvalidTokenResponse):
        auth.token()
    assert token_server.count == 2


@pytest.mark.parametrize("error", ["invalid_dpop_proof", "use_dpop_nonce"])
def test_a_refused_proof_is_told_as_such_not_as_bad_credentials(
    token_server: TokenServer, error: str
) -> None:
    from bearer_m2m import TokenRequestRejected

    token_server.script += [json_reply({"error": error}, 400)] * 2
    with pytest.raises(TokenRequestRejected) as caught:
        _auth(token_server.token_url, dpop=True).token()
    assert "refused the DPoP proof" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_a_hostile_challenge_header_is_parsed_only_so_far() -> None:
    from bearer_m2m._dpop import MAX_CHALLENGE_TEXT, dpop_challenge

    junk = "Basic realm=x, " * (MAX_CHALLENGE_TEXT // 10)
    assert dpop_challenge(junk + 'DPoP error="use_dpop_nonce"') is None
    assert dpop_challenge('Basic realm=x, DPoP error="use_dpop_nonce"') is not None
