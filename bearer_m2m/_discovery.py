"""Finding a token endpoint from an issuer: RFC 8414 and OpenID Connect discovery."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ._client_auth import KEY_METHODS, TLS_METHODS
from ._config import Verify
from ._fetcher import tls_failure
from ._transport import require_secure_url
from .errors import ConfigurationError, TokenEndpointUnavailable, TokenError

#: Methods tried in this order when the caller names none (Auth0's default first).
PREFERRED_METHODS = {
    "secret": ("client_secret_post", "client_secret_basic", "client_secret_jwt"),
    "key": KEY_METHODS,
    "cert": TLS_METHODS,
}

_documents: dict[tuple[str, str], Mapping[str, Any]] = {}
_documents_lock = threading.Lock()


def metadata_urls(issuer: str) -> list[str]:
    """Where the metadata of ``issuer`` may be: RFC 8414 section 3.1 inserts the
    well-known segment before the issuer's path, OpenID Connect appends it."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    rfc8414 = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-authorization-server{path}", "", "")
    )
    oidc = urlunsplit(
        (parts.scheme, parts.netloc, f"{path}/.well-known/openid-configuration", "", "")
    )
    return [rfc8414, oidc]


def discover(
    issuer: str, *, verify: Verify, timeout: float, allow_insecure_http: bool
) -> Mapping[str, Any]:
    """The issuer's metadata, fetched once per process and checked to be its own."""
    if not allow_insecure_http:
        require_secure_url(issuer, "discovery requests")
    key = (issuer, repr(verify))
    with _documents_lock:
        cached = _documents.get(key)
    if cached is not None:
        return cached
    document = _fetch_first(metadata_urls(issuer), verify=verify, timeout=timeout)
    claimed = document.get("issuer")
    # RFC 8414 section 3.3: the document must name the issuer it was fetched for.
    # A trailing slash is forgiven: Auth0's issuer ends with one, users often drop it.
    if not isinstance(claimed, str) or claimed.rstrip("/") != issuer.rstrip("/"):
        raise ConfigurationError(
            f"the discovery document of {issuer} names another issuer ({claimed!r}); refusing it"
        )
    with _documents_lock:
        _documents[key] = document
    return document


def _fetch_first(urls: Sequence[str], *, verify: Verify, timeout: float) -> Mapping[str, Any]:
    tried = []
    for url in urls:
        try:
            response = requests.get(url, timeout=timeout, verify=verify, allow_redirects=False)
        except requests.exceptions.SSLError as exc:  # as the token request reports it
            raise TokenError(tls_failure(urlsplit(url).netloc)) from exc
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(
                f"discovery at {urlsplit(url).netloc} failed ({type(exc).__name__})"
            ) from exc
        if response.status_code == 200:
            try:
                document = response.json()
            except ValueError:
                document = None
            if isinstance(document, dict):
                return document
        tried.append(f"{url} (HTTP {response.status_code})")
    raise ConfigurationError(f"no discovery document found at {' or '.join(tried)}")


def token_endpoint(document: Mapping[str, Any], auth_method: str) -> str:
    """The token endpoint for ``auth_method``: its RFC 8705 mTLS alias for the TLS methods."""
    if auth_method in TLS_METHODS:
        aliases = document.get("mtls_endpoint_aliases")
        if isinstance(aliases, Mapping) and isinstance(aliases.get("token_endpoint"), str):
            return str(aliases["token_endpoint"])
    url = document.get("token_endpoint")
    if not isinstance(url, str) or not url:
        raise ConfigurationError("the discovery document names no token_endpoint")
    return url


def choose_method(
    document: Mapping[str, Any], *, client_secret: object, private_key: object, cert: object
) -> str:
    """The first method the server supports that the given credentials allow."""
    if private_key is not None:
        wanted = PREFERRED_METHODS["key"]
    elif client_secret is not None:
        wanted = PREFERRED_METHODS["secret"]
    elif cert is not None:
        wanted = PREFERRED_METHODS["cert"]
    else:
        raise ConfigurationError("give client_secret, private_key or cert")
    # RFC 8414 section 2: when the list is absent, client_secret_basic is the default.
    supported = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    if not isinstance(supported, list):
        raise ConfigurationError("token_endpoint_auth_methods_supported is not a list")
    for method in wanted:
        if method in supported:
            return method
    raise ConfigurationError(
        f"the server supports {', '.join(map(str, supported))} for its token endpoint; "
        f"the credentials given allow {', '.join(wanted)}"
    )
