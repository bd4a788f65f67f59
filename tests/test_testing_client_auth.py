"""bearer_m2m.testing: every client-authentication method, checked by the server end to end.

The requests are made with plain ``requests`` (and one with ``httpx``) and the
assertions are built here with joserfc, so that these tests check the server
independently of the client library.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey
from joserfc.jws import extract_compact

from bearer_m2m.testing import (
    AuthorizationServer,
    ClientCertificate,
    ProtectedAPI,
    Quota,
    RegisteredClient,
    certificate_thumbprint,
    make_self_signed_certificate,
)
from bearer_m2m.testing._cli import _parser, serve

AUDIENCE = "https://api.example"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT = {"grant_type": "client_credentials", "audience": AUDIENCE}


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(audiences=[AUDIENCE]) as server:  # the API of GRANT
        yield server


@pytest.fixture(scope="module")
def tls_server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer(tls=True, audiences=[AUDIENCE]) as server:
        yield server


@pytest.fixture(scope="module")
def tls_api(tls_server: AuthorizationServer) -> Iterator[ProtectedAPI]:
    with ProtectedAPI(tls_server, AUDIENCE, tls=True) as api:
        yield api


@pytest.fixture(autouse=True)
def fresh(server: AuthorizationServer) -> None:
    server.reset()


def ec_key() -> ECKey:
    return ECKey.import_key(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def rsa_key(private: rsa.RSAPrivateKey) -> RSAKey:
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return RSAKey.import_key(pem)


def public_pem(private: rsa.RSAPrivateKey) -> bytes:
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def assertion(
    key: Key,
    client_id: str,
    audience: str,
    *,
    alg: str = "RS256",
    lifetime: int = 60,
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """An RFC 7523 client assertion, as Auth0 documents it."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        **claims,
    }
    for name in drop:
        payload.pop(name)
    return jwt.encode({"alg": alg, **(header or {})}, payload, key, algorithms=[alg])


def post_assertion(url: str, signed: str, verify: str | bool = True, **fields: str) -> Any:
    data = {
        **GRANT,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": signed,
        **fields,
    }
    return requests.post(url, data=data, verify=verify)


