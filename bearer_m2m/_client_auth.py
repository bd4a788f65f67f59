"""How the client proves who it is to the token endpoint.

Six methods, all through Authlib's client-auth hooks: a shared secret in the
form or in HTTP Basic, a JWT assertion signed with the secret or with a private
key (RFC 7523), or a TLS client certificate (RFC 8705). Keys and certificates
are loaded and checked once, when the auth object is built, so that a bad file
fails at start-up rather than at the first request.

Authlib and joserfc are imported by the functions that use them: choosing and
checking a method needs neither, so ``bearer-m2m token`` can name a cached
token's configuration without paying for them.
"""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from .errors import ConfigurationError

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, RSAKey

    SigningKey = RSAKey | ECKey

SECRET_METHODS = ("client_secret_post", "client_secret_basic", "client_secret_jwt")
KEY_METHODS = ("private_key_jwt",)
TLS_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")
AUTH_METHODS = SECRET_METHODS + KEY_METHODS + TLS_METHODS

#: Assertions live one minute: long enough for a slow token request, short
#: enough that a leaked one is soon useless (RFC 7523 wants them short-lived).
ASSERTION_LIFETIME = 60

SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")

#: A PEM string, PEM bytes, a path to a PEM file, or a JWK as a mapping.
PrivateKeySource = str | bytes | os.PathLike[str] | Mapping[str, Any]
Cert = str | tuple[str, str] | None


def choose_auth_method(
    auth_method: str | None, *, client_secret: str | None, private_key: object, cert: Cert
) -> str:
    """The method asked for, or the one the given credentials imply."""
    if auth_method is not None:
        if auth_method not in AUTH_METHODS:
            raise ConfigurationError(
                f"auth_method must be one of {', '.join(AUTH_METHODS)}, not {auth_method!r}"
            )
        return auth_method
    if private_key is not None:
        return "private_key_jwt"
    if client_secret is None and cert is not None:
        return "tls_client_auth"
    return "client_secret_post"


def check_credentials(
    auth_method: str, *, client_secret: str | None, private_key: object, cert: Cert
) -> None:
    """One clear error when the credentials do not fit the method."""
    wants_secret = auth_method in SECRET_METHODS
    if wants_secret and not (isinstance(client_secret, str) and client_secret):
        raise ConfigurationError(f"{auth_method} needs client_secret (a non-empty string)")
    if not wants_secret and client_secret is not None:
        raise ConfigurationError(f"client_secret is not used with {auth_method}; leave it out")
    if auth_method in KEY_METHODS and private_key is None:
        raise ConfigurationError("private_key_jwt needs private_key")
    if auth_method not in KEY_METHODS and private_key is not None:
        raise ConfigurationError(f"private_key is not used with {auth_method}")
    if auth_method in TLS_METHODS and cert is None:
        raise ConfigurationError(f"{auth_method} needs cert=(certificate file, key file)")


def load_signing_key(
    source: PrivateKeySource, algorithm: str, key_id: str | None
) -> tuple[SigningKey, str | None]:
    """Read a private key for ``algorithm`` and the ``kid`` to announce with it.

    Errors name the file (or "the key given"), never the key material.
    """
    if algorithm not in SIGNING_ALGORITHMS:
        raise ConfigurationError(
            f"signing_algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}, not {algorithm!r}"
        )
    from joserfc.errors import JoseError
    from joserfc.jwk import ECKey, RSAKey

    key_class: type[RSAKey] | type[ECKey] = ECKey if algorithm.startswith("ES") else RSAKey
    data, where = _key_material(source)
    try:
        key = key_class.import_key(data)
    except (JoseError, ValueError, TypeError):
        raise ConfigurationError(
            f"{where} is not a usable {key_class.key_type} private key for {algorithm}"
        ) from None  # parsers may quote what they parsed: keep key material out
    if not key.is_private:
        raise ConfigurationError(
            f"{where} holds a public key; private_key_jwt needs the private key"
        )
    if isinstance(key, ECKey) and key.curve_name != _EC_CURVES[algorithm]:
        raise ConfigurationError(
            f"{where} is a {key.curve_name} key; {algorithm} needs {_EC_CURVES[algorithm]}"
        )
    jwk_kid = key.kid if isinstance(source, Mapping) else None
    return key, key_id or jwk_kid


_EC_CURVES = {"ES256": "P-256", "ES384": "P-384"}


def _key_material(source: PrivateKeySource) -> tuple[str | bytes | dict[str, Any], str]:
    if isinstance(source, Mapping):
        return dict(source), "the JWK given as private_key"
    if isinstance(source, bytes):
        return source, "the PEM given as private_key"
    if isinstance(source, str) and "-----BEGIN" in source:
        return source, "the PEM given as private_key"
    if isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            return json.loads(source), "the JWK given as private_key"
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raise ConfigurationError("private_key looks like a JWK but is not valid JSON") from None
    path = os.fspath(source)
    try:
        with open(path, "rb") as file:
            return file.read(), f"private key file {path!r}"
    except (OSError, ValueError) as exc:
        # Name the path only when it looks like one: a key pasted where a path was
        # expected (base64 from a secret store, say) must not end up in a log.
        what = f"private key file {path!r}" if _looks_like_a_path(path) else "private_key"
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a file"
        raise ConfigurationError(
            f"cannot read {what} ({reason}); give a PEM file path, a PEM string or a JWK"
        ) from None


