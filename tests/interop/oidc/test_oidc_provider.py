"""bearer_m2m against node oidc-provider (panva's, npm ``oidc-provider``), over real sockets.

One provider process and one Python API run for the session (``conftest.py``);
every test registers clients of its own, so the provider's record of the token
requests it answered (``/_harness/token-requests``) tells exactly what the
library asked, how it authenticated and what it got.

What oidc-provider does, as these tests pin it down:

* A client-credentials request with ``resource=`` (RFC 8707) gets an RFC 9068
  JWT access token (``typ: at+jwt``) whose ``aud`` is the resource; ``scope`` is
  granted only when asked for, and only the scopes the resource has.
* ``expires_in`` is the configured lifetime while ``exp`` is the whole-second
  ``iat`` plus that lifetime: a "2 s" token lives 1-2 s.
* Bad client credentials: 401 ``invalid_client``, "client authentication
  failed". A scope the client may not have: 400 ``invalid_scope``. An unknown
  resource: 400 ``invalid_target``.
* A client registered for ``client_secret_basic`` may also use
  ``client_secret_post`` (and the other way round).
* The discovery document is served at both RFC 8414's and OpenID Connect's
  well-known URLs, and lists ``client_secret_basic`` first.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc.jwk import ECKey, RSAKey

from bearer_m2m import ClientCredentialsAuth, TokenRequestRejected
from tests.interop.clients import KINDS, Kind, send
from tests.interop.oidc.conftest import (
    CLOCK_2S,
    CLOCK_3S,
    ELSEWHERE,
    FAST_RETRY,
    ORDERS,
    TOKEN_LIFETIMES,
    MakeAuth,
)
from tests.interop.oidc.harness import NodeProvider, OidcClient, OrdersApi, dpop_proof

SECRET_METHODS = ["client_secret_post", "client_secret_basic"]
#: How long the short-token soak calls the API, and how often each caller does.
SOAK_SECONDS = 10.0
SOAK_PAUSE = 0.05


def outcomes(records: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """(how the client authenticated, status) of each token request, in order."""
    return [(record["client_auth"], record["status"]) for record in records]


def jwt_part(token: str, index: int) -> dict[str, Any]:
    """A JWT's header (0) or claims (1), unverified: for looking, not trusting."""
    segment = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return decoded


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    """One client key for every private_key_jwt test: RSA key generation is slow."""
    key: RSAKey = RSAKey.generate_key(2048, parameters={"kid": "svc-1"})
    return key


# -- a JWT access token for the resource, fetched once and reused ----------------------


