"""The settings of one client, checked once when the auth object is built."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ._transport import require_secure_url
from .errors import ConfigurationError

AUTH_METHODS = ("client_secret_post", "client_secret_basic")

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
Cert = str | tuple[str, str] | None


@dataclass(frozen=True)
class ClientConfig:
    """Everything needed to ask the token endpoint for a token.

    ``form`` holds the optional fields of the request body (``audience``,
    ``organization``, ``scope``, ``resource`` and the user's extras), already
    validated; the client secret is kept out of ``repr``.
    """

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    auth_method: str
    form: Mapping[str, str]
    timeout: float
    verify: Verify = True
    cert: Cert = None


def build_config(
    token_url: str,
    *,
    client_id: str,
    client_secret: str,
    audience: str | None,
    organization: str | None,
    scope: str | Iterable[str] | None,
    resource: str | None,
    extra_params: Mapping[str, str] | None,
    auth_method: str,
    timeout: float,
    verify: Verify,
    cert: Cert,
    allow_insecure_http: bool,
) -> ClientConfig:
    """Check every setting and raise one :class:`ConfigurationError` for the first bad one."""
    if not isinstance(token_url, str) or urlsplit(token_url).scheme not in ("http", "https"):
        raise ConfigurationError("token_url must be an http(s) URL")
    if not urlsplit(token_url).hostname:
        raise ConfigurationError("token_url has no host")
    if not allow_insecure_http:
        require_secure_url(token_url, "the client secret")
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty string")
    if auth_method not in AUTH_METHODS:
        raise ConfigurationError(
            f"auth_method must be one of {', '.join(AUTH_METHODS)}, not {auth_method!r}"
        )
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
        auth_method=auth_method,
        form=form,
        timeout=float(timeout),
        verify=verify,
        cert=cert,
    )


def _scope_string(scope: str | Iterable[str]) -> str:
    """RFC 6749 section 3.3: scopes are joined by single spaces."""
    scopes = scope.split() if isinstance(scope, str) else list(scope)
    if not scopes or not all(isinstance(item, str) and item and " " not in item for item in scopes):
        raise ConfigurationError("scope must be a space-separated string or a list of scope names")
    return " ".join(scopes)
