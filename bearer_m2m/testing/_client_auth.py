"""Client authentication beyond secrets: RFC 7523 JWT assertions and RFC 8705 mutual TLS.

Each method is a function Authlib's :class:`~authlib.oauth2.rfc6749.AuthorizationServer`
calls through ``register_client_auth_method``: it returns the client the
request authenticates, ``None`` when the request does not use the method, or
raises ``invalid_client``.

- ``private_key_jwt`` and ``client_secret_jwt`` are Authlib's
  :class:`~authlib.oauth2.rfc7523.JWTBearerClientAssertion` with the checks
  Auth0 makes on top: ``iss`` = ``sub`` = the client, ``aud`` the token
  endpoint or the issuer, an ``exp`` in the future and at most five minutes
  after ``iat``, a ``jti`` never seen before, and only the algorithms of the
  method (asymmetric for one, HMAC for the other).
- ``tls_client_auth`` and ``self_signed_tls_client_auth`` read the certificate
  the client presented on the TLS connection: issued by the server's CA with
  the registered subject, or the very certificate registered (by SHA-256
  thumbprint).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeGuard

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, KeySet, KeySetSerialization, OctKey, OKPKey, RSAKey, import_key

from ._clients import RegisteredClient, printable
from ._pki import CertificateAuthority, thumbprint

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The signing algorithms accepted for each JWT method (and listed in the metadata).
PRIVATE_KEY_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "Ed25519",
)
SECRET_ALGORITHMS = ("HS256", "HS384", "HS512")
#: Auth0 refuses assertions valid for longer than five minutes.
MAX_ASSERTION_LIFETIME = 300
#: Seconds of clock difference tolerated on ``exp``, ``iat`` and ``nbf``.
CLOCK_SKEW = 5

PublicKeyLike = (
    Mapping[str, Any]
    | str
    | bytes
    | os.PathLike[str]
    | Key
    | KeySet
    | rsa.RSAPublicKey
    | rsa.RSAPrivateKey
    | ec.EllipticCurvePublicKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PublicKey
    | ed25519.Ed25519PrivateKey
)


class Client(Protocol):
    """What these methods need of Authlib's client model."""

    registered: RegisteredClient

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool: ...


class Request(Protocol):
    """What these methods need of the token request."""

    @property
    def form(self) -> dict[str, str]: ...

    @property
    def client_certificate(self) -> bytes | None: ...

    @property
    def headers(self) -> Any: ...


QueryClient = Callable[[str], Any]


# -- RFC 7523 -------------------------------------------------------------------------


class ReplayCache:
    """The ``jti`` of every assertion accepted, per client, until the assertion expires."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, client_id: str, jti: str, expires: float) -> bool:
        now = time.time()
        with self._lock:
            self._seen = {k: exp for k, exp in self._seen.items() if exp + CLOCK_SKEW >= now}
            if (client_id, jti) in self._seen:
                return False
            self._seen[(client_id, jti)] = expires
            return True


class ClientAssertion(JWTBearerClientAssertion):  # type: ignore[misc]
    """Authlib's RFC 7523 client authentication, for one method, with Auth0's strictness.

    ``audiences`` gives the ``aud`` values accepted; ``on_verified`` is told the
    header and claims of every assertion that authenticated a client.
    """

    CLIENT_AUTH_METHOD: ClassVar[str]
    ALGORITHMS: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        *,
        audiences: Callable[[], list[str]],
        replays: ReplayCache,
        on_verified: Callable[[dict[str, Any], dict[str, Any]], None],
    ) -> None:
        super().__init__(leeway=CLOCK_SKEW)
        self._audiences = audiences
        self._replays = replays
        self._on_verified = on_verified

    def __call__(self, query_client: QueryClient, request: Request) -> Any:
        data = request.form
        assertion = data.get("client_assertion")
        if data.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
            return None
        header, claims = self.extract_assertion(assertion)
        if not self._claims_alg(header.get("alg")):
            return None
        client_id = data.get("client_id")
        if client_id is not None and client_id != claims.get("sub"):
            raise InvalidClientError(description="'client_id' is not the assertion's 'sub'")
        client = query_client(claims["sub"]) if isinstance(claims.get("sub"), str) else None
        if client is not None and not client.check_endpoint_auth_method(
            self.CLIENT_AUTH_METHOD, "token"
        ):
            # Before the signature is checked or the jti spent: the method is not the client's.
            raise InvalidClientError(
                description=f"The client cannot authenticate with method: {self.CLIENT_AUTH_METHOD}"
            )
        authenticated = super().__call__(query_client, request)
        if authenticated is not None:
            self._on_verified(header, claims)
        return authenticated

    def _claims_alg(self, alg: object) -> bool:
        """Whether this method handles an assertion signed with ``alg``."""
        raise NotImplementedError

    def get_audiences(self) -> list[str]:
        return self._audiences()

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        """Authlib's, with this method's algorithms (joserfc's default leaves out PS256)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(self.ALGORITHMS))
        except (JoseError, ValueError) as error:
            raise InvalidClientError(description=_describe(error)) from None
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: dict[str, Any]) -> None:
        """Authlib's checks (``iss``, ``sub``, ``aud``, ``exp``, ``jti``), Auth0's bound on
        the lifetime first, so that a refused assertion does not spend its ``jti``."""
        exp, iat = claims.get("exp"), claims.get("iat")
        if _is_number(exp):
            start, allowance = (iat, 0) if _is_number(iat) else (time.time(), CLOCK_SKEW)
            if exp - start > MAX_ASSERTION_LIFETIME + allowance:
                raise InvalidClientError(
                    description=f"The assertion must expire at most {MAX_ASSERTION_LIFETIME} "
                    "seconds after it is issued"
                )
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise InvalidClientError(description="Invalid claim: 'jti'")
        super().verify_claims(claims)

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        return self._replays.first_use(claims["sub"], jti, float(claims["exp"]))


