"""DPoP (RFC 9449) between bearer_m2m and node oidc-provider, over real sockets.

The provider (``conftest.py``) runs with ``features.dPoP`` and a per-run
``nonceSecret``; its record of token requests (``/_harness/token-requests``)
tells what each proof carried (``alg``, nonce) and what it got. The orders API
(``harness.OrdersApi``) verifies every DPoP request's proof independently of the
library (signature by the proof's ``jwk``, ``typ``, ``htm``, ``htu``, ``iat``,
``ath``, unused ``jti``, the token's ``cnf.jkt``) and records it.

What oidc-provider 9 does with the library's proofs and nonces, as pinned here:

* A token request with a proof gets ``token_type: DPoP`` and a token whose
  ``cnf.jkt`` is the proof key's thumbprint: in the JWT (with ``resource=``) or,
  for an opaque token, from introspection (which refuses JWT access tokens:
  ``unsupported_token_type``). Without a proof the same client gets Bearer.
* Its nonces are stateless: HKDF of the secret and the minute. It hands out the
  next minute's value and accepts the values of five minutes around now, so a
  nonce stays good for at least two minutes after it was given.
* It volunteers a ``DPoP-Nonce`` on every answer whose proof did not carry its
  newest nonce, even a 200 and even when no nonce is required.
* Demanding a nonce, it answers 400 ``use_dpop_nonce`` ("nonce is required in
  the DPoP proof") with ``DPoP-Nonce`` and no ``WWW-Authenticate`` at the token
  endpoint.
* ``dpop_bound_access_tokens`` clients asking without a proof get 400
  ``invalid_grant`` "grant request is invalid": nothing in the answer says DPoP.
* A proof signed with an algorithm it does not list is 400
  ``invalid_dpop_proof`` "invalid DPoP key binding".
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from bearer_m2m import ClientCredentialsAuth, ConfigurationError, RetryPolicy, TokenRequestRejected
from bearer_m2m._dpop import ALGORITHMS
from tests.interop.clients import KINDS, Kind, send
from tests.interop.oidc.conftest import FAST_RETRY, ORDERS, PROVIDER_CONFIG, start_provider
from tests.interop.oidc.harness import (
    DPoPRequest,
    NodeProvider,
    OidcClient,
    OrdersApi,
    dpop_proof,
    jwt_claims,
)

NONCE_SCOPES = ["provider", "client"]
#: What a restricted provider lists as dpop_signing_alg_values_supported: not ES256.
RESTRICTED_ALGORITHMS = ["ES384", "PS256"]


def ath(token: str) -> str:
    """base64url(SHA-256(token)), written here rather than taken from the library."""
    digest = hashlib.sha256(token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def dpop_auth(provider: NodeProvider, client: OidcClient, **options: Any) -> ClientCredentialsAuth:
    settings: dict[str, Any] = {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "resource": ORDERS,
        "retry": FAST_RETRY,
        "dpop": True,
    }
    settings.update(options)
    return ClientCredentialsAuth(provider.token_url, **settings)


def fetches(records: list[dict[str, Any]]) -> list[tuple[int, str | None, bool]]:
    """(status, error, whether the proof carried a nonce) of each token request."""
    return [(r["status"], r["error"], r["dpop_nonce_sent"]) for r in records]


def nonce_given_last(records: list[dict[str, Any]]) -> str | None:
    """The newest DPoP-Nonce the provider gave in these answers."""
    given = [r["dpop_nonce_given"] for r in records if r["dpop_nonce_given"] is not None]
    return given[-1] if given else None


def accepted(seen: list[DPoPRequest]) -> list[DPoPRequest]:
    return [request for request in seen if request.status == 200]


# -- a bound token, a proof per request --------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_dpop_true_gets_a_bound_token_that_serves_every_call_with_a_fresh_proof(
    oidc_provider: NodeProvider, orders_api: OrdersApi, kind: Kind
) -> None:
    client = oidc_provider.register_client()
    auth = dpop_auth(oidc_provider, client)
    mark, seen_mark, before = oidc_provider.mark(), orders_api.dpop_mark(), orders_api.traffic()

    replies = send(kind, auth, orders_api.url + "/orders?page=2", times=4)
    (posted,) = send(kind, auth, orders_api.url + "/orders", method="POST", payload={"n": 1})

    assert [reply.status for reply in [*replies, posted]] == [200] * 5
    token = auth.token()
    assert jwt_claims(token)["cnf"] == {"jkt": auth.dpop_thumbprint}
    assert {reply.body["claims"]["jti"] for reply in [*replies, posted]} == {
        jwt_claims(token)["jti"]
    }
    assert {reply.body["token_type"] for reply in [*replies, posted]} == {"DPoP"}
    assert posted.body["echo"] == {"n": 1}
    (record,) = oidc_provider.token_requests(mark)
    assert (record["status"], record["token_type"], record["dpop"], record["dpop_alg"]) == (
        200,
        "DPoP",
        True,
        "ES256",
    )
    # The API checked each request's own proof: one per request, none reused.
    seen = orders_api.dpop_requests(seen_mark)
    assert [(s.method, s.status, s.error) for s in seen] == [("GET", 200, None)] * 4 + [
        ("POST", 200, None)
    ]
    assert len({s.proof["jti"] for s in seen}) == 5
    assert {s.proof["ath"] for s in seen} == {ath(token)}
    assert {s.proof["htu"] for s in seen} == {orders_api.url + "/orders"}  # no query
    assert orders_api.traffic() - before == Counter({"GET /orders 200": 4, "POST /orders 200": 1})


def test_an_opaque_dpop_token_is_bound_as_the_providers_introspection_tells(
    oidc_provider: NodeProvider,
) -> None:
    """Without ``resource=`` oidc-provider issues an opaque token: only it can say
    what the token is bound to."""
    client = oidc_provider.register_client()
    auth = dpop_auth(oidc_provider, client, resource=None)
    token = auth.token()

    answer = requests.post(
        oidc_provider.issuer + "/token/introspection",
        data={
            "token": token,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        },
        timeout=10,
    )

    assert answer.status_code == 200, answer.text
    described = answer.json()
    assert (described["active"], described["token_type"]) == (True, "DPoP")
    assert described["cnf"] == {"jkt": auth.dpop_thumbprint}


def test_the_nonce_the_provider_volunteers_goes_with_the_next_fetch(
    oidc_provider: NodeProvider,
) -> None:
    """No nonce demanded: oidc-provider still gives one with the token, the
    library keeps it and sends it with the next token request, which passes."""
    client = oidc_provider.register_client()
    auth = dpop_auth(oidc_provider, client)
    mark = oidc_provider.mark()

    auth.token()
    first = oidc_provider.token_requests(mark)
    auth.invalidate()
    auth.token()
    (second,) = oidc_provider.token_requests(mark + len(first))

    assert fetches(first) == [(200, None, False)]
    assert first[0]["dpop_nonce_given"]
    assert (second["status"], second["dpop_nonce"]) == (200, first[0]["dpop_nonce_given"])


# -- the provider's nonces ------------------------------------------------------------------


def nonce_client(provider: NodeProvider, scope: str, request: pytest.FixtureRequest) -> OidcClient:
    """A client that must send the provider's nonce: by its own registration, or because
    the provider demands it of everyone (for this test only)."""
    if scope == "provider":
        request.getfixturevalue("provider_dpop_nonces")
    return provider.register_client(require_dpop_nonce=scope == "client")


def test_the_providers_nonce_challenge_is_a_400_with_the_nonce_and_no_www_authenticate(
    provider_dpop_nonces: NodeProvider,
) -> None:
    """What the library has to recognise, pinned with a proof made by hand."""
    provider = provider_dpop_nonces
    client = provider.register_client()
    proof = dpop_proof(ECKey.generate_key("P-256"), "POST", provider.token_url)
    form = {
        "grant_type": "client_credentials",
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "resource": ORDERS,
    }

    with requests.post(provider.token_url, data=form, headers={"DPoP": proof}, timeout=10) as r:
        status, headers, body = r.status_code, r.headers, r.json()

    assert status == 400
    assert body == {
        "error": "use_dpop_nonce",
        "error_description": "nonce is required in the DPoP proof",
    }
    assert headers.get("DPoP-Nonce")
    assert "WWW-Authenticate" not in headers


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scope", NONCE_SCOPES)
def test_a_nonce_challenge_is_answered_at_once_and_the_nonce_kept_for_the_next_fetch(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    request: pytest.FixtureRequest,
    scope: str,
    kind: Kind,
) -> None:
    client = nonce_client(oidc_provider, scope, request)
    auth = dpop_auth(oidc_provider, client)
    mark = oidc_provider.mark()

    replies = send(kind, auth, orders_api.url + "/orders", times=2)
    first = oidc_provider.token_requests(mark)
    auth.invalidate()
    (again,) = send(kind, auth, orders_api.url + "/orders")
    second = oidc_provider.token_requests(mark + len(first))

    assert [reply.status for reply in [*replies, again]] == [200] * 3
    # Challenged once, answered at once with the nonce given, never again.
    assert fetches(first) == [(400, "use_dpop_nonce", False), (200, None, True)]
    assert first[0]["dpop_nonce_given"]
    assert first[1]["dpop_nonce"] == first[0]["dpop_nonce_given"]
    assert first[1]["token_type"] == "DPoP"
    # The next fetch sends the newest nonce it was given and needs no challenge:
    # oidc-provider accepts a nonce for two minutes at least. Only if the minute
    # turned meanwhile does its 200 bring the next one along.
    assert fetches(second) == [(200, None, True)]
    assert second[0]["dpop_nonce"] == nonce_given_last(first)
    rotated = second[0]["dpop_nonce_given"]
    assert rotated is None or rotated != second[0]["dpop_nonce"]
    assert again.body["claims"]["cnf"] == {"jkt": auth.dpop_thumbprint}
    assert again.body["claims"]["jti"] != replies[0].body["claims"]["jti"]


@pytest.mark.parametrize("scope", NONCE_SCOPES)
def test_the_nonce_retry_is_not_an_attempt_of_the_retry_policy(
    oidc_provider: NodeProvider, request: pytest.FixtureRequest, scope: str
) -> None:
    client = nonce_client(oidc_provider, scope, request)
    auth = dpop_auth(oidc_provider, client, retry=RetryPolicy(max_attempts=1, deadline=20.0))
    mark = oidc_provider.mark()

    token = auth.token()

    assert jwt_claims(token)["cnf"] == {"jkt": auth.dpop_thumbprint}
    assert fetches(oidc_provider.token_requests(mark)) == [
        (400, "use_dpop_nonce", False),
        (200, None, True),
    ]


# -- every algorithm the library signs, every way of giving a key --------------------------


def _new_key(algorithm: str) -> Key:
    if algorithm == "ES256":
        return ECKey.generate_key("P-256")
    if algorithm == "ES384":
        return ECKey.generate_key("P-384")
    if algorithm == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


@pytest.fixture(scope="module")
def user_keys() -> dict[str, Key]:
    """A key of the user's own for each algorithm (made by joserfc, not the library)."""
    return {algorithm: _new_key(algorithm) for algorithm in ALGORITHMS}


