"""``AuthorizationServer``: a real OAuth2 token endpoint on loopback, with controls for tests."""

from __future__ import annotations

import hashlib
import os
import random
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from cryptography import x509
from joserfc.jwk import KeySet, KeySetSerialization, RSAKey

from . import _dpop, _faults
from ._client_auth import (
    PRIVATE_KEY_ALGORITHMS,
    SECRET_ALGORITHMS,
    PublicKeyLike,
    public_key_set,
)
from ._clients import (
    ALL_METHODS,
    GRANT_TYPE,
    SECRET_METHODS,
    TLS_METHODS,
    ClientRegistry,
    RegisteredClient,
    check_lifetime,
)
from ._http import Handler, LoopbackServer, Request, Response
from ._oauth import ALGORITHM, TokenAuthority
from ._pki import ClientCertificate, load_certificate, thumbprint
from ._quota import PERIODS, Quota, QuotaBook
from ._tls import ServerTLS

TOKEN_PATH = "/oauth/token"  # noqa: S105  (a path, not a password)
JWKS_PATH = "/.well-known/jwks.json"
#: Both discovery documents hold the same RFC 8414 metadata: clients built for
#: OpenID Connect providers (Auth0 among them) look at the first.
DISCOVERY_PATHS = ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server")

_Server = TypeVar("_Server", bound="AuthorizationServer")
CertificateLike = str | bytes | os.PathLike[str] | ClientCertificate


