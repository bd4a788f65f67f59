"""DPoP (RFC 9449) end to end, on every client: one keyword, ``dpop=True`` or a key.

Each test runs once per client of :mod:`tests.clients`, against the local
authorization server and API (bearer_m2m.testing), which verify every proof
(signature, ``typ``, ``htm``, ``htu``, ``iat``, ``jti``, ``ath``, ``cnf.jkt``)
and count what became of it; what a test asserts is counted at the servers.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from bearer_m2m import ClientCredentialsAuth, RetryPolicy
from bearer_m2m._dpop import DPoPKey
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from tests.clients import Answer
from tests.servers import Reply, _Base
from tests.test_end_to_end import (
    FAST_RETRY,
    Connect,
    auth_for,
    connect,
    connecting,
    redirect,
)

__all__ = ["connect"]  # the fixture, imported for the tests below

AUDIENCE = "https://dpop.api.example"


Servers = tuple[AuthorizationServer, ProtectedAPI]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with AuthorizationServer() as server, ProtectedAPI(server, AUDIENCE) as api:
        yield server, api


def reset(servers: Servers) -> Servers:
    """The module's servers with their counters back to zero, for one test."""
    for each in servers:
        each.reset()
    return servers


@pytest.fixture
def server(servers: Servers) -> AuthorizationServer:
    return reset(servers)[0]


@pytest.fixture
def api(server: AuthorizationServer, servers: Servers) -> ProtectedAPI:
    return servers[1]


def dpop_auth(
    server: AuthorizationServer, api: ProtectedAPI, **options: object
) -> ClientCredentialsAuth:
    options.setdefault("dpop", True)
    options.setdefault("retry", FAST_RETRY)
    return auth_for(server, api, **options)


def bound(answer: Answer, auth: ClientCredentialsAuth) -> bool:
    """Whether the API took the call's token as a DPoP token bound to ``auth``'s key."""
    payload = answer.payload or {}
    return (
        answer.status == 200
        and (answer.authorization or "").startswith("DPoP ")
        and payload.get("token_type") == "DPoP"
        and payload.get("dpop_jkt") == auth.dpop_thumbprint
    )


# -- proofs ---------------------------------------------------------------------------------


def test_one_keyword_binds_the_token_and_every_request_gets_its_own_proof(
    connect: Connect, server: AuthorizationServer, api: ProtectedAPI
) -> None:
    auth = dpop_auth(server, api)
    client = connect(auth)

    answers = [client.call(api.url + f"things/{n}?page={n}") for n in range(3)]
    posted = client.call(api.url + "things", method="POST", body=b"{}")

    assert all(bound(answer, auth) for answer in [*answers, posted])
    assert (server.token_requests, server.dpop_proofs_accepted) == (1, 1)
    # Each request's proof was checked for its method, URL (no query) and token, and
    # none was a replay of another.
    assert (api.dpop_proofs_accepted, api.dpop_proofs_rejected, api.dpop_jti_replays) == (4, 0, 0)
    assert api.last_dpop_proof is not None
    assert api.last_dpop_proof[1]["htm"] == "POST"
    assert api.last_dpop_proof[1]["htu"] == api.url + "things"
    assert api.unauthorized == 0


def test_a_given_key_is_the_key_that_binds(
    connect: Connect, server: AuthorizationServer, api: ProtectedAPI
) -> None:
    key = DPoPKey.generate("EdDSA")
    jwk = {**key._key.as_dict(private=True)}  # the user's JWK, as a secret store holds it
    auth = dpop_auth(server, api, dpop=jwk)
    assert auth.dpop_thumbprint == key.thumbprint

    answer = connect(auth).call(api.url + "things")

    assert bound(answer, auth)
    assert server.last_dpop_proof is not None
    assert server.last_dpop_proof[0]["alg"] == "EdDSA"


# -- nonces ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nonce_servers() -> Iterator[Servers]:
    """Both demand their own nonce."""
    with (
        AuthorizationServer(require_dpop_nonce=True) as server,
        ProtectedAPI(server, AUDIENCE, require_dpop_nonce=True) as api,
    ):
        yield server, api


@pytest.fixture
def nonce_server(nonce_servers: Servers) -> AuthorizationServer:
    return reset(nonce_servers)[0]


@pytest.fixture
def nonce_api(nonce_server: AuthorizationServer, nonce_servers: Servers) -> ProtectedAPI:
    return nonce_servers[1]


