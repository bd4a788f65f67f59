"""When to refresh a token and how to wait between failed token requests.

Plain values and functions, no I/O and no locks: the token source and the
fetcher ask these questions, so each rule is written once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from ._tokens import GrantedToken
from .errors import ConfigurationError

if TYPE_CHECKING:
    import random

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
    latency) callers wait for a new one. ``obtained_at`` is when it arrived.
    """

    access_token: str = field(repr=False)
    refresh_at: float
    expires_at: float
    obtained_at: float

    def has_lived_half(self, now: float) -> bool:
        """Past the middle of its usable life: a 401 now is its end, not a strike,
        even if no request succeeded with it yet (an overloaded client whose
        requests wait longer than a short token lives)."""
        return now >= (self.obtained_at + self.expires_at) / 2


#: A token is used for at least this long, whatever its ``expires_in`` says: a
#: server that announces 0 s lifetimes costs one token request a second, not one
#: per request (and an API that refuses such a token meets the rejection guard).
MIN_TOKEN_REUSE = 1.0

#: The longest wait a token endpoint may impose (``Retry-After``, a spent Auth0
#: quota): past it the source asks again, so a wrong header cannot lock a client
#: out for a year. ``invalidate()`` ends a wait at once.
MAX_SERVER_WAIT = 900.0

#: The longest wait a ``Retry-After`` is read as (a day: Auth0's longest quota window).
MAX_REPORTED_WAIT = 86400.0


@dataclass(frozen=True)
class RefreshPolicy:
    """How early tokens are refreshed, and how a rejected token may be replaced.

    ``refresh_ahead`` and ``expiry_leeway`` are upper bounds in seconds; each is
    also capped at a fraction of the token's lifetime (20 % and 5 %).
    ``default_lifetime`` applies when the server states no ``expires_in`` and the
    token is not a JWT with ``exp``. ``rejection_backoff`` and
    ``max_rejection_backoff`` pace the replacement of tokens that an API rejects
    before it accepted any request with them (see :class:`RejectionGuard`).
    """

    refresh_ahead: float = 60.0
    expiry_leeway: float = 10.0
    default_lifetime: float = 3600.0
    rejection_backoff: float = 30.0
    max_rejection_backoff: float = 600.0

    def __post_init__(self) -> None:
        _require_seconds(
            self, "refresh_ahead", "expiry_leeway", "rejection_backoff", "max_rejection_backoff"
        )
        _require_seconds(self, "default_lifetime", positive=True)

    def lifetime_of(self, granted: GrantedToken) -> float:
        """Seconds the token has left: as the server said, else the default."""
        return self.default_lifetime if granted.expires_in is None else granted.expires_in

    def schedule(self, granted: GrantedToken, now: float, *, ahead: bool = True) -> CachedToken:
        """When to refresh ``granted`` and when to stop using it.

        ``ahead=False`` skips the refresh ahead: while an API refuses every token,
        no request gains from a new one early, and each costs quota.
        """
        remaining = self.lifetime_of(granted)
        lifetime = granted.lifetime or remaining  # margins scale with the whole lifetime
        leeway = min(self.expiry_leeway, lifetime * LEEWAY_FRACTION)
        early = min(self.refresh_ahead, lifetime * REFRESH_AHEAD_FRACTION) if ahead else 0.0
        ahead_by = max(leeway, early)
        return CachedToken(
            obtained_at=now,
            access_token=granted.access_token,
            refresh_at=now + max(remaining - ahead_by, MIN_TOKEN_REUSE),
            expires_at=now + max(remaining - leeway, MIN_TOKEN_REUSE),
        )

    @staticmethod
    def after_failed_refresh(cached: CachedToken, now: float, wait: float = 0.0) -> CachedToken:
        """Keep using ``cached`` and try again after a quarter of its remaining
        life (at least a second, and at least the ``wait`` the server asked for),
        so a failing server is not hammered."""
        retry_at = now + max(1.0, wait, (cached.expires_at - now) / 4)
        return replace(cached, refresh_at=min(retry_at, cached.expires_at))

    def rejection_guard(self) -> RejectionGuard:
        return RejectionGuard(self.rejection_backoff, self.max_rejection_backoff)


@dataclass
class RejectionGuard:
    """Whether a 401 may cost a token request: the quota guard.

    A token that served requests, or is first refused after half its life, has
    reached its end (servers expire tokens a little before ``expires_in`` says):
    it is replaced at once, however often that happens. A token refused before any request succeeded
    with it is a *strike*. The first strike is replaced at once too (a key
    rotation, a token revoked in flight); after that, a replacement is forced
    only when ``backoff * 2**(strikes - 2)`` seconds (at most ``max_backoff``)
    have passed since the last token request, natural refreshes included, and
    tokens are not refreshed ahead of their expiry. An API that refuses every
    token therefore costs a handful of day-long tokens an hour, or one short-lived
    token per lifetime, and one accepted request ends the back-off.

    Not thread-safe: the token source calls it under its lock.
    """

    backoff: float
    max_backoff: float
    strikes: int = 0
    #: The last token counted as a strike, so its further 401s are not counted again.
    struck: str | None = field(default=None, repr=False)

    def allows_replacement(
        self, rejected: str, *, proven: bool, now: float, last_fetch: float
    ) -> bool:
        """May ``rejected`` (refused at ``now``) be replaced by a new token request?"""
        if proven:
            self.accepted()
            return True
        if rejected != self.struck:
            self.struck = rejected
            self.strikes += 1
        return now - last_fetch >= self.wait_after_strikes()

    def has_struck(self, token: str) -> bool:
        """Whether ``token`` was already counted as a strike (refused early before)."""
        return token == self.struck

    @property
    def backing_off(self) -> bool:
        """Two tokens in a row were refused before any request succeeded with them."""
        return self.strikes >= 2

    def wait_after_strikes(self) -> float:
        """Seconds since the last token request before the next forced one."""
        if self.strikes <= 1:
            return 0.0
        return min(self.max_backoff, self.backoff * 2.0 ** (self.strikes - 2))

    def accepted(self) -> None:
        """A request succeeded with the current token: the API takes our tokens."""
        self.strikes, self.struck = 0, None


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
    """Read a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110 10.2.3),
    at most a day (what the server said is reported; how long a client actually waits is
    capped at :data:`MAX_SERVER_WAIT` by the token source); anything else (non-ASCII digits,
    junk) is ``None``."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_REPORTED_WAIT)  # 400 nines parse to inf: capped too
    from email.utils import parsedate_to_datetime  # rare: email's import is not free

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, seconds), MAX_REPORTED_WAIT)
