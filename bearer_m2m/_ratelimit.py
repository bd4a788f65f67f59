"""Auth0's rate-limit and token-quota headers, read from token endpoint answers.

``x-ratelimit-limit`` / ``-remaining`` / ``-reset`` (epoch seconds) describe the
endpoint's rate limit; ``Auth0-Client-Quota-Limit`` and
``Auth0-Organization-Quota-Limit`` the M2M token quotas, as comma-separated
buckets such as ``b=per_hour;q=100;r=99;t=3540`` (quota, remaining, seconds
until reset).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

#: Remaining quota at or below this fraction of the quota draws a warning.
LOW_QUOTA_FRACTION = 0.1


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
        """Seconds until requests may succeed again, when the headers say they will not now."""
        hints = [bucket.resets_in for bucket in self.quotas if bucket.remaining <= 0]
        if self.remaining == 0 and self.reset_at is not None:
            hints.append(max(0, int(self.reset_at - (time.time() if now is None else now))))
        return float(max(hints)) if hints else None

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
        if fields.get("b") and quota is not None and remaining is not None:
            buckets.append(QuotaBucket(fields["b"], quota, remaining, resets_in or 0))
    return tuple(buckets)


def _integer(value: str | None) -> int | None:
    try:
        return int(value.strip()) if value is not None else None
    except ValueError:
        return None