@pytest.mark.parametrize("source", ["generated", "pem_file", "jwk"])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_the_library_signs_is_accepted_by_the_provider(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    user_keys: dict[str, Key],
    tmp_path: Path,
    algorithm: str,
    source: str,
) -> None:
    key = user_keys[algorithm]
    options: dict[str, Any]
    if source == "generated":
        options = {"dpop": True, "dpop_algorithm": algorithm}
    elif source == "pem_file":
        pem = tmp_path / "dpop-key.pem"
        pem.write_bytes(key.as_pem(private=True))
        # An RSA key implies RS256: PS256 is named.
        options = {"dpop": pem, "dpop_algorithm": "PS256" if algorithm == "PS256" else None}
    else:
        options = {"dpop": {**key.as_dict(private=True), "alg": algorithm}}
    client = oidc_provider.register_client()
    auth = dpop_auth(oidc_provider, client, **options)
    if source != "generated":
        assert auth.dpop_thumbprint == key.thumbprint()
    mark, seen_mark = oidc_provider.mark(), orders_api.dpop_mark()

    (reply,) = send("requests", auth, orders_api.url + "/orders")

    (record,) = oidc_provider.token_requests(mark)
    assert (record["status"], record["token_type"], record["dpop_alg"]) == (200, "DPoP", algorithm)
    assert jwt_claims(auth.token())["cnf"] == {"jkt": auth.dpop_thumbprint}
    assert reply.status == 200
    (seen,) = orders_api.dpop_requests(seen_mark)
    assert (seen.status, seen.proof["ath"]) == (200, ath(auth.token()))


