"""OAuth2 client-credentials bearer tokens for every common HTTP client, in one ``auth=`` object.

The shared caches are imported on first use (``bearer_m2m.RedisCache`` imports
redis, ``FileCache`` filelock), so that an application that uses none of them
does not pay for, or need, their libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._auth import ClientCredentialsAuth
from ._policy import RetryPolicy
from ._ratelimit import QuotaBucket, RateLimit
from .errors import (
    ConfigurationError,
    InsecureTransportError,
    InvalidTokenResponse,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)

if TYPE_CHECKING:
    from ._file_cache import FileCache
    from ._redis_cache import RedisCache
    from ._shared import TokenCache
    from ._tiered_cache import TieredCache

#: Exports imported when first asked for: name -> module.
_LAZY = {
    "FileCache": "._file_cache",
    "RedisCache": "._redis_cache",
    "TieredCache": "._tiered_cache",
    "TokenCache": "._shared",
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
    "TieredCache",
    "TokenCache",
    "TokenEndpointUnavailable",
    "TokenError",
    "TokenRequestRejected",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
