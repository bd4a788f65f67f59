"""Finding a token endpoint from an issuer: RFC 8414 and OpenID Connect discovery."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ._client_auth import KEY_METHODS, TLS_METHODS
from ._config import Verify
from ._fetcher import tls_failure
from ._transport import check_endpoint_url, describe_url, require_secure_url
from .errors import ConfigurationError, TLSError, TokenEndpointUnavailable

#: Larger than any real metadata document (Keycloak's, among the largest, is under 10 KiB):
#: a server that sends more is not serving one, and reading on would only fill memory.
MAX_DOCUMENT_BYTES = 1024 * 1024

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
    check_issuer(issuer)
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
        # Only its scheme and host are shown: the server chose the rest, of any size.
        raise ConfigurationError(
            f"the discovery document of {issuer} names another issuer "
            f"({describe_url(claimed)}); refusing it"
        )
    with _documents_lock:
        _documents[key] = document
    return document


def check_issuer(issuer: str) -> None:
    """RFC 8414 section 2: an http(s) URL with no query or fragment, and (as for every
    endpoint) well-formed and without userinfo, so that it can be quoted in messages."""
    check_endpoint_url(issuer, "issuer")
    # The strict grammar keeps "?" and "#" out of the host: here they can only open
    # a query or a fragment.
    if "?" in issuer or "#" in issuer:
        raise ConfigurationError("issuer must have no query or fragment (RFC 8414 section 2)")


def _fetch_first(urls: Sequence[str], *, verify: Verify, timeout: float) -> Mapping[str, Any]:
    tried = []
    for url in urls:
        host = urlsplit(url).netloc
        try:
            status, body = _get(url, verify=verify, timeout=timeout)
        except requests.exceptions.SSLError as exc:  # as the token request reports it
            raise TLSError(tls_failure(host)) from exc
        except requests.RequestException as exc:
            raise TokenEndpointUnavailable(
                f"discovery at {host} failed ({type(exc).__name__})"
            ) from exc
        if status == 200:
            if body is None:
                raise ConfigurationError(
                    f"the discovery document at {url} is larger than "
                    f"{MAX_DOCUMENT_BYTES // 1024} KiB; refusing it"
                )
            document = _json_object(body)
            if document is not None:
                return document
        tried.append(f"{url} (HTTP {status})")
    raise ConfigurationError(f"no discovery document found at {' or '.join(tried)}")


def _get(url: str, *, verify: Verify, timeout: float) -> tuple[int, bytes | None]:
    """The status and body of a GET, the body ``None`` when it exceeds the size bound."""
    with requests.get(
        url, timeout=timeout, verify=verify, allow_redirects=False, stream=True
    ) as response:
        if response.status_code != 200:
            return response.status_code, b""
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                return response.status_code, None
        return response.status_code, bytes(body)


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` for anything else a server may send:
    not JSON, not UTF-8, integers past Python's digit limit, or nesting deep enough
    to exhaust the parser's recursion (a RecursionError, not a ValueError)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def token_endpoint(document: Mapping[str, Any], auth_method: str) -> str:
    """The token endpoint for ``auth_method``: its RFC 8705 mTLS alias for the TLS methods."""
    if auth_method in TLS_METHODS:
        aliases = document.get("mtls_endpoint_aliases")
        if aliases is not None and not isinstance(aliases, Mapping):
            raise ConfigurationError(
                "the discovery document's mtls_endpoint_aliases is not an object"
            )
        alias = (aliases or {}).get("token_endpoint")
        if alias is not None:
            return _endpoint(alias, "mtls_endpoint_aliases.token_endpoint")
    if document.get("token_endpoint") in (None, ""):
        raise ConfigurationError("the discovery document names no token_endpoint")
    return _endpoint(document["token_endpoint"], "token_endpoint")


def _endpoint(url: object, field_name: str) -> str:
    """A discovered endpoint, held to the rules of ``token_url`` (checked again there),
    but named after the document's field so that the user knows whose URL is wrong."""
    check_endpoint_url(url, f"the discovery document's {field_name}")
    return str(url)


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
    if not isinstance(supported, list) or not all(isinstance(item, str) for item in supported):
        raise ConfigurationError("token_endpoint_auth_methods_supported is not a list of names")
    for method in wanted:
        if method in supported:
            return method
    raise ConfigurationError(
        f"the server supports {', '.join(map(str, supported))} for its token endpoint; "
        f"the credentials given allow {', '.join(wanted)}"
    )


def dpop_algorithms(document: Mapping[str, Any]) -> list[str] | None:
    """The server's ``dpop_signing_alg_values_supported`` (RFC 9449 section 5.1), or
    ``None`` when it does not list them."""
    listed = document.get("dpop_signing_alg_values_supported")
    if listed is None:
        return None
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise ConfigurationError("dpop_signing_alg_values_supported is not a list of names")
    return listed


def preferred_dpop_algorithm(document: Mapping[str, Any]) -> str | None:
    """For ``dpop=True`` without an algorithm: ES256 unless the server lists others only,
    then the first of ours it lists (``None``: the default will do, or nothing would)."""
    from ._dpop import ALGORITHMS

    listed = dpop_algorithms(document)
    if not listed:
        return None
    return next((algorithm for algorithm in ALGORITHMS if algorithm in listed), None)


def check_dpop_algorithm(document: Mapping[str, Any], algorithm: str) -> None:
    """Refuse a DPoP key whose algorithm the server says it does not accept."""
    listed = dpop_algorithms(document)
    if listed and algorithm not in listed:
        raise ConfigurationError(
            f"the server accepts DPoP proofs signed with {', '.join(listed)[:200]}, not "
            f"{algorithm}; set dpop_algorithm (for dpop=True) or give a key for one of those"
        )