# -- clients the provider binds to DPoP -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_dpop_bound_client_is_refused_clearly_without_dpop_and_served_with_it(
    oidc_provider: NodeProvider, orders_api: OrdersApi, kind: Kind
) -> None:
    client = oidc_provider.register_client(dpop_bound=True)
    without = dpop_auth(oidc_provider, client, dpop=None)
    with_dpop = dpop_auth(oidc_provider, client)
    mark, before = oidc_provider.mark(), orders_api.traffic()

    with pytest.raises(TokenRequestRejected) as caught:
        send(kind, without, orders_api.url + "/orders")
    replies = send(kind, with_dpop, orders_api.url + "/orders", times=2)

    error = caught.value
    # oidc-provider gives its reason ("DPoP proof JWT not provided") to its logs only.
    assert (error.status_code, error.error, error.error_description) == (
        400,
        "invalid_grant",
        "grant request is invalid",
    )
    assert "HTTP 400: invalid_grant" in str(error)
    assert client.client_secret is not None
    assert client.client_secret not in str(error) + repr(error)
    assert [reply.status for reply in replies] == [200, 200]
    assert replies[0].body["claims"]["cnf"] == {"jkt": with_dpop.dpop_thumbprint}
    records = oidc_provider.token_requests(mark)
    assert [(r["status"], r["dpop"], r["token_type"]) for r in records] == [
        (400, False, None),
        (200, True, "DPoP"),
    ]
    assert orders_api.traffic() - before == Counter({"GET /orders 200": 2})


