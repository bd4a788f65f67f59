"""The token endpoint, built on Authlib's authorization server.

Authlib does the OAuth work: client authentication (``client_secret_basic`` and
``client_secret_post``; RFC 7523's ``private_key_jwt`` and ``client_secret_jwt``
and RFC 8705's mutual TLS through :mod:`._client_auth`), the client-credentials
grant, scope checks, the token response and RFC 6749 error answers. This module
plugs it into plain :class:`~._http.Request` values, the client registry and
Auth0's ways: JSON bodies, ``audience`` (or RFC 8707 ``resource``) and
``organization``, token quotas, and Auth0's status codes for refusals. Tokens
asked for over mutual TLS are bound to the client's certificate (RFC 8705
section 3: a ``cnf`` claim with its ``x5t#S256``). A request with a DPoP proof
(RFC 9449) that passes :mod:`._dpop`'s checks gets a token bound to the proof's
key (``cnf.jkt``, ``token_type: DPoP``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from authlib.oauth2.rfc6749 import (
    AccessDeniedError,
    AuthorizationServer,
    ClientCredentialsGrant,
    ClientMixin,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from joserfc import jwt
from joserfc.jwk import RSAKey

from . import _client_auth, _dpop
from ._clients import (
    ALL_METHODS,
    GRANT_TYPE,
    SECRET_METHODS,
    ClientRegistry,
    RegisteredClient,
    printable,
)
from ._http import Headers, Request, Response
from ._pki import CertificateAuthority, thumbprint
from ._quota import QuotaBook, QuotaExceeded

#: The methods of a client registered with a secret only (the name predates the others).
AUTH_METHODS = SECRET_METHODS
ALGORITHM = "RS256"

#: Auth0 answers these errors with these statuses; Authlib's defaults differ
#: (400 for an unknown client sent in the body, 400 for a grant not allowed).
_STATUS = {"invalid_client": 401, "unauthorized_client": 403, "access_denied": 403}
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


class TokenAuthority(AuthorizationServer):  # type: ignore[misc]
    """Authlib's authorization server for one issuer, answering :class:`Request` values.

    ``knows_audience`` says whether tokens may be issued for an audience (Auth0
    refuses the identifier of an API the tenant lacks; ``None``: any audience).
    ``on_issue`` is told every access token issued and its ``expires_in`` (to
    count, revoke and expire them),
    ``on_assertion`` the header and claims of every client assertion accepted.
    Client assertions may name any of ``assertion_audiences`` as their ``aud``;
    ``ca`` issues the certificates of ``tls_client_auth`` clients, and
    ``mtls_token_url`` is where those send their requests. ``quotas`` counts
    tokens per client and organization (``None``: no quotas). ``dpop`` checks
    DPoP proofs (its nonces, if any, are demanded in every proof) and
    ``dpop_counters`` counts what became of them.
    """

    def __init__(
        self,
        *,
        issuer: str,
        token_url: str,
        key: RSAKey,
        clients: ClientRegistry,
        default_audience: str,
        on_issue: Callable[[str, float], None],
        knows_audience: Callable[[str], bool] | None = None,
        assertion_audiences: Sequence[str] = (),
        on_assertion: Callable[[dict[str, Any], dict[str, Any]], None] | None = None,
        ca: CertificateAuthority | None = None,
        mtls_token_url: str | None = None,
        quotas: QuotaBook | None = None,
        dpop: _dpop.ProofVerifier | None = None,
        dpop_counters: _dpop.DPoPCounters | None = None,
    ) -> None:
        super().__init__()
        self.dpop = dpop or _dpop.ProofVerifier()
        self.dpop_counters = dpop_counters or _dpop.DPoPCounters()
        self.issuer = issuer
        self.token_url = token_url
        self.mtls_token_url = mtls_token_url
        self.key = key
        self.default_audience = default_audience
        self.knows_audience = knows_audience or (lambda audience: True)
        self.quotas = quotas
        self._clients = clients
        self._on_issue = on_issue
        self.register_grant(ClientCredentials)
        audiences = list(assertion_audiences) or [token_url, issuer]
        replays = _client_auth.ReplayCache()
        for assertion_method in (_client_auth.ClientSecretJWTAuth, _client_auth.PrivateKeyJWTAuth):
            self.register_client_auth_method(
                assertion_method.CLIENT_AUTH_METHOD,
                assertion_method(
                    audiences=lambda: audiences,
                    replays=replays,
                    on_verified=on_assertion or (lambda header, claims: None),
                ),
            )
        for tls_method in ("tls_client_auth", "self_signed_tls_client_auth"):
            self.register_client_auth_method(
                tls_method, _client_auth.MutualTLSAuth(tls_method, ca, lambda: mtls_token_url)
            )

    def token_response(self, request: Request, *, url: str | None = None) -> Response:
        """Answer a POST to the token endpoint (at ``url``: the token URL unless given)."""
        try:
            params = read_token_parameters(request)
        except OAuth2Error as error:
            return self.handle_error_response(None, error)
        response: Response = self.create_token_response(
            TokenRequest(request, url or self.token_url, params)
        )
        return response

    def dpop_nonce(self) -> str | None:
        """The nonce proofs must carry now, when the server demands one."""
        nonces = self.dpop.nonces
        return None if nonces is None else nonces.current()

    # -- what Authlib asks of an integration -------------------------------------------

    def query_client(self, client_id: str) -> ClientModel | None:
        registered = self._clients.get(client_id)
        return None if registered is None else ClientModel(registered)

    def save_token(self, token: dict[str, Any], request: TokenRequest) -> None:
        self._on_issue(token["access_token"], float(token["expires_in"]))

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        """Nothing listens to Authlib's signals here."""

    def create_oauth2_request(self, request: TokenRequest) -> TokenRequest:
        """:meth:`token_response` has built it: Authlib calls this outside its error
        handling, so the body is read (and refused if malformed) beforehand."""
        return request

    def handle_response(
        self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]
    ) -> Response:
        return Response(status, json.dumps(body).encode(), headers)

    def handle_error_response(self, request: TokenRequest | None, error: OAuth2Error) -> Response:
        """Authlib's error answer, in Auth0's status codes, always with a description.

        ``WWW-Authenticate: Basic`` is kept only for a client that tried HTTP
        Basic (RFC 6749 section 5.2); Authlib adds it to every 401.
        """
        error.status_code = _STATUS.get(error.error, error.status_code)
        status, body, headers = error(self.get_error_uri(request, error))
        if "error_description" not in body and error.get_error_description():
            body["error_description"] = error.get_error_description()
        if not _tried_basic(request):
            headers = [(name, value) for name, value in headers if name != "WWW-Authenticate"]
        return self.handle_response(status, body, headers)


