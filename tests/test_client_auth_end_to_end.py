"""Every client-authentication method and configuration source, end to end.

The real client library talks over real sockets to the local authorization
server (``bearer_m2m.testing``), which checks the JWT assertions' signatures and
claims, and for mutual TLS runs real TLS listeners on loopback that ask for a
client certificate. Tokens are then spent at a :class:`ProtectedAPI` with
``requests``, ``httpx`` and ``httpx`` async; the command line runs as a subprocess.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from bearer_m2m import (
    ClientCredentialsAuth,
    ConfigurationError,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenRequestRejected,
    _discovery,
)
from bearer_m2m._ratelimit import QuotaBucket
from bearer_m2m.testing import (
    AuthorizationServer,
    ClientCertificate,
    ProtectedAPI,
    Quota,
    RegisteredClient,
)

AUDIENCE = "https://api.example"
#: Retries within milliseconds: a test that expects no retry must not wait for one either.
FAST_RETRY = RetryPolicy(deadline=1.0, initial_backoff=0.01, max_backoff=0.05)
#: Exit codes of ``bearer-m2m`` (documented in its ``--help``).
EXIT_OK, EXIT_REJECTED = 0, 3


# -- keys -----------------------------------------------------------------------------------


def _pem(private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def other_rsa_pem() -> str:
    """A key no server has heard of."""
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_jwk() -> dict[str, Any]:
    """A private P-256 JWK with a ``kid``."""
    key = ECKey.import_key(_pem(ec.generate_private_key(ec.SECP256R1())))
    return {**key.as_dict(private=True), "kid": "ec-key-1"}


@pytest.fixture
def rsa_file(rsa_pem: str, tmp_path: Path) -> Path:
    path = tmp_path / "client-key.pem"
    path.write_text(rsa_pem)
    return path


# -- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(default_audience=AUDIENCE) as server:
        yield server


@pytest.fixture(scope="module")
def api(server: AuthorizationServer) -> Iterator[ProtectedAPI]:
    with ProtectedAPI(server, AUDIENCE) as api:
        yield api


@pytest.fixture(scope="module")
def tls_server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(tls=True, default_audience=AUDIENCE) as server:
        yield server


@pytest.fixture(scope="module")
def tls_api(tls_server: AuthorizationServer) -> Iterator[ProtectedAPI]:
    with ProtectedAPI(tls_server, AUDIENCE, tls=True) as api:
        yield api


@pytest.fixture(autouse=True)
def fresh(server: AuthorizationServer, tls_server: AuthorizationServer) -> None:
    """Counters at zero, and discovery done again: it is cached per process."""
    server.reset()
    tls_server.reset()
    _discovery._documents.clear()


# -- helpers --------------------------------------------------------------------------------


def last_assertion(server: AuthorizationServer) -> tuple[dict[str, Any], dict[str, Any]]:
    seen = server.last_client_assertion
    assert seen is not None, "the server accepted no client assertion"
    return seen


def verified_claims(server: AuthorizationServer, access_token: str) -> dict[str, Any]:
    """The access token's claims, its signature checked with the server's JWKS."""
    token = jwt.decode(access_token, KeySet.import_key_set(server.jwks), algorithms=["RS256"])
    assert token.header["typ"] == "at+jwt"
    claims: dict[str, Any] = dict(token.claims)
    assert claims["iss"] == server.issuer
    return claims


def call_api(
    api: ProtectedAPI,
    auth: ClientCredentialsAuth,
    *,
    tls_server: AuthorizationServer | None = None,
    certificate: ClientCertificate | None = None,
) -> list[requests.Response | httpx.Response]:
    """The same call with requests, httpx and httpx async; over TLS, trusting
    ``tls_server``'s CA and presenting ``certificate`` if given."""
    url = api.url + "things"
    verify: str | bool = True if tls_server is None else tls_server.ca_bundle
    context = None if tls_server is None else tls_server.ssl_context(certificate)

    async def call_async() -> httpx.Response:
        async with httpx.AsyncClient(auth=auth, verify=context or True, timeout=5) as client:
            return await client.get(url)

    answers: list[requests.Response | httpx.Response] = [
        requests.get(url, auth=auth, timeout=5, verify=verify, cert=certificate)
    ]
    with httpx.Client(auth=auth, verify=context or True, timeout=5) as client:
        answers.append(client.get(url))
    answers.append(asyncio.run(call_async()))
    return answers