# -- discovery ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def restricted_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    """A second oidc-provider that accepts DPoP proofs of ES384 and PS256 only."""
    config = {**PROVIDER_CONFIG, "dpop": {"algorithms": RESTRICTED_ALGORITHMS}}
    provider = start_provider(tmp_path_factory, config, "oidc-provider-restricted")
    yield provider
    provider.close()


def test_from_issuer_with_dpop_gets_a_bound_token(
    oidc_provider: NodeProvider, orders_api: OrdersApi
) -> None:
    listed = requests.get(
        oidc_provider.issuer + "/.well-known/oauth-authorization-server", timeout=10
    ).json()["dpop_signing_alg_values_supported"]
    assert set(ALGORITHMS) <= set(listed)
    client = oidc_provider.register_client()
    auth = ClientCredentialsAuth.from_issuer(
        oidc_provider.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
        resource=ORDERS,
        retry=FAST_RETRY,
        dpop=True,
    )
    mark = oidc_provider.mark()

    (reply,) = send("requests", auth, orders_api.url + "/orders")

    assert auth.token_url == oidc_provider.token_url
    assert reply.status == 200
    assert reply.body["claims"]["cnf"] == {"jkt": auth.dpop_thumbprint}
    (record,) = oidc_provider.token_requests(mark)
    assert (record["token_type"], record["dpop_alg"]) == ("DPoP", "ES256")


def test_from_issuer_holds_to_the_algorithms_the_provider_lists(
    restricted_provider: NodeProvider, user_keys: dict[str, Key]
) -> None:
    provider = restricted_provider
    client = provider.register_client()
    common = {
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "resource": ORDERS,
        "retry": FAST_RETRY,
    }
    mark = provider.mark()

    # dpop=True picks one the provider lists, not the default ES256.
    chosen = ClientCredentialsAuth.from_issuer(provider.issuer, dpop=True, **common)
    assert jwt_claims(chosen.token())["cnf"] == {"jkt": chosen.dpop_thumbprint}
    # One it does not list is refused before any token request, by name or by key.
    refused = [
        {"dpop": True, "dpop_algorithm": "ES256"},
        {"dpop": user_keys["EdDSA"].as_dict(private=True)},
    ]
    for options in refused:
        with pytest.raises(ConfigurationError, match="ES384, PS256"):
            ClientCredentialsAuth.from_issuer(provider.issuer, **options, **common)
    records = provider.token_requests(mark)
    # ...which the provider would have refused: the check spares a failed request.
    with pytest.raises(TokenRequestRejected) as caught:
        ClientCredentialsAuth(provider.token_url, dpop=True, **common).token()

    assert [(r["status"], r["dpop_alg"], r["token_type"]) for r in records] == [
        (200, "ES384", "DPoP")
    ]
    assert (caught.value.status_code, caught.value.error, caught.value.error_description) == (
        400,
        "invalid_dpop_proof",
        "invalid DPoP key binding",
    )
    assert provider.token_requests(mark + 1)[0]["dpop_alg"] == "ES256"