class TokenRequest(OAuth2Request):  # type: ignore[misc]
    """A token request as Authlib reads it: ``form`` holds the parameters of a form
    or a JSON body alike, which is how a ``client_secret`` sent in JSON (as Auth0
    accepts) reaches Authlib's ``client_secret_post`` check. ``client_certificate``
    is the DER certificate presented on a mutual-TLS connection."""

    def __init__(self, request: Request, url: str, parameters: dict[str, str]) -> None:
        super().__init__(request.method, url, headers=request.headers)
        self.payload = BasicOAuth2Payload(parameters)
        self._parameters = parameters
        self.client_certificate = request.client_certificate

    @property
    def form(self) -> dict[str, str]:
        return self._parameters


class ClientModel(ClientMixin):  # type: ignore[misc]
    """A registered client, as Authlib's grants and client authentication see it."""

    def __init__(self, registered: RegisteredClient) -> None:
        self.registered = registered

    def __repr__(self) -> str:  # Authlib logs clients at debug level
        return f"<client {self.registered.client_id!r}>"

    def get_client_id(self) -> str:
        return self.registered.client_id

    def check_client_secret(self, client_secret: str) -> bool:
        return self.registered.check_secret(client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in self.registered.auth_methods

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.registered.grant_types

    def get_allowed_scope(self, scope: str | None) -> str | None:
        return self.registered.granted_scope(scope)


class ClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    """Authlib's client-credentials grant, plus Auth0's audience and organization."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = list(ALL_METHODS)
    server: TokenAuthority
    request: TokenRequest
    client: ClientModel
    audience: str  # the token's ``aud``, once the request is validated
    organization: str | None  # its ``org_id``
    proof: _dpop.Proof | None  # the DPoP proof the token is bound to

    def validate_token_request(self) -> None:
        super().validate_token_request()
        parameters = self.request.payload.data
        registered = self.client.registered
        self.audience = _audience(parameters, self.server.default_audience)
        if not self.server.knows_audience(self.audience):
            # Auth0's words for an identifier no API of the tenant has.
            raise AccessDeniedError(
                f"Service not enabled within domain: {printable(self.audience)}",
                status_code=403,
            )
        if not registered.allows_audience(self.audience):
            raise AccessDeniedError(
                f"Client '{printable(registered.client_id)}' is not authorized to access "
                f"resource server '{printable(self.audience)}'",
                status_code=403,
            )
        self.organization = parameters.get("organization")
        if self.organization is not None and not registered.allows_organization(self.organization):
            raise AccessDeniedError(
                f"Client '{printable(registered.client_id)}' is not allowed to access "
                f"organization '{printable(self.organization)}'",
                status_code=403,
            )
        self.proof = self._dpop_proof()

    def _dpop_proof(self) -> _dpop.Proof | None:
        """The request's DPoP proof, checked, or ``None`` when it has none (which
        only a ``dpop_bound`` client may not do). Checked after the client is
        authenticated, as node oidc-provider does: a nonce challenge costs the
        client a new assertion, never a token from its quota."""
        values = self.request.headers.get_all("DPoP") or []
        counters = self.server.dpop_counters
        try:
            if not values:
                if not self.client.registered.dpop_bound:
                    return None
                raise _dpop.ProofError("This client must send a DPoP proof")
            proof = self.server.dpop.verify(
                values, method=self.request.method, url=self.request.uri
            )
        except _dpop.ProofError as refusal:
            counters.refused(refusal)
            raise DPoPProofError(refusal, self.server.dpop_nonce()) from None
        counters.accepted(proof)
        return proof

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        """Authlib's version without its debug log line, which holds the whole token;
        with the quota counted (and its headers), and the token bound to the client's
        certificate when one was presented."""
        quota_headers: Headers = []
        if self.server.quotas is not None:
            try:
                quota_headers = self.server.quotas.charge(
                    self.client.get_client_id(), self.organization
                )
            except QuotaExceeded as exceeded:
                raise TooManyRequestsError(exceeded.headers) from None
        generator = AccessTokenGenerator(
            self.server.issuer,
            self.server.key,
            audience=self.audience,
            organization=self.organization,
            confirmation=self._confirmation(),
        )
        token: dict[str, Any] = generator.generate(
            GRANT_TYPE,
            self.client,
            scope=self.request.payload.scope,
            include_refresh_token=False,
        )
        if self.proof is not None:
            token["token_type"] = "DPoP"  # noqa: S105  (a token type, not a password)
        self.save_token(token)
        nonce = self.server.dpop_nonce()
        nonce_headers = [] if nonce is None else [("DPoP-Nonce", nonce)]
        return 200, token, [*self.TOKEN_RESPONSE_HEADER, *quota_headers, *nonce_headers]

    def _confirmation(self) -> dict[str, str]:
        """The token's ``cnf``: the client certificate's ``x5t#S256`` (RFC 8705) and
        the DPoP key's ``jkt`` (RFC 9449 section 6), those there are."""
        certificate = self.request.client_certificate
        confirmation = {}
        if certificate is not None:
            confirmation["x5t#S256"] = thumbprint(certificate)
        if self.proof is not None:
            confirmation["jkt"] = self.proof.thumbprint
        return confirmation


