"""Auth0's rate-limit and quota headers: parsed, used by the retry policy, exposed, warned about."""

from __future__ import annotations

import time

import pytest
import requests_mock

from bearer_m2m import ClientCredentialsAuth, TokenEndpointUnavailable
from bearer_m2m._ratelimit import QuotaBucket, RateLimit, parse_rate_limit
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