# -- the API's nonces -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_an_api_nonce_challenge_is_replayed_with_the_same_token_at_no_token_cost(
    oidc_provider: NodeProvider, dpop_nonce_api: OrdersApi, kind: Kind
) -> None:
    api = dpop_nonce_api
    client = oidc_provider.register_client()
    auth = dpop_auth(oidc_provider, client)
    url = api.url + "/orders"
    mark, seen_mark = oidc_provider.mark(), api.dpop_mark()

    replies = send(kind, auth, url, times=3)
    seen = api.dpop_requests(seen_mark)
    assert [reply.status for reply in replies] == [200] * 3
    assert len(oidc_provider.token_requests(mark)) == 1
    challenged = [s for s in seen if s.error == "use_dpop_nonce"]
    # Each request is challenged at most once (sequential clients: the first only;
    # httpx async sends all three before the first answer), then replayed.
    assert len(challenged) == sum(reply.history == (401,) for reply in replies) >= 1
    assert {reply.history for reply in replies} <= {(), (401,)}
    if kind != "httpx-async":
        assert [reply.history for reply in replies] == [(401,), (), ()]
    assert all("nonce" not in s.proof for s in challenged)
    assert len(accepted(seen)) == 3
    assert {s.proof["nonce"] for s in accepted(seen)} == {api.dpop_nonce}
    # The same token throughout, a new proof each time.
    assert {s.token_jti for s in seen} == {jwt_claims(auth.token())["jti"]}
    assert len({s.proof["jti"] for s in seen}) == len(seen)

    # A nonce the API stops accepting costs one challenge and no token.
    old, new = api.dpop_nonce, api.rotate_dpop_nonce()
    mark, seen_mark = oidc_provider.mark(), api.dpop_mark()
    (reply,) = send(kind, auth, url)
    after = api.dpop_requests(seen_mark)

    assert (reply.status, reply.history) == (200, (401,))
    assert [(s.status, s.error, s.proof.get("nonce")) for s in after] == [
        (401, "use_dpop_nonce", old),
        (200, None, new),
    ]
    assert after[0].token_jti == after[1].token_jti
    assert oidc_provider.token_requests(mark) == []


def test_provider_and_api_nonces_are_kept_apart(
    provider_dpop_nonces: NodeProvider, dpop_nonce_api: OrdersApi
) -> None:
    provider, api = provider_dpop_nonces, dpop_nonce_api
    auth = dpop_auth(provider, provider.register_client())
    mark, seen_mark = provider.mark(), api.dpop_mark()

    replies = send("requests", auth, api.url + "/orders", times=2)

    records = provider.token_requests(mark)
    seen = api.dpop_requests(seen_mark)
    assert [reply.status for reply in replies] == [200, 200]
    assert fetches(records) == [(400, "use_dpop_nonce", False), (200, None, True)]
    # The API's first proof carries no nonce (not the provider's); then the API's own.
    assert [(s.status, s.proof.get("nonce")) for s in seen] == [
        (401, None),
        (200, api.dpop_nonce),
        (200, api.dpop_nonce),
    ]
    provider_nonces = {r["dpop_nonce_given"] for r in records} - {None}
    assert provider_nonces and api.dpop_nonce not in provider_nonces