@pytest.mark.parametrize("auth_method", SECRET_METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_jwt_access_token_for_the_resource_is_accepted_and_reused(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    make_oidc_auth: MakeAuth,
    kind: Kind,
    auth_method: str,
) -> None:
    client = oidc_provider.register_client(auth_method)
    auth = make_oidc_auth(
        client_id=client.client_id, client_secret=client.client_secret, auth_method=auth_method
    )
    mark, before = oidc_provider.mark(), orders_api.traffic()

    replies = send(kind, auth, orders_api.url + "/orders", times=5)

    assert [reply.status for reply in replies] == [200] * 5
    claims = replies[0].body["claims"]
    assert claims["iss"] == oidc_provider.issuer
    assert claims["aud"] == ORDERS  # RFC 8707: the token is for the resource asked for
    assert claims["client_id"] == claims["sub"] == client.client_id
    assert "scope" not in claims  # oidc-provider grants no scope unless asked
    assert claims["exp"] - claims["iat"] == 300
    assert {reply.body["claims"]["jti"] for reply in replies} == {claims["jti"]}
    assert jwt_part(auth.token(), 0)["typ"] == "at+jwt"
    (record,) = oidc_provider.token_requests(mark)
    assert (record["client_id"], record["client_auth"], record["status"]) == (
        client.client_id,
        auth_method,
        200,
    )
    assert (record["resource"], record["token_type"]) == (ORDERS, "Bearer")
    assert orders_api.traffic() - before == Counter({"GET /orders 200": 5})


def test_one_auth_object_shares_its_token_across_clients(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    oidc_client: OidcClient,
    make_oidc_auth: MakeAuth,
) -> None:
    auth = make_oidc_auth()
    mark = oidc_provider.mark()

    jtis = set()
    for kind in KINDS:
        (reply,) = send(kind, auth, orders_api.url + "/orders")
        assert reply.status == 200
        jtis.add(reply.body["claims"]["jti"])

    assert len(jtis) == 1
    assert outcomes(oidc_provider.token_requests(mark)) == [("client_secret_post", 200)]


@pytest.mark.parametrize("kind", KINDS)
def test_private_key_jwt_client_gets_tokens(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    make_oidc_auth: MakeAuth,
    rsa_key: RSAKey,
    kind: Kind,
) -> None:
    key = rsa_key
    client = oidc_provider.register_client(
        "private_key_jwt", jwks={"keys": [key.as_dict(private=False)]}
    )
    auth = make_oidc_auth(
        client_id=client.client_id, client_secret=None, private_key=key.as_dict(private=True)
    )
    mark = oidc_provider.mark()

    replies = send(kind, auth, orders_api.url + "/orders", times=3)

    assert [reply.status for reply in replies] == [200] * 3
    assert replies[0].body["claims"]["client_id"] == client.client_id
    assert outcomes(oidc_provider.token_requests(mark)) == [("client_assertion", 200)]


# -- client authentication: secrets that need encoding, refusals -----------------------


@pytest.mark.parametrize("auth_method", SECRET_METHODS)
def test_secret_with_reserved_characters(
    oidc_provider: NodeProvider, orders_api: OrdersApi, make_oidc_auth: MakeAuth, auth_method: str
) -> None:
    """RFC 6749 section 2.3.1: Basic carries the form-encoded id and secret, and
    oidc-provider decodes them so: ``+``, ``%`` and ``:`` survive."""
    client = oidc_provider.register_client(auth_method, client_secret="pa+ss%2Fw:rd one%3A")
    auth = make_oidc_auth(
        client_id=client.client_id, client_secret=client.client_secret, auth_method=auth_method
    )
    mark = oidc_provider.mark()

    (reply,) = send("requests", auth, orders_api.url + "/orders")

    assert reply.status == 200
    assert outcomes(oidc_provider.token_requests(mark)) == [(auth_method, 200)]


#: RFC 6749 appendix A.1 / A.2: client ids and secrets are VSCHAR (printable ASCII).
VSCHAR = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(id_suffix=VSCHAR, secret=VSCHAR)
def test_any_printable_id_and_secret_authenticate_with_basic(
    oidc_provider: NodeProvider, id_suffix: str, secret: str
) -> None:
    """Whatever printable characters the id and secret hold (``:``, ``%``, ``+``,
    spaces), oidc-provider decodes what the library sends in the Basic header."""
    client = oidc_provider.register_client(
        "client_secret_basic",
        client_id=f"svc-{secrets.token_hex(4)}{id_suffix}",  # unique, then the drawn characters
        client_secret=secret,
    )
    auth = ClientCredentialsAuth(
        oidc_provider.token_url,
        client_id=client.client_id,
        client_secret=secret,
        auth_method="client_secret_basic",
        resource=ORDERS,
        retry=FAST_RETRY,
    )
    mark = oidc_provider.mark()

    assert jwt_part(auth.token(), 1)["client_id"] == client.client_id
    assert outcomes(oidc_provider.token_requests(mark)) == [("client_secret_basic", 200)]


@pytest.mark.parametrize("auth_method", SECRET_METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_wrong_secret_raises_invalid_client_without_the_secret(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    oidc_client: OidcClient,
    make_oidc_auth: MakeAuth,
    kind: Kind,
    auth_method: str,
) -> None:
    assert oidc_client.client_secret is not None
    wrong_secret = oidc_client.client_secret[::-1]
    auth = make_oidc_auth(client_secret=wrong_secret, auth_method=auth_method)
    mark, before = oidc_provider.mark(), orders_api.traffic()

    with pytest.raises(TokenRequestRejected) as caught:
        send(kind, auth, orders_api.url + "/orders")

    error = caught.value
    assert (error.status_code, error.error, error.error_description) == (
        401,
        "invalid_client",
        "client authentication failed",
    )
    for secret in (wrong_secret, oidc_client.client_secret):
        for text in (str(error), repr(error), repr(auth)):
            assert secret not in text
    # Refused once, not retried, and the API never saw a request.
    assert outcomes(oidc_provider.token_requests(mark)) == [(auth_method, 401)]
    assert orders_api.traffic() == before


@pytest.mark.parametrize("auth_method", SECRET_METHODS)
def test_unknown_client_id_raises_invalid_client(
    oidc_provider: NodeProvider, make_oidc_auth: MakeAuth, auth_method: str
) -> None:
    auth = make_oidc_auth(client_id="no-such-client", auth_method=auth_method)

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")


# -- scope and resource ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_requested_scope_is_granted_and_a_403_is_not_replayed(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    oidc_client: OidcClient,
    make_oidc_auth: MakeAuth,
    kind: Kind,
) -> None:
    auth = make_oidc_auth(scope="orders:read")
    mark, before = oidc_provider.mark(), orders_api.traffic()

    (read,) = send(kind, auth, orders_api.url + "/orders")
    (write,) = send(kind, auth, orders_api.url + "/write")

    assert (read.status, read.body["claims"]["scope"]) == (200, "orders:read")
    # Too little scope is a 403: not the token's end, so no new token, no replay.
    assert (write.status, write.history) == (403, ())
    assert write.challenge is not None
    assert 'error="insufficient_scope"' in write.challenge
    (record,) = oidc_provider.token_requests(mark)
    assert (record["status"], record["scope"]) == (200, "orders:read")
    assert orders_api.traffic() - before == Counter({"GET /orders 200": 1, "GET /write 403": 1})


def test_scope_list_is_sent_space_separated(
    orders_api: OrdersApi, make_oidc_auth: MakeAuth
) -> None:
    auth = make_oidc_auth(scope=["orders:write", "orders:read"])

    (write,) = send("requests", auth, orders_api.url + "/write")

    assert write.status == 200
    assert set(write.body["claims"]["scope"].split()) == {"orders:write", "orders:read"}


def test_scope_the_client_may_not_have_raises_invalid_scope(make_oidc_auth: MakeAuth) -> None:
    auth = make_oidc_auth(scope="orders:admin")  # the provider knows it; this client lacks it

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    error = caught.value
    assert (error.status_code, error.error) == (400, "invalid_scope")
    assert error.error_description == "requested scope is not allowed"


def test_unknown_resource_raises_invalid_target(make_oidc_auth: MakeAuth) -> None:
    auth = make_oidc_auth(resource="https://nowhere.example.test/")

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    assert (caught.value.status_code, caught.value.error) == (400, "invalid_target")


@pytest.mark.parametrize("kind", KINDS)
def test_token_for_another_resource_is_replaced_once_then_the_quota_guard_holds(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    oidc_client: OidcClient,
    make_oidc_auth: MakeAuth,
    kind: Kind,
) -> None:
    """The API refuses tokens for another audience. The library cannot tell that
    401 from a revocation: one new token and one replay, then the 401 is the
    user's; the next refused request costs no token (the quota guard)."""
    auth = make_oidc_auth(resource=ELSEWHERE)
    mark = oidc_provider.mark()

    (first,) = send(kind, auth, orders_api.url + "/orders")
    (second,) = send(kind, auth, orders_api.url + "/orders")

    assert (first.status, first.history) == (401, (401,))
    assert first.challenge is not None
    assert 'error="invalid_token"' in first.challenge
    assert "wrong audience" in first.challenge
    assert (second.status, second.history) == (401, ())
    records = oidc_provider.token_requests(mark)
    assert [(r["status"], r["resource"]) for r in records] == [(200, ELSEWHERE)] * 2


# -- a 401 to the current token: replaced, request replayed once ------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_refused_token_is_replaced_and_the_request_replayed_once(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    oidc_client: OidcClient,
    make_oidc_auth: MakeAuth,
    kind: Kind,
) -> None:
    auth = make_oidc_auth()
    (warm,) = send(kind, auth, orders_api.url + "/orders")
    assert warm.status == 200
    refused = auth.token()
    orders_api.deny(warm.body["claims"]["jti"])
    mark, before = oidc_provider.mark(), orders_api.traffic()

    (reply,) = send(kind, auth, orders_api.url + "/orders", method="POST", payload={"order": 42})

    assert (reply.status, reply.history) == (200, (401,))
    assert reply.body["echo"] == {"order": 42}  # the body was sent again, intact
    assert reply.body["claims"]["jti"] != warm.body["claims"]["jti"]
    assert auth.token() != refused
    assert outcomes(oidc_provider.token_requests(mark)) == [("client_secret_post", 200)]
    assert orders_api.traffic() - before == Counter({"POST /orders 401": 1, "POST /orders 200": 1})


