"""``AuthorizationServer``: a real OAuth2 token endpoint on loopback, with controls for tests."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc.jwk import KeySet, KeySetSerialization, RSAKey

from . import _faults
from ._clients import GRANT_TYPE, ClientRegistry, RegisteredClient, check_lifetime
from ._http import LoopbackServer, Request, Response
from ._oauth import ALGORITHM, AUTH_METHODS, TokenAuthority

TOKEN_PATH = "/oauth/token"  # noqa: S105  (a path, not a password)
JWKS_PATH = "/.well-known/jwks.json"
#: Both discovery documents hold the same RFC 8414 metadata: clients built for
#: OpenID Connect providers (Auth0 among them) look at the first.
DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")


class AuthorizationServer(LoopbackServer):
    """A real OAuth2 authorization server on 127.0.0.1, for tests and demos.

    It issues RS256-signed RFC 9068 JWT access tokens for the client-credentials
    grant the way Auth0 does (``audience``, ``organization``, form or JSON
    bodies, ``client_secret_post`` or ``client_secret_basic``), publishes its
    keys and metadata, and lets a test script failures, count requests and
    revoke tokens. A default client, :attr:`client`, is registered up front.

    ``token_lifetime`` (seconds, at least 1, fractions allowed) applies to
    clients registered without one of their own. Tokens requested with neither
    ``audience`` nor ``resource`` are issued for ``default_audience``, which is
    the issuer unless given.

    Start it with ``with`` (or :meth:`start` and :meth:`stop`); ``port=0`` picks
    a free port.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token_lifetime: float = 3600.0,
        default_audience: str | None = None,
    ) -> None:
        super().__init__(port)
        self.token_lifetime = check_lifetime(token_lifetime)
        self._default_audience = default_audience
        self._key = RSAKey.generate_key(
            2048, parameters={"use": "sig", "alg": ALGORITHM}, auto_kid=True
        )
        self._clients = ClientRegistry()
        self._faults = _faults.FaultScript()
        self._authority: TokenAuthority | None = None
        self._lock = threading.Lock()
        self._token_requests = 0
        self._tokens_issued = 0
        self._reject_all = False
        # SHA-256 digests of the tokens issued since the last revoke_all(), and of those revoked.
        self._live: set[bytes] = set()
        self._revoked: set[bytes] = set()
        #: The client registered when the server was created.
        self.client = self.register_client()

    # -- where it lives ------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:PORT/``: the ``iss`` of its tokens, with Auth0's trailing slash."""
        return self.url

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH.lstrip("/")

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH.lstrip("/")

    @property
    def default_audience(self) -> str:
        """The ``aud`` of tokens requested without ``audience`` or ``resource``."""
        return self._default_audience or self.issuer

    @property
    def jwks(self) -> KeySetSerialization:
        """The public JWK Set served at :attr:`jwks_url`."""
        return KeySet([self._key]).as_dict(private=False)

    @property
    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 metadata served at both discovery paths."""
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": self.jwks_url,
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
            # Required by RFC 8414; there is no authorization endpoint, so none.
            "response_types_supported": [],
        }

    # -- clients ---------------------------------------------------------------------

    def register_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        *,
        token_lifetime: float | None = None,
        audiences: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        grant_types: Iterable[str] = (GRANT_TYPE,),
        organizations: Iterable[str] | None = None,
    ) -> RegisteredClient:
        """Register a client; random credentials are made for those not given.

        ``audiences``, ``scopes`` and ``organizations`` restrict what the client
        may ask for (``None``: anything). A restricted client that asks for no
        scope is given all of its scopes, as on Auth0. ``grant_types`` without
        ``"client_credentials"`` makes a client whose token requests are refused
        with ``unauthorized_client``.
        """
        return self._clients.register(
            client_id,
            client_secret,
            token_lifetime=self.token_lifetime if token_lifetime is None else token_lifetime,
            audiences=audiences,
            scopes=scopes,
            grant_types=grant_types,
            organizations=organizations,
        )

    # -- what happened ------------------------------------------------------------------

    @property
    def token_requests(self) -> int:
        """Requests to the token endpoint, every one: refused, failed on purpose or served."""
        with self._lock:
            return self._token_requests

    @property
    def tokens_issued(self) -> int:
        with self._lock:
            return self._tokens_issued

    def reset(self) -> None:
        """Counters to zero, scripted faults dropped, ``reject_all_tokens`` off.

        Clients stay registered and revoked tokens stay revoked.
        """
        self._faults.clear()
        with self._lock:
            self._token_requests = self._tokens_issued = 0
            self._reject_all = False

    # -- tokens the API should refuse ------------------------------------------------

    def revoke_all(self) -> None:
        """Revoke every token issued so far; tokens issued afterwards are valid."""
        with self._lock:
            self._revoked |= self._live
            self._live = set()

    @property
    def reject_all_tokens(self) -> bool:
        """While true, :class:`ProtectedAPI` refuses every token, even fresh ones."""
        with self._lock:
            return self._reject_all

    @reject_all_tokens.setter
    def reject_all_tokens(self, value: bool) -> None:
        with self._lock:
            self._reject_all = bool(value)

    def is_revoked(self, access_token: str) -> bool:
        """Whether an API should refuse ``access_token`` though it is otherwise valid."""
        with self._lock:
            return self._reject_all or _digest(access_token) in self._revoked

    # -- scripted faults: each applies to one token request, in the order scripted --

    def fail_next(
        self,
        times: int = 1,
        *,
        status: int = 503,
        json: object = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer ``status`` with ``json`` or ``body`` (default: an RFC 6749 error object)."""
        self._faults.add(_faults.failure(status, json=json, body=body, headers=headers), times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Answer normally, ``seconds`` late."""
        self._faults.add(_faults.delayed(seconds), times)

    def drop_next(self, times: int = 1) -> None:
        """Close the connection without answering."""
        self._faults.add(_faults.dropped(), times)

    def malformed_json_next(self, times: int = 1) -> None:
        """Answer 200 with a JSON body cut short."""
        self._faults.add(_faults.malformed_json(), times)

    def html_next(self, times: int = 1, status: int = 200) -> None:
        """Answer an HTML page, as a login page or a proxy would."""
        self._faults.add(_faults.html_page(status), times)

    def rate_limit_next(self, times: int = 1, retry_after: int = 1) -> None:
        """Answer Auth0's 429, with ``Retry-After`` and ``x-ratelimit-*`` headers."""
        self._faults.add(_faults.rate_limited(retry_after), times)

    # -- serving -------------------------------------------------------------------------

    def _bound(self) -> None:
        self._authority = TokenAuthority(
            issuer=self.issuer,
            token_url=self.token_url,
            key=self._key,
            clients=self._clients,
            default_audience=self.default_audience,
            on_issue=self._record_issued,
        )

    def handle(self, request: Request) -> Response | None:
        if request.path == TOKEN_PATH:
            return self._token_endpoint(request)
        if request.path in DISCOVERY_PATHS or request.path == JWKS_PATH:
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed("GET")
            document = self.jwks if request.path == JWKS_PATH else self.metadata
            return Response.json(document)
        return Response.json({"error": "not_found", "error_description": "no such endpoint"}, 404)

    def _token_endpoint(self, request: Request) -> Response | None:
        with self._lock:
            self._token_requests += 1
        fault = self._faults.next()
        if fault is not None:
            self._sleep(fault.delay)
            if fault.drop:
                return None
            if fault.respond is not None:
                return fault.respond()
        if request.method != "POST":
            return _method_not_allowed("POST")
        assert self._authority is not None  # set before the first request is served
        return self._authority.token_response(request)

    def _record_issued(self, access_token: str) -> None:
        with self._lock:
            self._tokens_issued += 1
            self._live.add(_digest(access_token))


def _digest(access_token: str) -> bytes:
    """What the server keeps of a token: enough to recognise it, not to use it."""
    return hashlib.sha256(access_token.encode()).digest()


def _method_not_allowed(allowed: str) -> Response:
    payload = {"error": "invalid_request", "error_description": f"use {allowed}"}
    return Response.json(payload, 405, [("Allow", allowed)])