# -- a refused DPoP token -------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_dpop_token_is_replaced_and_the_request_replayed_once(
    oidc_provider: NodeProvider, orders_api: OrdersApi, kind: Kind
) -> None:
    auth = dpop_auth(oidc_provider, oidc_provider.register_client())
    (warm,) = send(kind, auth, orders_api.url + "/orders")
    orders_api.deny(warm.body["claims"]["jti"])
    mark, seen_mark = oidc_provider.mark(), orders_api.dpop_mark()

    (reply,) = send(kind, auth, orders_api.url + "/orders")

    assert (reply.status, reply.history) == (200, (401,))
    assert reply.body["claims"]["jti"] != warm.body["claims"]["jti"]
    assert reply.body["claims"]["cnf"] == {"jkt": auth.dpop_thumbprint}
    assert [(s.status, s.error) for s in orders_api.dpop_requests(seen_mark)] == [
        (401, "invalid_token"),
        (200, None),
    ]
    records = oidc_provider.token_requests(mark)
    assert [(r["status"], r["token_type"]) for r in records] == [(200, "DPoP")]


# -- the API's checks can fail: proofs made by hand -----------------------------------------


@pytest.fixture(scope="module")
def hand_key_and_token(oidc_provider: NodeProvider) -> tuple[ECKey, str]:
    """A token from the provider, bound (through the library) to a key this file holds."""
    key = ECKey.generate_key("P-256")
    auth = dpop_auth(oidc_provider, oidc_provider.register_client(), dpop=key.as_dict(private=True))
    return key, auth.token()


#: Requests the API must refuse: the challenge's scheme, error and (part of) its reason.
REFUSALS = {
    "replayed jti": ("DPoP", "invalid_dpop_proof", "jti was used before"),
    "proof for another URL": ("DPoP", "invalid_dpop_proof", "htu is not"),
    "proof for another method": ("DPoP", "invalid_dpop_proof", "htm is not"),
    "no ath": ("DPoP", "invalid_dpop_proof", "ath does not match"),
    "ath of another token": ("DPoP", "invalid_dpop_proof", "ath does not match"),
    "no proof": ("DPoP", "invalid_dpop_proof", "No DPoP proof"),
    "proof by another key": ("DPoP", "invalid_token", "another key than the token"),
    "bound token sent as Bearer": ("Bearer", "invalid_token", "DPoP-bound token sent as Bearer"),
}


def _refused_headers(case: str, key: ECKey, token: str, url: str, used: str) -> dict[str, str]:
    """The headers of the request for ``case``; ``used`` is a proof already accepted."""
    if case == "bound token sent as Bearer":
        return {"Authorization": f"Bearer {token}"}
    proofs = {
        "replayed jti": used,
        "proof for another URL": dpop_proof(key, "GET", url + "/x", access_token=token),
        "proof for another method": dpop_proof(key, "POST", url, access_token=token),
        "no ath": dpop_proof(key, "GET", url),
        "ath of another token": dpop_proof(key, "GET", url, access_token=token + "x"),
        "proof by another key": dpop_proof(
            ECKey.generate_key("P-256"), "GET", url, access_token=token
        ),
    }
    headers = {"Authorization": f"DPoP {token}"}
    if case in proofs:
        headers["DPoP"] = proofs[case]
    return headers


@pytest.mark.parametrize("case", list(REFUSALS))
def test_the_api_refuses_what_a_dpop_request_must_not_be(
    orders_api: OrdersApi, hand_key_and_token: tuple[ECKey, str], case: str
) -> None:
    """The API's checks are real: the same token with a good proof passes, and each
    fault alone is refused."""
    key, token = hand_key_and_token
    url = orders_api.url + "/orders"
    good = dpop_proof(key, "GET", url, access_token=token)
    with requests.get(
        url, headers={"Authorization": f"DPoP {token}", "DPoP": good}, timeout=10
    ) as passed:
        assert passed.status_code == 200, passed.text
    scheme, error, why = REFUSALS[case]

    with requests.get(
        url, headers=_refused_headers(case, key, token, url, good), timeout=10
    ) as refused:
        status, challenge = refused.status_code, refused.headers.get("WWW-Authenticate", "")
        reason = refused.json()["error_description"]

    assert status == 401
    assert challenge.startswith(f"{scheme} realm=")
    assert f'error="{error}"' in challenge
    assert why in reason