# -- discovery -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("registered", "given_method", "expected"),
    [
        # oidc-provider lists client_secret_basic first; the library prefers
        # client_secret_post (Auth0's) when the server supports it.
        ("client_secret_basic", None, "client_secret_post"),
        ("client_secret_basic", "client_secret_basic", "client_secret_basic"),
        ("private_key_jwt", None, "private_key_jwt"),
    ],
)
def test_from_issuer_finds_the_token_endpoint_and_a_method(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    rsa_key: RSAKey,
    registered: str,
    given_method: str | None,
    expected: str,
) -> None:
    credentials: dict[str, Any]
    if registered == "private_key_jwt":
        key = rsa_key
        client = oidc_provider.register_client(
            registered, jwks={"keys": [key.as_dict(private=False)]}
        )
        credentials = {"private_key": key.as_pem(private=True)}
    else:
        client = oidc_provider.register_client(registered)
        credentials = {"client_secret": client.client_secret}
    assert oidc_provider.issuer.startswith("http://127.0.0.1:")  # loopback http is allowed

    auth = ClientCredentialsAuth.from_issuer(
        oidc_provider.issuer,
        auth_method=given_method,
        client_id=client.client_id,
        resource=ORDERS,
        retry=FAST_RETRY,
        **credentials,
    )
    mark = oidc_provider.mark()
    (reply,) = send("requests", auth, orders_api.url + "/orders")

    assert (auth.token_url, auth.auth_method) == (oidc_provider.token_url, expected)
    assert reply.status == 200
    wire_name = "client_assertion" if expected == "private_key_jwt" else expected
    assert outcomes(oidc_provider.token_requests(mark)) == [(wire_name, 200)]