def assert_api_accepts(
    api: ProtectedAPI,
    auth: ClientCredentialsAuth,
    client_id: str,
    *,
    tls_server: AuthorizationServer | None = None,
    certificate: ClientCertificate | None = None,
) -> None:
    for answered in call_api(api, auth, tls_server=tls_server, certificate=certificate):
        assert answered.status_code == 200, answered.text
        assert answered.json()["client_id"] == client_id


def pem_client(server: AuthorizationServer, public: str | dict[str, Any]) -> RegisteredClient:
    return server.register_client(public_key=public, audiences=[AUDIENCE])


# -- 1. private_key_jwt ---------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256"])
def test_private_key_jwt_assertions_are_checked_by_the_server_and_the_token_works(
    algorithm: str,
    server: AuthorizationServer,
    api: ProtectedAPI,
    rsa_pem: str,
    rsa_file: Path,
    ec_jwk: dict[str, Any],
) -> None:
    # RS256 from a PEM file path (no kid), PS256 from PEM text with a kid given,
    # ES256 from a JWK whose own kid is announced.
    private_key: str | Path | dict[str, Any]
    public: str | dict[str, Any]
    key_id: str | None
    if algorithm == "RS256":
        private_key, key_id, expected_kid, public = rsa_file, None, None, rsa_pem
    elif algorithm == "PS256":
        private_key, key_id, expected_kid, public = rsa_pem, "ps-key", "ps-key", rsa_pem
    else:
        private_key, key_id, expected_kid = ec_jwk, None, "ec-key-1"
        public = {k: v for k, v in ec_jwk.items() if k != "d"}
    client = pem_client(server, public)
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        private_key=private_key,
        private_key_id=key_id,
        signing_algorithm=algorithm,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )

    first_token = auth.token()
    header, claims = last_assertion(server)
    assert header["alg"] == algorithm
    if expected_kid is None:
        assert "kid" not in header
    else:
        assert header["kid"] == expected_kid
    assert claims["iss"] == claims["sub"] == client.client_id
    assert claims["aud"] == server.token_url
    assert claims["exp"] - claims["iat"] == 60
    assert verified_claims(server, first_token)["client_id"] == client.client_id

    auth.invalidate()
    second_token = auth.token()
    _, second_claims = last_assertion(server)
    assert second_claims["jti"] != claims["jti"]
    assert second_token != first_token
    assert server.tokens_issued == 2

    assert_api_accepts(api, auth, client.client_id)
    assert server.token_requests == 2  # the API calls reused the cached token


def test_private_key_jwt_with_the_issuer_as_audience_auth0_style(
    server: AuthorizationServer, api: ProtectedAPI, rsa_pem: str
) -> None:
    client = pem_client(server, rsa_pem)
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        private_key=rsa_pem,
        assertion_audience=server.issuer,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    assert auth.token()
    _, claims = last_assertion(server)
    assert claims["aud"] == server.issuer != server.token_url
    assert_api_accepts(api, auth, client.client_id)


def test_the_auth0_shortcut_against_the_local_server_over_https(
    tls_server: AuthorizationServer, rsa_pem: str
) -> None:
    """``auth0(domain)`` derives ``https://DOMAIN/oauth/token`` and the ``https://DOMAIN/``
    assertion audience: the local TLS server has both shapes."""
    client = pem_client(tls_server, rsa_pem)
    domain = tls_server.issuer.removeprefix("https://").rstrip("/")
    auth = ClientCredentialsAuth.auth0(
        domain,
        client.client_id,
        private_key=rsa_pem,
        audience=AUDIENCE,
        verify=tls_server.ca_bundle,
        retry=FAST_RETRY,
    )
    assert auth._config.token_url == tls_server.token_url
    assert verified_claims(tls_server, auth.token())["aud"] == AUDIENCE
    _, claims = last_assertion(tls_server)
    assert claims["aud"] == tls_server.issuer


