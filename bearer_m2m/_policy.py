"""When to refresh a token and how to wait between failed token requests.

Plain values and functions, no I/O and no locks: the token source and the
fetcher ask these questions, so each rule is written once.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime

from ._tokens import GrantedToken
from .errors import ConfigurationError

#: Margins never exceed these fractions of a token's lifetime, so that a token
#: living 3 s is not refreshed on every request while a day-long one is
#: refreshed a minute ahead.
LEEWAY_FRACTION = 0.05
REFRESH_AHEAD_FRACTION = 0.2


@dataclass(frozen=True)
class CachedToken:
    """A token with the monotonic instants that govern its use.

    Before ``refresh_at`` the token is simply used. Between ``refresh_at`` and
    ``expires_at`` it is still used while one background fetch replaces it. From
    ``expires_at`` (a leeway before the real expiry, for clock skew and
    latency) callers wait for a new one.
    """

    access_token: str = field(repr=False)
    refresh_at: float
    expires_at: float


@dataclass(frozen=True)
class RefreshPolicy:
    """How early tokens are refreshed, and how often a rejected token may be replaced.

    ``refresh_ahead`` and ``expiry_leeway`` are upper bounds in seconds; each is
    also capped at a fraction of the token's lifetime (20 % and 5 %).
    ``default_lifetime`` applies when the server states no ``expires_in`` and the
    token is not a JWT with ``exp``. ``forced_refresh_interval`` is the quota
    guard: after a 401 forced a new token, another 401 forces the next one only
    this many seconds later.
    """

    refresh_ahead: float = 60.0
    expiry_leeway: float = 10.0
    default_lifetime: float = 3600.0
    forced_refresh_interval: float = 30.0

    def __post_init__(self) -> None:
        _require_seconds(self, "refresh_ahead", "expiry_leeway", "forced_refresh_interval")
        _require_seconds(self, "default_lifetime", positive=True)

    def lifetime_of(self, granted: GrantedToken) -> float:
        """Seconds the token has left: as the server said, else the default."""
        return self.default_lifetime if granted.expires_in is None else granted.expires_in

    def schedule(self, granted: GrantedToken, now: float) -> CachedToken:
        remaining = self.lifetime_of(granted)
        lifetime = granted.lifetime or remaining  # margins scale with the whole lifetime
        leeway = min(self.expiry_leeway, lifetime * LEEWAY_FRACTION)
        ahead = max(leeway, min(self.refresh_ahead, lifetime * REFRESH_AHEAD_FRACTION))
        return CachedToken(
            access_token=granted.access_token,
            refresh_at=now + remaining - ahead,
            expires_at=now + remaining - leeway,
        )

    @staticmethod
    def after_failed_refresh(cached: CachedToken, now: float, wait: float = 0.0) -> CachedToken:
        """Keep using ``cached`` and try again after a quarter of its remaining
        life (at least a second, and at least the ``wait`` the server asked for),
        so a failing server is not hammered."""
        retry_at = now + max(1.0, wait, (cached.expires_at - now) / 4)
        return replace(cached, refresh_at=min(retry_at, cached.expires_at))


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of failed token requests (429, 5xx, timeouts, dropped connections).

    Waits grow exponentially from ``initial_backoff`` up to ``max_backoff``
    with random jitter, and never less than a ``Retry-After`` the server asked
    for. A fetch makes at most ``max_attempts`` requests, and no retry starts
    once ``deadline`` seconds have passed since the first attempt: whichever
    comes first ends it, so an outage costs each client a bounded number of
    requests however long it lasts.
    """

    deadline: float = 30.0
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_attempts: int = 4

    def __post_init__(self) -> None:
        _require_seconds(self, "deadline", "initial_backoff", "max_backoff")
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ConfigurationError("max_attempts must be a whole number of at least 1")

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0**attempt)
        backoff = ceiling / 2 + rng.uniform(0, ceiling / 2)
        return max(backoff, retry_after or 0.0)


def _require_seconds(settings: object, *names: str, positive: bool = False) -> None:
    """A margin of NaN, infinity or a negative number would quietly disable a rule."""
    for name in names:
        value = getattr(settings, name)
        ok = isinstance(value, (int, float)) and math.isfinite(value) and value >= 0
        if not ok or (positive and value == 0):
            wanted = "a positive" if positive else "a non-negative"
            raise ConfigurationError(f"{name} must be {wanted}, finite number of seconds")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Read a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