# -- short tokens: oidc-provider's whole-second iat never reaches the user ------------------


@dataclass
class Tally:
    """What one caller of the soak saw."""

    statuses: Counter[int]
    replayed: int = 0
    #: For each 401 the user got: the replays before it, how long the call took,
    #: and what the API said of the token (its exp, jti, the API's clock).
    refusals: list[tuple[int, float, Any]] = field(default_factory=list)

    def see(self, status: int, history: int, seconds: float, body: bytes) -> None:
        self.statuses[status] += 1
        self.replayed += history
        if status == 401:
            self.refusals.append((history, round(seconds, 3), json.loads(body)))


def _soak_sync(kind: Kind, auth: ClientCredentialsAuth, url: str, until: float) -> Tally:
    tally = Tally(Counter())
    session: Any = requests.Session() if kind == "requests" else httpx.Client(auth=auth, timeout=10)
    with session:
        while time.monotonic() < until:
            started = time.monotonic()
            if kind == "requests":
                response: Any = session.get(url, auth=auth, timeout=10)
            else:
                response = session.get(url)
            tally.see(
                response.status_code,
                len(response.history),
                time.monotonic() - started,
                response.content,
            )
            time.sleep(SOAK_PAUSE)
    return tally


def _soak_async(auth: ClientCredentialsAuth, url: str, until: float, tasks: int = 4) -> Tally:
    tally = Tally(Counter())

    async def caller(client: httpx.AsyncClient) -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            response = await client.get(url)
            tally.see(
                response.status_code,
                len(response.history),
                time.monotonic() - started,
                response.content,
            )
            await asyncio.sleep(SOAK_PAUSE)

    async def main() -> None:
        async with httpx.AsyncClient(auth=auth, timeout=10) as client:
            await asyncio.gather(*(caller(client) for _ in range(tasks)))

    asyncio.run(main())
    return tally


