from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from bearer_m2m import ConfigurationError
from bearer_m2m._policy import RefreshPolicy, RetryPolicy, parse_retry_after
from bearer_m2m._tokens import GrantedToken


def margins(lifetime: float | None, policy: RefreshPolicy | None = None) -> tuple[float, float]:
    """(refresh ahead, expiry leeway) in seconds before the real expiry."""
    cached = (policy or RefreshPolicy()).schedule(GrantedToken("t", lifetime), now=1000.0)
    real_expiry = 1000.0 + (lifetime if lifetime is not None else RefreshPolicy().default_lifetime)
    return real_expiry - cached.refresh_at, real_expiry - cached.expires_at


def test_a_day_long_token_is_refreshed_a_minute_ahead() -> None:
    assert margins(86400) == (60.0, 10.0)


@pytest.mark.parametrize("lifetime", [60.0, 3.0])
def test_short_tokens_get_margins_in_proportion(lifetime: float) -> None:
    ahead, leeway = margins(lifetime)
    assert ahead == pytest.approx(lifetime * 0.2)
    assert leeway == pytest.approx(lifetime * 0.05)
    # most of the lifetime is spent using the token, not refreshing it
    assert lifetime - ahead >= 0.75 * lifetime


def test_unknown_lifetime_uses_the_default() -> None:
    cached = RefreshPolicy(default_lifetime=300).schedule(GrantedToken("t", None), now=0.0)
    assert cached.expires_at == pytest.approx(300 - 10)


def test_refresh_window_never_inverts() -> None:
    cached = RefreshPolicy(refresh_ahead=1, expiry_leeway=30).schedule(GrantedToken("t", 3600), 0.0)
    assert cached.refresh_at <= cached.expires_at


def test_failed_refresh_keeps_the_token_and_backs_off() -> None:
    cached = RefreshPolicy().schedule(GrantedToken("t", 3600), now=0.0)
    now = cached.refresh_at
    later = RefreshPolicy.after_failed_refresh(cached, now)
    assert later.access_token == "t" and later.expires_at == cached.expires_at
    assert now + 1.0 <= later.refresh_at <= later.expires_at


def test_backoff_grows_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0)
    rng = random.Random(7)
    delays = [[policy.delay(attempt, None, rng) for attempt in range(6)] for _ in range(50)]
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        seen = [run[attempt] for run in delays]
        assert all(ceiling / 2 <= d <= ceiling for d in seen)
    assert len({run[2] for run in delays}) > 1  # jittered


def test_retry_after_is_a_floor() -> None:
    assert RetryPolicy().delay(0, 7.0, random.Random()) == 7.0


def test_parse_retry_after() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    date = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(date, now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after("Mon, 01 Jan 2001 00:00:00", now=now.timestamp()) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda: RefreshPolicy(expiry_leeway=-30),
        lambda: RefreshPolicy(refresh_ahead=float("nan")),
        lambda: RefreshPolicy(default_lifetime=0),
        lambda: RefreshPolicy(rejection_backoff=float("inf")),
        lambda: RetryPolicy(deadline=-1),
        lambda: RetryPolicy(max_backoff="8"),
    ],
)
def test_tunables_must_be_finite_non_negative_seconds(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError, match="finite number of seconds"):
        make()