def test_nonces_are_taken_from_each_server_and_sent_back_only_to_it(
    connect: Connect, nonce_server: AuthorizationServer, nonce_api: ProtectedAPI
) -> None:
    # One attempt only: the token endpoint's nonce challenge is no failure to retry.
    auth = dpop_auth(nonce_server, nonce_api, retry=RetryPolicy(max_attempts=1, deadline=10))
    client = connect(auth)

    first = client.call(nonce_api.url + "things")

    assert bound(first, auth)
    # The token endpoint: 400 use_dpop_nonce, then the same request with its nonce.
    assert (nonce_server.token_requests, nonce_server.tokens_issued) == (2, 1)
    assert nonce_server.dpop_nonce_challenges == 1
    # The API: 401 use_dpop_nonce, then the same token with a proof carrying its nonce.
    assert (nonce_api.requests, nonce_api.unauthorized, nonce_api.dpop_nonce_challenges) == (
        2,
        1,
        1,
    )
    assert nonce_api.last_dpop_proof is not None
    assert nonce_api.last_dpop_proof[1]["nonce"] == nonce_api.dpop_nonce
    assert nonce_api.dpop_nonce != nonce_server.dpop_nonce

    # Both nonces are remembered: the next call and the next token need no challenge.
    assert bound(client.call(nonce_api.url + "more"), auth)
    auth.invalidate()
    assert bound(client.call(nonce_api.url + "again"), auth)
    assert (nonce_server.token_requests, nonce_server.tokens_issued) == (3, 2)
    assert nonce_server.dpop_nonce_challenges == 1
    assert nonce_server.last_dpop_proof is not None
    assert nonce_server.last_dpop_proof[1]["nonce"] == nonce_server.dpop_nonce
    assert (nonce_api.requests, nonce_api.dpop_nonce_challenges) == (4, 1)


def test_a_rotated_nonce_is_answered_with_the_new_one_at_no_token_cost(
    connect: Connect, nonce_server: AuthorizationServer, nonce_api: ProtectedAPI
) -> None:
    auth = dpop_auth(nonce_server, nonce_api)
    client = connect(auth)
    assert bound(client.call(nonce_api.url + "things"), auth)
    tokens = nonce_server.tokens_issued

    nonce_api.rotate_dpop_nonce()
    answer = client.call(nonce_api.url + "things")

    assert bound(answer, auth)
    assert nonce_server.tokens_issued == tokens  # same token: no quota spent
    assert nonce_api.dpop_nonce_challenges == 2


# -- 401s and the one replay ----------------------------------------------------------------


def test_a_refused_dpop_token_is_replaced_and_replayed_once(
    connect: Connect, server: AuthorizationServer, api: ProtectedAPI
) -> None:
    auth = dpop_auth(server, api)
    client = connect(auth)
    first = client.call(api.url + "things")
    server.revoke_all()

    replayed = client.call(api.url + "things")

    assert bound(replayed, auth)
    assert replayed.authorization != first.authorization
    assert (server.token_requests, server.dpop_proofs_accepted) == (2, 2)
    assert (api.requests, api.unauthorized, api.dpop_jti_replays) == (3, 1, 0)