def test_short_lived_tokens_end_early_and_no_401_reaches_the_user(
    oidc_provider: NodeProvider,
    orders_api: OrdersApi,
    make_oidc_auth: MakeAuth,
) -> None:
    """Issue 8 item A against a server that really does it: oidc-provider's "2 s"
    and "3 s" tokens end up to a second before ``expires_in`` says, and the API
    refuses them from ``exp`` on, with no leeway. requests, httpx and httpx async
    (four tasks), each with 2 s and 3 s tokens, call for ten seconds at once:
    every answer the user sees is a 200 (save a call slower than its token's whole
    life, which only an overloaded machine makes), every 401 the API gave was
    absorbed by one replay, and tokens are fetched about once per lifetime."""
    callers: list[tuple[Kind, str, OidcClient, ClientCredentialsAuth]] = []
    for kind in KINDS:
        for resource in (CLOCK_2S, CLOCK_3S):
            client = oidc_provider.register_client()
            auth = make_oidc_auth(
                client_id=client.client_id, client_secret=client.client_secret, resource=resource
            )
            callers.append((kind, resource, client, auth))
    mark, before = oidc_provider.mark(), orders_api.traffic()
    expired_before = orders_api.expired
    url = orders_api.url + "/orders"
    until = time.monotonic() + SOAK_SECONDS
    tallies: dict[int, Tally] = {}
    failures: list[BaseException] = []

    def run(index: int, kind: Kind, auth: ClientCredentialsAuth) -> None:
        try:
            tallies[index] = (
                _soak_async(auth, url, until)
                if kind == "httpx-async"
                else _soak_sync(kind, auth, url, until)
            )
        except Exception as exc:  # reported by the assertion below, not as a thread warning
            failures.append(exc)

    threads = [
        threading.Thread(target=run, args=(index, kind, auth))
        for index, (kind, _, _, auth) in enumerate(callers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SOAK_SECONDS + 60)
    assert not failures, failures
    assert len(tallies) == len(callers), "a soak caller did not finish"

    api_401s = (orders_api.traffic() - before)["GET /orders 401"]
    records = oidc_provider.token_requests(mark)
    token_counts = []
    # Shown with -rP (or -s): what each caller did, for the record, before judging.
    for index, (kind, resource, client, _) in enumerate(callers):
        tally = tallies[index]
        token_counts.append(len([r for r in records if r["client_id"] == client.client_id]))
        print(
            f"{kind} {resource}: {sum(tally.statuses.values())} calls, "
            f"{token_counts[-1]} tokens, {tally.replayed} replays, "
            f"user-visible 401s (replays before, seconds, API said): {tally.refusals}"
        )
    for index, (kind, resource, _, _) in enumerate(callers):
        tally = tallies[index]
        # A call that took longer than its token can live (a "2 s" token lives 1-2 s)
        # may end in a 401 that no client could avoid: on this 2-core machine at a
        # load average of 400, calls took 5 s. Any other 401 is the library's.
        shortest_life = TOKEN_LIFETIMES[resource] - 1
        avoidable = [r for r in tally.refusals if r[1] < shortest_life]
        assert avoidable == [], f"{kind} {resource}: a 401 reached the user"
        assert set(tally.statuses) <= {200, 401}, (kind, resource, tally.statuses)
        # A token is used for at least a second (MIN_TOKEN_REUSE): at most one per
        # second of soak, plus the first, plus one per replacement after a 401.
        assert token_counts[index] <= SOAK_SECONDS + 1 + tally.replayed, (kind, resource)
    assert {r["status"] for r in records} == {200}
    # Every 401 the API answered was to an expired token, and was replayed or shown.
    assert sum(t.replayed + len(t.refusals) for t in tallies.values()) == api_401s
    assert orders_api.expired - expired_before == api_401s
    print(f"API 401s to expired tokens: {api_401s}")


# -- DPoP: the provider configuration the DPoP tests will use ---------------------------


def _token_request(
    provider: NodeProvider, client: OidcClient, proof: str | None, resource: str = ORDERS
) -> requests.Response:
    headers = {} if proof is None else {"DPoP": proof}
    return requests.post(
        provider.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "resource": resource,
        },
        headers=headers,
        timeout=10,
    )


