"""The settings of one client, checked once when the auth object is built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._client_auth import (
    Cert,
    PrivateKeySource,
    check_client_certificate,
    check_credentials,
    choose_auth_method,
    load_signing_key,
)
from ._transport import check_endpoint_url, require_secure_url
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._client_auth import SigningKey
    from ._dpop import DPoPKey
    from ._dpop import Option as DPoPOption

#: Form fields the library sets itself; ``extra_params`` may not override them.
RESERVED_FIELDS = frozenset(
    {
        "grant_type",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
        "audience",
        "organization",
        "scope",
        "resource",
    }
)

Verify = bool | str


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to ask the token endpoint for a token.

    ``form`` holds the optional fields of the request body (``audience``,
    ``organization``, ``scope``, ``resource`` and the user's extras), already
    validated. The secret and the signing key are kept out of ``repr``.
    """

    token_url: str
    client_id: str
    client_secret: str | None = field(repr=False)
    auth_method: str
    form: Mapping[str, str]
    timeout: float
    verify: Verify = True
    cert: Cert = None
    signing_key: SigningKey | None = field(default=None, repr=False)
    signing_algorithm: str | None = None
    key_id: str | None = None
    #: ``aud`` of JWT client assertions; ``None``: the token URL.
    assertion_audience: str | None = None
    #: The key that binds tokens with DPoP (RFC 9449), or ``None`` for bearer tokens.
    dpop_key: DPoPKey | None = field(default=None, repr=False)

    @property
    def token_type(self) -> str:
        """The type of token the client asks for, and accepts."""
        return "Bearer" if self.dpop_key is None else "DPoP"


def build_config(
    token_url: str,
    *,
    client_id: str,
    client_secret: str | None,
    private_key: PrivateKeySource | None,
    private_key_id: str | None,
    signing_algorithm: str | None,
    assertion_audience: str | None,
    audience: str | None,
    organization: str | None,
    scope: str | Iterable[str] | None,
    resource: str | None,
    extra_params: Mapping[str, str] | None,
    auth_method: str | None,
    timeout: float,
    verify: Verify,
    cert: Cert,
    allow_insecure_http: bool,
    dpop: DPoPOption = None,
    dpop_algorithm: str | None = None,
) -> ClientConfig:
    """Check every setting and raise one :class:`ConfigurationError` for the first bad one."""
    # Well-formed (every HTTP client reads the same host in it) and without a password
    # that repr and errors would show, whether or not plain http is allowed.
    check_endpoint_url(token_url, "token_url")
    if not allow_insecure_http:
        require_secure_url(token_url, "the client credentials")
    if not isinstance(client_id, str) or not client_id:
        raise ConfigurationError("client_id must be a non-empty string")
    method = choose_auth_method(
        auth_method, client_secret=client_secret, private_key=private_key, cert=cert
    )
    check_credentials(method, client_secret=client_secret, private_key=private_key, cert=cert)
    signing_key = key_id = None
    if private_key is not None:
        signing_algorithm = signing_algorithm or "RS256"
        signing_key, key_id = load_signing_key(private_key, signing_algorithm, private_key_id)
    elif method == "client_secret_jwt":
        signing_algorithm = signing_algorithm or "HS256"
        if signing_algorithm not in ("HS256", "HS384", "HS512"):
            raise ConfigurationError("client_secret_jwt signs with HS256, HS384 or HS512")
        bits = int(signing_algorithm[2:])
        if len((client_secret or "").encode()) * 8 < bits:
            # RFC 7518 section 3.2: the key is at least as long as the hash.
            raise ConfigurationError(
                f"client_secret_jwt with {signing_algorithm} needs a secret of at least "
                f"{bits // 8} bytes (RFC 7518 section 3.2)"
            )
    elif signing_algorithm is not None:
        raise ConfigurationError(f"signing_algorithm is not used with {method}")
    check_client_certificate(cert)
    if not timeout > 0:
        raise ConfigurationError("timeout must be a positive number of seconds")

    form: dict[str, str] = {}
    for field_name, field_value in (
        ("audience", audience),
        ("organization", organization),
        ("resource", resource),
    ):
        if field_value is not None:
            if not isinstance(field_value, str) or not field_value:
                raise ConfigurationError(f"{field_name} must be a non-empty string")
            form[field_name] = field_value
    if scope is not None:
        form["scope"] = _scope_string(scope)
    for name, value in (extra_params or {}).items():
        if name in RESERVED_FIELDS:
            raise ConfigurationError(
                f"extra_params may not set {name!r}: pass it as its own argument"
            )
        if not isinstance(name, str) or not isinstance(value, str):
            raise ConfigurationError("extra_params must map strings to strings")
        form[name] = value

    return ClientConfig(
        token_url=token_url,
        client_id=client_id,
        client_secret=client_secret,
        auth_method=method,
        form=form,
        timeout=float(timeout),
        verify=verify,
        cert=cert,
        signing_key=signing_key,
        signing_algorithm=signing_algorithm,
        key_id=key_id,
        assertion_audience=assertion_audience,
        dpop_key=_dpop_key(dpop, dpop_algorithm),
    )


def _dpop_key(option: DPoPOption, algorithm: str | None) -> DPoPKey | None:
    """The DPoP key, made or loaded now; JOSE is imported only for a client that uses it."""
    if (option is None or option is False) and algorithm is None:
        return None
    from ._dpop import dpop_key

    return dpop_key(option, algorithm)


def _scope_string(scope: str | Iterable[str]) -> str:
    """RFC 6749 section 3.3: scopes are joined by single spaces."""
    scopes = scope.split() if isinstance(scope, str) else list(scope)
    if not scopes or not all(isinstance(item, str) and item and " " not in item for item in scopes):
        raise ConfigurationError("scope must be a space-separated string or a list of scope names")
    return " ".join(scopes)
