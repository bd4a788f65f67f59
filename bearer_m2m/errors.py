"""The exceptions bearer_m2m raises.

Every error derives from :class:`TokenError`, so one ``except`` clause covers the
library. Messages are built only from the status code and the server's ``error``
fields; the client secret and access tokens never reach them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._ratelimit import RateLimit

__all__ = [
    "ConfigurationError",
    "InsecureTransportError",
    "InvalidTokenResponse",
    "TLSError",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenRequestRejected",
]


class TokenError(Exception):
    """Base class: no access token could be obtained or used.

    ``status_code`` is the token endpoint's HTTP status when there was one;
    ``error`` and ``error_description`` are the RFC 6749 section 5.2 fields of its
    answer; ``retry_after`` is the delay in seconds the server asked for, if any
    (or, for a token of a type the client cannot use, the 60 s during which the
    error is raised again without asking: each ask would cost a token);
    ``rate_limit`` holds what Auth0's rate-limit and quota headers said.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        error_description: str | None = None,
        retry_after: float | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.error_description = error_description
        self.retry_after = retry_after
        self.rate_limit = rate_limit


class ConfigurationError(TokenError, ValueError):
    """The client was constructed with settings that cannot work."""


class InsecureTransportError(ConfigurationError):
    """A secret or a token would travel over plain HTTP to a non-loopback host."""


class TokenRequestRejected(TokenError):
    """The token endpoint refused the request (``invalid_client``, ``access_denied``...).

    Retrying cannot help: the credentials or the client's grants must change.
    """


class TokenEndpointUnavailable(TokenError):
    """The token endpoint kept failing (429, 5xx, timeouts, dropped connections)
    until the retry deadline ran out."""


class TLSError(TokenError):
    """TLS with the token endpoint (or the discovery server) failed: its certificate is
    not trusted, or it refused the client certificate. Retrying cannot help; ``verify=``
    (``BEARER_M2M_CA_BUNDLE``, ``--ca-bundle``) or ``cert=`` must change."""


class InvalidTokenResponse(TokenError):
    """The token endpoint answered something that is not a usable bearer token
    (an HTML page, a body that is not JSON, no ``access_token``, another token type)."""