def test_a_key_the_server_does_not_know_is_invalid_client(
    server: AuthorizationServer, rsa_pem: str, other_rsa_pem: str
) -> None:
    client = pem_client(server, rsa_pem)
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        private_key=other_rsa_pem,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()
    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")
    assert server.token_requests == 1  # a refusal is not retried
    assert server.last_client_assertion is None


# -- 2. client_secret_jwt -------------------------------------------------------------------


def test_client_secret_jwt(server: AuthorizationServer, api: ProtectedAPI) -> None:
    client = server.register_client(auth_methods=["client_secret_jwt"])
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        client_secret=client.client_secret,
        auth_method="client_secret_jwt",
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    assert auth.token()
    header, claims = last_assertion(server)
    assert header["alg"] == "HS256"
    assert claims["iss"] == claims["sub"] == client.client_id
    assert claims["aud"] == server.token_url
    assert claims["exp"] - claims["iat"] == 60
    assert_api_accepts(api, auth, client.client_id)


def test_client_secret_jwt_with_a_wrong_secret_is_invalid_client(
    server: AuthorizationServer,
) -> None:
    client = server.register_client(auth_methods=["client_secret_jwt"])
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        client_secret=client.client_secret + "-but-wrong",
        auth_method="client_secret_jwt",
        retry=FAST_RETRY,
    )
    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()
    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")
    assert server.tokens_issued == 0


# -- 3. mutual TLS --------------------------------------------------------------------------


@pytest.fixture
def ca_client(tls_server: AuthorizationServer) -> tuple[RegisteredClient, ClientCertificate]:
    """A ``tls_client_auth`` client and its CA-issued certificate, registered before any
    discovery (the server lists only the methods some client uses)."""
    certificate = tls_server.issue_client_certificate("svc-mtls")
    client = tls_server.register_client(tls_client_auth_subject_dn=certificate.subject_dn)
    return client, certificate


