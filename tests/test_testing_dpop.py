"""DPoP (RFC 9449) in bearer_m2m.testing: the token endpoint and the API, over real sockets,
with proofs made by bearer_m2m._dpop (and, for the refusals, crafted with joserfc)."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from joserfc import jws, jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, RSAKey
from joserfc.jws import JWSRegistry

from bearer_m2m._dpop import (
    ALGORITHMS,
    DPoPKey,
    NonceStore,
    ath,
    dpop_challenge,
    is_nonce_challenge,
    is_nonce_error,
)
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient
from bearer_m2m.testing._dpop import Nonces, normalise_url

AUDIENCE = "https://api.example"


@pytest.fixture(scope="module")
def server() -> Iterator[AuthorizationServer]:
    with AuthorizationServer() as server:
        yield server


@pytest.fixture(scope="module")
def api(server: AuthorizationServer) -> Iterator[ProtectedAPI]:
    with ProtectedAPI(server, AUDIENCE) as api:
        yield api


@pytest.fixture(autouse=True)
def fresh(server: AuthorizationServer, api: ProtectedAPI) -> None:
    server.reset()
    api.reset()


@pytest.fixture(scope="module")
def signing_key() -> Key:
    """A P-256 key the tests hold themselves, to craft proofs DPoPKey would never make."""
    return ECKey.generate_key("P-256")


@pytest.fixture(scope="module")
def key(signing_key: Key) -> DPoPKey:
    return DPoPKey.load(signing_key.as_dict(private=True))


def form(client: RegisteredClient, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "audience": AUDIENCE,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        **extra,
    }


def token_request(
    server: AuthorizationServer,
    proof: str | None,
    client: RegisteredClient | None = None,
    **options: Any,
) -> requests.Response:
    headers = {} if proof is None else {"DPoP": proof}
    return requests.post(
        server.token_url, data=form(client or server.client), headers=headers, timeout=10, **options
    )


def bound_token(server: AuthorizationServer, key: DPoPKey) -> str:
    response = token_request(server, key.proof("POST", server.token_url))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def unverified(token: str) -> dict[str, Any]:
    """The claims of a JWT, unchecked: the tests look at what the server wrote."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


def craft(
    signer: Key | None,
    algorithm: str,
    *,
    header: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """A proof signed with joserfc as told, however wrong: what a broken client sends."""
    registry = JWSRegistry(algorithms=[algorithm], strict_check_header=False)
    registry.max_header_length = 8192
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(
            header or {"typ": "dpop+jwt", "alg": algorithm, "jwk": public(signer)},
            json.dumps({name: value for name, value in claims.items() if value is not None}),
            signer,
            registry=registry,
        )


def public(key: Key | None) -> dict[str, Any]:
    return {} if key is None else dict(key.as_dict(private=False))


def claims_for(url: str, method: str = "POST", **more: Any) -> dict[str, Any]:
    return {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time()),
            **more}


