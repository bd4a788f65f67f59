"""bearer_m2m against django-oauth-toolkit (DOT): a real authorization server nobody here wrote.

One DOT site runs for the whole session (see ``conftest.py``). Every test
registers an application of its own, so DOT's ``AccessToken`` rows for it tell
how many tokens the library asked for; the site's traffic counter tells exactly
which requests crossed the socket, and with which status.

What DOT does, as these tests pin it down:

* Its token endpoint answers ``{"access_token", "expires_in", "token_type":
  "Bearer", "scope"}``; with no ``scope`` requested it grants every scope.
* Bad client credentials: 401 ``{"error": "invalid_client"}`` (no
  ``error_description``). An unknown scope: 400 ``invalid_scope``. A bad RFC 8707
  ``resource``: 400 ``invalid_target``, JSON sent as ``text/html``.
* ``ProtectedResourceView``, DOT's default, answers a bare 403 to a missing,
  revoked or insufficient token. Only the RFC 9728 views
  (``ProtectedResourceMetadataView`` and friends) answer 401 with a ``Bearer``
  challenge, which is what lets a client replace a revoked token.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest

from bearer_m2m import ClientCredentialsAuth, TokenRequestRejected
from tests.interop.clients import KINDS, Kind, send
from tests.interop.dot_site import (
    LEGACY_PATH,
    TOKEN_PATH,
    WHOAMI_PATH,
    WRITE_PATH,
    DotClient,
    DotSite,
    token_checksum,
)

MakeAuth = Callable[..., ClientCredentialsAuth]

AUTH_METHODS = ["client_secret_post", "client_secret_basic"]


def traffic_since(dot: DotSite, before: Counter[str]) -> Counter[str]:
    return dot.traffic() - before


# -- fetch and reuse ------------------------------------------------------------


@pytest.mark.parametrize("auth_method", AUTH_METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_token_from_dot_is_accepted_and_reused(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth, kind: Kind, auth_method: str
) -> None:
    auth = make_auth(auth_method=auth_method)
    before = dot.traffic()

    replies = send(kind, auth, dot.url(WHOAMI_PATH), times=5)

    assert {reply.status for reply in replies} == {200}
    assert replies[0].body == {
        "client_id": dot_client.client_id,
        "scope": "read write",  # DOT grants every scope when none is asked for
        "user": None,  # a client-credentials token has no resource owner
        "resource": [],
    }
    assert traffic_since(dot, before) == Counter(
        {f"POST {TOKEN_PATH} 200": 1, f"GET {WHOAMI_PATH} 200": 5}
    )
    # DOT issued exactly one token, the one the library holds (stored as a checksum).
    (row,) = dot.tokens_of(dot_client.application)
    assert row.token_checksum == token_checksum(auth.token())
    assert row.token == ""


def test_one_auth_object_shares_its_token_across_clients(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth
) -> None:
    auth = make_auth()
    before = dot.traffic()

    for kind in KINDS:
        (reply,) = send(kind, auth, dot.url(WHOAMI_PATH))
        assert reply.status == 200

    assert traffic_since(dot, before)[f"POST {TOKEN_PATH} 200"] == 1
    assert len(dot.tokens_of(dot_client.application)) == 1


# -- revocation: 401, one new token, one replay ---------------------------------------


@pytest.mark.parametrize("how", ["revoke_endpoint", "row_deleted"])
@pytest.mark.parametrize("kind", KINDS)
def test_revoked_token_is_replaced_and_the_request_replayed_once(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth, kind: Kind, how: str
) -> None:
    auth = make_auth()
    (warm,) = send(kind, auth, dot.url(WHOAMI_PATH))
    assert warm.status == 200
    revoked = auth.token()
    if how == "revoke_endpoint":
        dot.revoke(dot_client.client_id, dot_client.secret, revoked)
    else:
        dot.delete_token(revoked)
    assert dot.tokens_of(dot_client.application) == []
    before = dot.traffic()

    (reply,) = send(kind, auth, dot.url(WHOAMI_PATH), method="POST", payload={"order": 42})

    assert reply.status == 200
    assert reply.history == (401,)
    assert reply.body["echo"] == {"order": 42}  # the body was sent again, intact
    assert traffic_since(dot, before) == Counter(
        {
            f"POST {WHOAMI_PATH} 401": 1,
            f"POST {TOKEN_PATH} 200": 1,
            f"POST {WHOAMI_PATH} 200": 1,
        }
    )
    replacement = auth.token()
    assert replacement != revoked
    (row,) = dot.tokens_of(dot_client.application)
    assert row.token_checksum == token_checksum(replacement)

    # The replacement is reused: no further token request.
    before = dot.traffic()
    (again,) = send(kind, auth, dot.url(WHOAMI_PATH))
    assert (again.status, again.history) == (200, ())
    assert traffic_since(dot, before) == Counter({f"GET {WHOAMI_PATH} 200": 1})


@pytest.mark.parametrize("kind", KINDS)
def test_dot_default_view_answers_403_to_a_revoked_token_and_nothing_is_replayed(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth, kind: Kind
) -> None:
    """DOT's ``ProtectedResourceView`` says 403, not 401, so the library keeps its token.

    A 403 may as well mean "not allowed": replacing the token cannot be assumed
    to help. Services behind DOT's default views should use its RFC 9728 views,
    or call ``auth.invalidate()`` on such a 403.
    """
    auth = make_auth()
    (warm,) = send(kind, auth, dot.url(LEGACY_PATH))
    assert warm.status == 200
    revoked = auth.token()
    dot.delete_token(revoked)
    before = dot.traffic()

    (reply,) = send(kind, auth, dot.url(LEGACY_PATH))

    assert (reply.status, reply.challenge, reply.history) == (403, None, ())
    assert traffic_since(dot, before) == Counter({f"GET {LEGACY_PATH} 403": 1})
    assert auth.token() == revoked

    auth.invalidate()
    (recovered,) = send(kind, auth, dot.url(LEGACY_PATH))
    assert recovered.status == 200
    assert traffic_since(dot, before)[f"POST {TOKEN_PATH} 200"] == 1


# -- rejected credentials ---------------------------------------------------------


@pytest.mark.parametrize("auth_method", AUTH_METHODS)
@pytest.mark.parametrize("kind", KINDS)
def test_wrong_secret_raises_invalid_client_without_the_secret(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth, kind: Kind, auth_method: str
) -> None:
    wrong_secret = dot_client.secret[::-1]
    auth = make_auth(client_secret=wrong_secret, auth_method=auth_method)
    before = dot.traffic()

    with pytest.raises(TokenRequestRejected) as caught:
        send(kind, auth, dot.url(WHOAMI_PATH))

    error = caught.value
    assert (error.status_code, error.error, error.error_description) == (
        401,
        "invalid_client",
        None,
    )
    assert str(error).startswith("token endpoint refused the request: HTTP 401: invalid_client;")
    assert "check the client id and its secret" in str(error)
    for secret in (wrong_secret, dot_client.secret):
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in repr(auth)
    # Not retried, and the API never saw a request.
    assert traffic_since(dot, before) == Counter({f"POST {TOKEN_PATH} 401": 1})
    assert dot.tokens_of(dot_client.application) == []


@pytest.mark.parametrize("auth_method", AUTH_METHODS)
def test_unknown_client_id_raises_invalid_client(
    dot: DotSite, make_auth: MakeAuth, auth_method: str
) -> None:
    auth = make_auth(client_id="no-such-client", auth_method=auth_method)

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    assert (caught.value.status_code, caught.value.error) == (401, "invalid_client")


@pytest.mark.parametrize(
    "auth_method",
    [
        "client_secret_post",
        "client_secret_basic",
    ],
)
def test_secret_with_reserved_characters(
    dot: DotSite, make_auth: MakeAuth, auth_method: str
) -> None:
    client = dot.register_client("pa+ss%2Fw:rd one")
    auth = make_auth(
        client_id=client.client_id, client_secret=client.secret, auth_method=auth_method
    )

    (reply,) = send("requests", auth, dot.url(WHOAMI_PATH))

    assert reply.status == 200
    assert reply.body["client_id"] == client.client_id


# -- scope and resource -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_requested_scope_is_granted_and_enforced_by_dot(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth, kind: Kind
) -> None:
    auth = make_auth(scope="read")
    before = dot.traffic()

    (whoami,) = send(kind, auth, dot.url(WHOAMI_PATH))
    (write,) = send(kind, auth, dot.url(WRITE_PATH))

    assert (whoami.status, whoami.body["scope"]) == (200, "read")
    # Too little scope is a 403 with an RFC 6750 challenge: not the token's
    # fault, so no new token and no replay.
    assert (write.status, write.history) == (403, ())
    assert write.challenge is not None
    assert write.challenge.startswith('Bearer error="insufficient_scope"')
    assert traffic_since(dot, before) == Counter(
        {f"POST {TOKEN_PATH} 200": 1, f"GET {WHOAMI_PATH} 200": 1, f"GET {WRITE_PATH} 403": 1}
    )
    introspected = dot.introspect(dot_client.client_id, dot_client.secret, auth.token())
    assert introspected["active"] is True
    assert introspected["scope"] == "read"
    assert introspected["client_id"] == dot_client.client_id


def test_scope_list_is_sent_space_separated(dot: DotSite, make_auth: MakeAuth) -> None:
    auth = make_auth(scope=["write", "read"])

    (write,) = send("requests", auth, dot.url(WRITE_PATH))

    assert (write.status, write.body["scope"]) == (200, "write read")


def test_unknown_scope_raises_invalid_scope(dot: DotSite, make_auth: MakeAuth) -> None:
    auth = make_auth(scope="admin")

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    assert (caught.value.status_code, caught.value.error) == (400, "invalid_scope")


@pytest.mark.parametrize("kind", KINDS)
def test_resource_indicator_binds_the_token_and_a_401_is_replayed_only_once(
    dot: DotSite, dot_client: DotClient, make_auth: MakeAuth, kind: Kind
) -> None:
    """RFC 8707: DOT binds the token to ``resource`` and rejects it elsewhere with a 401.

    The library cannot tell this 401 from a revocation: it fetches one new
    token and replays once, then hands the second 401 back rather than loop.
    """
    resource = dot.url(WHOAMI_PATH)
    auth = make_auth(resource=resource)
    before = dot.traffic()

    (whoami,) = send(kind, auth, dot.url(WHOAMI_PATH))
    (elsewhere,) = send(kind, auth, dot.url(WRITE_PATH))

    assert (whoami.status, whoami.body["resource"]) == (200, [resource])
    assert (elsewhere.status, elsewhere.history) == (401, (401,))
    assert elsewhere.challenge is not None
    assert 'error="invalid_token"' in elsewhere.challenge
    assert "not valid for this resource" in elsewhere.challenge
    assert traffic_since(dot, before) == Counter(
        {f"POST {TOKEN_PATH} 200": 2, f"GET {WHOAMI_PATH} 200": 1, f"GET {WRITE_PATH} 401": 2}
    )
    introspected = dot.introspect(dot_client.client_id, dot_client.secret, auth.token())
    assert introspected["aud"] == [resource]


def test_invalid_resource_raises_invalid_target(dot: DotSite, make_auth: MakeAuth) -> None:
    auth = make_auth(resource="urn:example:api")

    with pytest.raises(TokenRequestRejected) as caught:
        auth.token()

    error = caught.value
    assert (error.status_code, error.error) == (400, "invalid_target")
    assert error.error_description is not None
    assert "'urn:example:api' is not a valid resource indicator" in error.error_description