class TooManyRequestsError(OAuth2Error):  # type: ignore[misc]
    """Auth0's answer once a token quota is used up."""

    error = "too_many_requests"
    status_code = 429

    def __init__(self, headers: Headers) -> None:
        super().__init__("Too many requests: the token quota is used up, see the quota headers")
        self._extra_headers = list(headers)

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return [*headers, *self._extra_headers]


class DPoPProofError(OAuth2Error):  # type: ignore[misc]
    """A DPoP proof refused at the token endpoint: 400 ``invalid_dpop_proof``, or
    ``use_dpop_nonce`` with the nonce to use in ``DPoP-Nonce`` (RFC 9449 8)."""

    status_code = 400

    def __init__(self, refusal: _dpop.ProofError, nonce: str | None) -> None:
        super().__init__(str(refusal))
        self.error = refusal.error
        self._nonce = nonce

    def get_headers(self) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = super().get_headers()
        return headers if self._nonce is None else [*headers, ("DPoP-Nonce", self._nonce)]


class AccessTokenGenerator(JWTBearerTokenGenerator):  # type: ignore[misc]
    """Authlib's RFC 9068 token generator, bound to one token request.

    Authlib builds the token response and enforces the client's scope; the JWT
    itself is written here, because Authlib's own ``access_token_generator``
    takes ``aud`` from the client id (RFC 8707 is a to-do there), writes an
    empty ``scope``, sets no ``kid``, and dates the token from the start of the
    current second, so that a token of a few seconds could expire up to a
    second before the ``expires_in`` it was announced with.

    The times, then: ``iat`` is the issue instant rounded down (never in the
    future, even for a validator that truncates its own clock); ``exp`` is the
    issue instant plus the lifetime, rounded up, so the token is valid at least
    as long as its lifetime and at most a second longer; ``expires_in`` is the
    lifetime rounded down. A client that trusts ``expires_in`` never holds a
    token the API has started to refuse.

    ``confirmation`` (a certificate's ``x5t#S256``, a DPoP key's ``jkt``) binds
    the token to them: the ``cnf`` claim of RFC 8705 and RFC 9449.
    """

    def __init__(
        self,
        issuer: str,
        key: RSAKey,
        *,
        audience: str,
        organization: str | None,
        confirmation: dict[str, str] | None = None,
    ) -> None:
        super().__init__(issuer, alg=ALGORITHM, expires_generator=_expires_in)
        self._key = key
        self._audience = audience
        self._organization = organization
        self._confirmation = confirmation

    def get_jwks(self) -> RSAKey:
        return self._key

    def access_token_generator(
        self, client: ClientModel, grant_type: str, user: object, scope: str
    ) -> str:
        issued = time.time()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": client.get_client_id(),
            "aud": self._audience,
            "iat": math.floor(issued),
            "exp": math.ceil(issued + client.registered.token_lifetime),
            "jti": self.get_jti(client, grant_type, user, scope),
            "client_id": client.get_client_id(),
        }
        if scope:
            claims["scope"] = scope
        if self._organization is not None:
            claims["org_id"] = self._organization
        if self._confirmation:
            claims["cnf"] = dict(self._confirmation)
        key = self.get_jwks()
        header = {"alg": self.alg, "typ": "at+jwt", "kid": key.kid}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])


