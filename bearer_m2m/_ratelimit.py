"""Auth0's rate-limit and token-quota headers, read from token endpoint answers.

``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (epoch seconds) describe the
endpoint's rate limit; ``Auth0-Client-Quota-Limit`` and
``Auth0-Organization-Quota-Limit`` the M2M token quotas, as comma-separated
buckets such as ``b=per_hour;q=100;r=99;t=3540`` (quota, remaining, seconds
until reset).

The headers are advice, and a server's answer is not trusted to be sane: a
number is read only as plain ASCII digits (no sign, no ``'²'`` or ``'٣'``, no
``1_000``); anything else is ignored, as if the header did not say it. Larger
numbers are read as :data:`MAX_NUMBER`, and :meth:`RateLimit.wait_hint` never
exceeds :data:`MAX_WAIT_HINT`, so no header can make arithmetic overflow or
lock a client out. A bucket whose name is not a short identifier is ignored,
so that no header text reaches a log line unchecked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: Remaining quota at or below this fraction of the quota draws a warning.
LOW_QUOTA_FRACTION = 0.1

#: Counts and instants beyond this (about 31 million years of epoch seconds)
#: are read as this: still "plenty" or "far away", and exact as a float.
MAX_NUMBER = 10**15

#: The longest wait the headers can ask for, in seconds: one day, Auth0's
#: longest quota window. A longer announced wait is read as a day.
MAX_WAIT_HINT = 86400.0

_DIGITS = re.compile(r"[0-9]+")
_WINDOW = re.compile(r"[A-Za-z0-9_.-]{1,32}")


@dataclass(frozen=True)
class QuotaBucket:
    """One token quota window: ``per_hour`` or ``per_day``."""

    window: str
    quota: int
    remaining: int
    resets_in: int

    @property
    def is_low(self) -> bool:
        return self.remaining <= self.quota * LOW_QUOTA_FRACTION


@dataclass(frozen=True)
class RateLimit:
    """What the token endpoint said about its limits; ``None`` where it said nothing."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: float | None = None  # epoch seconds
    client_quota: tuple[QuotaBucket, ...] = ()
    organization_quota: tuple[QuotaBucket, ...] = ()

    def wait_hint(self, now: float | None = None) -> float | None:
        """Seconds until requests may succeed again, when the headers say they will not now.

        Never negative, never more than :data:`MAX_WAIT_HINT`, whatever ``now`` is.
        """
        hints = [_bounded_wait(bucket.resets_in) for bucket in self.quotas if bucket.remaining <= 0]
        if self.remaining == 0 and self.reset_at is not None:
            hints.append(_bounded_wait(self.reset_at - (time.time() if now is None else now)))
        return max(hints) if hints else None

    @property
    def quotas(self) -> tuple[QuotaBucket, ...]:
        return self.client_quota + self.organization_quota

    def __str__(self) -> str:
        parts = []
        if self.remaining is not None and self.limit is not None:
            parts.append(f"rate limit {self.remaining}/{self.limit} left")
        for owner, buckets in (
            ("client", self.client_quota),
            ("organization", self.organization_quota),
        ):
            parts += [
                f"{owner} quota {b.window} {b.remaining}/{b.quota} left, resets in {b.resets_in} s"
                for b in buckets
            ]
        return "; ".join(parts)


def parse_rate_limit(headers: Mapping[str, str]) -> RateLimit | None:
    """The limits a response announces, or ``None`` when it announces none."""
    lowered = {name.lower(): value for name, value in headers.items()}
    limit = RateLimit(
        limit=_integer(lowered.get("x-ratelimit-limit")),
        remaining=_integer(lowered.get("x-ratelimit-remaining")),
        reset_at=_integer(lowered.get("x-ratelimit-reset")),
        client_quota=_buckets(lowered.get("auth0-client-quota-limit")),
        organization_quota=_buckets(lowered.get("auth0-organization-quota-limit")),
    )
    return None if limit == RateLimit() else limit


def _buckets(value: str | None) -> tuple[QuotaBucket, ...]:
    buckets = []
    for part in (value or "").split(","):
        fields = dict(item.strip().partition("=")[::2] for item in part.split(";") if "=" in item)
        quota, remaining, resets_in = (_integer(fields.get(key)) for key in ("q", "r", "t"))
        if _WINDOW.fullmatch(fields.get("b", "")) and quota is not None and remaining is not None:
            buckets.append(QuotaBucket(fields["b"], quota, remaining, resets_in or 0))
    return tuple(buckets)


def _integer(value: str | None) -> int | None:
    """A header's non-negative integer, at most :data:`MAX_NUMBER`; ``None`` when it is not one."""
    digits = value.strip(" \t") if isinstance(value, str) else ""
    if not _DIGITS.fullmatch(digits):
        return None
    digits = digits.lstrip("0") or "0"
    # Counted, not converted: int() refuses more than 4300 digits.
    return MAX_NUMBER if len(digits) > len(str(MAX_NUMBER)) else min(int(digits), MAX_NUMBER)


def _bounded_wait(seconds: float) -> float:
    """A wait from 0 to :data:`MAX_WAIT_HINT`; NaN and negative waits are none."""
    if not seconds > 0:
        return 0.0
    return float(min(seconds, MAX_WAIT_HINT))