class AuthorizationServer(_dpop.DPoPControls, LoopbackServer):
    """A real OAuth2 authorization server on 127.0.0.1, for tests and demos.

    It issues RS256-signed RFC 9068 JWT access tokens for the client-credentials
    grant the way Auth0 does (``audience``, ``organization``, form or JSON
    bodies, token quotas), publishes its keys and metadata, and lets a test
    script failures, count requests and revoke tokens. A default client,
    :attr:`client`, is registered up front.

    Clients authenticate with every method RFC 7591 names for a token endpoint:
    ``client_secret_post`` and ``client_secret_basic`` (the default),
    ``client_secret_jwt`` and ``private_key_jwt`` (RFC 7523 assertions, checked
    as strictly as Auth0 does), and, with ``tls=True``, ``tls_client_auth`` and
    ``self_signed_tls_client_auth`` (RFC 8705): see :meth:`register_client`.

    ``token_lifetime`` (seconds, at least 1, fractions allowed) applies to
    clients registered without one of their own. Tokens requested with neither
    ``audience`` nor ``resource`` are issued for ``default_audience``, which is
    the issuer unless given.

    Like an Auth0 tenant, the server issues tokens only for the APIs it knows
    (see :attr:`audiences`): the default audience, every :class:`ProtectedAPI`
    built on it, those named in ``audiences`` or :meth:`add_audience`, and
    those clients are registered with. Any other ``audience`` (or
    ``resource``) is refused as Auth0 refuses it, 403 ``access_denied``
    "Service not enabled within domain", so a typo shows up at the token
    endpoint rather than as the API's 401.

    ``tls=True`` serves HTTPS with a certificate from a CA made for this
    server (:attr:`ca_bundle` is the file to trust), and a second HTTPS
    listener, :attr:`mtls_token_url` on ``mtls_port``, that asks clients for a
    certificate: the RFC 8705 ``mtls_endpoint_aliases`` token endpoint. Tokens
    obtained there with a client certificate are bound to it (``cnf``).

    ``expiry_skew`` (seconds, default 0) makes tokens die early, as they do on
    real servers: one that floors ``iat`` to whole seconds (node oidc-provider,
    Glewlwyd) or whose clock runs ahead of the client's refuses a token up to a
    second before the ``expires_in`` it announced. With ``expiry_skew=1.0``
    :class:`ProtectedAPI` refuses each token from a random instant within the
    last second before its announced end (now + ``expires_in`` at issue); the
    JWT's ``exp`` does not tell, so clients meet the 401s that users meet.

    ``client_quota`` and ``organization_quota`` set Auth0's fine-grained token
    quotas for every client and organization (see :meth:`set_quota`).

    DPoP (RFC 9449): a token request with a ``DPoP`` proof gets a token bound
    to the proof's key (``cnf.jkt``) and ``token_type: DPoP``. Proofs are
    checked as RFC 9449 section 4.3 says (signature by the header's public
    ``jwk``, ``typ``, ``alg`` among ``dpop_signing_algorithms``, ``htm``,
    ``htu``, ``iat`` within a minute, ``jti`` never seen before) and refused
    with 400 ``invalid_dpop_proof``. With ``require_dpop_nonce=True`` a proof
    must carry the server's current nonce: one without gets 400
    ``use_dpop_nonce`` and the nonce in ``DPoP-Nonce``, which every successful
    answer carries too. Nonces change every ``dpop_nonce_lifetime`` seconds
    (the one before stays good until the next change) and at
    :meth:`rotate_dpop_nonce`. Clients registered with ``dpop_bound=True``
    must send a proof. The ``dpop_*`` counters tell what became of proofs.

    Start it with ``with`` (or :meth:`start` and :meth:`stop`); ``port=0`` picks
    a free port.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        token_lifetime: float = 3600.0,
        default_audience: str | None = None,
        audiences: Iterable[str] = (),
        tls: bool = False,
        mtls_port: int = 0,
        client_quota: Quota | None = None,
        organization_quota: Quota | None = None,
        expiry_skew: float = 0.0,
        require_dpop_nonce: bool = False,
        dpop_nonce_lifetime: float = _dpop.NONCE_LIFETIME,
        dpop_signing_algorithms: Iterable[str] = _dpop.ALGORITHMS,
    ) -> None:
        self._dpop = _dpop.ProofVerifier(
            dpop_signing_algorithms,
            nonces=_dpop.Nonces(dpop_nonce_lifetime) if require_dpop_nonce else None,
        )
        self._dpop_counters = _dpop.DPoPCounters()
        if not (isinstance(expiry_skew, (int, float)) and 0 <= expiry_skew < float("inf")):
            raise ValueError("expiry_skew must be a non-negative, finite number of seconds")
        self.expiry_skew = float(expiry_skew)
        self._early_ends: dict[bytes, float] = {}  # token digest -> when the API starts refusing
        self._skew_rng = random.Random()  # noqa: S311  (test timing, not cryptography)
        self._tls_setup = ServerTLS() if tls else None
        super().__init__(port, tls=None if self._tls_setup is None else self._tls_setup.context)
        self._mtls: _Listener | None = None
        if self._tls_setup is not None:
            self._mtls = _Listener(
                self._mtls_handle, port=mtls_port, tls=self._tls_setup.mutual_context
            )
        self._quotas = QuotaBook(client_quota, organization_quota)
        self._last_assertion: tuple[dict[str, Any], dict[str, Any]] | None = None
        self.token_lifetime = check_lifetime(token_lifetime)
        self._default_audience = default_audience
        self._known_audiences = set(_audience_names(audiences))
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

    # -- lifecycle -----------------------------------------------------------------------

    def start(self: _Server) -> _Server:
        """Bind the port(s) and serve in the background; a running server is left as is."""
        if self._mtls is not None and not self._stopping.is_set():
            self._mtls.start()  # first: the token endpoint's alias is known from the start
        try:
            return super().start()
        except BaseException:
            self.stop()  # the alias's port, and the certificate files, go too
            raise

    def stop(self) -> None:
        super().stop()
        if self._mtls is not None:
            self._mtls.stop()
        if self._tls_setup is not None:
            self._tls_setup.close()

    close = stop

    # -- where it lives ------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """``http://127.0.0.1:PORT/`` (``https://`` with TLS): the ``iss`` of its tokens,
        with Auth0's trailing slash."""
        return self.url

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH.lstrip("/")

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH.lstrip("/")

    @property
    def tls(self) -> bool:
        """Whether the server was made with ``tls=True``."""
        return self._tls_setup is not None

    @property
    def mtls_token_url(self) -> str:
        """The token endpoint that asks for a client certificate (RFC 8705's alias).

        The plain :attr:`token_url` never asks for one, so ``tls_client_auth``
        and ``self_signed_tls_client_auth`` only work here.
        """
        if self._mtls is None:
            raise RuntimeError("mutual TLS needs AuthorizationServer(tls=True)")
        return self._mtls.url + TOKEN_PATH.lstrip("/")

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file of the CA behind the server's certificate (``verify=`` it).

        The file lives as long as the server (until :meth:`stop`).
        """
        return self._tls_required().ca_bundle

    def ssl_context(self, certificate: ClientCertificate | None = None) -> ssl.SSLContext:
        """A client-side :class:`ssl.SSLContext` that trusts :attr:`ca_bundle` and presents
        ``certificate`` if given: for ``httpx.Client(verify=...)``, whose ``cert=``
        argument is deprecated."""
        return self._tls_required().client_context(certificate)

    def issue_client_certificate(self, subject_cn: str = "client") -> ClientCertificate:
        """A client certificate for ``CN=<subject_cn>`` signed by the server's CA.

        It is a ``(cert_path, key_path)`` tuple (``requests``' ``cert=``);
        ``subject_dn`` gives the ``tls_client_auth_subject_dn`` to register
        and ``thumbprint`` the ``x5t#S256`` a bound token carries.
        """
        return self._tls_required().issue_client_certificate(subject_cn)

    def make_self_signed_certificate(self, cn: str = "self-signed client") -> ClientCertificate:
        """A self-signed client certificate that the mutual-TLS listener lets through.

        Registered with a client (``certificate=``), it authenticates that
        client; presented for another client it is refused with
        ``invalid_client``. (A self-signed certificate the server never saw,
        such as :func:`bearer_m2m.testing.make_self_signed_certificate` makes,
        is refused in the TLS handshake instead: Python's :mod:`ssl` cannot
        accept unknown certificates.)
        """
        return self._tls_required().make_self_signed_certificate(cn)

    def _mutual_tls_context(self) -> ssl.SSLContext:
        """The server-side context of the mutual-TLS listener (for a :class:`ProtectedAPI`)."""
        return self._tls_required().mutual_context

    def _tls_required(self) -> ServerTLS:
        if self._tls_setup is None:
            raise RuntimeError("this needs AuthorizationServer(tls=True)")
        return self._tls_setup

    @property
    def default_audience(self) -> str:
        """The ``aud`` of tokens requested without ``audience`` or ``resource``."""
        return self._default_audience or self.issuer

    @property
    def audiences(self) -> frozenset[str]:
        """The audiences tokens may be asked for now: the default one and every one added.

        Asking for another is refused with 403 ``access_denied``, as Auth0 refuses
        the identifier of an API the tenant does not have.
        """
        with self._lock:
            known = set(self._known_audiences)
        return frozenset({self.default_audience, *known})

    def add_audience(self, audience: str) -> None:
        """Let clients ask for tokens for ``audience``, as creating an API on Auth0 does.

        Every :class:`ProtectedAPI` built on the server adds its own; add those of
        APIs served elsewhere (or give them as ``AuthorizationServer(audiences=...)``).
        Adding one twice is harmless.
        """
        (name,) = _audience_names([audience])
        with self._lock:
            self._known_audiences.add(name)

    def _knows_audience(self, audience: str) -> bool:
        with self._lock:
            if audience in self._known_audiences:
                return True
        return audience == self.default_audience

    @property
    def jwks(self) -> KeySetSerialization:
        """The public JWK Set served at :attr:`jwks_url`."""
        return KeySet([self._key]).as_dict(private=False)

    @property
    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 metadata served at both discovery paths.

        ``token_endpoint_auth_methods_supported`` lists the methods that some
        registered client may use: the secret ones at first, and the others
        once a client that uses them is registered. With TLS the metadata
        names the mutual-TLS alias of the token endpoint and says that tokens
        are bound to certificates.
        """
        methods = self._clients.auth_methods()
        document: dict[str, Any] = {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": self.jwks_url,
            "grant_types_supported": [GRANT_TYPE],
            "token_endpoint_auth_methods_supported": methods,
            # Required by RFC 8414; there is no authorization endpoint, so none.
            "response_types_supported": [],
        }
        algorithms = [
            *(PRIVATE_KEY_ALGORITHMS if "private_key_jwt" in methods else ()),
            *(SECRET_ALGORITHMS if "client_secret_jwt" in methods else ()),
        ]
        if algorithms:
            document["token_endpoint_auth_signing_alg_values_supported"] = algorithms
        document["dpop_signing_alg_values_supported"] = list(self._dpop.algorithms)
        if self._mtls is not None:
            document["tls_client_certificate_bound_access_tokens"] = True
            document["mtls_endpoint_aliases"] = {"token_endpoint": self.mtls_token_url}
        return document

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
        auth_methods: Iterable[str] | None = None,
        public_key: PublicKeyLike | None = None,
        tls_client_auth_subject_dn: str | None = None,
        certificate: CertificateLike | None = None,
        dpop_bound: bool = False,
    ) -> RegisteredClient:
        """Register a client; random credentials are made for those not given.

        ``audiences``, ``scopes`` and ``organizations`` restrict what the client
        may ask for (``None``: any audience the server knows, any scope or
        organization); the ``audiences`` named become known to the server, as
        an Auth0 client grant names an existing API. A restricted client that asks for no
        scope is given all of its scopes, as on Auth0. ``grant_types`` without
        ``"client_credentials"`` makes a client whose token requests are refused
        with ``unauthorized_client``.

        How the client authenticates:

        - ``public_key``: its key for ``private_key_jwt`` (a public JWK or JWK
          Set, PEM text or bytes, a PEM file's path, a joserfc or
          ``cryptography`` key; of a private key only the public half is kept).
          With several keys the assertion's ``kid`` picks one.
        - ``tls_client_auth_subject_dn``: the RFC 4514 subject (``"CN=svc"``)
          of its certificate, which must be issued by the server's CA
          (:meth:`issue_client_certificate`), for ``tls_client_auth``.
        - ``certificate``: its self-signed certificate (PEM text or bytes, a
          file's path, or a :class:`ClientCertificate`), matched by SHA-256
          thumbprint, for ``self_signed_tls_client_auth``.
        - ``auth_methods``: the methods it may use; by default those its
          credentials allow (``client_secret_post`` and ``client_secret_basic``
          for a client registered with none of the above). Any other method is
          refused with 401 ``invalid_client``. Every client has a secret, used
          by ``client_secret_*`` methods only.

        The mutual-TLS methods need ``tls=True``.

        ``dpop_bound=True`` makes a client whose token requests without a DPoP
        proof are refused (400 ``invalid_dpop_proof``), as RFC 9449's
        ``dpop_bound_access_tokens`` metadata asks.
        """
        jwks = None if public_key is None else public_key_set(public_key)
        subject_dn = _subject_dn(tls_client_auth_subject_dn)
        loaded: x509.Certificate | None = None
        if certificate is not None:
            try:
                loaded = load_certificate(certificate)
            except OSError as error:
                raise ValueError(f"certificate: cannot read it: {error.strerror}") from None
        methods = _auth_methods(
            auth_methods,
            private_key=jwks is not None,
            subject_dn=subject_dn is not None,
            certificate=loaded is not None,
        )
        if any(method in TLS_METHODS for method in methods) or loaded is not None:
            self._tls_required()  # refused before anything is registered
        client = self._clients.register(
            client_id,
            client_secret,
            token_lifetime=self.token_lifetime if token_lifetime is None else token_lifetime,
            audiences=audiences,
            scopes=scopes,
            grant_types=grant_types,
            organizations=organizations,
            auth_methods=methods,
            jwks=jwks,
            tls_client_auth_subject_dn=subject_dn,
            certificate_thumbprint=None if loaded is None else thumbprint(loaded),
            dpop_bound=dpop_bound,
        )
        if loaded is not None:
            self._tls_required().trust(loaded)
        for audience in client.audiences or ():
            self.add_audience(audience)
        return client

    # -- what happened ------------------------------------------------------------------

    @property
    def last_client_assertion(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The header and claims of the latest client assertion (``private_key_jwt`` or
        ``client_secret_jwt``) that authenticated a client; ``None`` before any."""
        with self._lock:
            return self._last_assertion

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
        """Counters to zero, scripted faults dropped, ``reject_all_tokens`` off, token
        quotas full again, ``last_client_assertion`` and ``last_dpop_proof`` forgotten.

        Clients stay registered, quota limits stay set, revoked tokens stay
        revoked, spent assertion and proof ``jti`` values stay spent and the
        DPoP nonce stays as it is.
        """
        self._faults.clear()
        self._dpop_counters.reset()
        self._quotas.clear_usage()
        with self._lock:
            self._token_requests = self._tokens_issued = 0
            self._reject_all = False
            self._last_assertion = None

    # -- Auth0's token quotas -------------------------------------------------------------

    def set_quota(
        self,
        client_id: str,
        *,
        per_hour: int | None = None,
        per_day: int | None = None,
        remaining_per_hour: int | None = None,
        remaining_per_day: int | None = None,
    ) -> None:
        """Set a client's token quota (overriding ``client_quota``) and what is left of it.

        A bucket given a new limit starts full unless ``remaining_*`` says
        otherwise; ``None`` leaves a value as it is. With ``remaining_per_hour=0``
        the next token request is answered 429 ``too_many_requests``.
        """
        self._set_quota(
            "client", client_id, per_hour, per_day, remaining_per_hour, remaining_per_day
        )

    def set_organization_quota(
        self,
        organization: str,
        *,
        per_hour: int | None = None,
        per_day: int | None = None,
        remaining_per_hour: int | None = None,
        remaining_per_day: int | None = None,
    ) -> None:
        """:meth:`set_quota` for the tokens asked for with ``organization``."""
        self._set_quota(
            "organization", organization, per_hour, per_day, remaining_per_hour, remaining_per_day
        )

    def _set_quota(
        self,
        kind: str,
        name: str,
        per_hour: int | None,
        per_day: int | None,
        remaining_per_hour: int | None,
        remaining_per_day: int | None,
    ) -> None:
        hour, day = PERIODS  # the bucket names
        limits = {hour: per_hour, day: per_day}
        self._quotas.set(
            kind,
            name,
            limits={bucket: value for bucket, value in limits.items() if value is not None},
            remaining={hour: remaining_per_hour, day: remaining_per_day},
        )

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
        """Whether an API should refuse ``access_token`` though it is otherwise valid:
        revoked, ``reject_all_tokens``, or past its early end (``expiry_skew``)."""
        digest = _digest(access_token)
        with self._lock:
            if self._reject_all or digest in self._revoked:
                return True
            early_end = self._early_ends.get(digest)
        return early_end is not None and time.time() >= early_end

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
        mtls_token_url = None if self._mtls is None else self.mtls_token_url
        self._authority = TokenAuthority(
            issuer=self.issuer,
            token_url=self.token_url,
            key=self._key,
            clients=self._clients,
            default_audience=self.default_audience,
            knows_audience=self._knows_audience,
            on_issue=self._record_issued,
            # RFC 7523 names the token endpoint; Auth0 wants its issuer (https://TENANT/).
            assertion_audiences=[
                self.token_url,
                self.issuer,
                *([] if mtls_token_url is None else [mtls_token_url]),
            ],
            on_assertion=self._record_assertion,
            ca=None if self._tls_setup is None else self._tls_setup.ca,
            mtls_token_url=mtls_token_url,
            quotas=self._quotas,
            dpop=self._dpop,
            dpop_counters=self._dpop_counters,
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

    def _mtls_handle(self, request: Request) -> Response | None:
        """The mutual-TLS listener serves the token endpoint alone."""
        if request.path == TOKEN_PATH:
            return self._token_endpoint(request, url=self.mtls_token_url)
        return Response.json(
            {"error": "not_found", "error_description": "only the token endpoint is here"}, 404
        )

    def _token_endpoint(self, request: Request, url: str | None = None) -> Response | None:
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
        return self._authority.token_response(request, url=url)

    def _record_assertion(self, header: dict[str, Any], claims: dict[str, Any]) -> None:
        with self._lock:
            self._last_assertion = (dict(header), dict(claims))

    def _record_issued(self, access_token: str, expires_in: float) -> None:
        digest = _digest(access_token)
        with self._lock:
            self._tokens_issued += 1
            self._live.add(digest)
            if self.expiry_skew:
                early = self._skew_rng.uniform(0.0, self.expiry_skew)
                self._early_ends[digest] = time.time() + expires_in - early


class _Listener(LoopbackServer):
    """Another port of a server: requests go to ``handler``."""

    def __init__(self, handler: Handler, *, port: int, tls: ssl.SSLContext) -> None:
        super().__init__(port, tls=tls)
        self._handler = handler

    def handle(self, request: Request) -> Response | None:
        return self._handler(request)


def _auth_methods(
    requested: Iterable[str] | None, *, private_key: bool, subject_dn: bool, certificate: bool
) -> tuple[str, ...]:
    """The client's methods: those asked for, checked against its credentials, or those
    its credentials allow."""
    if requested is None:
        methods = (
            *(("private_key_jwt",) if private_key else ()),
            *(("tls_client_auth",) if subject_dn else ()),
            *(("self_signed_tls_client_auth",) if certificate else ()),
        )
        return methods or SECRET_METHODS
    if isinstance(requested, str):
        raise TypeError("auth_methods must be a list of method names, not a string")
    methods = tuple(requested)
    if not methods or any(method not in ALL_METHODS for method in methods):
        raise ValueError(f"auth_methods must be some of {', '.join(ALL_METHODS)}")
    needs = {
        "private_key_jwt": (private_key, "public_key"),
        "tls_client_auth": (subject_dn, "tls_client_auth_subject_dn"),
        "self_signed_tls_client_auth": (certificate, "certificate"),
    }
    for method in methods:
        given, argument = needs.get(method, (True, ""))
        if not given:
            raise ValueError(f"{method} needs {argument}=")
    return methods


def _subject_dn(value: str | None) -> str | None:
    """An RFC 4514 distinguished name (``CN=svc,O=Example``), as ``cryptography`` writes it:
    certificates' subjects are compared with it attribute by attribute."""
    if value is None:
        return None
    try:
        return x509.Name.from_rfc4514_string(value).rfc4514_string()
    except (ValueError, TypeError, AttributeError):
        raise ValueError(
            "tls_client_auth_subject_dn must be an RFC 4514 name such as CN=svc"
        ) from None


def _audience_names(audiences: Iterable[str]) -> tuple[str, ...]:
    """API identifiers: non-empty strings without spaces; a lone string is refused rather
    than read as its letters."""
    if isinstance(audiences, str):
        raise TypeError("audiences must be a list of strings, not a string")
    names = tuple(audiences)
    for name in names:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise TypeError("an audience must be a non-empty string without spaces")
    return names


def _digest(access_token: str) -> bytes:
    """What the server keeps of a token: enough to recognise it, not to use it."""
    return hashlib.sha256(access_token.encode()).digest()


def _method_not_allowed(allowed: str) -> Response:
    payload = {"error": "invalid_request", "error_description": f"use {allowed}"}
    return Response.json(payload, 405, [("Allow", allowed)])
