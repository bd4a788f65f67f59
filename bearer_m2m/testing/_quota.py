"""Auth0's fine-grained M2M token quotas: per client and per organization, per hour and per day.

Auth0 counts the access tokens issued to each application (and, for requests
with an ``organization``, to each organization) in buckets that reset at the
start of each UTC hour and UTC day. Token responses, successful or 429, carry
the state of the buckets that applied::

    Auth0-Client-Quota-Limit: b=per_hour;q=10;r=7;t=3540,b=per_day;q=50;r=47;t=43200
    Auth0-Organization-Quota-Limit: b=per_hour;q=100;r=99;t=3540

(``b`` the bucket, ``q`` its quota, ``r`` the tokens left, ``t`` the seconds
until it resets), and this server adds ``x-ratelimit-limit``,
``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (Unix time) for the
tightest of them. Once a bucket is empty, token requests are answered 429
``too_many_requests`` with ``Retry-After`` until it resets.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable

from ._http import Headers

#: The buckets, in the order Auth0 lists them, and their periods in seconds.
PERIODS = {"per_hour": 3600, "per_day": 86400}
CLIENT_HEADER = "Auth0-Client-Quota-Limit"
ORGANIZATION_HEADER = "Auth0-Organization-Quota-Limit"


@dataclasses.dataclass(frozen=True)
class Quota:
    """How many access tokens may be issued per UTC hour and per UTC day (``None``: no limit).

    ``AuthorizationServer(client_quota=Quota(per_hour=100))`` applies to every
    client, ``organization_quota=`` to every organization a token is asked for.
    """

    per_hour: int | None = None
    per_day: int | None = None

    def __post_init__(self) -> None:
        for name in PERIODS:
            _check_count(name, getattr(self, name))

    def limits(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in PERIODS if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class _BucketState:
    header: str  # which header lists the bucket
    bucket: str  # per_hour or per_day
    limit: int
    remaining: int
    resets_at: int  # Unix time
    resets_in: int  # seconds

    def describe(self) -> str:
        return f"b={self.bucket};q={self.limit};r={self.remaining};t={self.resets_in}"


class QuotaExceeded(Exception):
    """A bucket is empty: answer 429 with these headers."""

    def __init__(self, headers: Headers, retry_after: int) -> None:
        super().__init__("token quota exceeded")
        self.headers = headers
        self.retry_after = retry_after


class QuotaBook:
    """Token counts per client and organization, in Auth0's hourly and daily buckets.

    Thread-safe. ``clock`` gives the Unix time; windows start at multiples of
    the bucket's period, which are UTC hour and day boundaries.
    """

    def __init__(
        self,
        clients: Quota | None = None,
        organizations: Quota | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._defaults = {"client": clients or Quota(), "organization": organizations or Quota()}
        self._clock = clock
        self._lock = threading.Lock()
        # (kind, name) -> bucket -> limit, where set_quota overrides the defaults.
        self._limits: dict[tuple[str, str], dict[str, int | None]] = {}
        # (kind, name, bucket) -> (window number, tokens issued in it)
        self._used: dict[tuple[str, str, str], tuple[int, int]] = {}

    def set(
        self,
        kind: str,
        name: str,
        *,
        limits: dict[str, int | None],
        remaining: dict[str, int | None],
    ) -> None:
        """Set the limits given in ``limits`` and the tokens left in ``remaining``.

        A bucket given a new limit and no ``remaining`` starts full.
        """
        for bucket, value in (*limits.items(), *remaining.items()):
            _check_count(bucket, value)
        now = self._clock()
        with self._lock:
            overrides = self._limits.setdefault((kind, name), {})
            for bucket, limit in limits.items():
                overrides[bucket] = limit
                self._used.pop((kind, name, bucket), None)
            for bucket, left in remaining.items():
                if left is None:
                    continue
                limit = self._limit(kind, name, bucket)
                if limit is None:
                    raise ValueError(f"no {bucket} quota is set for {kind} {name!r}")
                if left > limit:
                    raise ValueError(f"remaining_{bucket} is more than the {bucket} quota")
                self._used[(kind, name, bucket)] = (_window(now, bucket), limit - left)

    def clear_usage(self) -> None:
        """Every bucket full again; limits kept."""
        with self._lock:
            self._used.clear()

    def charge(self, client_id: str, organization: str | None) -> Headers:
        """Count one token for the client (and organization) and return the headers to send.

        Raises :class:`QuotaExceeded` instead, counting nothing, when a bucket is empty.
        """
        now = self._clock()
        entities = [("client", client_id, CLIENT_HEADER)]
        if organization is not None:
            entities.append(("organization", organization, ORGANIZATION_HEADER))
        with self._lock:
            states: list[tuple[tuple[str, str, str], int, _BucketState]] = []
            for kind, name, header in entities:
                for bucket, period in PERIODS.items():
                    limit = self._limit(kind, name, bucket)
                    if limit is None:
                        continue
                    window = _window(now, bucket)
                    used_window, used = self._used.get((kind, name, bucket), (window, 0))
                    used = used if used_window == window else 0
                    resets_at = (window + 1) * period
                    state = _BucketState(
                        header,
                        bucket,
                        limit,
                        max(limit - used, 0),
                        resets_at,
                        math.ceil(resets_at - now),
                    )
                    states.append(((kind, name, bucket), used, state))
            empty = [state for _, _, state in states if state.remaining == 0]
            if empty:
                retry_after = max(state.resets_in for state in empty)
                headers = _headers([state for _, _, state in states])
                raise QuotaExceeded([("Retry-After", str(retry_after)), *headers], retry_after)
            charged = []
            for key, used, state in states:
                self._used[key] = (_window(now, state.bucket), used + 1)
                charged.append(dataclasses.replace(state, remaining=state.remaining - 1))
        return _headers(charged)

    def _limit(self, kind: str, name: str, bucket: str) -> int | None:
        overrides = self._limits.get((kind, name), {})
        if bucket in overrides:
            return overrides[bucket]
        value: int | None = getattr(self._defaults[kind], bucket)
        return value


def _headers(states: list[_BucketState]) -> Headers:
    if not states:
        return []
    headers = []
    for header in (CLIENT_HEADER, ORGANIZATION_HEADER):
        listed = [state.describe() for state in states if state.header == header]
        if listed:
            headers.append((header, ",".join(listed)))
    tightest = min(states, key=lambda state: (state.remaining, state.resets_in))
    headers += [
        ("x-ratelimit-limit", str(tightest.limit)),
        ("x-ratelimit-remaining", str(tightest.remaining)),
        ("x-ratelimit-reset", str(tightest.resets_at)),
    ]
    return headers


def _window(now: float, bucket: str) -> int:
    return math.floor(now / PERIODS[bucket])


def _check_count(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{name} must be a non-negative whole number or None")
