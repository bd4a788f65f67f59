"""Auth0's rate-limit and quota headers: parsed, used by the retry policy, exposed, warned about."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import requests_mock
from hypothesis import example, given
from hypothesis import strategies as st

from bearer_m2m import ClientCredentialsAuth, TokenEndpointUnavailable
from bearer_m2m._ratelimit import (
    MAX_NUMBER,
    MAX_WAIT_HINT,
    QuotaBucket,
    RateLimit,
    parse_rate_limit,
)
from tests.conftest import FAST_RETRY

URL = "https://tenant.example/oauth/token"
GOOD = {"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}


def make() -> ClientCredentialsAuth:
    return ClientCredentialsAuth(URL, client_id="cid", client_secret="s", retry=FAST_RETRY)


def test_parse_auth0_headers() -> None:
    limit = parse_rate_limit(
        {
            "X-RateLimit-Limit": "30",
            "X-RateLimit-Remaining": "29",
            "X-RateLimit-Reset": "1700000000",
            "Auth0-Client-Quota-Limit": "b=per_hour;q=100;r=99;t=3540,b=per_day;q=1000;r=998;t=86340",
            "Auth0-Organization-Quota-Limit": "b=per_hour;q=10;r=0;t=60",
        }
    )
    assert limit == RateLimit(
        limit=30,
        remaining=29,
        reset_at=1700000000,
        client_quota=(
            QuotaBucket("per_hour", 100, 99, 3540),
            QuotaBucket("per_day", 1000, 998, 86340),
        ),
        organization_quota=(QuotaBucket("per_hour", 10, 0, 60),),
    )
    assert limit.wait_hint() == 60  # the exhausted organization bucket
    assert "organization quota per_hour 0/10 left" in str(limit)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Content-Type": "application/json"}, {"Auth0-Client-Quota-Limit": "garbage;;,b=x"}],
)
def test_no_or_unreadable_headers_mean_no_limits(headers: dict[str, str]) -> None:
    assert parse_rate_limit(headers) is None


def test_a_429_without_retry_after_waits_for_the_rate_limit_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []
    monkeypatch.setattr("bearer_m2m._fetcher.time.sleep", waits.append)
    reset = str(int(time.time()) + 2)
    headers = {"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    with requests_mock.Mocker() as m:
        m.post(URL, [{"status_code": 429, "headers": headers, "json": {}}, {"json": GOOD}])
        assert make().token() == "tok"
    assert waits and 1.0 <= waits[0] <= 2.0


def test_an_exhausted_quota_gives_up_at_once_and_says_why() -> None:
    headers = {"Auth0-Client-Quota-Limit": "b=per_hour;q=100;r=0;t=1800"}
    with requests_mock.Mocker() as m:
        m.post(URL, status_code=429, headers=headers, json={"error": "too_many_requests"})
        with pytest.raises(TokenEndpointUnavailable) as caught:
            make().token()
    assert m.call_count == 1
    exc = caught.value
    assert exc.retry_after == 1800
    assert exc.rate_limit is not None and exc.rate_limit.client_quota[0].remaining == 0


def test_a_low_quota_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    low = {"Auth0-Client-Quota-Limit": "b=per_hour;q=100;r=5;t=1800"}
    plenty = {"Auth0-Client-Quota-Limit": "b=per_hour;q=100;r=50;t=1800"}
    with requests_mock.Mocker() as m, caplog.at_level("WARNING", logger="bearer_m2m"):
        m.post(URL, [{"json": GOOD, "headers": plenty}, {"json": GOOD, "headers": low}])
        auth = make()
        auth.token()
        assert "quota" not in caplog.text
        auth.invalidate()
        auth.token()
    assert "M2M token quota runs low: client quota per_hour 5/100 left" in caplog.text


# --- hostile or broken headers never raise -----------------------------------------------------

NAMES = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Auth0-Client-Quota-Limit",
    "Auth0-Organization-Quota-Limit",
]
numbers = st.one_of(
    st.integers().map(str),
    st.sampled_from(["9" * 400, "9" * 5000, "-5", "+5", "1_000", " 7 ", "0x10", "", "\u00b2"]),
    st.sampled_from(["\u0663", "\uff15", "1e3", "inf", "nan", "007", "0" * 30 + "1"]),
    st.text(max_size=6),
)
bucket_texts = st.lists(
    st.tuples(st.text(max_size=10) | st.sampled_from(["per_hour", "per_day"]), numbers, numbers, numbers),
    max_size=3,
).map(lambda buckets: ",".join(f"b={b};q={q};r={r};t={t}" for b, q, r, t in buckets))
auth0_headers = st.dictionaries(
    st.sampled_from(NAMES) | st.sampled_from(NAMES).map(str.lower),
    numbers | bucket_texts | st.text(),
)
any_headers = st.dictionaries(st.text(), st.text()) | auth0_headers
instants = st.none() | st.floats(allow_nan=True, allow_infinity=True)


def assert_sane(limit: RateLimit, now: float | None) -> None:
    for number in (limit.limit, limit.remaining, limit.reset_at):
        assert number is None or 0 <= number <= MAX_NUMBER
    for bucket in limit.quotas:
        assert min(bucket.quota, bucket.remaining, bucket.resets_in) >= 0
        assert max(bucket.quota, bucket.remaining, bucket.resets_in) <= MAX_NUMBER
        assert isinstance(bucket.is_low, bool)
    hint = limit.wait_hint(now)
    assert hint is None or 0 <= hint <= MAX_WAIT_HINT
    text = str(limit)
    assert "\r" not in text and "\n" not in text  # a log line stays one line


@given(headers=any_headers, now=instants)
@example({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "9" * 400}, None)
@example({"Auth0-Client-Quota-Limit": f"b=per_hour;q={'9' * 400};r=0;t={'9' * 400}"}, None)
@example({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000000"}, float("nan"))
@example({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000000"}, float("-inf"))
def test_any_headers_parse_to_sane_limits(headers: dict[str, str], now: float | None) -> None:
    limit = parse_rate_limit(headers)
    if limit is not None:
        assert_sane(limit, now)


@given(st.text() | numbers)
def test_a_number_is_read_only_from_ascii_digits(value: str) -> None:
    limit = parse_rate_limit({"X-RateLimit-Limit": value})
    digits = value.strip(" \t")
    if digits and all("0" <= char <= "9" for char in digits):
        expected = min(Decimal(digits), MAX_NUMBER)  # Decimal: no 4300-digit limit, unlike int
        assert limit is not None and limit.limit == expected
    else:
        assert limit is None


@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "-5", "+5", "1_000", "0x10", "1e3", "4.5"])
def test_numbers_that_are_not_plain_ascii_digits_are_ignored(value: str) -> None:
    assert parse_rate_limit({"X-RateLimit-Limit": value}) is None
    assert parse_rate_limit({"Auth0-Client-Quota-Limit": f"b=per_hour;q={value};r=1"}) is None


def test_huge_numbers_are_capped_and_the_wait_is_at_most_a_day() -> None:
    limit = parse_rate_limit(
        {
            "X-RateLimit-Limit": "9" * 400,
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "9" * 5000,
            "Auth0-Client-Quota-Limit": f"b=per_day;q={'9' * 400};r={'9' * 400};t={'9' * 400}",
        }
    )
    assert limit is not None
    assert limit.limit == limit.reset_at == MAX_NUMBER
    assert limit.client_quota == (QuotaBucket("per_day", MAX_NUMBER, MAX_NUMBER, MAX_NUMBER),)
    assert not limit.client_quota[0].is_low
    assert limit.wait_hint() == MAX_WAIT_HINT == 86400


def test_a_past_reset_means_no_wait() -> None:
    limit = parse_rate_limit({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1000"})
    assert limit is not None and limit.wait_hint(now=2000.0) == 0


@pytest.mark.parametrize("window", ["per_hour\r\nInjected: 1", "per hour", "x" * 33, "", "\u00e9t\u00e9"])
def test_a_bucket_whose_name_is_not_an_identifier_is_ignored(window: str) -> None:
    assert parse_rate_limit({"Auth0-Client-Quota-Limit": f"b={window};q=10;r=0;t=5"}) is None