def claims_of(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = json.loads(extract_compact(token.encode()).payload)
    return claims


def assert_invalid_client(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"]


# -- private_key_jwt --------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "Ed25519"])
@pytest.mark.parametrize("audience", ["token_url", "issuer"])
def test_private_key_jwt_is_accepted_and_recorded(
    server: AuthorizationServer, rsa_private: rsa.RSAPrivateKey, alg: str, audience: str
) -> None:
    if alg in ("ES256", "Ed25519"):
        key: Key = ec_key() if alg == "ES256" else OKPKey.generate_key("Ed25519")
        client = server.register_client(public_key=key.as_dict(private=False))
    else:
        key = rsa_key(rsa_private)
        client = server.register_client(public_key=public_pem(rsa_private))
    assert client.auth_methods == ("private_key_jwt",)
    aud = getattr(server, audience)
    signed = assertion(key, client.client_id, aud, alg=alg, header={"kid": "k1"})

    response = post_assertion(server.token_url, signed)

    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["client_id"] == client.client_id
    recorded = server.last_client_assertion
    assert recorded is not None
    header, claims = recorded
    assert header["alg"] == alg and header["kid"] == "k1"
    assert claims["iss"] == claims["sub"] == client.client_id and claims["aud"] == aud
    assert server.issuer.endswith("/") and server.tokens_issued == 1


def test_the_client_id_may_come_along_and_the_key_may_be_a_jwk_set(
    server: AuthorizationServer,
) -> None:
    first, second = ec_key(), ec_key()
    jwks = {
        "keys": [
            {**first.as_dict(private=False), "kid": "one"},
            {**second.as_dict(private=False), "kid": "two"},
        ]
    }
    client = server.register_client(public_key=jwks)
    signed = assertion(second, client.client_id, server.token_url, alg="ES256")
    # Several keys: the kid picks one, so an assertion without one (or a wrong one) fails.
    assert_invalid_client(post_assertion(server.token_url, signed))
    wrong_kid = assertion(
        second, client.client_id, server.token_url, alg="ES256", header={"kid": "one"}
    )
    assert_invalid_client(post_assertion(server.token_url, wrong_kid))
    signed = assertion(
        second, client.client_id, server.token_url, alg="ES256", header={"kid": "two"}
    )
    response = post_assertion(server.token_url, signed, client_id=client.client_id)
    assert response.status_code == 200, response.text


def _refusals(server: AuthorizationServer) -> dict[str, dict[str, Any]]:
    """Each case: the arguments of ``assertion`` (and of ``post_assertion``) that make it bad."""
    now = int(time.time())
    return {
        "signed with another key": {"key": ec_key()},
        "for another audience": {"audience": "https://elsewhere.example/"},
        "for the issuer without its slash": {"audience": server.issuer.rstrip("/")},
        "expired": {"iat": now - 120, "exp": now - 60},
        "valid for more than five minutes": {"lifetime": 301},
        "valid for more than five minutes, without iat": {"lifetime": 400, "drop": ("iat",)},
        "without exp": {"drop": ("exp",)},
        "without jti": {"drop": ("jti",)},
        "iss is not sub": {"iss": "someone-else"},
        "sub is another client": {"sub": server.client.client_id, "iss": server.client.client_id},
        "sub is unknown": {"sub": "nobody", "iss": "nobody"},
        "client_id is not sub": {"post": {"client_id": server.client.client_id}},
        "signed with HS256 and the public key": {"alg": "HS256"},
        "signed with none": {"alg": "none"},
    }


REFUSALS = [
    "signed with another key",
    "for another audience",
    "for the issuer without its slash",
    "expired",
    "valid for more than five minutes",
    "valid for more than five minutes, without iat",
    "without exp",
    "without jti",
    "iss is not sub",
    "sub is another client",
    "sub is unknown",
    "client_id is not sub",
    "signed with HS256 and the public key",
    "signed with none",
]


@pytest.mark.parametrize("case", REFUSALS)
def test_bad_assertions_are_invalid_client(server: AuthorizationServer, case: str) -> None:
    key = ec_key()
    client = server.register_client(public_key=key.as_dict(private=False))
    options = dict(_refusals(server)[case])
    post_fields = options.pop("post", {})
    signing_key: Key = options.pop("key", key)
    audience = options.pop("audience", server.token_url)
    alg = options.pop("alg", "ES256")
    if alg == "HS256":
        # The old algorithm-confusion trick: the public key as an HMAC secret.
        signing_key = OctKey.import_key(json.dumps(key.as_dict(private=False)).encode())
    if alg == "none":
        header = json.dumps({"alg": "none"}).encode()
        body = json.dumps(
            {"iss": client.client_id, "sub": client.client_id, "aud": audience, "jti": "x"}
        ).encode()
        signed = ".".join(_b64(part) for part in (header, body)) + "."
    else:
        signed = assertion(signing_key, client.client_id, audience, alg=alg, **options)

    response = post_assertion(server.token_url, signed, **post_fields)

    assert_invalid_client(response)
    assert server.tokens_issued == 0 and server.last_client_assertion is None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_replayed_assertion_is_refused(server: AuthorizationServer) -> None:
    key = ec_key()
    client = server.register_client(public_key=key.as_dict(private=False))
    signed = assertion(key, client.client_id, server.token_url, alg="ES256")
    assert post_assertion(server.token_url, signed).status_code == 200
    replay = post_assertion(server.token_url, signed)
    assert_invalid_client(replay)
    assert "used" in replay.json()["error_description"]
    # The same jti in a new assertion is a replay too.
    jti = server.last_client_assertion[1]["jti"]  # type: ignore[index]
    again = assertion(key, client.client_id, server.issuer, alg="ES256", jti=jti)
    assert_invalid_client(post_assertion(server.token_url, again))
    assert server.tokens_issued == 1


# -- client_secret_jwt and the choice of methods ----------------------------------------


def test_client_secret_jwt(server: AuthorizationServer) -> None:
    client = server.register_client(auth_methods=["client_secret_jwt"])
    secret = OctKey.import_key(client.client_secret)
    good = assertion(secret, client.client_id, server.token_url, alg="HS256")
    response = post_assertion(server.token_url, good)
    assert response.status_code == 200, response.text
    assert server.last_client_assertion is not None
    assert server.last_client_assertion[0]["alg"] == "HS256"

    other = OctKey.import_key("another secret of enough length")
    assert_invalid_client(
        post_assertion(
            server.token_url, assertion(other, client.client_id, server.token_url, alg="HS256")
        )
    )
    # Its secret is good for client_secret_jwt only.
    fields = {**GRANT, "client_id": client.client_id, "client_secret": client.client_secret}
    assert_invalid_client(requests.post(server.token_url, data=fields))


def test_a_client_may_use_only_its_methods(
    server: AuthorizationServer, rsa_private: rsa.RSAPrivateKey
) -> None:
    # A secret client cannot use assertions: no key, and client_secret_jwt is not among its methods.
    secret_client = server.client
    assert secret_client.auth_methods == ("client_secret_post", "client_secret_basic")
    hs = assertion(
        OctKey.import_key(secret_client.client_secret),
        secret_client.client_id,
        server.token_url,
        alg="HS256",
    )
    assert_invalid_client(post_assertion(server.token_url, hs))
    es = assertion(ec_key(), secret_client.client_id, server.token_url, alg="ES256")
    assert_invalid_client(post_assertion(server.token_url, es))

    # A key client cannot use its (unused, random) secret.
    key_client = server.register_client(public_key=public_pem(rsa_private))
    for how in ("post", "basic"):
        if how == "post":
            fields = {**GRANT, "client_id": key_client.client_id}
            fields["client_secret"] = key_client.client_secret
            response = requests.post(server.token_url, data=fields)
        else:
            credentials = (key_client.client_id, key_client.client_secret)
            response = requests.post(server.token_url, data=GRANT, auth=credentials)
        assert_invalid_client(response)

    # Both, when asked for.
    both = server.register_client(
        public_key=public_pem(rsa_private), auth_methods=["private_key_jwt", "client_secret_post"]
    )
    fields = {**GRANT, "client_id": both.client_id, "client_secret": both.client_secret}
    assert requests.post(server.token_url, data=fields).status_code == 200
    signed = assertion(rsa_key(rsa_private), both.client_id, server.token_url)
    assert post_assertion(server.token_url, signed).status_code == 200


def test_registration_refuses_what_cannot_work(server: AuthorizationServer) -> None:
    with pytest.raises(ValueError, match="public_key"):
        server.register_client(auth_methods=["private_key_jwt"])
    with pytest.raises(ValueError, match="auth_methods"):
        server.register_client(auth_methods=["password"])
    with pytest.raises(TypeError):
        server.register_client(auth_methods="private_key_jwt")
    with pytest.raises(ValueError, match="symmetric"):
        server.register_client(public_key={"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0"})
    with pytest.raises(ValueError, match="PEM"):
        server.register_client(public_key="-----BEGIN PUBLIC KEY-----\nnope\n")
    with pytest.raises(RuntimeError, match="tls=True"):
        server.register_client(tls_client_auth_subject_dn="CN=svc")
    with pytest.raises(RuntimeError, match="tls=True"):
        _ = server.mtls_token_url
    with pytest.raises(RuntimeError, match="tls=True"):
        ProtectedAPI(server, tls=True)


def test_discovery_lists_the_methods_in_use_and_their_algorithms(
    rsa_private: rsa.RSAPrivateKey,
) -> None:
    with AuthorizationServer() as fresh_server:
        metadata = requests.get(fresh_server.issuer + ".well-known/openid-configuration").json()
        assert metadata["token_endpoint_auth_methods_supported"] == [
            "client_secret_post",
            "client_secret_basic",
        ]
        assert "token_endpoint_auth_signing_alg_values_supported" not in metadata
        assert "mtls_endpoint_aliases" not in metadata
        fresh_server.register_client(public_key=public_pem(rsa_private))
        fresh_server.register_client(auth_methods=["client_secret_jwt"])
        metadata = requests.get(fresh_server.issuer + ".well-known/openid-configuration").json()
        assert metadata["token_endpoint_auth_methods_supported"] == [
            "client_secret_post",
            "client_secret_basic",
            "client_secret_jwt",
            "private_key_jwt",
        ]
        algorithms = metadata["token_endpoint_auth_signing_alg_values_supported"]
        assert {"RS256", "PS256", "ES256", "HS256"} <= set(algorithms)
        assert "none" not in algorithms


# -- mutual TLS -------------------------------------------------------------------------


def test_tls_discovery_names_the_mtls_alias(tls_server: AuthorizationServer) -> None:
    tls_server.register_client(tls_client_auth_subject_dn="CN=discovery")
    response = requests.get(
        tls_server.issuer + ".well-known/oauth-authorization-server", verify=tls_server.ca_bundle
    )
    metadata = response.json()
    assert metadata == tls_server.metadata
    assert metadata["issuer"].startswith("https://127.0.0.1:")
    assert metadata["token_endpoint"] == tls_server.token_url
    assert tls_server.token_url.startswith("https://")
    assert metadata["tls_client_certificate_bound_access_tokens"] is True
    alias = metadata["mtls_endpoint_aliases"]["token_endpoint"]
    assert alias == tls_server.mtls_token_url != tls_server.token_url
    assert alias.startswith("https://127.0.0.1:") and alias.endswith("/oauth/token")
    assert "tls_client_auth" in metadata["token_endpoint_auth_methods_supported"]
    # The alias serves the token endpoint only.
    assert (
        requests.get(alias.replace("oauth/token", ""), verify=tls_server.ca_bundle).status_code
        == 404
    )


def mtls_post(
    server: AuthorizationServer,
    client: RegisteredClient,
    cert: ClientCertificate | None,
    url: str | None = None,
) -> requests.Response:
    return requests.post(
        url or server.mtls_token_url,
        data={**GRANT, "client_id": client.client_id},
        cert=cert,
        verify=server.ca_bundle,
    )


def test_tls_client_auth_binds_the_token_to_the_certificate(
    tls_server: AuthorizationServer, tls_api: ProtectedAPI
) -> None:
    cert = tls_server.issue_client_certificate("svc-a")
    assert cert.subject_dn == "CN=svc-a"
    client = tls_server.register_client(tls_client_auth_subject_dn="CN=svc-a")
    assert client.auth_methods == ("tls_client_auth",)
    assert client.tls_client_auth_subject_dn == "CN=svc-a"

    response = mtls_post(tls_server, client, cert)

    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    claims = claims_of(token)
    assert claims["cnf"] == {"x5t#S256": cert.thumbprint}
    assert cert.thumbprint == certificate_thumbprint(cert.certificate)

    # The API wants the same certificate with the token.
    headers = {"Authorization": f"Bearer {token}"}
    with_cert = requests.get(tls_api.url, headers=headers, cert=cert, verify=tls_server.ca_bundle)
    assert with_cert.status_code == 200 and with_cert.json()["client_id"] == client.client_id
    without = requests.get(tls_api.url, headers=headers, verify=tls_server.ca_bundle)
    assert (
        without.status_code == 401
        and 'error="invalid_token"' in without.headers["WWW-Authenticate"]
    )
    other = tls_server.issue_client_certificate("svc-a")  # same subject, other certificate
    assert (
        requests.get(
            tls_api.url, headers=headers, cert=other, verify=tls_server.ca_bundle
        ).status_code
        == 401
    )


def test_tls_client_auth_refusals(tls_server: AuthorizationServer) -> None:
    cert = tls_server.issue_client_certificate("svc-b")
    client = tls_server.register_client(tls_client_auth_subject_dn="CN=svc-b")
    # No certificate on the alias.
    no_cert = mtls_post(tls_server, client, None)
    assert_invalid_client(no_cert)
    assert tls_server.mtls_token_url in no_cert.json()["error_description"]
    # The plain token endpoint never asks for the certificate.
    assert_invalid_client(mtls_post(tls_server, client, cert, url=tls_server.token_url))
    # A certificate from the CA for another subject, or self-signed with the right subject.
    assert_invalid_client(
        mtls_post(tls_server, client, tls_server.issue_client_certificate("svc-c"))
    )
    impostor = tls_server.make_self_signed_certificate("svc-b")
    assert_invalid_client(mtls_post(tls_server, client, impostor))
    # And a secret is no substitute.
    fields = {**GRANT, "client_id": client.client_id, "client_secret": client.client_secret}
    assert_invalid_client(
        requests.post(
            tls_server.mtls_token_url, data=fields, cert=cert, verify=tls_server.ca_bundle
        )
    )


def test_self_signed_tls_client_auth(tls_server: AuthorizationServer, tmp_path: Path) -> None:
    mine = make_self_signed_certificate(tmp_path, "svc-d")
    client = tls_server.register_client(certificate=mine.cert_path)
    assert client.auth_methods == ("self_signed_tls_client_auth",)
    assert client.certificate_thumbprint == mine.thumbprint

    response = mtls_post(tls_server, client, mine)
    assert response.status_code == 200, response.text
    assert claims_of(response.json()["access_token"])["cnf"]["x5t#S256"] == mine.thumbprint

    # A self-signed certificate the server knows, but of no use for this client: invalid_client.
    assert_invalid_client(
        mtls_post(tls_server, client, tls_server.make_self_signed_certificate("svc-d"))
    )
    # Not even one from the server's CA with the same subject.
    assert_invalid_client(
        mtls_post(tls_server, client, tls_server.issue_client_certificate("svc-d"))
    )
    # One the server never saw ends the handshake.
    stranger = make_self_signed_certificate(tmp_path, "svc-d")
    with pytest.raises(requests.exceptions.SSLError):
        mtls_post(tls_server, client, stranger)


def test_other_methods_work_over_tls_and_bind_on_the_alias(tls_server: AuthorizationServer) -> None:
    client = tls_server.client
    fields = {**GRANT, "client_id": client.client_id, "client_secret": client.client_secret}
    plain = requests.post(tls_server.token_url, data=fields, verify=tls_server.ca_bundle)
    assert plain.status_code == 200 and "cnf" not in claims_of(plain.json()["access_token"])
    cert = tls_server.issue_client_certificate("anyone")
    bound = requests.post(
        tls_server.mtls_token_url, data=fields, cert=cert, verify=tls_server.ca_bundle
    )
    assert bound.status_code == 200
    assert claims_of(bound.json()["access_token"])["cnf"] == {"x5t#S256": cert.thumbprint}
    # Assertions may name the alias as their audience.
    key = ec_key()
    key_client = tls_server.register_client(public_key=key)
    signed = assertion(key, key_client.client_id, tls_server.mtls_token_url, alg="ES256")
    assert (
        post_assertion(tls_server.token_url, signed, verify=tls_server.ca_bundle).status_code == 200
    )


def test_httpx_with_the_servers_ssl_context(tls_server: AuthorizationServer) -> None:
    cert = tls_server.issue_client_certificate("svc-httpx")
    client = tls_server.register_client(tls_client_auth_subject_dn=cert.subject_dn)
    with httpx.Client(verify=tls_server.ssl_context(cert)) as http:
        response = http.post(
            tls_server.mtls_token_url, data={**GRANT, "client_id": client.client_id}
        )
    assert response.status_code == 200, response.text


# -- Auth0's quota headers ----------------------------------------------------------------

QUOTA = re.compile(r"b=(per_hour|per_day);q=(\d+);r=(\d+);t=(\d+)")


def buckets(value: str) -> dict[str, tuple[int, int, int]]:
    parsed = {}
    for part in value.split(","):
        match = QUOTA.fullmatch(part)
        assert match, value
        parsed[match[1]] = (int(match[2]), int(match[3]), int(match[4]))
    return parsed


def secret_post(
    server: AuthorizationServer, client: RegisteredClient, **fields: str
) -> requests.Response:
    data = {**GRANT, "client_id": client.client_id, "client_secret": client.client_secret, **fields}
    return requests.post(server.token_url, data=data)


def test_quota_headers_count_down_then_429(server: AuthorizationServer) -> None:
    client = server.register_client()
    server.set_quota(client.client_id, per_hour=5, per_day=100, remaining_per_hour=2)

    first = secret_post(server, client)
    assert first.status_code == 200
    quota = buckets(first.headers["Auth0-Client-Quota-Limit"])
    assert quota["per_hour"][:2] == (5, 1) and quota["per_day"][:2] == (100, 99)
    assert 0 < quota["per_hour"][2] <= 3600 and 0 < quota["per_day"][2] <= 86400
    assert first.headers["x-ratelimit-limit"] == "5"
    assert first.headers["x-ratelimit-remaining"] == "1"
    reset = int(first.headers["x-ratelimit-reset"])
    assert reset % 3600 == 0 and time.time() < reset <= time.time() + 3600
    assert "Auth0-Organization-Quota-Limit" not in first.headers

    assert secret_post(server, client).headers["x-ratelimit-remaining"] == "0"
    refused = secret_post(server, client)
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_requests"
    assert buckets(refused.headers["Auth0-Client-Quota-Limit"])["per_hour"][:2] == (5, 0)
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(refused.headers["Retry-After"]) <= 3600
    assert server.tokens_issued == 2

    server.reset()  # quotas full again
    assert secret_post(server, client).status_code == 200
    # Other clients have no quota, hence no quota headers.
    assert "x-ratelimit-limit" not in secret_post(server, server.client).headers


def test_organization_quota_and_server_wide_defaults() -> None:
    with AuthorizationServer(
        client_quota=Quota(per_day=1000),
        organization_quota=Quota(per_hour=10),
        audiences=[AUDIENCE],
    ) as quota_server:
        client = quota_server.client
        quota_server.set_organization_quota("org_1", remaining_per_hour=1)
        response = secret_post(quota_server, client, organization="org_1")
        assert response.status_code == 200
        assert buckets(response.headers["Auth0-Client-Quota-Limit"]).keys() == {"per_day"}
        assert buckets(response.headers["Auth0-Organization-Quota-Limit"])["per_hour"][:2] == (
            10,
            0,
        )
        # The tightest bucket is the one x-ratelimit-* describe.
        assert response.headers["x-ratelimit-limit"] == "10"
        assert response.headers["x-ratelimit-remaining"] == "0"

        refused = secret_post(quota_server, client, organization="org_1")
        assert refused.status_code == 429
        assert buckets(refused.headers["Auth0-Client-Quota-Limit"])["per_day"][:2] == (1000, 999)
        # Without the organization only the client's quota applies.
        alone = secret_post(quota_server, client)
        assert alone.status_code == 200 and "Auth0-Organization-Quota-Limit" not in alone.headers
        assert alone.headers["x-ratelimit-remaining"] == "998"
        with pytest.raises(ValueError):
            quota_server.set_quota(client.client_id, remaining_per_hour=3)  # no hourly quota set


# -- odds and ends ----------------------------------------------------------------------------


def test_public_keys_in_every_form(
    server: AuthorizationServer, rsa_private: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    pem_file = tmp_path / "key.pem"
    pem_file.write_bytes(public_pem(rsa_private))
    key = rsa_key(rsa_private)
    private_jwk = key.as_dict(private=True)
    forms: list[Any] = [
        public_pem(rsa_private),
        public_pem(rsa_private).decode(),
        str(pem_file),
        pem_file,
        rsa_private,
        rsa_private.public_key(),
        private_jwk,
        {"keys": [private_jwk]},
        key,
    ]
    for form in forms:
        client = server.register_client(public_key=form)
        assert client.jwks is not None
        assert all("d" not in member for member in client.jwks["keys"])  # public halves only
        signed = assertion(key, client.client_id, server.token_url)
        assert post_assertion(server.token_url, signed).status_code == 200, type(form)


def test_serve_with_tls_prints_the_ca_and_the_mtls_alias() -> None:
    out, stop = StringIO(), threading.Event()
    runner = threading.Thread(target=serve, args=(_parser().parse_args(["--tls"]), stop, out))
    runner.start()
    try:
        while "client_secret" not in out.getvalue():
            time.sleep(0.01)
        lines = dict(line.split(None, 1) for line in out.getvalue().splitlines()[1:])
        ca_bundle = lines["ca_bundle"]
        assert lines["mtls_token_url"].startswith("https://127.0.0.1:")
        fields = {
            **GRANT,
            "client_id": lines["client_id"],
            "client_secret": lines["client_secret"].split()[0],
        }
        token = requests.post(lines["token_url"], data=fields, verify=ca_bundle).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        api_url = lines["api_url"].split()[0]
        assert api_url.startswith("https://")
        assert requests.get(api_url, headers=headers, verify=ca_bundle).status_code == 200
    finally:
        stop.set()
        runner.join()
    assert not Path(ca_bundle).exists()  # the certificate files go with the server