def _looks_like_a_path(text: str) -> bool:
    name = os.path.basename(text)
    return (
        len(text) <= 255
        and text.isprintable()
        and ("/" in text or "." in name)
        and os.path.isdir(os.path.dirname(os.path.abspath(text)))
    )


def check_client_certificate(cert: Cert) -> None:
    """Load the certificate and its key once, as TLS will, to fail early and clearly."""
    if cert is None:
        return
    cert_file, key_file = (cert, None) if isinstance(cert, str) else cert
    for path in (cert_file, key_file):
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(f"client certificate file {path!r} does not exist")
    import ssl  # only for a client certificate: ssl's import is not free

    try:
        # An empty password: an encrypted key fails here rather than prompting for one.
        ssl.create_default_context().load_cert_chain(cert_file, key_file, password=lambda: b"")
    except (ssl.SSLError, OSError):
        files = f"{cert_file!r}" + (f" and {key_file!r}" if key_file else "")
        raise ConfigurationError(
            f"{files} do not hold a matching client certificate and unencrypted private key (PEM)"
        ) from None


def register_client_auth(
    session: Any,
    auth_method: str,
    *,
    signing_algorithm: str | None,
    key_id: str | None,
    assertion_audience: str | None,
) -> None:
    """Teach an Authlib session our take on each method."""
    from authlib.oauth2.auth import encode_none

    short_private_key_jwt, short_client_secret_jwt = _short_lived_classes()
    if auth_method == "client_secret_basic":
        session.register_client_auth_method(("client_secret_basic", form_encoded_basic))
    elif auth_method == "client_secret_jwt":
        session.register_client_auth_method(
            short_client_secret_jwt(assertion_audience, alg=signing_algorithm or "HS256")
        )
    elif auth_method == "private_key_jwt":
        headers = {"kid": key_id} if key_id else None
        session.register_client_auth_method(
            short_private_key_jwt(assertion_audience, headers=headers, alg=signing_algorithm)
        )
    elif auth_method in TLS_METHODS:
        # The certificate rides on the TLS connection; the form names the client.
        session.register_client_auth_method((auth_method, encode_none))


def form_encoded_basic(
    client: Any, method: str, uri: str, headers: dict[str, str], body: str
) -> tuple[str, dict[str, str], str]:
    """HTTP Basic client authentication as RFC 6749 section 2.3.1 has it.

    The client id and secret are form-encoded before they are joined and
    base64-encoded; servers that follow the RFC (django-oauth-toolkit among
    them) decode them, so a secret with ``+`` or ``%`` would fail otherwise.
    Authlib sends them raw (its fix, authlib#594, was reverted). Generated
    secrets, Auth0's included, use unreserved characters that encoding leaves
    as they are.
    """
    headers["Authorization"] = "Basic " + basic_credentials(
        client.client_id, client.client_secret, form_encoded=True
    )
    return uri, headers, body


def raw_basic(
    client: Any, method: str, uri: str, headers: dict[str, str], body: str
) -> tuple[str, dict[str, str], str]:
    """HTTP Basic with the id and secret as they are (UTF-8), for servers that
    do not decode them (Glewlwyd): the fetcher falls back to it after a refusal."""
    headers["Authorization"] = "Basic " + basic_credentials(
        client.client_id, client.client_secret, form_encoded=False
    )
    return uri, headers, body


def basic_credentials(client_id: str, client_secret: str, *, form_encoded: bool) -> str:
    """The base64 part of ``Authorization: Basic``, with or without the RFC's form-encoding."""
    if form_encoded:
        client_id, client_secret = quote_plus(client_id), quote_plus(client_secret)
    return base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def basic_encodings_differ(client_id: str, client_secret: str) -> bool:
    """Whether a server that does not decode Basic credentials would see other ones:
    only then is the raw encoding worth a try after a refusal."""
    return quote_plus(client_id) != client_id or quote_plus(client_secret) != client_secret


class _ShortLived:
    """Sign each assertion afresh, valid for :data:`ASSERTION_LIFETIME` seconds.

    Authlib's own ``sign`` makes assertions that live an hour, and reuses a
    ``jti`` when given extra claims; ours get a new ``jti`` every time.
    """

    alg: str
    headers: dict[str, str] | None

    def signing_key(self, auth: Any) -> Any:
        raise NotImplementedError

    def sign(self, auth: Any, token_endpoint: str) -> str:
        from authlib.oauth2.rfc7523.assertion import sign_jwt_bearer_assertion

        return str(
            sign_jwt_bearer_assertion(
                self.signing_key(auth),
                issuer=auth.client_id,
                audience=token_endpoint,
                subject=auth.client_id,
                header=dict(self.headers or {}),
                alg=self.alg,
                expires_in=ASSERTION_LIFETIME,
            )
        )


@functools.cache
def _short_lived_classes() -> tuple[type[Any], type[Any]]:
    """Authlib's two JWT client-auth classes with our :class:`_ShortLived` signing,
    made once, at the first session that needs them (they subclass Authlib's)."""
    from authlib.oauth2.rfc7523 import ClientSecretJWT, PrivateKeyJWT
    from joserfc.jwk import OctKey

    class ShortPrivateKeyJWT(_ShortLived, PrivateKeyJWT):  # type: ignore[misc]
        def signing_key(self, auth: Any) -> Any:
            return auth.client_secret  # the joserfc private key, set by the fetcher

    class ShortClientSecretJWT(_ShortLived, ClientSecretJWT):  # type: ignore[misc]
        def signing_key(self, auth: Any) -> Any:
            return OctKey.import_key(auth.client_secret)

    return ShortPrivateKeyJWT, ShortClientSecretJWT
