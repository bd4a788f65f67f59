"""OAuth2 client-credentials bearer tokens for requests and httpx, in one ``auth=`` object."""

from ._auth import ClientCredentialsAuth
from ._policy import RetryPolicy
from .errors import (
    ConfigurationError,
    InsecureTransportError,
    InvalidTokenResponse,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)

__all__ = [
    "ClientCredentialsAuth",
    "ConfigurationError",
    "InsecureTransportError",
    "InvalidTokenResponse",
    "RetryPolicy",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenRequestRejected",
]

__version__ = "0.1.0"