def raw_request(url: str, method: str, headers: list[tuple[str, str]], body: bytes = b"") -> Any:
    """A request with repeated headers, which requests cannot send; (status, headers, body)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.putrequest(method, parts.path)
        for name, value in [*headers, ("Content-Length", str(len(body)))]:
            connection.putheader(name, value)
        connection.endheaders(body)
        answer = connection.getresponse()
        return answer.status, answer.headers, json.loads(answer.read() or b"null")
    finally:
        connection.close()


# -- the token endpoint ---------------------------------------------------------------


def test_a_token_request_with_a_proof_gets_a_token_bound_to_its_key(
    server: AuthorizationServer, key: DPoPKey
) -> None:
    response = token_request(server, key.proof("POST", server.token_url))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert unverified(response.json()["access_token"])["cnf"] == {"jkt": key.thumbprint}
    assert "DPoP-Nonce" not in response.headers  # no nonce demanded, none given
    assert server.dpop_proofs_accepted == 1 and server.dpop_proofs_rejected == 0
    last = server.last_dpop_proof
    assert last is not None and last[1]["htm"] == "POST" and last[1]["htu"] == server.token_url


def test_a_token_request_without_a_proof_still_gets_a_bearer_token(
    server: AuthorizationServer,
) -> None:
    response = token_request(server, None)
    assert response.status_code == 200 and response.json()["token_type"] == "Bearer"
    assert "cnf" not in unverified(response.json()["access_token"])
    assert server.dpop_proofs_accepted == 0 and server.last_dpop_proof is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_the_client_signs_is_accepted(
    server: AuthorizationServer, algorithm: str
) -> None:
    key = DPoPKey.generate(algorithm)
    response = token_request(server, key.proof("POST", server.token_url))
    assert response.status_code == 200, response.text
    assert unverified(response.json()["access_token"])["cnf"]["jkt"] == key.thumbprint


def test_the_metadata_lists_the_algorithms_and_a_server_may_restrict_them() -> None:
    with AuthorizationServer(dpop_signing_algorithms=["ES256"], audiences=[AUDIENCE]) as strict:
        assert strict.metadata["dpop_signing_alg_values_supported"] == ["ES256"]
        discovered = requests.get(strict.url + ".well-known/openid-configuration", timeout=10)
        assert discovered.json()["dpop_signing_alg_values_supported"] == ["ES256"]
        refused = token_request(strict, DPoPKey.generate("PS256").proof("POST", strict.token_url))
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
        assert "alg" in refused.json()["error_description"]
        assert token_request(strict, DPoPKey.generate().proof("POST", strict.token_url)).ok
    for bad in (["HS256"], [], ["ES256", "none"]):
        with pytest.raises(ValueError, match="dpop_signing_algorithms"):
            AuthorizationServer(dpop_signing_algorithms=bad)
    with pytest.raises(TypeError):
        AuthorizationServer(dpop_signing_algorithms="ES256")


def bad_proofs(url: str, signer: Key) -> dict[str, str]:
    """Proofs for a POST to ``url`` with one thing wrong each, and why it is wrong."""
    other = ECKey.generate_key("P-256")
    now = int(time.time())
    good = claims_for(url)
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": public(signer)}
    private_jwk = dict(signer.as_dict(private=True))
    return {
        "typ": craft(signer, "ES256", header={**header, "typ": "JWT"}, **good),
        "no typ": craft(signer, "ES256", header={"alg": "ES256", "jwk": public(signer)}, **good),
        "alg none": craft(None, "none", header={**header, "alg": "none"}, **good),
        "alg HS256": craft(
            OctKey.generate_key(256), "HS256", header={**header, "alg": "HS256"}, **good
        ),
        "alg unlike the key": craft(
            RSAKey.generate_key(2048), "RS256", header={**header, "alg": "RS256"}, **good
        ),
        "signed by another key": craft(other, "ES256", header=header, **good),
        "private jwk": craft(signer, "ES256", header={**header, "jwk": private_jwk}, **good),
        "symmetric jwk": craft(
            signer, "ES256", header={**header, "jwk": {"kty": "oct", "k": "AAAA"}}, **good
        ),
        "no jwk": craft(signer, "ES256", header={"typ": "dpop+jwt", "alg": "ES256"}, **good),
        "htm": craft(signer, "ES256", **{**good, "htm": "GET"}),
        "htm in lower case": craft(signer, "ES256", **{**good, "htm": "post"}),
        "htu elsewhere": craft(signer, "ES256", **{**good, "htu": url + "/other"}),
        "htu on another port": craft(
            signer, "ES256", **{**good, "htu": url.replace("127.0.0.1:", "127.0.0.1:1")}
        ),
        "htu with a query": craft(signer, "ES256", **{**good, "htu": url + "?x=1"}),
        "htu not a URL": craft(signer, "ES256", **{**good, "htu": "token"}),
        "iat too old": craft(signer, "ES256", **{**good, "iat": now - 120}),
        "iat in the future": craft(signer, "ES256", **{**good, "iat": now + 60}),
        "iat not a number": craft(signer, "ES256", **{**good, "iat": str(now)}),
        "no jti": craft(signer, "ES256", **{**good, "jti": None}),
        "empty jti": craft(signer, "ES256", **{**good, "jti": ""}),
        "not a JWS": "not.a.jws",
        "a bearer token": "eyJhbGciOiJub25lIn0.e30.",
    }


def test_every_bad_proof_is_refused_with_invalid_dpop_proof(
    server: AuthorizationServer, signing_key: Key
) -> None:
    proofs = bad_proofs(server.token_url, signing_key)
    for reason, proof in proofs.items():
        response = token_request(server, proof)
        assert response.status_code == 400, (reason, response.text)
        assert response.json()["error"] == "invalid_dpop_proof", reason
        assert response.json()["error_description"], reason
        assert proof not in response.text
    assert server.dpop_proofs_rejected == len(proofs) and server.dpop_proofs_accepted == 0
    assert server.tokens_issued == 0


def test_two_dpop_headers_are_refused(server: AuthorizationServer, key: DPoPKey) -> None:
    body = urlencode(form(server.client)).encode()
    status, _, answer = raw_request(
        server.token_url,
        "POST",
        [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("DPoP", key.proof("POST", server.token_url)),
            ("DPoP", key.proof("POST", server.token_url)),
        ],
        body,
    )
    assert (status, answer["error"]) == (400, "invalid_dpop_proof")


def test_a_proof_is_good_for_one_request_only(server: AuthorizationServer, key: DPoPKey) -> None:
    proof = key.proof("POST", server.token_url)
    assert token_request(server, proof).status_code == 200
    replayed = token_request(server, proof)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_dpop_proof"
    assert "jti" in replayed.json()["error_description"]
    assert (server.dpop_jti_replays, server.dpop_proofs_rejected) == (1, 1)
    assert server.tokens_issued == 1


def test_a_proof_whose_htu_differs_only_by_normalisation_is_accepted(
    server: AuthorizationServer, signing_key: Key
) -> None:
    parts = urlsplit(server.token_url)
    written = f"HTTP://127.0.0.1:{parts.port}/oauth/./x/../%74oken"
    assert normalise_url(written) == server.token_url
    response = token_request(server, craft(signing_key, "ES256", **claims_for(written)))
    assert response.status_code == 200, response.text


def test_a_dpop_bound_client_must_send_a_proof(server: AuthorizationServer, key: DPoPKey) -> None:
    client = server.register_client(dpop_bound=True)
    assert client.dpop_bound and not server.client.dpop_bound
    refused = token_request(server, None, client)
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_dpop_proof"
    assert "proof" in refused.json()["error_description"]
    served = token_request(server, key.proof("POST", server.token_url), client)
    assert served.status_code == 200 and served.json()["token_type"] == "DPoP"
    assert server.dpop_proofs_rejected == 1 and server.dpop_proofs_accepted == 1


def test_a_bad_client_is_refused_as_such_before_its_proof_is_looked_at(
    server: AuthorizationServer, key: DPoPKey
) -> None:
    wrong = {**form(server.client), "client_secret": "wrong"}
    response = requests.post(
        server.token_url, data=wrong, headers={"DPoP": "garbage"}, timeout=10
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert server.dpop_proofs_rejected == 0


def test_private_key_jwt_clients_get_bound_tokens_too(server: AuthorizationServer) -> None:
    client_key = RSAKey.generate_key(2048)
    client = server.register_client(public_key=client_key.as_dict(private=False))
    now = int(time.time())
    assertion = jwt.encode(
        {"alg": "RS256"},
        {
            "iss": client.client_id,
            "sub": client.client_id,
            "aud": server.token_url,
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_hex(16),
        },
        client_key,
        algorithms=["RS256"],
    )
    dpop = DPoPKey.generate()
    response = requests.post(
        server.token_url,
        data={
            "grant_type": "client_credentials",
            "audience": AUDIENCE,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
        headers={"DPoP": dpop.proof("POST", server.token_url)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert unverified(response.json()["access_token"])["cnf"] == {"jkt": dpop.thumbprint}


def test_a_token_over_mutual_tls_with_a_proof_is_bound_to_both() -> None:
    with AuthorizationServer(tls=True) as server:
        certificate = server.issue_client_certificate("svc")
        client = server.register_client(tls_client_auth_subject_dn=certificate.subject_dn)
        dpop = DPoPKey.generate()
        response = requests.post(
            server.mtls_token_url,
            data={"grant_type": "client_credentials", "client_id": client.client_id},
            headers={"DPoP": dpop.proof("POST", server.mtls_token_url)},
            cert=certificate,
            verify=server.ca_bundle,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert unverified(response.json()["access_token"])["cnf"] == {
            "x5t#S256": certificate.thumbprint,
            "jkt": dpop.thumbprint,
        }


def test_counters_and_the_last_proof_are_reset(server: AuthorizationServer, key: DPoPKey) -> None:
    token_request(server, key.proof("POST", server.token_url))
    token_request(server, "garbage")
    server.reset()
    assert (server.dpop_proofs_accepted, server.dpop_proofs_rejected) == (0, 0)
    assert server.last_dpop_proof is None


# -- the token endpoint's nonce -------------------------------------------------------


def test_a_server_that_requires_a_nonce_hands_it_out_and_takes_it(key: DPoPKey) -> None:
    with AuthorizationServer(require_dpop_nonce=True, audiences=[AUDIENCE]) as server:
        assert server.require_dpop_nonce and server.dpop_nonce
        challenged = token_request(server, key.proof("POST", server.token_url))
        assert challenged.status_code == 400
        assert is_nonce_error(challenged.status_code, challenged.content)
        nonce = challenged.headers["DPoP-Nonce"]
        assert nonce == server.dpop_nonce
        served = token_request(server, key.proof("POST", server.token_url, nonce=nonce))
        assert served.status_code == 200 and served.json()["token_type"] == "DPoP"
        assert served.headers["DPoP-Nonce"] == nonce  # successful answers carry it too
        wrong = token_request(server, key.proof("POST", server.token_url, nonce="made-up"))
        assert is_nonce_error(wrong.status_code, wrong.json())
        assert (server.dpop_nonce_challenges, server.dpop_proofs_accepted) == (2, 1)
        assert server.dpop_proofs_rejected == 0 and server.tokens_issued == 1
        # Clients without DPoP are not asked for anything.
        assert token_request(server, None).json()["token_type"] == "Bearer"


def test_a_rotated_nonce_is_refused_and_the_new_one_handed_out(key: DPoPKey) -> None:
    with AuthorizationServer(require_dpop_nonce=True, audiences=[AUDIENCE]) as server:
        old = server.dpop_nonce
        assert old is not None
        new = server.rotate_dpop_nonce()
        assert new != old and server.dpop_nonce == new
        stale = token_request(server, key.proof("POST", server.token_url, nonce=old))
        assert is_nonce_error(stale.status_code, stale.content)
        assert stale.headers["DPoP-Nonce"] == new
        assert token_request(server, key.proof("POST", server.token_url, nonce=new)).ok
    with AuthorizationServer() as plain, pytest.raises(RuntimeError, match="require_dpop_nonce"):
        plain.rotate_dpop_nonce()


def test_a_nonce_challenge_costs_no_token_quota(key: DPoPKey) -> None:
    with AuthorizationServer(require_dpop_nonce=True, audiences=[AUDIENCE]) as server:
        server.set_quota(server.client.client_id, per_hour=1)
        challenged = token_request(server, key.proof("POST", server.token_url))
        nonce = challenged.headers["DPoP-Nonce"]
        served = token_request(server, key.proof("POST", server.token_url, nonce=nonce))
        assert served.status_code == 200, served.text


def test_nonces_change_with_time_and_the_one_before_stays_good() -> None:
    now = [1000.0]
    nonces = Nonces(lifetime=10, clock=lambda: now[0])
    first = nonces.current()
    now[0] += 10
    second = nonces.current()
    assert second != first and nonces.accepts(first) and nonces.accepts(second)
    now[0] += 10
    assert nonces.current() != second and not nonces.accepts(first) and nonces.accepts(second)
    now[0] += 25  # two lifetimes without a look: both are stale
    third = nonces.current()
    assert not nonces.accepts(second) and nonces.accepts(third)
    assert not nonces.accepts(None) and not nonces.accepts(3)
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            Nonces(lifetime=bad)


# -- the API --------------------------------------------------------------------------


def api_get(
    api: ProtectedAPI,
    token: str,
    proof: str | None,
    *,
    scheme: str = "DPoP",
    path: str = "things",
) -> requests.Response:
    headers = {"Authorization": f"{scheme} {token}"}
    if proof is not None:
        headers["DPoP"] = proof
    return requests.get(api.url + path, headers=headers, timeout=10)


def test_a_bound_token_with_its_proof_is_accepted(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = bound_token(server, key)
    url = api.url + "things?page=2"
    response = requests.get(
        url,
        headers={
            "Authorization": f"DPoP {token}",
            "DPoP": key.proof("GET", url, access_token=token),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP" and response.json()["dpop_jkt"] == key.thumbprint
    assert response.json()["path"] == "/things" and "DPoP-Nonce" not in response.headers
    assert api.dpop_proofs_accepted == 1 and api.unauthorized == 0
    last = api.last_dpop_proof
    assert last is not None and last[1]["ath"] == ath(token) and last[1]["htm"] == "GET"


def assert_dpop_refusal(response: requests.Response, error: str) -> None:
    assert response.status_code == 401, response.text
    challenge = dpop_challenge(response.headers["WWW-Authenticate"])
    assert challenge is not None, response.headers["WWW-Authenticate"]
    assert challenge.params["error"] == error
    assert challenge.params["error_description"] and challenge.params["realm"] == AUDIENCE
    assert "ES256" in challenge.params["algs"].split()
    assert response.json()["error"] == error


def test_a_bound_token_sent_as_bearer_is_refused(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = bound_token(server, key)
    response = api_get(api, token, None, scheme="Bearer")
    assert_dpop_refusal(response, "invalid_token")
    assert 'Bearer realm="https://api.example", error="invalid_token"' in (
        response.headers["WWW-Authenticate"]
    )
    with_proof = api_get(api, token, key.proof("GET", api.url + "things", access_token=token),
                         scheme="Bearer")
    assert with_proof.status_code == 401
    assert api.dpop_bound_as_bearer == 2 and api.unauthorized == 2
    assert token not in response.text


def test_an_unbound_token_sent_as_dpop_is_refused(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = token_request(server, None).json()["access_token"]
    response = api_get(api, token, key.proof("GET", api.url + "things", access_token=token))
    assert_dpop_refusal(response, "invalid_token")
    assert "not DPoP-bound" in response.json()["error_description"]
    # As a bearer token it is as good as ever.
    assert api_get(api, token, None, scheme="Bearer").status_code == 200


def test_an_invalid_token_sent_as_dpop_is_told_as_invalid_token(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = bound_token(server, key)
    server.revoke_all()
    response = api_get(api, token, key.proof("GET", api.url + "things", access_token=token))
    assert_dpop_refusal(response, "invalid_token")
    garbage = api_get(api, "not-a-token", key.proof("GET", api.url + "things", access_token="x"))
    assert_dpop_refusal(garbage, "invalid_token")
    assert api.dpop_proofs_accepted == 0 and api.dpop_proofs_rejected == 0


def test_a_proof_by_another_key_than_the_tokens_is_refused(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = bound_token(server, key)
    stranger = DPoPKey.generate()
    response = api_get(api, token, stranger.proof("GET", api.url + "things", access_token=token))
    assert_dpop_refusal(response, "invalid_token")
    assert "another key" in response.json()["error_description"]
    assert api.dpop_proofs_rejected == 1


def test_proofs_that_do_not_fit_the_request_are_refused(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey, signing_key: Key
) -> None:
    token = bound_token(server, key)
    url = api.url + "things"
    other_token = bound_token(server, key)
    proofs = {
        "no proof": None,
        "no ath": key.proof("GET", url),
        "ath of another token": key.proof("GET", url, access_token=other_token),
        "htm": key.proof("POST", url, access_token=token),
        "htu": key.proof("GET", api.url + "other", access_token=token),
        "the token endpoint's htu": key.proof("GET", server.token_url, access_token=token),
        "iat too old": craft(signing_key, "ES256", **claims_for(url, "GET", ath=ath(token),
                                                              iat=int(time.time()) - 300)),
    }
    for reason, proof in proofs.items():
        assert_dpop_refusal(api_get(api, token, proof), "invalid_dpop_proof")
        assert reason
    assert api.dpop_proofs_rejected == len(proofs) and api.dpop_proofs_accepted == 0


def test_a_proof_replayed_at_the_api_is_refused_and_counted(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = bound_token(server, key)
    proof = key.proof("GET", api.url + "things", access_token=token)
    assert api_get(api, token, proof).status_code == 200
    assert_dpop_refusal(api_get(api, token, proof), "invalid_dpop_proof")
    assert (api.dpop_jti_replays, api.dpop_proofs_rejected, api.dpop_proofs_accepted) == (1, 1, 1)
    # A new proof for the same request is fine: replays need new proofs, not new tokens.
    assert api_get(api, token, key.proof("GET", api.url + "things", access_token=token)).ok


def test_an_api_that_requires_its_own_nonce(key: DPoPKey) -> None:
    with (
        AuthorizationServer(require_dpop_nonce=True) as server,
        ProtectedAPI(server, AUDIENCE, require_dpop_nonce=True) as api,
    ):
        nonces = NonceStore()
        first = token_request(server, key.proof("POST", server.token_url))
        nonces.remember(server.token_url, first.headers["DPoP-Nonce"])
        issued = token_request(
            server, key.proof("POST", server.token_url, nonce=nonces.get(server.token_url))
        )
        token = issued.json()["access_token"]
        url = api.url + "things"
        # The token endpoint's nonce is no good at the API, nor is no nonce.
        for nonce in (None, nonces.get(server.token_url)):
            challenged = api_get(api, token, key.proof("GET", url, access_token=token, nonce=nonce))
            challenge = challenged.headers["WWW-Authenticate"]
            assert is_nonce_challenge(challenged.status_code, challenge)
            assert_dpop_refusal(challenged, "use_dpop_nonce")
            assert challenged.headers["DPoP-Nonce"] == api.dpop_nonce != server.dpop_nonce
        nonces.remember(url, challenged.headers["DPoP-Nonce"])
        proof = key.proof("GET", url, access_token=token, nonce=nonces.get(url))
        served = api_get(api, token, proof)
        assert served.status_code == 200, served.text
        assert served.headers["DPoP-Nonce"] == api.dpop_nonce
        assert (api.dpop_nonce_challenges, api.dpop_proofs_accepted) == (2, 1)
        assert api.dpop_proofs_rejected == 0 and server.dpop_nonce_challenges == 1


def test_a_stale_token_is_told_before_the_nonce_and_with_it(key: DPoPKey) -> None:
    """A client with an expired token and no nonce learns both from one 401: the
    replay it is allowed (new token, proof with the nonce) then succeeds."""
    with (
        AuthorizationServer() as server,
        ProtectedAPI(server, AUDIENCE, require_dpop_nonce=True) as api,
    ):
        token = bound_token(server, key)
        server.revoke_all()
        url = api.url + "things"
        refused = api_get(api, token, key.proof("GET", url, access_token=token))
        assert_dpop_refusal(refused, "invalid_token")
        nonce = refused.headers["DPoP-Nonce"]
        fresh = bound_token(server, key)
        replay = api_get(api, fresh, key.proof("GET", url, access_token=fresh, nonce=nonce))
        assert replay.status_code == 200, replay.text


def test_a_rotated_api_nonce_is_challenged_again(key: DPoPKey) -> None:
    with (
        AuthorizationServer() as server,
        ProtectedAPI(server, AUDIENCE, require_dpop_nonce=True) as api,
    ):
        token = bound_token(server, key)
        url = api.url + "things"
        old = api.dpop_nonce
        new = api.rotate_dpop_nonce()
        stale = api_get(api, token, key.proof("GET", url, access_token=token, nonce=old))
        assert_dpop_refusal(stale, "use_dpop_nonce")
        assert stale.headers["DPoP-Nonce"] == new
        assert api_get(api, token, key.proof("GET", url, access_token=token, nonce=new)).ok


def test_api_counters_are_reset(
    server: AuthorizationServer, api: ProtectedAPI, key: DPoPKey
) -> None:
    token = bound_token(server, key)
    api_get(api, token, key.proof("GET", api.url + "things", access_token=token))
    api_get(api, token, None)
    api_get(api, token, None, scheme="Bearer")
    assert (api.dpop_proofs_accepted, api.dpop_proofs_rejected, api.dpop_bound_as_bearer) == (
        1,
        1,
        1,
    )
    api.reset()
    assert (api.dpop_proofs_accepted, api.dpop_proofs_rejected, api.dpop_bound_as_bearer) == (
        0,
        0,
        0,
    )
    assert api.last_dpop_proof is None and api.unauthorized == 0