def test_tls_client_auth_through_discovery_binds_the_token_to_the_certificate(
    tls_server: AuthorizationServer,
    tls_api: ProtectedAPI,
    ca_client: tuple[RegisteredClient, ClientCertificate],
) -> None:
    client, certificate = ca_client
    auth = ClientCredentialsAuth.from_issuer(
        tls_server.issuer,
        client_id=client.client_id,
        cert=certificate,
        verify=tls_server.ca_bundle,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    assert auth._config.token_url == tls_server.mtls_token_url != tls_server.token_url
    assert auth._config.auth_method == "tls_client_auth"

    claims = verified_claims(tls_server, auth.token())
    assert claims["client_id"] == client.client_id
    assert claims["cnf"] == {"x5t#S256": certificate.thumbprint}
    assert tls_server.last_client_assertion is None  # the certificate did it, not a JWT

    # The bound token works only with the same certificate on the connection.
    assert_api_accepts(
        tls_api,
        auth,
        client.client_id,
        tls_server=tls_server,
        certificate=certificate,
    )
    for answered in call_api(tls_api, auth, tls_server=tls_server):
        assert answered.status_code == 401
        assert 'error="invalid_token"' in answered.headers["WWW-Authenticate"]


def test_self_signed_tls_client_auth(
    tls_server: AuthorizationServer, tls_api: ProtectedAPI
) -> None:
    certificate = tls_server.make_self_signed_certificate("svc-self-signed")
    client = tls_server.register_client(certificate=certificate)
    auth = ClientCredentialsAuth(
        tls_server.mtls_token_url,
        client_id=client.client_id,
        cert=certificate,
        auth_method="self_signed_tls_client_auth",
        verify=tls_server.ca_bundle,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    claims = verified_claims(tls_server, auth.token())
    assert claims["client_id"] == client.client_id
    assert claims["cnf"] == {"x5t#S256": certificate.thumbprint}
    assert_api_accepts(
        tls_api,
        auth,
        client.client_id,
        tls_server=tls_server,
        certificate=certificate,
    )


@pytest.mark.parametrize("kind", ["ca-issued", "self-signed"])
def test_a_certificate_of_another_client_is_invalid_client(
    kind: str, tls_server: AuthorizationServer
) -> None:
    if kind == "ca-issued":
        mine = tls_server.issue_client_certificate("svc-mine")
        theirs = tls_server.issue_client_certificate("svc-theirs")
        tls_server.register_client(tls_client_auth_subject_dn=theirs.subject_dn)
        client = tls_server.register_client(tls_client_auth_subject_dn=mine.subject_dn)
        method, refusal = "tls_client_auth", "not issued by the CA to the registered subject"
    else:
        mine = tls_server.make_self_signed_certificate("svc-mine")
        theirs = tls_server.make_self_signed_certificate("svc-theirs")
        tls_server.register_client(certificate=theirs)
        client = tls_server.register_client(certificate=mine)
        method, refusal = "self_signed_tls_client_auth", "not the one registered"
    auth = ClientCredentialsAuth(
        tls_server.mtls_token_url,
        client_id=client.client_id,
        cert=theirs,
        auth_method=method,
        verify=tls_server.ca_bundle,
        retry=FAST_RETRY,
    )
    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()
    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")
    assert refusal in (caught.value.error_description or "")  # it did see a certificate
    assert tls_server.tokens_issued == 0


def test_discovery_with_a_self_signed_certificate(tls_server: AuthorizationServer) -> None:
    """With both mutual-TLS methods listed, the credentials cannot tell which one is the
    client's: both put the same request on the wire, and the server finds the client's."""
    ca_issued = tls_server.issue_client_certificate("svc-listed")
    tls_server.register_client(tls_client_auth_subject_dn=ca_issued.subject_dn)
    certificate = tls_server.make_self_signed_certificate("svc-discovering")
    client = tls_server.register_client(certificate=certificate)
    methods = tls_server.metadata["token_endpoint_auth_methods_supported"]
    assert {"tls_client_auth", "self_signed_tls_client_auth"} <= set(methods)

    auth = ClientCredentialsAuth.from_issuer(
        tls_server.issuer,
        client_id=client.client_id,
        cert=certificate,
        verify=tls_server.ca_bundle,
        retry=FAST_RETRY,
    )
    assert auth._config.token_url == tls_server.mtls_token_url
    claims = verified_claims(tls_server, auth.token())
    assert (claims["client_id"], claims["cnf"]) == (
        client.client_id,
        {"x5t#S256": certificate.thumbprint},
    )


# -- 4. discovery ---------------------------------------------------------------------------


def test_discovery_picks_the_method_the_server_lists_for_the_credentials(
    server: AuthorizationServer, api: ProtectedAPI, rsa_pem: str
) -> None:
    key_client = pem_client(server, rsa_pem)
    methods = server.metadata["token_endpoint_auth_methods_supported"]
    assert "private_key_jwt" in methods and "client_secret_post" in methods

    with_key = ClientCredentialsAuth.from_issuer(
        server.issuer,
        client_id=key_client.client_id,
        private_key=rsa_pem,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    assert with_key._config.auth_method == "private_key_jwt"
    assert with_key._config.token_url == server.token_url
    assert_api_accepts(api, with_key, key_client.client_id)
    assert last_assertion(server)[1]["sub"] == key_client.client_id

    with_secret = ClientCredentialsAuth.from_issuer(
        server.issuer,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )
    assert with_secret._config.auth_method == "client_secret_post"
    assert_api_accepts(api, with_secret, server.client.client_id)


def test_discovery_refuses_credentials_for_a_method_no_client_uses() -> None:
    """A fresh server lists only the secret methods of its default client."""
    with AuthorizationServer() as fresh_server:
        assert (
            "private_key_jwt" not in fresh_server.metadata["token_endpoint_auth_methods_supported"]
        )
        pem = _pem(ec.generate_private_key(ec.SECP256R1()))
        with pytest.raises(ConfigurationError, match="private_key_jwt"):
            ClientCredentialsAuth.from_issuer(
                fresh_server.issuer,
                client_id="svc",
                private_key=pem,
                signing_algorithm="ES256",
            )
        assert fresh_server.token_requests == 0


def test_discovery_with_an_explicit_method(server: AuthorizationServer) -> None:
    client = server.register_client(auth_methods=["client_secret_jwt"])
    auth = ClientCredentialsAuth.from_issuer(
        server.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
        auth_method="client_secret_jwt",
        retry=FAST_RETRY,
    )
    assert auth.token()
    assert last_assertion(server)[0]["alg"] == "HS256"


def test_discovery_forgives_a_missing_trailing_slash(server: AuthorizationServer) -> None:
    assert server.issuer.endswith("/")
    auth = ClientCredentialsAuth.from_issuer(
        server.issuer.rstrip("/"),
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
    )
    assert auth._config.token_url == server.token_url


def test_discovery_refuses_a_document_that_names_another_issuer(
    server: AuthorizationServer,
) -> None:
    # The same server under another name: its metadata names 127.0.0.1, not localhost.
    assert server.metadata["issuer"].startswith("http://127.0.0.1:")
    alias = server.issuer.replace("127.0.0.1", "localhost")
    with pytest.raises(ConfigurationError, match="names another issuer") as caught:
        ClientCredentialsAuth.from_issuer(
            alias, client_id=server.client.client_id, client_secret=server.client.client_secret
        )
    assert server.issuer in str(caught.value)
    assert server.token_requests == 0
    assert _discovery._documents == {}  # nothing cached for the next attempt


# -- 5. from_env ----------------------------------------------------------------------------


def test_from_env_issuer_and_a_mounted_secret_file(
    server: AuthorizationServer, api: ProtectedAPI, tmp_path: Path
) -> None:
    secret_file = tmp_path / "client-secret"
    secret_file.write_text(server.client.client_secret + "\n")  # as Kubernetes mounts them
    auth = ClientCredentialsAuth.from_env(
        environ={
            "BEARER_M2M_ISSUER": server.issuer,
            "BEARER_M2M_CLIENT_ID": server.client.client_id,
            "BEARER_M2M_CLIENT_SECRET_FILE": str(secret_file),
            "BEARER_M2M_AUDIENCE": AUDIENCE,
        },
        retry=FAST_RETRY,
    )
    assert auth._config.token_url == server.token_url
    assert_api_accepts(api, auth, server.client.client_id)


def test_from_env_token_url_and_a_private_key_file(
    server: AuthorizationServer, api: ProtectedAPI, rsa_pem: str, rsa_file: Path
) -> None:
    client = pem_client(server, rsa_pem)
    auth = ClientCredentialsAuth.from_env(
        environ={
            "BEARER_M2M_TOKEN_URL": server.token_url,
            "BEARER_M2M_CLIENT_ID": client.client_id,
            "BEARER_M2M_PRIVATE_KEY_FILE": str(rsa_file),
            "BEARER_M2M_AUDIENCE": AUDIENCE,
        },
        retry=FAST_RETRY,
    )
    assert_api_accepts(api, auth, client.client_id)
    header, claims = last_assertion(server)
    assert header["alg"] == "RS256"
    assert claims["sub"] == client.client_id


def test_from_env_issuer_with_a_certificate_and_key_file(
    tls_server: AuthorizationServer,
    tls_api: ProtectedAPI,
    ca_client: tuple[RegisteredClient, ClientCertificate],
) -> None:
    client, certificate = ca_client
    auth = ClientCredentialsAuth.from_env(
        environ={
            "BEARER_M2M_ISSUER": tls_server.issuer,
            "BEARER_M2M_CLIENT_ID": client.client_id,
            "BEARER_M2M_CERT_FILE": certificate.cert_path,
            "BEARER_M2M_KEY_FILE": certificate.key_path,
            "BEARER_M2M_AUDIENCE": AUDIENCE,
        },
        verify=tls_server.ca_bundle,
        retry=FAST_RETRY,
    )
    assert auth._config.token_url == tls_server.mtls_token_url
    claims = verified_claims(tls_server, auth.token())
    assert claims["cnf"] == {"x5t#S256": certificate.thumbprint}
    assert_api_accepts(
        tls_api,
        auth,
        client.client_id,
        tls_server=tls_server,
        certificate=certificate,
    )


# -- 6. the command line --------------------------------------------------------------------


def run_cli(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m bearer_m2m ARGV`` with none of this process's BEARER_M2M_* settings."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BEARER_M2M_")}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "bearer_m2m", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        stdin=subprocess.DEVNULL,
    )


def test_cli_token_with_a_private_key_file(
    server: AuthorizationServer, api: ProtectedAPI, rsa_pem: str, rsa_file: Path
) -> None:
    client = pem_client(server, rsa_pem)
    done = run_cli(
        [
            "token",
            "--token-url",
            server.token_url,
            "--client-id",
            client.client_id,
            "--private-key-file",
            str(rsa_file),
            "--audience",
            AUDIENCE,
        ]
    )
    assert (done.returncode, done.stderr) == (EXIT_OK, "")
    token = done.stdout.strip()
    assert done.stdout == token + "\n"
    assert last_assertion(server)[1]["sub"] == client.client_id
    answered = requests.get(api.url + "x", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert answered.status_code == 200
    assert answered.json()["client_id"] == client.client_id


def test_cli_token_with_a_key_the_server_does_not_know_exits_3(
    server: AuthorizationServer, rsa_pem: str, other_rsa_pem: str, tmp_path: Path
) -> None:
    client = pem_client(server, rsa_pem)
    unknown = tmp_path / "unknown-key.pem"
    unknown.write_text(other_rsa_pem)
    done = run_cli(
        [
            "token",
            "--token-url",
            server.token_url,
            "--client-id",
            client.client_id,
            "--private-key-file",
            str(unknown),
        ]
    )
    assert done.returncode == EXIT_REJECTED
    assert done.stdout == ""
    assert "invalid_client" in done.stderr
    assert "PRIVATE KEY" not in done.stderr


def mtls_argv(
    command: str, server: AuthorizationServer, client_id: str, certificate: ClientCertificate
) -> list[str]:
    return [
        command,
        "--issuer",
        server.issuer,
        "--client-id",
        client_id,
        "--cert-file",
        certificate.cert_path,
        "--key-file",
        certificate.key_path,
        "--audience",
        AUDIENCE,
    ]


@pytest.mark.parametrize("trust", ["--ca-bundle", "BEARER_M2M_CA_BUNDLE", "REQUESTS_CA_BUNDLE"])
def test_cli_token_over_mutual_tls_trusting_the_ca(
    trust: str,
    tls_server: AuthorizationServer,
    tls_api: ProtectedAPI,
    ca_client: tuple[RegisteredClient, ClientCertificate],
) -> None:
    """The private CA is trusted for discovery and the token request alike, through the
    flag, the setting, or requests' own variable."""
    client, certificate = ca_client
    argv = mtls_argv("token", tls_server, client.client_id, certificate)
    if trust == "--ca-bundle":
        done = run_cli([*argv, "--ca-bundle", tls_server.ca_bundle], REQUESTS_CA_BUNDLE="")
    else:
        done = run_cli(argv, **{trust: tls_server.ca_bundle})
    assert (done.returncode, done.stderr) == (EXIT_OK, "")
    token = done.stdout.strip()
    assert verified_claims(tls_server, token)["cnf"] == {"x5t#S256": certificate.thumbprint}
    answered = requests.get(
        tls_api.url + "x",
        headers={"Authorization": f"Bearer {token}"},
        verify=tls_server.ca_bundle,
        cert=certificate,
        timeout=5,
    )
    assert answered.status_code == 200


@pytest.mark.parametrize("endpoint", ["--issuer", "--token-url"])
def test_cli_over_mutual_tls_fails_without_trusting_the_ca(
    endpoint: str,
    tls_server: AuthorizationServer,
    ca_client: tuple[RegisteredClient, ClientCertificate],
) -> None:
    client, certificate = ca_client
    argv = mtls_argv("token", tls_server, client.client_id, certificate)
    if endpoint == "--token-url":
        argv[1:3] = ["--token-url", tls_server.mtls_token_url]
    # Empty: requests falls back to certifi's bundle, which lacks the test CA.
    done = run_cli(argv, REQUESTS_CA_BUNDLE="", CURL_CA_BUNDLE="")
    assert done.returncode not in (EXIT_OK, EXIT_REJECTED)
    assert done.stdout == ""
    assert "TLS with 127.0.0.1" in done.stderr and "--ca-bundle" in done.stderr
    assert tls_server.tokens_issued == 0


def test_cli_inspect_shows_the_certificate_binding(
    tls_server: AuthorizationServer, ca_client: tuple[RegisteredClient, ClientCertificate]
) -> None:
    client, certificate = ca_client
    done = run_cli(
        mtls_argv("inspect", tls_server, client.client_id, certificate),
        REQUESTS_CA_BUNDLE=tls_server.ca_bundle,
    )
    assert (done.returncode, done.stderr) == (EXIT_OK, "")
    assert done.stdout.startswith("NOT VERIFIED")
    assert '"cnf": {' in done.stdout
    assert f'"x5t#S256": "{certificate.thumbprint}"' in done.stdout
    assert f'"client_id": "{client.client_id}"' in done.stdout
    assert tls_server.tokens_issued == 1


# -- 7. Auth0 quota headers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def quota_server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(default_audience=AUDIENCE, client_quota=Quota(per_hour=100)) as server:
        yield server


def quota_auth(server: AuthorizationServer, client: RegisteredClient) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        client_secret=client.client_secret,
        audience=AUDIENCE,
        retry=FAST_RETRY,
    )


def quota_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "bearer_m2m" and "quota runs low" in record.getMessage()
    ]


def test_a_low_quota_is_warned_about(
    quota_server: AuthorizationServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = quota_server.register_client()
    auth = quota_auth(quota_server, client)
    caplog.set_level(logging.WARNING, logger="bearer_m2m")

    assert auth.token()  # 99 of 100 left: nothing to say
    assert quota_warnings(caplog) == []

    quota_server.set_quota(client.client_id, per_hour=10, remaining_per_hour=2)
    auth.invalidate()
    assert auth.token()
    (warning,) = quota_warnings(caplog)
    assert "client quota per_hour 1/10 left" in warning
    assert "rate limit 1/10 left" in warning


def test_an_exhausted_quota_fails_after_one_request_with_the_limits(
    quota_server: AuthorizationServer,
) -> None:
    quota_server.reset()
    client = quota_server.register_client()
    # The day's bucket, so that Retry-After (the seconds until it refills) exceeds the
    # retry deadline on every second of the day but the last.
    quota_server.set_quota(client.client_id, per_day=5, remaining_per_day=0)
    auth = quota_auth(quota_server, client)
    with pytest.raises(TokenEndpointUnavailable) as caught:
        auth.token()
    error = caught.value
    assert quota_server.token_requests == 1
    assert (error.status_code, error.error) == (429, "too_many_requests")
    limits = error.rate_limit
    assert limits is not None
    hour, day = limits.client_quota
    assert (hour.window, hour.quota, hour.remaining) == ("per_hour", 100, 100)
    assert day == QuotaBucket("per_day", 5, 0, day.resets_in)
    assert day.resets_in > 0
    assert error.retry_after == float(day.resets_in)
    assert (limits.limit, limits.remaining) == (5, 0)