class ScriptedAPI(_Base):
    """An API that answers each request with the next of ``replies`` (the last one
    again once they run out) and keeps every request's credentials."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.seen: list[tuple[str | None, str | None]] = []  # (Authorization, DPoP)
        super().__init__()
        self.url = self.origin + "/"

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        named = {name.lower(): value for name, value in headers.items()}  # urllib3-future lowers
        self.seen.append((named.get("authorization"), named.get("dpop")))
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def nonce_challenge(nonce: str) -> Reply:
    return Reply(
        401, headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": nonce}
    )


INVALID_TOKEN = Reply(401, headers={"WWW-Authenticate": 'DPoP error="invalid_token"'})


@pytest.mark.parametrize(
    ("replies", "tokens"),
    [
        ((nonce_challenge("n-1"), nonce_challenge("n-2")), 1),  # challenges forever
        ((nonce_challenge("n-1"), INVALID_TOKEN), 1),  # the nonce, then the token refused
        ((INVALID_TOKEN, nonce_challenge("n-1")), 2),  # the token refused, then a nonce
        ((INVALID_TOKEN,), 2),  # refuses every token
    ],
    ids=["nonce-nonce", "nonce-token", "token-nonce", "token-token"],
)
def test_one_replay_in_all_whatever_the_api_keeps_answering(
    connect: Connect,
    server: AuthorizationServer,
    api: ProtectedAPI,
    replies: tuple[Reply, ...],
    tokens: int,
) -> None:
    scripted = ScriptedAPI(*replies)
    try:
        answer = connect(dpop_auth(server, api)).call(scripted.url + "things")
    finally:
        scripted.close()

    assert answer.status == 401  # the second answer is the caller's
    assert len(scripted.seen) == 2
    assert server.tokens_issued == tokens
    (first_token, first_proof), (second_token, second_proof) = scripted.seen
    assert first_proof != second_proof  # a replay never reuses a proof
    assert (first_token == second_token) is (tokens == 1)
    if replies[0] is not INVALID_TOKEN:  # the replay answered the challenge with its nonce
        assert _claims(second_proof)["nonce"] == "n-1"


def _claims(proof: str | None) -> dict[str, object]:
    assert proof is not None
    payload = proof.split(".")[1]
    claims: dict[str, object] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def test_a_body_that_cannot_be_sent_twice_is_not_replayed_for_a_nonce(
    connect: Connect, nonce_server: AuthorizationServer, nonce_api: ProtectedAPI
) -> None:
    from tests.clients import OneShotBody

    auth = dpop_auth(nonce_server, nonce_api)
    client = connect(auth)
    assert bound(client.call(nonce_api.url + "things"), auth)
    nonce_api.rotate_dpop_nonce()

    requests_before = nonce_api.requests

    streamed = client.call(nonce_api.url + "uploads", method="POST", body=OneShotBody((b"x",)))

    assert streamed.status == 401
    assert nonce_api.requests == requests_before + 1


# -- redirects ------------------------------------------------------------------------------


def test_a_same_origin_redirect_is_followed_with_a_proof_for_its_url(
    connect: Connect, server: AuthorizationServer, api: ProtectedAPI
) -> None:
    auth = dpop_auth(server, api)
    client = connect(auth)

    answer = client.call(redirect(api, api.url + "landing"), follow_redirects=True)

    assert bound(answer, auth)
    assert answer.payload is not None and answer.payload["path"] == "/landing"
    assert api.last_dpop_proof is not None
    assert api.last_dpop_proof[1]["htu"] == api.url + "landing"
    assert server.token_requests == 1


def test_another_origin_gets_no_token_no_proof_for_itself_and_its_nonce_challenge_no_replay(
    connect: Connect, server: AuthorizationServer, api: ProtectedAPI
) -> None:
    auth = dpop_auth(server, api)
    client = connect(auth)
    elsewhere = ScriptedAPI(nonce_challenge("theirs"))
    try:
        answer = client.call(redirect(api, elsewhere.url + "there"), follow_redirects=True)
    finally:
        elsewhere.close()

    assert (answer.status, answer.redirects) == (401, 1)
    assert len(elsewhere.seen) == 1  # no replay there
    ((authorization, proof),) = elsewhere.seen
    assert authorization is None
    # requests, niquests and aiohttp send it no proof; httpx carries the one made for
    # the first URL (README), which no server may accept for another.
    if proof is not None:
        assert _claims(proof)["htu"] != elsewhere.url + "there"
        assert connect_kind(client) in ("httpx", "httpx2")
    assert server.token_requests == 1
    # Its nonce is never sent anywhere else.
    client.call(api.url + "things")
    assert "nonce" not in (api.last_dpop_proof or ({}, {}))[1]


def connect_kind(client: object) -> str:
    return str(getattr(client, "kind", "")).split("-")[0]


# -- shared caches --------------------------------------------------------------------------


def test_processes_share_a_token_only_when_they_share_the_key(
    server: AuthorizationServer, api: ProtectedAPI, tmp_path: object
) -> None:
    import pathlib

    from bearer_m2m import FileCache

    directory = pathlib.Path(str(tmp_path))
    key_file = directory / "dpop-key.pem"
    key_file.write_bytes(_pem_of(DPoPKey.generate()))
    cache = FileCache(directory / "tokens")

    with connecting("requests") as open_client:
        shared = [dpop_auth(server, api, dpop=str(key_file), cache=cache) for _ in range(2)]
        own = [dpop_auth(server, api, cache=cache) for _ in range(2)]
        answers = [open_client(auth).call(api.url + "things") for auth in [*shared, *own]]

    assert all(bound(answer, auth) for answer, auth in zip(answers, [*shared, *own], strict=True))
    assert shared[0].dpop_thumbprint == shared[1].dpop_thumbprint
    assert own[0].dpop_thumbprint != own[1].dpop_thumbprint
    # One token for the two that share the key file; one each for the in-memory keys.
    assert server.tokens_issued == 3
    # The cache holds tokens, sealed; never the key.
    blob = (directory / "tokens").read_bytes()
    assert b"PRIVATE KEY" not in blob and key_file.read_bytes()[40:80] not in blob


def _pem_of(key: DPoPKey) -> bytes:
    pem = key._key.as_pem(private=True)
    return pem if isinstance(pem, bytes) else pem.encode()