class PrivateKeyJWTAuth(ClientAssertion):
    """``private_key_jwt``: an assertion signed with a key whose public half is registered."""

    CLIENT_AUTH_METHOD = "private_key_jwt"
    ALGORITHMS = PRIVATE_KEY_ALGORITHMS

    def _claims_alg(self, alg: object) -> bool:
        if isinstance(alg, str) and alg in SECRET_ALGORITHMS:
            return False  # client_secret_jwt's
        if alg not in self.ALGORITHMS:
            raise InvalidClientError(
                description=f"Assertions signed with '{printable(str(alg))}' are not accepted"
            )
        return True

    def resolve_client_public_key(self, client: Client) -> Key | KeySet:
        jwks = client.registered.jwks
        if not jwks:
            raise InvalidClientError(description="The client has no registered public key")
        keys = jwks["keys"]
        if len(keys) == 1 and "kid" not in keys[0]:
            key: Key = import_key(dict(keys[0]))  # one key, no kid: any kid sent will do
            return key
        key_set: KeySet = KeySet.import_key_set(jwks)
        return key_set


class ClientSecretJWTAuth(ClientAssertion):
    """``client_secret_jwt``: an assertion signed with HMAC, the client secret as the key."""

    CLIENT_AUTH_METHOD = "client_secret_jwt"
    ALGORITHMS = SECRET_ALGORITHMS

    def _claims_alg(self, alg: object) -> bool:
        return isinstance(alg, str) and alg in self.ALGORITHMS

    def resolve_client_public_key(self, client: Client) -> OctKey:
        secret = client.registered.client_secret.encode()
        # Built directly: importing warns about short secrets, and a warning in a
        # server thread would fail a test run that turns warnings into errors.
        return OctKey(secret, secret)


def public_key_set(value: PublicKeyLike) -> KeySetSerialization:
    """The public JWK Set of ``value``: a JWK, a JWK Set, PEM text or bytes, the path of a
    PEM file, a joserfc key or key set, or a ``cryptography`` key. Private keys are
    reduced to their public half; symmetric keys are refused."""
    if isinstance(value, KeySet):
        keys = [_public(key) for key in value.keys]
    elif isinstance(value, Mapping) and "keys" in value:
        members = value["keys"]
        if not isinstance(members, list) or not members:
            raise ValueError("public_key: a JWK Set needs a non-empty 'keys' list")
        keys = [_public(_import_jwk(member)) for member in members]
    elif isinstance(value, Mapping):
        keys = [_public(_import_jwk(value))]
    elif isinstance(value, (RSAKey, ECKey, OKPKey, OctKey)):
        keys = [_public(value)]
    else:
        keys = [_public(_import_native(value))]
    return {"keys": keys}


def _import_jwk(value: object) -> Key:
    if not isinstance(value, Mapping):
        raise ValueError("public_key: every member of a JWK Set must be a JWK object")
    try:
        return import_key(dict(value))
    except (JoseError, ValueError, TypeError) as error:
        raise ValueError(f"public_key: not a usable JWK ({_describe(error)})") from None


