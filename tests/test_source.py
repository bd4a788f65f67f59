"""The token source's decisions, with a scripted fetch and a clock the test moves."""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator

import anyio
import pytest

from bearer_m2m import TokenEndpointUnavailable, TokenRequestRejected
from bearer_m2m._policy import MAX_SERVER_WAIT, MIN_TOKEN_REUSE, RefreshPolicy
from bearer_m2m._source import TokenSource
from bearer_m2m._tokens import GrantedToken


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Fetch:
    """Issues ``t1``, ``t2``... living ``lifetime`` seconds; ``gate`` holds each answer."""

    def __init__(self, lifetime: float = 100.0) -> None:
        self.lifetime = lifetime
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail_with: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, rejected: str | None = None) -> GrantedToken:
        with self._lock:
            self.calls += 1
            serial = self.calls
        self.started.set()
        assert self.gate.wait(timeout=10)
        if self.fail_with is not None:
            raise self.fail_with
        return GrantedToken(f"t{serial}", self.lifetime)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fetch() -> Fetch:
    return Fetch()


@pytest.fixture
def source(fetch: Fetch, clock: Clock) -> TokenSource:
    # lifetime 100 s: refresh ahead from 80 s, treated as expired from 95 s
    return TokenSource(fetch, RefreshPolicy(rejection_backoff=30, max_rejection_backoff=600), wait_limit=5, clock=clock)


