"""``ProtectedAPI``: a resource server on loopback that accepts one issuer's valid tokens."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import (
    MissingAuthorizationError,
    OAuth2Error,
    ResourceProtector,
    UnsupportedTokenTypeError,
)
from authlib.oauth2.rfc6750 import InvalidTokenError
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from joserfc.jwk import KeySet

from . import _dpop
from ._authorization_server import AuthorizationServer
from ._clients import printable
from ._http import Headers, LoopbackServer, Request, Response
from ._pki import thumbprint

REDIRECT_PATH = "/redirect"
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class ProtectedAPI(_dpop.DPoPControls, LoopbackServer):
    """An API on 127.0.0.1 guarded by RFC 9068 access tokens from ``server``.

    Any method on any path answers 200 with JSON describing the request and
    its token (``path``, ``method``, ``client_id``, ``scope``, ``org_id``,
    ``body_length``) when the bearer token is valid: signed by ``server``'s
    key, issued by it, for ``audience`` (default: the server's default
    audience), not expired, not revoked. Otherwise it answers 401 with
    ``WWW-Authenticate: Bearer realm="<audience>", error="invalid_token"``, or
    the bare ``Bearer realm=...`` challenge when no bearer token was sent
    (RFC 6750 section 3.1).

    ``/redirect?to=URL`` answers 302 (or ``&status=307`` and friends) to
    ``URL`` without looking at the token, for tests of redirects to another
    origin. The server must be running before the API is created.

    A token bound to a client certificate (RFC 8705: its ``cnf`` claim holds an
    ``x5t#S256``) is accepted only from a client presenting that certificate,
    which takes ``tls=True``: the API then serves HTTPS with a certificate from
    the server's CA and asks clients for theirs (optionally: unbound tokens
    need none). It needs ``AuthorizationServer(tls=True)``.

    DPoP (RFC 9449 section 7): a token bound to a key (``cnf.jkt``) is accepted
    only as ``Authorization: DPoP <token>`` with a proof made by that key for
    this request (``htm``, ``htu``, ``iat``, ``ath`` of the token, a fresh
    ``jti``; algorithms those of the server). A bound token sent as
    ``Bearer`` is refused (``dpop_bound_as_bearer`` counts them), as is an
    unbound token sent as ``DPoP``. Refusals of DPoP requests are 401 with
    ``WWW-Authenticate: DPoP error="invalid_token"`` (the token) or
    ``error="invalid_dpop_proof"`` (the proof), and ``algs``. With
    ``require_dpop_nonce=True`` proofs must also carry the API's own nonce
    (rotated like the server's, see :class:`AuthorizationServer`): one without
    gets 401 ``WWW-Authenticate: DPoP error="use_dpop_nonce"``, and every
    answer carries the current nonce in ``DPoP-Nonce``. The token is checked
    before the proof, so an expired token is told as such, nonce or not.
    Answers to DPoP requests also name the ``token_type`` and the ``dpop_jkt``.
    """

    def __init__(
        self,
        server: AuthorizationServer,
        audience: str | None = None,
        *,
        port: int = 0,
        tls: bool = False,
        require_dpop_nonce: bool = False,
        dpop_nonce_lifetime: float = _dpop.NONCE_LIFETIME,
    ) -> None:
        super().__init__(port, tls=server._mutual_tls_context() if tls else None)
        self.audience = server.default_audience if audience is None else audience
        if not isinstance(self.audience, str) or not self.audience:
            raise ValueError("audience must be a non-empty string")
        # As creating an API on Auth0 does: the server now issues tokens for it.
        server.add_audience(self.audience)
        self._realm = printable(self.audience)
        self._validator = AccessTokenValidator(
            issuer=server.issuer,
            audience=self.audience,
            keys=KeySet.import_key_set(server.jwks),
            is_revoked=server.is_revoked,
            realm=self._realm,
        )
        self._protector = ResourceProtector()
        self._protector.register_token_validator(self._validator)
        self._dpop = _dpop.ProofVerifier(
            server.dpop_signing_algorithms,
            nonces=_dpop.Nonces(dpop_nonce_lifetime) if require_dpop_nonce else None,
        )
        self._dpop_counters = _dpop.DPoPCounters()
        self._lock = threading.Lock()
        self._requests = 0
        self._unauthorized = 0
        self._last_authorization: str | None = None

    @property
    def requests(self) -> int:
        """Requests received, answered or not."""
        with self._lock:
            return self._requests

    @property
    def unauthorized(self) -> int:
        """401 answers sent."""
        with self._lock:
            return self._unauthorized

    @property
    def last_authorization(self) -> str | None:
        """The ``Authorization`` header of the latest request (``None``: it had none).

        It holds a token: for assertions in tests, never for printing.
        """
        with self._lock:
            return self._last_authorization

    @property
    def dpop_bound_as_bearer(self) -> int:
        """DPoP-bound tokens refused because they came as ``Bearer`` tokens."""
        return self._dpop_counters["bound_as_bearer"]

    def reset(self) -> None:
        """Counters (the ``dpop_*`` ones too) to zero, ``last_authorization`` and
        ``last_dpop_proof`` forgotten; spent proof ``jti`` values stay spent."""
        self._dpop_counters.reset()
        with self._lock:
            self._requests = self._unauthorized = 0
            self._last_authorization = None

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            self._last_authorization = request.headers.get("Authorization")
        if request.path == REDIRECT_PATH:
            return _redirect(request)
        response = self._answer_to(request)
        if response.status == 401:
            with self._lock:
                self._unauthorized += 1
        nonce = self.dpop_nonce
        if nonce is None:
            return response
        return Response(response.status, response.body, [*response.headers, ("DPoP-Nonce", nonce)])

    def _answer_to(self, request: Request) -> Response:
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "dpop":
            return self._dpop_request(request, token.strip())
        try:
            claims = self._protector.validate_request(None, request)
        except OAuth2Error as error:
            return self._refusal(error)
        if _bound_key(claims) is not None:
            self._dpop_counters.count("bound_as_bearer")
            bearer = (
                f'Bearer realm="{self._realm}", error="invalid_token", '
                'error_description="The token is DPoP-bound: send it with the DPoP scheme"'
            )
            return self._dpop_challenge(
                "invalid_token", "The token is DPoP-bound: send it with the DPoP scheme", bearer
            )
        return Response.json(_description(request, claims))

    def _dpop_request(self, request: Request, token: str) -> Response:
        """RFC 9449 section 7.1: the token first (a stale one is told as such), then
        the proof, which must be by the token's key."""
        try:
            claims = self._validator.authenticate_token(token)
            self._validator.validate_token(claims, None, request)
        except OAuth2Error as error:
            description = error.get_error_description() or "The access token is not valid"
            return self._dpop_challenge("invalid_token", description)
        bound_key = _bound_key(claims)
        if bound_key is None:
            return self._dpop_challenge("invalid_token", "The token is not DPoP-bound")
        try:
            proof = self._dpop.verify(
                request.headers.get_all("DPoP") or [],
                method=request.method,
                url=self.url[:-1] + request.target.partition("?")[0].partition("#")[0],
                access_token=token,
                bound_to=bound_key,
            )
        except _dpop.ProofError as refusal:
            self._dpop_counters.refused(refusal)
            return self._dpop_challenge(refusal.error, str(refusal))
        self._dpop_counters.accepted(proof)
        answer = {**_description(request, claims), "token_type": "DPoP", "dpop_jkt": bound_key}
        return Response.json(answer)

    def _dpop_challenge(self, error: str, description: str, *also: str) -> Response:
        """401 with ``WWW-Authenticate: DPoP`` naming the error and the algorithms
        accepted (RFC 9449 section 7.1), after the challenges in ``also``."""
        algs = " ".join(self._dpop.algorithms)
        challenge = (
            f'DPoP realm="{self._realm}", error="{error}", '
            f'error_description="{printable(description)}", algs="{algs}"'
        )
        headers: Headers = [*(("WWW-Authenticate", value) for value in also)]
        payload = {"error": error, "error_description": printable(description)}
        return Response.json(payload, 401, [*headers, ("WWW-Authenticate", challenge)])

    def _refusal(self, error: OAuth2Error) -> Response:
        if isinstance(error, (MissingAuthorizationError, UnsupportedTokenTypeError)):
            # No bearer token at all: RFC 6750 section 3.1 wants no error code.
            return Response(401, b"", [("WWW-Authenticate", f'Bearer realm="{self._realm}"')])
        status, body, headers = error()
        return Response.json(body, status, [(k, v) for k, v in headers if k != "Content-Type"])


class AccessTokenValidator(JWTBearerTokenValidator):  # type: ignore[misc]
    """Authlib's RFC 9068 validator (signature, ``typ``, ``iss``, ``aud``, ``exp``...)
    with fixed keys, and the server's revocations on top."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        keys: KeySet,
        is_revoked: Callable[[str], bool],
        realm: str,
    ) -> None:
        super().__init__(issuer, audience, realm=realm)
        self._keys = keys
        self._is_revoked = is_revoked

    def get_jwks(self) -> KeySet:
        return self._keys

    def authenticate_token(self, token_string: str) -> Any:
        claims = super().authenticate_token(token_string)
        if self._is_revoked(token_string):
            raise InvalidTokenError(realm=self.realm, extra_attributes=self.extra_attributes)
        return claims

    def validate_token(
        self, token: Any, scopes: Any, request: Request, *args: Any, **kwargs: Any
    ) -> None:
        """Authlib's checks, and RFC 8705's: a bound token comes with its certificate."""
        super().validate_token(token, scopes, request, *args, **kwargs)
        confirmation = token.get("cnf")
        bound = confirmation.get("x5t#S256") if isinstance(confirmation, dict) else None
        if bound is None:
            return
        presented = request.client_certificate
        if presented is None or thumbprint(presented) != bound:
            raise InvalidTokenError(
                "The token is bound to a client certificate that was not presented",
                realm=self.realm,
                extra_attributes=self.extra_attributes,
            )


def _description(request: Request, claims: Any) -> dict[str, Any]:
    """What a successful answer tells of the request and its token."""
    return {
        "path": request.path,
        "method": request.method,
        "client_id": claims.get("client_id"),
        "scope": claims.get("scope"),
        "org_id": claims.get("org_id"),
        "body_length": len(request.body),
    }


def _bound_key(claims: Any) -> str | None:
    """The thumbprint of the DPoP key a token is bound to (``cnf.jkt``), if any."""
    confirmation = claims.get("cnf")
    jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
    return jkt if isinstance(jkt, str) else None


def _redirect(request: Request) -> Response:
    query = request.query
    status = int(query["status"]) if query.get("status", "").isdigit() else 302
    if "to" not in query or status not in _REDIRECT_STATUSES:
        payload = {"error": "invalid_request", "error_description": "use /redirect?to=URL"}
        return Response.json(payload, 400)
    return Response(status, b"", [("Location", query["to"])])