def test_provider_binds_a_token_to_the_dpop_key_of_the_proof(oidc_provider: NodeProvider) -> None:
    client = oidc_provider.register_client()
    key = ECKey.generate_key("P-256")
    mark = oidc_provider.mark()

    with _token_request(
        oidc_provider, client, dpop_proof(key, "POST", oidc_provider.token_url)
    ) as answer:
        assert answer.status_code == 200, answer.text
        granted = answer.json()

    assert granted["token_type"] == "DPoP"
    assert jwt_part(granted["access_token"], 1)["cnf"] == {"jkt": key.thumbprint()}
    (record,) = oidc_provider.token_requests(mark)
    assert (record["dpop"], record["dpop_nonce_sent"], record["token_type"]) == (
        True,
        False,
        "DPoP",
    )


@pytest.mark.parametrize("scope", ["client", "provider"])
def test_provider_demands_a_dpop_nonce_when_told_to(
    oidc_provider: NodeProvider, scope: str
) -> None:
    client = oidc_provider.register_client(require_dpop_nonce=scope == "client")
    key = ECKey.generate_key("P-256")
    if scope == "provider":
        oidc_provider.require_dpop_nonce(True)
    try:
        with _token_request(
            oidc_provider, client, dpop_proof(key, "POST", oidc_provider.token_url)
        ) as challenged:
            nonce = challenged.headers.get("DPoP-Nonce")
            assert (challenged.status_code, challenged.json()["error"]) == (400, "use_dpop_nonce")
        assert nonce
        with _token_request(
            oidc_provider, client, dpop_proof(key, "POST", oidc_provider.token_url, nonce=nonce)
        ) as answer:
            assert answer.status_code == 200, answer.text
            assert answer.json()["token_type"] == "DPoP"
    finally:
        oidc_provider.require_dpop_nonce(False)

    # Without a proof, the same client still gets a Bearer token.
    with _token_request(oidc_provider, client, None) as bearer:
        assert (bearer.status_code, bearer.json()["token_type"]) == (200, "Bearer")


def test_bearer_request_of_a_dpop_bound_client_is_a_clear_rejection(
    oidc_provider: NodeProvider, make_oidc_auth: MakeAuth
) -> None:
    """Until the library speaks DPoP, a client the provider binds to DPoP
    (``dpop_bound_access_tokens``) gets a typed refusal, not a broken token."""
    client = oidc_provider.register_client(dpop_bound=True)
    auth = make_oidc_auth(client_id=client.client_id, client_secret=client.client_secret)

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    # oidc-provider's reason ("DPoP proof JWT not provided") stays in its logs.
    assert (caught.value.status_code, caught.value.error) == (400, "invalid_grant")
