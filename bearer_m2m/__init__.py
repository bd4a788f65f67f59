"""OAuth2 client-credentials bearer tokens for requests and httpx, in one ``auth=`` object."""

from ._auth import ClientCredentialsAuth
from ._file_cache import FileCache
from ._policy import RetryPolicy
from ._ratelimit import QuotaBucket, RateLimit
from ._redis_cache import RedisCache
from ._shared import TokenCache
from ._tiered_cache import TieredCache
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
    "FileCache",
    "InsecureTransportError",
    "InvalidTokenResponse",
    "QuotaBucket",
    "RateLimit",
    "RedisCache",
    "RetryPolicy",
    "TieredCache",
    "TokenCache",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenRequestRejected",
]

__version__ = "0.1.0"