def run_threads(n: int, target: object) -> list[object]:
    results: list[object] = []
    lock = threading.Lock()

    def work() -> None:
        value = target()  # type: ignore[operator]
        with lock:
            results.append(value)

    threads = [threading.Thread(target=work) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    return results


def wait_until_idle(source: TokenSource) -> None:
    """Wait for a background refresh to store its result."""
    for _ in range(1000):
        if source._flight is None:
            return
        threading.Event().wait(0.005)
    raise AssertionError("refresh did not finish")


def test_one_token_serves_sequential_requests(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    tokens = set()
    for _ in range(50):
        tokens.add(source.token())
        clock.now += 1.5  # 75 s in all: still before the refresh-ahead window
    assert tokens == {"t1"} and fetch.calls == 1


def test_cold_start_of_64_threads_makes_one_fetch(source: TokenSource, fetch: Fetch) -> None:
    fetch.gate.clear()
    releaser = threading.Timer(0.2, fetch.gate.set)
    releaser.start()
    results = run_threads(64, lambda: [source.token() for _ in range(10)])
    assert fetch.calls == 1
    assert {t for batch in results for t in batch} == {"t1"}  # type: ignore[attr-defined]
    assert len(results) == 64


def test_cold_start_of_1000_asyncio_tasks_makes_one_fetch(
    source: TokenSource, fetch: Fetch
) -> None:
    fetch.gate.clear()
    tokens: list[str] = []

    async def main() -> None:
        async def one() -> None:
            tokens.append(await source.atoken())

        async with anyio.create_task_group() as tasks:
            for _ in range(1000):
                tasks.start_soon(one)
            await anyio.to_thread.run_sync(fetch.started.wait)
            await anyio.sleep(0.05)
            # the 1000 waiting tasks hold one worker thread of anyio's pool, not all of it
            threads_used.append(anyio.to_thread.current_default_thread_limiter().borrowed_tokens)
            fetch.gate.set()

    threads_used: list[float] = []
    anyio.run(main, backend="asyncio")
    assert fetch.calls == 1 and len(tokens) == 1000 and set(tokens) == {"t1"}
    assert threads_used == [1]


def test_a_cancelled_waiter_hands_the_watch_to_the_others(
    source: TokenSource, fetch: Fetch
) -> None:
    fetch.gate.clear()
    tokens: list[str] = []
    cancelled: list[bool] = []

    async def main() -> None:
        async def impatient() -> None:
            with anyio.move_on_after(0.05) as scope:
                await source.atoken()
            cancelled.append(scope.cancelled_caught)

        async def patient() -> None:
            tokens.append(await source.atoken())

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(impatient)
            await anyio.sleep(0.01)  # the impatient task is the loop's watcher
            for _ in range(10):
                tasks.start_soon(patient)
            await anyio.sleep(0.1)
            fetch.gate.set()

    anyio.run(main)
    assert cancelled == [True] and tokens == ["t1"] * 10 and fetch.calls == 1


def test_trio_tasks_share_the_flight_of_threads(source: TokenSource, fetch: Fetch) -> None:
    fetch.gate.clear()
    tokens: list[str] = []

    async def main() -> None:
        async def one() -> None:
            tokens.append(await source.atoken())

        async with anyio.create_task_group() as tasks:
            for _ in range(200):
                tasks.start_soon(one)
            await anyio.to_thread.run_sync(fetch.started.wait)
            fetch.gate.set()

    thread_tokens: list[str] = []
    waiter = threading.Thread(target=lambda: thread_tokens.append(source.token()))
    waiter.start()
    anyio.run(main, backend="trio")
    waiter.join(timeout=10)
    assert fetch.calls == 1 and set(tokens) | set(thread_tokens) == {"t1"}
    assert len(tokens) == 200 and thread_tokens == ["t1"]


def test_refresh_ahead_runs_once_in_the_background_while_callers_go_on(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    assert source.token() == "t1"
    clock.now += 85  # inside the refresh-ahead window, token still valid
    fetch.gate.clear()  # the refresh cannot finish until we say so
    fetch.started.clear()
    results = run_threads(16, lambda: [source.token() for _ in range(20)])
    # every caller got the old token while the refresh was still held
    assert {t for batch in results for t in batch} == {"t1"}  # type: ignore[attr-defined]
    assert fetch.started.wait(5) and fetch.calls == 2
    assert source.current() == "t1"  # while the refresh runs, on the lock-free path
    fetch.gate.set()
    wait_until_idle(source)
    assert source.token() == "t2" and fetch.calls == 2


def test_refresh_ahead_from_async_callers_does_not_wait(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    source.token()
    clock.now += 85
    fetch.gate.clear()

    async def main() -> list[str]:
        return [await source.atoken() for _ in range(10)]

    assert anyio.run(main) == ["t1"] * 10
    fetch.gate.set()
    wait_until_idle(source)
    assert source.current() == "t2"


def test_failed_refresh_keeps_the_valid_token_and_tries_again_later(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    source.token()
    clock.now += 85
    fetch.fail_with = TokenRequestRejected("HTTP 503")
    assert source.token() == "t1"
    wait_until_idle(source)
    assert fetch.calls == 2
    assert source.token() == "t1" and fetch.calls == 2  # backing off, not hammering
    fetch.fail_with = None
    clock.now += 5  # past the back-off, still before expiry at 95 s
    assert source.token() == "t1"
    wait_until_idle(source)
    assert fetch.calls == 3 and source.token() == "t3"


def test_an_expired_token_is_never_handed_out(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    source.token()
    clock.now += 96  # past the expiry leeway
    assert source.current() is None
    assert source.token() == "t2"


def test_a_failed_fetch_reaches_every_waiter_and_the_next_call_retries(
    source: TokenSource, fetch: Fetch
) -> None:
    fetch.fail_with = TokenRequestRejected("invalid_client")
    fetch.gate.clear()
    threading.Timer(0.1, fetch.gate.set).start()

    def attempt() -> object:
        try:
            return source.token()
        except TokenRequestRejected as exc:
            return exc

    results = run_threads(8, attempt)
    assert fetch.calls == 1 and all(isinstance(r, TokenRequestRejected) for r in results)
    fetch.fail_with = None
    assert source.token() == "t2"


def test_concurrent_401s_on_one_token_cause_one_fetch(source: TokenSource, fetch: Fetch) -> None:
    rejected = source.token()
    fetch.gate.clear()
    threading.Timer(0.1, fetch.gate.set).start()
    results = run_threads(50, lambda: source.token_after_rejection(rejected))
    assert results == ["t2"] * 50 and fetch.calls == 2


def test_a_401_on_an_old_token_replays_with_the_current_one(
    source: TokenSource, fetch: Fetch
) -> None:
    old = source.token()
    source.invalidate()
    current = source.token()
    assert source.token_after_rejection(old) == current and fetch.calls == 2


def test_quota_guard_bounds_forced_refreshes(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    token = source.token()
    token = source.token_after_rejection(token)  # first 401 to an unproven token: replaced
    assert token == "t2"
    for _ in range(1000):  # an API that rejects every token
        assert source.token_after_rejection(token) is None
        clock.now += 0.01
    assert fetch.calls == 2
    clock.now += 30  # 30 s after the last token request, one more is allowed
    assert source.token_after_rejection(token) == "t3"


def test_a_token_that_served_requests_is_replaced_however_often_that_happens(
    fetch: Fetch, clock: Clock
) -> None:
    """Servers end tokens early: each 401 after successes is a token's normal end."""
    fetch.lifetime = 3.0
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=5, clock=clock)
    token = source.token()
    for serial in range(2, 50):  # 48 lifetimes in 48 s of wall clock: no guard trips
        source.accepted(token)
        clock.now += 1.0
        replacement = source.token_after_rejection(token)
        assert replacement == f"t{serial}"
        token = replacement
    assert fetch.calls == 49


def test_rejected_replacements_back_off_exponentially_and_reset_on_success(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    fetched_at: list[float] = []
    start = clock.now

    def reject_for(seconds: float) -> str:
        token = source.token()
        end = clock.now + seconds
        while clock.now < end:
            calls = fetch.calls
            replacement = source.token_after_rejection(token)
            if fetch.calls > calls:
                fetched_at.append(clock.now - start)
            token = replacement or token
            clock.now += 1.0
        return token

    token = reject_for(600)  # ten minutes of an API that refuses every (day-long) token
    assert fetched_at == [0.0, 30.0, 90.0, 210.0, 450.0]
    assert fetch.calls == 6  # the first token and five replacements

    source.accepted(token)  # the API takes tokens again: the next 401 is a token's end
    calls = fetch.calls
    assert source.token_after_rejection(token) is not None
    assert fetch.calls == calls + 1


def test_the_back_off_is_capped(fetch: Fetch, clock: Clock) -> None:
    policy = RefreshPolicy(rejection_backoff=30, max_rejection_backoff=100)
    source = TokenSource(fetch, policy, wait_limit=5, clock=clock)
    token = source.token()
    gaps = []
    last = clock.now
    while fetch.calls < 8:
        calls = fetch.calls
        token = source.token_after_rejection(token) or token
        if fetch.calls > calls:
            gaps.append(clock.now - last)
            last = clock.now
        clock.now += 1.0
    assert gaps == [0.0, 30.0, 60.0, 100.0, 100.0, 100.0, 100.0]


def test_a_natural_refresh_counts_as_a_new_try(fetch: Fetch, clock: Clock) -> None:
    """With short tokens against an API that refuses everything, refreshes on schedule
    are the only token requests: the guard adds none."""
    fetch.lifetime = 3.0
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=5, clock=clock)
    token = source.token()
    source.token_after_rejection(token)  # the first strike is replaced at once
    for _ in range(6000):  # 10 minutes, a request every 100 ms
        source.token_after_rejection(source.token())
        clock.now += 0.1
    lifetimes = 600 / 3.0
    assert fetch.calls <= lifetimes * 1.25 + 2  # refresh ahead at 80 % of each lifetime


def test_invalidate_ends_a_wait_the_server_named(source: TokenSource, fetch: Fetch) -> None:
    fetch.fail_with = TokenEndpointUnavailable("spent", retry_after=10**9)
    with pytest.raises(TokenEndpointUnavailable):
        source.token()
    with pytest.raises(TokenEndpointUnavailable):
        source.token()
    assert fetch.calls == 1  # the wait is remembered...
    fetch.fail_with = None
    source.invalidate()  # ...until the user asks for a new token
    assert source.token() == "t2"


def test_a_server_named_wait_is_capped(source: TokenSource, fetch: Fetch, clock: Clock) -> None:
    fetch.fail_with = TokenEndpointUnavailable("spent", retry_after=float("inf"))
    with pytest.raises(TokenEndpointUnavailable):
        source.token()
    clock.now += MAX_SERVER_WAIT - 1
    with pytest.raises(TokenEndpointUnavailable):
        source.token()
    assert fetch.calls == 1
    fetch.fail_with = None
    clock.now += 2
    assert source.token() == "t2"


def test_a_token_said_to_live_zero_seconds_is_used_for_a_second(
    fetch: Fetch, clock: Clock
) -> None:
    fetch.lifetime = 0.0
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=5, clock=clock)
    tokens = set()
    for _ in range(100):  # 100 requests in 0.5 s
        tokens.add(source.token())
        clock.now += 0.005
    assert fetch.calls == 1 and tokens == {"t1"}
    clock.now += MIN_TOKEN_REUSE
    assert source.token() == "t2"


def test_async_rejection_path(source: TokenSource, fetch: Fetch) -> None:
    async def main() -> tuple[str | None, str | None]:
        first = await source.atoken()
        second = await source.atoken_after_rejection(first)
        assert second is not None
        return second, await source.atoken_after_rejection(second)

    assert anyio.run(main) == ("t2", None)


def test_a_401_during_a_background_refresh_waits_for_that_refresh(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    rejected = source.token()
    clock.now += 85
    fetch.gate.clear()
    assert source.token() == rejected  # starts the background refresh
    threading.Timer(0.1, fetch.gate.set).start()
    assert source.token_after_rejection(rejected) == "t2"
    assert fetch.calls == 2


@pytest.fixture
def no_fork_warning() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded, fork()"
        yield


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_is_not_stuck_on_the_parents_lock_or_flight(
    source: TokenSource, fetch: Fetch, no_fork_warning: None
) -> None:
    parent = os.getpid()
    fetch.gate.clear()  # the parent's fetch hangs until released
    threading.Thread(target=source.token, daemon=True).start()
    assert fetch.started.wait(5)
    source._lock.acquire()  # and the lock is held at the moment of the fork
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        signal.alarm(5)  # a deadlock kills the child instead of hanging the suite
        fetch.gate.set()  # the child's own fetches answer at once
        try:
            os.write(write_end, source.token().encode())
        finally:
            os._exit(0)
    source._lock.release()
    os.close(write_end)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read_end, 100).decode()
    fetch.gate.set()
    assert os.getpid() == parent
    assert os.WIFEXITED(status), "the child was killed: it deadlocked"
    assert answer == "t2"  # the child fetched its own token


def test_the_quota_guard_warns_once_per_interval(
    source: TokenSource, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    token = source.token_after_rejection(source.token())
    assert token is not None
    with caplog.at_level("WARNING", logger="bearer_m2m"):
        for _ in range(100):
            source.token_after_rejection(token)
    assert len([r for r in caplog.records if "quota guard" in r.getMessage()]) == 1


def test_waiters_give_up_on_a_fetch_that_never_ends(fetch: Fetch, clock: Clock) -> None:
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=0.2, clock=clock)
    fetch.gate.clear()  # the endpoint drips its answers forever

    async def wait_async() -> None:
        await source.atoken()

    with pytest.raises(TokenEndpointUnavailable, match="not answering"):
        source.token()
    with pytest.raises(TokenEndpointUnavailable, match="not answering"):
        anyio.run(wait_async)
    assert fetch.calls == 2  # the stuck fetch was abandoned: the next caller started afresh
    fetch.gate.set()
    # abandoned fetches store nothing when they end at last
    assert source.token() == "t3" and fetch.calls == 3


def test_each_waiter_gets_its_own_copy_of_the_error(source: TokenSource, fetch: Fetch) -> None:
    cause = ConnectionError("refused")
    error = TokenEndpointUnavailable("unreachable", status_code=503)
    error.__cause__ = cause
    fetch.fail_with = error
    fetch.gate.clear()
    threading.Timer(0.1, fetch.gate.set).start()

    def attempt() -> object:
        try:
            return source.token()
        except TokenEndpointUnavailable as exc:
            return exc

    results = run_threads(4, attempt)
    assert len({id(r) for r in results}) == 4
    for result in results:
        assert isinstance(result, TokenEndpointUnavailable)
        assert str(result) == "unreachable" and result.status_code == 503
        assert result.__cause__ is cause


def test_a_failed_replacement_after_a_401_means_no_replay(
    source: TokenSource, fetch: Fetch
) -> None:
    rejected = source.token()
    fetch.fail_with = TokenRequestRejected("invalid_client")
    assert source.token_after_rejection(rejected) is None
    with pytest.raises(TokenRequestRejected):
        source.token()  # the next request sees the error

    async def again() -> str | None:
        return await source.atoken_after_rejection("t9")

    assert anyio.run(again) is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_during_a_refresh_refreshes_again(
    source: TokenSource, fetch: Fetch, clock: Clock, no_fork_warning: None
) -> None:
    source.token()
    clock.now += 85
    fetch.gate.clear()
    fetch.started.clear()
    assert source.token() == "t1"  # the parent's refresh starts and hangs
    assert fetch.started.wait(5)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        signal.alarm(5)
        fetch.gate.set()
        try:
            first = source.token()  # still valid: returned at once, refresh started
            wait_until_idle(source)
            os.write(write_end, f"{first} {source.token()}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    answer = os.read(read_end, 100).decode()
    fetch.gate.set()
    assert answer == "t1 t3"  # the child's own refresh (t2 was the parent's, lost in the fork)


def test_a_named_wait_is_respected_by_the_next_callers(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    fetch.fail_with = TokenEndpointUnavailable("HTTP 429", status_code=429, retry_after=60)
    for _ in range(20):  # every caller within the minute gets the 429 without asking again
        with pytest.raises(TokenEndpointUnavailable, match="429"):
            source.token()
    assert fetch.calls == 1
    clock.now += 61
    fetch.fail_with = None
    assert source.token() == "t2" and fetch.calls == 2


def test_a_failed_refresh_waits_as_long_as_the_server_asked(
    source: TokenSource, fetch: Fetch, clock: Clock
) -> None:
    source.token()
    clock.now += 81  # refresh due at 80 s, expiry at 95 s
    fetch.fail_with = TokenEndpointUnavailable("HTTP 429", retry_after=10)
    assert source.token() == "t1"
    wait_until_idle(source)
    clock.now += 5  # a quarter of the remaining life would allow another try by now
    assert source.token() == "t1"
    assert fetch.calls == 2  # still only the one failed refresh


def test_no_refresh_ahead_while_an_api_refuses_every_token(fetch: Fetch, clock: Clock) -> None:
    fetch.lifetime = 100.0
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=5, clock=clock)
    token = source.token_after_rejection(source.token())  # strike 1: replaced at once
    assert token == "t2"
    assert source.token_after_rejection(token) is None  # strike 2: backing off
    clock.now += 90  # past the refresh-ahead point of t2 (80 s): refreshed as usual
    assert source.token() == "t2"
    clock.now += 1
    deadline = time.monotonic() + 5
    while source.token() != "t3" and time.monotonic() < deadline:  # the background refresh
        time.sleep(0.01)
    assert source.token() == "t3"  # scheduled while backing off: no refresh ahead
    calls = fetch.calls
    clock.now += 90  # 90 s into t3's 100 s life (5 s leeway): still in use, no fetch
    assert source.token() == "t3" and fetch.calls == calls


def test_a_token_refused_after_half_its_life_is_its_end_even_unproven(
    fetch: Fetch, clock: Clock
) -> None:
    """A client so loaded that no request came back before its short token died."""
    fetch.lifetime = 2.0
    source = TokenSource(fetch, RefreshPolicy(), wait_limit=5, clock=clock)
    token = source.token()
    for serial in range(2, 12):  # never accepted, always refused late: no guard trip
        clock.now += 1.5
        replacement = source.token_after_rejection(token)
        assert replacement == f"t{serial}"
        token = replacement
