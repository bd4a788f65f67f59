"""What a token endpoint granted, read from its JSON answer.

:func:`granted_token` is the one gate between a server's answer and the rest of
the library: whatever JSON it is given, it returns a :class:`GrantedToken` whose
token can travel in an ``Authorization`` header and whose lifetime is a finite
number of seconds, or raises :class:`InvalidTokenResponse`. No other exception
escapes it, and no message it writes contains the token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidTokenResponse

#: The longest lifetime believed, in seconds (ten years). A longer ``expires_in``
#: (a 400-digit integer, ``1e999``, which JSON decoders read as infinity) is a
#: server's way of saying "does not expire": it is read as this, so the token
#: is used until the API rejects it, and a 401 replaces it as any other.
MAX_LIFETIME = 10 * 365 * 86400.0

#: The longest access token accepted, in characters. Real tokens stay below
#: 8 KiB (a JWT with many group claims); web servers refuse header fields beyond
#: 8-16 KiB by default. A longer answer is a broken or hostile server, and
#: caching or sending it would only waste memory and bandwidth.
MAX_TOKEN_LENGTH = 64 * 1024

#: A JWT's ``exp`` may shorten the stated lifetime by at most this many seconds,
#: or this fraction of the stated lifetime when that is more (see
#: :func:`_seconds_left`).
JWT_SHORTENING_SECONDS = 2.0
JWT_SHORTENING_FRACTION = 0.1

#: What a header field value carries without quoting or encoding: visible ASCII.
_SENDABLE_TOKEN = re.compile(r"[\x21-\x7e]+")
#: A token type as RFC 6749 section 11.1 registers them: a short name.
_TOKEN_TYPE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,20}")
#: A numeric ``expires_in`` sent as a string (``"3600"``): ASCII digits only,
#: which ``float()`` alone would not ensure (it reads ``"١٢"``, ``"1_0"``, ``"nan"``).
_DECIMAL = re.compile(r"\s*(-?[0-9]+(?:\.[0-9]+)?)\s*", re.ASCII)
#: Integers beyond this are clamped before any float arithmetic (which would
#: raise ``OverflowError`` on a 400-digit integer). Far above any epoch or lifetime.
_HUGE = float(2**62)


def fingerprint(access_token: str) -> str:
    """A short, stable name for a token that is safe to log: 8 hex digits of its SHA-256.

    Any string has one: a lone surrogate (which JSON can carry) is hashed as is
    rather than raising while an error about that very token is being reported.
    """
    return hashlib.sha256(access_token.encode("utf-8", "surrogatepass")).hexdigest()[:8]


@dataclass(frozen=True)
class GrantedToken:
    """An access token and how long the server said it lives (``None``: not said).

    ``expires_in`` is, when known, a finite number of seconds from 0 to
    :data:`MAX_LIFETIME`. ``lifetime`` is its whole lifetime when that differs
    from ``expires_in``: a token another process fetched a while ago and stored
    in a shared cache.
    """

    access_token: str = field(repr=False)
    expires_in: float | None
    lifetime: float | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)


def granted_token(
    payload: Mapping[str, Any],
    *,
    token_type: str = "Bearer",  # noqa: S107  (a token type, not a password)
) -> GrantedToken:
    """Validate a successful token response (RFC 6749 section 5.1) of ``token_type``
    (``"Bearer"``, or ``"DPoP"`` for a client that sent a DPoP proof; any case).

    ``expires_in`` may be a number or a decimal string (some servers send
    ``"3600"``); beyond :data:`MAX_LIFETIME` it is read as that. When the
    access token is a JWT with ``exp``, the earlier of the two ends is used,
    within bounds (:func:`_seconds_left`). ``expires_at`` is ignored: RFC 6749
    does not define it, it is a wall-clock instant on the server's clock, and
    ``expires_in`` / ``exp`` say the same thing more reliably; the fetcher
    drops it before Authlib could read it.
    """
    if not isinstance(payload, Mapping):
        raise InvalidTokenResponse("token response is not a JSON object")
    access_token = payload.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise InvalidTokenResponse("token response has no access_token")
    _require_token_type(payload.get("token_type"), token_type)
    _require_sendable(access_token)
    stated = _seconds(payload.get("expires_in"))
    return GrantedToken(access_token, _seconds_left(stated, _jwt_claims(access_token)))


class UnexpectedTokenType(InvalidTokenResponse):
    """A token of another type than the client asked for: a server configured for the
    other kind, which will answer the same way to the next request (and charge the
    quota for each token it issues)."""


def _require_token_type(given: object, expected: str) -> None:
    """Refuse a token of another type than the client asked for, quoting the server's
    text only when it is a short name (``'mac'``, ``'DPoP'``): anything else could be
    an echo of a credential or carry line breaks into a log.

    A Bearer answer to a DPoP request is refused too: the server ignored the proof,
    and the token it gave works for whoever holds it, which is what the user chose
    DPoP to avoid.
    """
    if isinstance(given, str) and given.lower() == expected.lower():
        return
    if not isinstance(given, str):
        shown = f"of type {type(given).__name__}"
    elif _TOKEN_TYPE_NAME.fullmatch(given):
        shown = repr(given)
    else:
        shown = "that is not a token type name"
    if expected.lower() == "dpop":
        hint = (
            "this client sent a DPoP proof and accepts only DPoP-bound tokens; enable DPoP "
            "for the client at the server, or drop dpop= to use bearer tokens"
        )
    elif isinstance(given, str) and given.lower() == "dpop":
        hint = "the server binds this client's tokens with DPoP: set dpop=True (or a key)"
    else:
        hint = "only Bearer and DPoP tokens are supported"
    raise UnexpectedTokenType(f"token response has a token_type {shown}; {hint}")


def _require_sendable(access_token: str) -> None:
    """Refuse a token that cannot be sent as ``Authorization: Bearer <token>``.

    The rule is "visible ASCII" (0x21-0x7E): what a header field value carries
    without quoting or encoding, so no space, control character (CR, LF, NUL,
    TAB, DEL: header injection or a request the client refuses), obs-fold or
    non-ASCII character. It is deliberately looser than RFC 6750's ``b64token``
    (letters, digits and ``-._~+/``, then ``=`` padding): real servers issue
    opaque tokens outside that set (Salesforce's ``00D...!AQ...``, Facebook's
    ``appid|secret`` app tokens), every HTTP client sends them unchanged, and
    refusing them would break working integrations for no safety gained.
    Messages say what is wrong, never what the token is.
    """
    if len(access_token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenResponse(
            f"access_token is {len(access_token)} characters long, more than the "
            f"{MAX_TOKEN_LENGTH} a token may have"
        )
    if not _SENDABLE_TOKEN.fullmatch(access_token):
        raise InvalidTokenResponse(
            "access_token contains spaces, control or non-ASCII characters, "
            "so it cannot be sent in an HTTP header"
        )


def _seconds(value: object) -> float | None:
    """``expires_in`` as seconds from 0 to :data:`MAX_LIFETIME`, ``None`` when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        decimal = _DECIMAL.fullmatch(value)
        if decimal is None:
            raise InvalidTokenResponse("expires_in is not a number")
        value = float(decimal.group(1))  # many digits read as infinity, never raise
    seconds = _real(value)
    if seconds is None:
        raise InvalidTokenResponse(f"expires_in is a {type(value).__name__}, not a number")
    if math.isnan(seconds) or seconds < 0:
        raise InvalidTokenResponse("expires_in is not a non-negative number")
    return min(seconds, MAX_LIFETIME)