def read_token_parameters(request: Request) -> dict[str, str]:
    """The parameters of a token request, from a form body or (as on Auth0) a JSON one.

    Parameters without a value count as absent and none may be repeated (RFC
    6749 sections 3.1 and 3.2); ``grant_type`` is required.
    """
    media_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    try:
        if media_type == _FORM:
            pairs = parse_qsl(request.body.decode(), keep_blank_values=True)
        elif media_type == _JSON:
            pairs = _json_pairs(request.body)
        else:
            raise InvalidRequestError(f"Content-Type must be {_FORM} or {_JSON}")
    except UnicodeDecodeError:
        raise InvalidRequestError("The request body is not UTF-8") from None
    parameters: dict[str, str] = {}
    for name, value in pairs:
        if not value:
            continue
        if name in parameters:
            raise InvalidRequestError(f"Parameter '{printable(name)}' is repeated")
        parameters[name] = value
    if "grant_type" not in parameters:
        raise InvalidRequestError("Missing 'grant_type' parameter")
    return parameters


def _json_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        document = json.loads(body)
    except ValueError:
        raise InvalidRequestError("The request body is not valid JSON") from None
    if not isinstance(document, dict) or not all(isinstance(v, str) for v in document.values()):
        raise InvalidRequestError("A JSON request body must be an object of strings")
    return list(document.items())


def _audience(parameters: dict[str, str], default: str) -> str:
    """Auth0's ``audience`` or RFC 8707's ``resource``; the server's default if neither."""
    audience, resource = parameters.get("audience"), parameters.get("resource")
    if audience and resource and audience != resource:
        raise InvalidRequestError("'audience' and 'resource' name different APIs")
    return audience or resource or default


def _expires_in(client: ClientModel, grant_type: str) -> int:
    return math.floor(client.registered.token_lifetime)


def _tried_basic(request: TokenRequest | None) -> bool:
    authorization = "" if request is None else request.headers.get("Authorization") or ""
    return authorization[:6].lower() == "basic "