def _import_native(value: object) -> Key:
    native = _load_pem(value) if isinstance(value, (str, bytes, os.PathLike)) else value
    if isinstance(
        native,
        (
            rsa.RSAPrivateKey,
            ec.EllipticCurvePrivateKey,
            ed25519.Ed25519PrivateKey,
            ed448.Ed448PrivateKey,
        ),
    ):
        native = native.public_key()
    key_class: type[RSAKey] | type[ECKey] | type[OKPKey]
    if isinstance(native, rsa.RSAPublicKey):
        key_class = RSAKey
    elif isinstance(native, ec.EllipticCurvePublicKey):
        key_class = ECKey
    elif isinstance(native, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        key_class = OKPKey
    else:
        raise TypeError(
            "public_key must be a JWK, a JWK Set, a PEM key (text, bytes or file path), "
            "a joserfc key or a cryptography RSA, EC or Ed25519 key"
        )
    pem: bytes = native.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key: Key = key_class.import_key(pem)
    return key


def _load_pem(value: str | bytes | os.PathLike[str]) -> object:
    """The key in PEM ``value`` (or in the file it names); a certificate gives its key."""
    if isinstance(value, bytes):
        data, where = value, "the PEM given"
    elif isinstance(value, str) and "-----BEGIN" in value:
        data, where = value.encode(), "the PEM given"
    else:
        where = os.fspath(value)
        try:
            data = Path(value).read_bytes()
        except OSError as error:
            raise ValueError(f"public_key: cannot read {where}: {error.strerror}") from None
    loaders: list[Callable[[bytes], object]] = [
        serialization.load_pem_public_key,
        lambda pem: serialization.load_pem_private_key(pem, password=None),
        lambda pem: x509.load_pem_x509_certificate(pem).public_key(),
    ]
    for loader in loaders:
        try:
            return loader(data)
        except (ValueError, TypeError):
            continue
    raise ValueError(f"public_key: no unencrypted PEM key or certificate in {where}")


def _public(key: Key) -> dict[str, Any]:
    if isinstance(key, OctKey):
        raise ValueError("public_key: a symmetric (oct) key cannot verify private_key_jwt")
    data: dict[str, Any] = dict(key.as_dict(private=False))
    return data


# -- RFC 8705 ---------------------------------------------------------------------------


class MutualTLSAuth:
    """``tls_client_auth`` or ``self_signed_tls_client_auth``: the client is the one whose
    certificate was presented on the TLS connection; ``client_id`` comes in the body.

    ``mtls_url`` gives the URL a client must use (for the error description).
    """

    def __init__(
        self,
        method: str,
        ca: CertificateAuthority | None,
        mtls_url: Callable[[], str | None],
    ) -> None:
        self.method = method
        self._ca = ca
        self._mtls_url = mtls_url

    def __call__(self, query_client: QueryClient, request: Request) -> Any:
        form = request.form
        if any(name in form for name in ("client_secret", "client_assertion")):
            return None
        if (request.headers.get("Authorization") or "")[:6].lower() == "basic ":
            return None
        client_id = form.get("client_id")
        if not client_id:
            return None
        client = query_client(client_id)
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        if not client.check_endpoint_auth_method(self.method, "token"):
            return None
        der = request.client_certificate
        if der is None:
            where = self._mtls_url()
            hint = f": send the request to {where}" if where else ""
            raise InvalidClientError(
                description=f"{self.method} needs a client certificate on the TLS connection{hint}"
            )
        if self._matches(client.registered, der):
            return client
        other = "self_signed_tls_client_auth" if self.method == "tls_client_auth" else None
        if other is not None and client.check_endpoint_auth_method(other, "token"):
            return None  # the next method may accept the certificate
        raise InvalidClientError(description=self._mismatch())

    def _matches(self, registered: RegisteredClient, der: bytes) -> bool:
        if self.method == "self_signed_tls_client_auth":
            return thumbprint(der) == registered.certificate_thumbprint
        if self._ca is None or registered.tls_client_auth_subject_dn is None:
            return False
        certificate = x509.load_der_x509_certificate(der)
        wanted = x509.Name.from_rfc4514_string(registered.tls_client_auth_subject_dn)
        return self._ca.signed(certificate) and certificate.subject == wanted

    def _mismatch(self) -> str:
        if self.method == "self_signed_tls_client_auth":
            return "The client certificate is not the one registered for the client"
        return "The client certificate is not issued by the CA to the registered subject"


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _describe(error: Exception) -> str:
    text = error.description if isinstance(error, JoseError) else str(error)
    return printable(text or type(error).__name__)
