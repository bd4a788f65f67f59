"""OAuth2 client-credentials bearer tokens for every common HTTP client, in one ``auth=`` object.

Every export but the errors is imported on first use: ``bearer_m2m.RedisCache``
imports redis, ``FileCache`` filelock, ``ClientCredentialsAuth`` requests and
Authlib. An application pays for, and needs, only what it uses; and the pytest
plugin, which pytest loads with this package in every run of every project that
has it installed, costs next to nothing until one of its fixtures is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .errors import (
    ConfigurationError,
    InsecureTransportError,
    InvalidTokenResponse,
    TLSError,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)

if TYPE_CHECKING:
    from ._auth import ClientCredentialsAuth
    from ._policy import RetryPolicy
    from ._ratelimit import QuotaBucket, RateLimit
    from .caches._file import FileCache
    from .caches._redis import RedisCache
    from .caches._shared import TokenCache
    from .caches._tiered import TieredCache

#: Exports imported when first asked for: name -> module.
_LAZY = {
    "ClientCredentialsAuth": "._auth",
    "QuotaBucket": "._ratelimit",
    "RateLimit": "._ratelimit",
    "RetryPolicy": "._policy",
    "FileCache": ".caches._file",
    "RedisCache": ".caches._redis",
    "TieredCache": ".caches._tiered",
    "TokenCache": ".caches._shared",
}

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
    "TLSError",
    "TieredCache",
    "TokenCache",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenRequestRejected",
]

__version__ = "0.1.0"


__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
