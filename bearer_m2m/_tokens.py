"""What a token endpoint granted, read from its JSON answer."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from .errors import InvalidTokenResponse


def fingerprint(access_token: str) -> str:
    """A short, stable name for a token that is safe to log: 8 hex digits of its SHA-256."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class GrantedToken:
    """An access token and how long the server said it lives (``None``: not said).

    ``lifetime`` is its whole lifetime when that differs from ``expires_in``: a
    token another process fetched a while ago and stored in a shared cache.
    """

    access_token: str = field(repr=False)
    expires_in: float | None
    lifetime: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)


def granted_token(payload: Mapping[str, Any]) -> GrantedToken:
    """Validate a successful token response (RFC 6749 section 5.1).

    ``expires_in`` may be an integer or a numeric string (some servers send
    ``"3600"``); when it is absent, a JWT access token's ``exp`` claim is used.
    """
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise InvalidTokenResponse("token response has no access_token")
    token_type = payload.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type if isinstance(token_type, str) else type(token_type).__name__
        raise InvalidTokenResponse(
            f"token response has token_type {shown[:40]!r}; only Bearer tokens are supported"
        )
    expires_in = _seconds(payload.get("expires_in"))
    if expires_in is None:
        expires_in = _jwt_seconds_left(access_token)
    return GrantedToken(access_token, expires_in)


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidTokenResponse(f"expires_in is a {type(value).__name__}, not a number")
    try:
        seconds = float(value)
    except ValueError:
        raise InvalidTokenResponse("expires_in is not a number") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise InvalidTokenResponse("expires_in is not a finite, non-negative number")
    return seconds


def _jwt_seconds_left(access_token: str) -> float | None:
    """Seconds until a JWT's ``exp``, read without verifying the signature.

    The claim is used for timing only; whoever receives the token verifies it.
    An opaque token or a JWT without ``exp`` gives ``None``.
    """
    if access_token.count(".") != 2:
        return None
    try:
        claims = json.loads(extract_compact(access_token.encode()).payload)
    except (JoseError, ValueError, UnicodeDecodeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return max(0.0, exp - time.time())
