"""The clients an authorization server knows, how each authenticates and what it may ask for."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from joserfc.jwk import KeySetSerialization

GRANT_TYPE = "client_credentials"

#: The client authentication methods, in the order the server tries them and lists them.
SECRET_METHODS = ("client_secret_post", "client_secret_basic")
JWT_METHODS = ("client_secret_jwt", "private_key_jwt")
TLS_METHODS = ("tls_client_auth", "self_signed_tls_client_auth")
ALL_METHODS = SECRET_METHODS + JWT_METHODS + TLS_METHODS


@dataclass(frozen=True)
class RegisteredClient:
    """A client's credentials and grants, as :meth:`AuthorizationServer.register_client`
    made them.

    ``None`` for ``audiences``, ``scopes`` or ``organizations`` means "anything";
    a tuple restricts the client to those values, as Auth0's client grants do.
    ``token_lifetime`` is the lifetime of the tokens issued to this client, in
    seconds. The secret is left out of ``repr``.

    ``auth_methods`` are the token endpoint authentication methods the client
    may use (RFC 7591 names); any other is refused with ``invalid_client``.
    ``jwks`` holds its public keys (``private_key_jwt``),
    ``tls_client_auth_subject_dn`` the RFC 4514 subject its CA-issued
    certificate must have (``tls_client_auth``) and ``certificate_thumbprint``
    the ``x5t#S256`` of its self-signed certificate
    (``self_signed_tls_client_auth``). Every client has a secret, used only
    if a ``client_secret_*`` method is among its ``auth_methods``.

    ``dpop_bound`` (RFC 9449 section 5.2's ``dpop_bound_access_tokens``): the
    client's token requests must carry a DPoP proof, and its tokens are all
    bound to a key. Any client that sends a proof gets a bound token.
    """

    client_id: str
    client_secret: str = field(repr=False)
    token_lifetime: float = field(default=3600.0, kw_only=True)
    audiences: tuple[str, ...] | None = field(default=None, kw_only=True)
    scopes: tuple[str, ...] | None = field(default=None, kw_only=True)
    grant_types: tuple[str, ...] = field(default=(GRANT_TYPE,), kw_only=True)
    organizations: tuple[str, ...] | None = field(default=None, kw_only=True)
    auth_methods: tuple[str, ...] = field(default=SECRET_METHODS, kw_only=True)
    jwks: KeySetSerialization | None = field(default=None, kw_only=True, repr=False, compare=False)
    tls_client_auth_subject_dn: str | None = field(default=None, kw_only=True)
    certificate_thumbprint: str | None = field(default=None, kw_only=True)
    dpop_bound: bool = field(default=False, kw_only=True)

    def check_secret(self, secret: str) -> bool:
        return secrets.compare_digest(self.client_secret.encode(), secret.encode())

    def allows_audience(self, audience: str) -> bool:
        return self.audiences is None or audience in self.audiences

    def allows_organization(self, organization: str) -> bool:
        return self.organizations is None or organization in self.organizations

    def granted_scope(self, requested: str | None) -> str | None:
        """The scope a token gets, or ``None`` when the request asks for too much.

        A client restricted to some scopes that asks for none gets all of them,
        as on Auth0; an unrestricted client gets exactly what it asked for.
        """
        wanted = (requested or "").split()
        if self.scopes is None:
            return " ".join(wanted)
        if not wanted:
            return " ".join(self.scopes)
        return " ".join(wanted) if set(wanted) <= set(self.scopes) else None


class ClientRegistry:
    """Registered clients by id; safe to use from the server's threads."""

    def __init__(self) -> None:
        self._clients: dict[str, RegisteredClient] = {}
        self._lock = threading.Lock()

    def register(
        self,
        client_id: str | None,
        client_secret: str | None,
        *,
        token_lifetime: float,
        audiences: Iterable[str] | None,
        scopes: Iterable[str] | None,
        grant_types: Iterable[str],
        organizations: Iterable[str] | None,
        auth_methods: tuple[str, ...] = SECRET_METHODS,
        jwks: KeySetSerialization | None = None,
        tls_client_auth_subject_dn: str | None = None,
        certificate_thumbprint: str | None = None,
        dpop_bound: bool = False,
    ) -> RegisteredClient:
        client = RegisteredClient(
            _credential("client_id", client_id, secrets.token_hex(16)),
            _credential("client_secret", client_secret, secrets.token_urlsafe(32)),
            token_lifetime=check_lifetime(token_lifetime),
            audiences=_names("audiences", audiences),
            scopes=_names("scopes", scopes),
            grant_types=_names("grant_types", grant_types) or (),
            organizations=_names("organizations", organizations),
            auth_methods=auth_methods,
            jwks=jwks,
            tls_client_auth_subject_dn=tls_client_auth_subject_dn,
            certificate_thumbprint=certificate_thumbprint,
            dpop_bound=bool(dpop_bound),
        )
        with self._lock:
            if client.client_id in self._clients:
                raise ValueError(f"client_id {client.client_id!r} is already registered")
            self._clients[client.client_id] = client
        return client

    def get(self, client_id: str) -> RegisteredClient | None:
        with self._lock:
            return self._clients.get(client_id)

    def auth_methods(self) -> list[str]:
        """The methods some registered client may use, in :data:`ALL_METHODS` order."""
        with self._lock:
            used = {method for client in self._clients.values() for method in client.auth_methods}
        return [method for method in ALL_METHODS if method in used]


def check_lifetime(seconds: float) -> float:
    """Token lifetimes are at least a second: ``expires_in`` counts whole seconds."""
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 1:
        raise ValueError("token_lifetime must be a number of seconds, at least 1")
    return float(seconds)


def _credential(name: str, value: str | None, generated: str) -> str:
    if value is None:
        return generated
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    return value


def _names(name: str, values: Iterable[str] | None) -> tuple[str, ...] | None:
    """A tuple of non-empty strings; a lone string is refused, not split into letters."""
    if values is None:
        return None
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of strings, not a string")
    names = tuple(values)
    if not all(_is_name(item) for item in names):
        raise TypeError(f"{name} must be a list of non-empty strings without spaces")
    return names


def _is_name(item: object) -> bool:
    return isinstance(item, str) and bool(item) and not any(c.isspace() for c in item)


def printable(text: str) -> str:
    """``text`` fit for an ``error_description`` (whose characters RFC 6749 restricts)
    or a quoted header parameter: no quotes, backslashes or control characters."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)[:200]