def _real(value: object) -> float | None:
    """A JSON number as a float that arithmetic cannot overflow; ``None`` for anything else.

    Huge integers and infinities are clamped to +/- ``_HUGE``, keeping their order;
    NaN stays NaN for the caller to judge.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return float(max(-_HUGE, min(value, _HUGE)))
    return max(-_HUGE, min(value, _HUGE)) if not math.isnan(value) else value


def _seconds_left(stated: float | None, claims: Mapping[str, Any]) -> float | None:
    """How long to use the token, by the best information the answer carries.

    ``stated`` is the server's own ``expires_in`` or, failing that, a JWT's
    ``exp - iat``: a lifetime that does not depend on our clock. ``exp - now``
    depends on it, and is more precise when clocks agree: servers that floor
    ``iat`` to whole seconds (node oidc-provider, Glewlwyd) end tokens up to a
    second before ``expires_in`` says. So the earlier end wins, but ``exp`` may
    shorten ``stated`` by at most ``max(2 s, 10 %)``: a client whose clock runs
    far ahead would otherwise see every token as nearly expired and fetch one
    per request, burning the quota. Beyond that bound ``stated`` is trusted.
    With only ``exp`` known, ``exp - now`` it is (never less than 0).
    """
    by_clock = _until(claims.get("exp"))
    if stated is None:
        stated = _issued_lifetime(claims)
    if by_clock is None or (stated is not None and by_clock >= stated):
        return stated
    if stated is None or stated - by_clock <= _tolerated_shortening(stated):
        return max(0.0, by_clock)
    return stated


def _tolerated_shortening(stated: float) -> float:
    return max(JWT_SHORTENING_SECONDS, stated * JWT_SHORTENING_FRACTION)


def _until(exp: object) -> float | None:
    """Seconds from now until the epoch instant ``exp`` (negative once past)."""
    instant = _real(exp)
    if instant is None or math.isnan(instant):
        return None
    return min(instant - time.time(), MAX_LIFETIME)


def _issued_lifetime(claims: Mapping[str, Any]) -> float | None:
    """``exp - iat``, when both are numbers and ``iat`` comes first."""
    exp, iat = _real(claims.get("exp")), _real(claims.get("iat"))
    if exp is None or iat is None or not exp >= iat:  # also false for NaN
        return None
    return min(exp - iat, MAX_LIFETIME)


def _jwt_claims(access_token: str) -> Mapping[str, Any]:
    """A JWT's claims, read without verifying the signature; empty for anything else.

    The claims are used for timing only; whoever receives the token verifies
    it. The payload segment is decoded here rather than by a JOSE library, so
    that no header oddity, padding, nesting depth or number size of an opaque
    or forged token can raise: the token was already checked to be ASCII and of
    bounded length.
    """
    segments = access_token.split(".")
    if len(segments) != 3:
        return {}
    payload = segments[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, RecursionError):
        # ValueError covers bad base64 padding, bad UTF-8, bad JSON and integers longer than
        # Python's int_max_str_digits; RecursionError a deeply nested array.
        return {}
    return claims if isinstance(claims, dict) else {}
