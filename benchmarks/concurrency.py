"""How many token requests concurrent callers cause, and how long they wait.

Everything runs in this process against the project's local authorization
server, ``bearer_m2m.testing.AuthorizationServer`` (RS256 JWT access tokens),
and a ``bearer_m2m.testing.ProtectedAPI`` that validates them for the audience
``AUDIENCE``. Every contender sends that audience in its token request (the
server's default audience is another one, so a token requested without it is
refused by the API). Every token request of every scenario is delayed by the
server (``delay_next``); the report checks that none was answered sooner.

(a) cold start, threads: 64 threads x 10 requests with ``requests``;
    a fresh auth object, token endpoint delay 50 ms. Target: 1 token request.
(b) cold start, asyncio, token only: 1,000 concurrent tasks ask a fresh auth
    object for the token at once (bearer_m2m: ``await auth.atoken()``; and the
    first step of each contender's ``async_auth_flow``, which is what
    ``httpx.AsyncClient`` runs), no API call and no connection pool in the way;
    token endpoint delay 50 ms. Reported: token requests, when the last of the
    1,000 tasks had the token compared with the fetch itself, event-loop stalls,
    and the threads used (anyio's default limiter, sampled while waiting).
(b') cold start, asyncio, end to end: the same 1,000 tasks each make an API call
    on one ``httpx.AsyncClient``. Target: 1 token request, event loop never
    blocked during the fetch. Here the auth step's wall time is dominated by
    httpcore's pool scheduling (see the static-header reference row).
(c) refresh ahead: tokens live 3 s, token endpoint delay 100 ms; 16 threads
    (and, separately, 16 asyncio tasks) request continuously for several token
    lifetimes. The time each request spends in the auth step is recorded;
    target: after the first fetch no request waits for a token (the longest
    auth step stays far below the 100 ms delay).

Peers are measured the same way when installed: requests-auth for threads,
httpx-auth for asyncio tasks. A static-header auth (sending a valid long-lived
token fetched beforehand) is run as a reference for the noise of this machine
(GIL hand-offs between the client threads and the in-process servers, event-loop
scheduling of 1,000 tasks). Nothing is asserted.

Run from the repository root::

    python benchmarks/concurrency.py           # ~60 s
    python benchmarks/concurrency.py --quick   # ~45 s (3 runs in (b), shorter refresh runs)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import anyio.to_thread  # noqa: E402
import httpx  # noqa: E402
import requests  # noqa: E402
from requests.auth import AuthBase  # noqa: E402

from bearer_m2m import ClientCredentialsAuth  # noqa: E402
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient  # noqa: E402

#: The API the tokens are for; every contender asks for it as ``audience``.
AUDIENCE = "https://api.bench.example/"
#: Delayed answers scripted per server: more token requests than any scenario makes.
DELAYED_REQUESTS = 10_000
POOL_CONNECTIONS = 10  # (b') only; see the note printed at the end
SLOW_STEPS = (0.010, 0.050)  # auth steps at least this long are counted
#: The name of the thread bearer_m2m runs a fetch in (counted in (b)).
FETCH_THREAD = "bearer_m2m-token-fetch"


# -- servers -------------------------------------------------------------------------


class BenchServer(AuthorizationServer):
    """The local authorization server, remembering when each token request was
    served (arrival to answer) and when (monotonic clock) each token it issued
    reaches its ``expires_in``."""

    def __init__(self, *, token_lifetime: float) -> None:
        self.busy: list[tuple[float, float]] = []
        self._expiry: dict[str, float] = {}
        self._in_flight = 0
        self._records = threading.Lock()
        super().__init__(token_lifetime=token_lifetime)

    def handle(self, request: Any) -> Any:
        if request.path != urlsplit(self.token_url).path:
            return super().handle(request)
        arrived = time.monotonic()
        with self._records:
            self._in_flight += 1
        try:
            response = super().handle(request)
        finally:
            done = time.monotonic()
            with self._records:
                self._in_flight -= 1
                self.busy.append((arrived, done))
        if response is not None and response.status == 200:
            payload = json.loads(response.body)
            with self._records:
                self._expiry[payload["access_token"]] = done + payload["expires_in"]
        return response

    def expired(self, access_token: str) -> bool:
        """Whether one of its tokens is past its ``expires_in``, counted from its issue."""
        with self._records:
            expiry = self._expiry.get(access_token)
        return expiry is not None and time.monotonic() >= expiry

    def clear_records(self) -> None:
        with self._records:
            self.busy = []

    def wait_quiet(self, timeout: float = 5.0) -> None:
        """Wait until no token request is being served (a stopped server drops them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._records:
                if self._in_flight == 0:
                    return
            time.sleep(0.005)


class BenchAPI(ProtectedAPI):
    """The protected API, also counting requests whose token was past its ``expires_in``
    (it refuses a token only once its ``exp``, in whole seconds, has passed)."""

    def __init__(self, server: BenchServer, audience: str) -> None:
        super().__init__(server, audience)
        self._issuer = server
        self._stale = 0
        self._stale_lock = threading.Lock()

    @property
    def stale(self) -> int:
        with self._stale_lock:
            return self._stale

    def handle(self, request: Any) -> Any:
        authorization = request.headers.get("Authorization") or ""
        if authorization.startswith("Bearer ") and self._issuer.expired(authorization[7:]):
            with self._stale_lock:
                self._stale += 1
        return super().handle(request)


#: Token requests served in all scenarios, and those answered sooner than their delay.
DELAY_CHECK = Counter[str]()


class Servers:
    """A fresh authorization server whose every token request is delayed by ``delay``,
    and an API that accepts its tokens for ``AUDIENCE``."""

    def __init__(self, *, delay: float, lifetime: float = 3600.0) -> None:
        self.delay = delay
        self.token = BenchServer(token_lifetime=lifetime).start()
        self.api = BenchAPI(self.token, AUDIENCE)
        try:
            self.api.start()
            # The static-header reference sends a real token that outlives any run; it
            # comes from a client of its own, before the counters start.
            self.reference_token = fetch_token(
                self.token.token_url, self.token.register_client(token_lifetime=3600)
            )
        except BaseException:
            self.api.stop()
            self.token.stop()
            raise
        self.url = self.api.url + "v1/items"
        self.credentials = {
            "client_id": self.token.client.client_id,
            "client_secret": self.token.client.client_secret,
        }
        self.token.reset()
        self.token.clear_records()
        self.token.delay_next(delay, times=DELAYED_REQUESTS)

    @property
    def token_requests(self) -> int:
        return self.token.token_requests

    def close(self) -> None:
        # A refresh the last request started is let finish, so that it is neither
        # dropped by the server stopping nor left to fail (and log) afterwards.
        for thread in threading.enumerate():
            if thread.name == FETCH_THREAD:
                thread.join(timeout=5)
        self.token.wait_quiet()
        DELAY_CHECK["served"] += len(self.token.busy)
        DELAY_CHECK["early"] += sum(
            done - arrived < self.delay for arrived, done in self.token.busy
        )
        self.api.stop()
        self.token.stop()


def fetch_token(token_url: str, client: RegisteredClient) -> str:
    response = requests.post(
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "audience": AUDIENCE,
        },
        timeout=10,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


# -- timing the auth step ---------------------------------------------------------------


class Log:
    """(start, seconds in the auth step) of every request; list.append is atomic."""

    def __init__(self) -> None:
        self.entries: list[tuple[float, float]] = []

    def waits(self, after: float = 0.0) -> list[float]:
        return [d for start, d in self.entries if start >= after]


class TimedRequestsAuth(AuthBase):
    def __init__(self, inner: Callable[[Any], Any], log: Log) -> None:
        self.inner, self.log = inner, log

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        start = time.perf_counter()
        r = self.inner(r)
        self.log.entries.append((start, time.perf_counter() - start))
        return r


class TimedHttpxAuth(httpx.Auth):
    """Times the first step of the wrapped auth's async flow, then relays the rest."""

    def __init__(self, inner: httpx.Auth, log: Log) -> None:
        self.inner, self.log = inner, log

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise NotImplementedError  # pragma: no cover

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.inner.async_auth_flow(request)
        try:
            start = time.perf_counter()
            outgoing = await flow.__anext__()
            self.log.entries.append((start, time.perf_counter() - start))
            while True:
                response = yield outgoing
                try:
                    outgoing = await flow.asend(response)
                except StopAsyncIteration:
                    return
        finally:
            await flow.aclose()


class StaticRequestsAuth(AuthBase):
    """A constant bearer header (a valid token fetched beforehand)."""

    def __init__(self, token: str) -> None:
        self.header = "Bearer " + token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.header
        return r


class StaticHttpxAuth(httpx.Auth):
    """A constant bearer header (a valid token fetched beforehand)."""

    def __init__(self, token: str) -> None:
        self.header = "Bearer " + token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header
        yield request


class LoopMonitor:
    """Measures how late a 2-ms sleep wakes up: event-loop stalls."""

    INTERVAL = 0.002

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (due, woke) for stalls over 1 ms
        self._stop = False

    async def run(self) -> None:
        while not self._stop:
            due = time.monotonic() + self.INTERVAL
            await asyncio.sleep(self.INTERVAL)
            woke = time.monotonic()
            if woke - due > 0.001:
                self.stalls.append((due, woke))

    def stop(self) -> None:
        self._stop = True

    @property
    def max_stall(self) -> float:
        return max((woke - due for due, woke in self.stalls), default=0.0)

    def max_stall_during(self, intervals: list[tuple[float, float]]) -> float | None:
        """The longest time the loop stayed blocked inside one of ``intervals`` (token
        requests at the server): only the part of a stall within the interval counts,
        not the work that starts when the token arrives. None when there were none."""
        if not intervals:
            return None
        return max(
            (
                min(woke, end) - max(due, start)
                for due, woke in self.stalls
                for start, end in intervals
                if due < end and woke > start
            ),
            default=0.0,
        )


# -- contenders -----------------------------------------------------------------------------

Factory = Callable[[Servers, float], Any]  # (servers, token lifetime) -> auth object


def bearer_factory(servers: Servers, lifetime: float) -> Any:
    return ClientCredentialsAuth(servers.token.token_url, **servers.credentials, audience=AUDIENCE)


def static_requests_factory(servers: Servers, lifetime: float) -> Any:
    return StaticRequestsAuth(servers.reference_token)


def static_httpx_factory(servers: Servers, lifetime: float) -> Any:
    return StaticHttpxAuth(servers.reference_token)


def requests_auth_factory() -> Factory | None:
    try:
        from requests_auth import OAuth2, OAuth2ClientCredentials
    except ImportError:
        return None

    def make(servers: Servers, lifetime: float) -> Any:
        OAuth2.token_cache.clear()  # a process-wide cache; start cold
        # early_expiry defaults to 30 s (longer than a 3-s token); 0 is read as 30.
        # Extra keyword arguments (audience) go into the token request's body.
        return OAuth2ClientCredentials(
            servers.token.token_url,
            **servers.credentials,
            audience=AUDIENCE,
            early_expiry=min(30.0, lifetime * 0.15),
        )

    return make


def httpx_auth_factory() -> Factory | None:
    try:
        from httpx_auth import OAuth2, OAuth2ClientCredentials
    except ImportError:
        return None

    def make(servers: Servers, lifetime: float) -> Any:
        OAuth2.token_cache.clear()  # a process-wide cache; start cold
        # Extra keyword arguments (audience) go into the token request's body.
        return OAuth2ClientCredentials(
            servers.token.token_url,
            **servers.credentials,
            audience=AUDIENCE,
            early_expiry=min(30.0, lifetime * 0.15),
        )

    return make


@dataclass
class Result:
    name: str
    skipped: str = ""
    token_requests: int = 0
    ok: int = 0
    total: int = 0
    statuses: Counter[Any] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)
    stall: float | None = None
    fetch_stall: float | None = None  # the longest the loop stayed blocked during a fetch
    stale: int = 0
    wall: float = 0.0
    duration: float = 0.0
    lifetime: float = 0.0


# -- (a) cold start, threads -------------------------------------------------------------------


def cold_threads(name: str, factory: Factory, *, threads: int, each: int) -> Result:
    servers = Servers(delay=0.050)
    try:
        log = Log()
        auth = TimedRequestsAuth(factory(servers, 3600), log)
        barrier = threading.Barrier(threads + 1)
        statuses: Counter[Any] = Counter()

        def worker() -> None:
            with requests.Session() as session:
                barrier.wait()
                for _ in range(each):
                    try:
                        statuses[session.get(servers.url, auth=auth, timeout=30).status_code] += 1
                    except Exception as exc:
                        statuses[type(exc).__name__] += 1

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in pool:
            t.join()
        wall = time.perf_counter() - start
        return Result(
            name,
            token_requests=servers.token_requests,
            ok=statuses[200],
            total=threads * each,
            statuses=statuses,
            waits=log.waits(),
            stale=servers.api.stale,
            wall=wall,
        )
    finally:
        servers.close()


# -- (b) cold start, asyncio: the token alone ------------------------------------------------

Getter = Callable[[Any, httpx.Request], Awaitable[bool]]  # (auth, request) -> got a token


async def via_atoken(auth: Any, request: httpx.Request) -> bool:
    return bool(await auth.atoken())


async def via_auth_flow(auth: Any, request: httpx.Request) -> bool:
    """The first step of the auth's async flow: what ``httpx.AsyncClient`` awaits
    before the request goes to the connection pool."""
    flow = auth.async_auth_flow(request)
    try:
        outgoing = await flow.__anext__()
    finally:
        await flow.aclose()
    return str(outgoing.headers.get("Authorization", "")).startswith("Bearer ")


class ThreadSampler:
    """While running: the most tokens borrowed from anyio's default thread limiter
    (worker threads running ``to_thread.run_sync`` calls), and the most bearer_m2m
    fetch threads alive at once."""

    INTERVAL = 0.001

    def __init__(self) -> None:
        self.workers = 0
        self.capacity = 0.0
        self.fetch_threads = 0
        self._stop = False

    async def run(self) -> None:
        limiter = anyio.to_thread.current_default_thread_limiter()
        self.capacity = limiter.total_tokens
        while not self._stop:
            self.workers = max(self.workers, int(limiter.borrowed_tokens))
            fetchers = sum(t.name == FETCH_THREAD for t in threading.enumerate())
            self.fetch_threads = max(self.fetch_threads, fetchers)
            await asyncio.sleep(self.INTERVAL)

    def stop(self) -> None:
        self._stop = True


@dataclass
class BurstRun:
    token_requests: int
    all_had_it: float  # seconds from the start until the last task had the token
    fetch: float | None  # the longest token request, arrival to answer at the server
    to_server: float | None  # from the start until the first token request arrived
    after_answer: float | None  # from the last answer until the last task had the token
    stall: float
    fetch_stall: float | None  # the longest the loop stayed blocked during the fetch
    workers: int
    capacity: float
    fetch_threads: int
    failed: int


@dataclass
class Burst:
    name: str
    skipped: str = ""
    runs: list[BurstRun] = field(default_factory=list)


def burst_run(factory: Factory, getter: Getter, tasks: int) -> BurstRun:
    servers = Servers(delay=0.050)
    try:
        auth = factory(servers, 3600)
        outgoing = [httpx.Request("GET", servers.url) for _ in range(tasks)]

        async def main() -> tuple[float, float, LoopMonitor, ThreadSampler, int]:
            monitor, sampler = LoopMonitor(), ThreadSampler()
            watchers = [asyncio.create_task(monitor.run()), asyncio.create_task(sampler.run())]
            await asyncio.sleep(0.01)
            had_it: list[float] = []

            async def one(request: httpx.Request) -> bool:
                got = await getter(auth, request)
                had_it.append(time.monotonic())  # the server's clock
                return got

            start = time.monotonic()
            outcomes = await asyncio.gather(*(one(r) for r in outgoing), return_exceptions=True)
            monitor.stop()
            sampler.stop()
            await asyncio.gather(*watchers)
            failed = sum(outcome is not True for outcome in outcomes)
            return start, max(had_it, default=math.nan), monitor, sampler, failed

        start, last, monitor, sampler, failed = asyncio.run(main())
        busy = servers.token.busy
        return BurstRun(
            token_requests=servers.token_requests,
            all_had_it=last - start,
            fetch=max((done - arrived for arrived, done in busy), default=None),
            to_server=min(arrived for arrived, _ in busy) - start if busy else None,
            after_answer=last - max(done for _, done in busy) if busy else None,
            stall=monitor.max_stall,
            fetch_stall=monitor.max_stall_during(busy),
            workers=sampler.workers,
            capacity=sampler.capacity,
            fetch_threads=sampler.fetch_threads,
            failed=failed,
        )
    finally:
        servers.close()


def token_burst(name: str, factory: Factory, getter: Getter, *, tasks: int, runs: int) -> Burst:
    """``runs`` cold starts, each on fresh servers with a fresh auth object."""
    return Burst(name, runs=[burst_run(factory, getter, tasks) for _ in range(runs)])


# -- (b') cold start, asyncio: end to end --------------------------------------------------


def cold_tasks(name: str, factory: Factory, *, tasks: int) -> Result:
    servers = Servers(delay=0.050)
    try:
        log = Log()
        auth = TimedHttpxAuth(factory(servers, 3600), log)

        async def main() -> tuple[Counter[Any], float, LoopMonitor]:
            monitor = LoopMonitor()
            watcher = asyncio.create_task(monitor.run())
            await asyncio.sleep(0.01)
            statuses: Counter[Any] = Counter()
            limits = httpx.Limits(max_connections=POOL_CONNECTIONS)
            async with httpx.AsyncClient(auth=auth, timeout=60, limits=limits) as client:

                async def one() -> None:
                    try:
                        statuses[(await client.get(servers.url)).status_code] += 1
                    except Exception as exc:
                        statuses[type(exc).__name__] += 1

                start = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(tasks)))
                wall = time.perf_counter() - start
            monitor.stop()
            await watcher
            return statuses, wall, monitor

        statuses, wall, monitor = asyncio.run(main())
        return Result(
            name,
            token_requests=servers.token_requests,
            ok=statuses[200],
            total=tasks,
            statuses=statuses,
            waits=log.waits(),
            stall=monitor.max_stall,
            fetch_stall=monitor.max_stall_during(servers.token.busy),
            stale=servers.api.stale,
            wall=wall,
        )
    finally:
        servers.close()


# -- (c) refresh ahead -------------------------------------------------------------------------


def refresh_threads(
    name: str, factory: Factory, *, threads: int, duration: float, lifetime: float
) -> Result:
    servers = Servers(delay=0.100, lifetime=lifetime)
    try:
        log = Log()
        inner = factory(servers, lifetime)
        with requests.Session() as session:  # the first fetch, before the clock starts
            session.get(servers.url, auth=inner, timeout=30)
        first_fetch_done = time.perf_counter()
        auth = TimedRequestsAuth(inner, log)
        stop = threading.Event()
        statuses: Counter[Any] = Counter()
        barrier = threading.Barrier(threads + 1)

        def worker() -> None:
            with requests.Session() as session:
                barrier.wait()
                while not stop.is_set():
                    try:
                        statuses[session.get(servers.url, auth=auth, timeout=30).status_code] += 1
                    except Exception as exc:
                        statuses[type(exc).__name__] += 1

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        time.sleep(duration)
        stop.set()
        for t in pool:
            t.join()
        wall = time.perf_counter() - start
        return Result(
            name,
            token_requests=servers.token_requests,
            ok=statuses[200],
            total=sum(statuses.values()),
            statuses=statuses,
            waits=log.waits(after=first_fetch_done),
            stale=servers.api.stale,
            wall=wall,
            duration=duration,
            lifetime=lifetime,
        )
    finally:
        servers.close()


def refresh_tasks(
    name: str, factory: Factory, *, tasks: int, duration: float, lifetime: float
) -> Result:
    servers = Servers(delay=0.100, lifetime=lifetime)
    try:
        log = Log()
        inner = factory(servers, lifetime)
        auth = TimedHttpxAuth(inner, log)

        async def main() -> tuple[Counter[Any], float, LoopMonitor]:
            statuses: Counter[Any] = Counter()
            async with httpx.AsyncClient(auth=auth, timeout=30) as client:
                await client.get(servers.url)  # the first fetch, before the clock starts
                del log.entries[:]
                monitor = LoopMonitor()
                watcher = asyncio.create_task(monitor.run())
                deadline = time.perf_counter() + duration

                async def one() -> None:
                    while time.perf_counter() < deadline:
                        try:
                            statuses[(await client.get(servers.url)).status_code] += 1
                        except Exception as exc:
                            statuses[type(exc).__name__] += 1

                start = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(tasks)))
                wall = time.perf_counter() - start
                monitor.stop()
                await watcher
            return statuses, wall, monitor

        statuses, wall, monitor = asyncio.run(main())
        return Result(
            name,
            token_requests=servers.token_requests,
            ok=statuses[200],
            total=sum(statuses.values()),
            statuses=statuses,
            waits=log.waits(),
            stall=monitor.max_stall,
            fetch_stall=monitor.max_stall_during(servers.token.busy),
            stale=servers.api.stale,
            wall=wall,
            duration=duration,
            lifetime=lifetime,
        )
    finally:
        servers.close()


# -- report -------------------------------------------------------------------------------------


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1000:.1f} ms"


def p99(values: list[float]) -> float | None:
    if len(values) < 2:
        return max(values) if values else None
    return statistics.quantiles(values, n=100)[98]


def other_statuses(r: Result) -> str:
    rest = {k: v for k, v in r.statuses.items() if k != 200}
    return ", ".join(f"{k}: {v}" for k, v in rest.items()) or ""


def table(rows: list[list[str]], head: list[str]) -> None:
    """Print aligned columns; a row of two cells is a contender and why it has no figures."""
    full = [row for row in rows if len(row) == len(head)]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *full, strict=True)]

    def cells(row: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    line = "  " + cells(head)
    print(line)
    print("  " + "-" * (len(line) - 2))
    for row in rows:
        if len(row) == len(head):
            print("  " + cells(row))
        else:
            print(f"  {row[0]:<{widths[0]}}  — {row[1]}")


def cold_report(title: str, results: list[Result], *, with_stall: bool) -> None:
    print(f"\n{title}")
    head = ["contender", "token requests (target 1)", "API 200s", "longest auth step"]
    if with_stall:
        head += ["longest loop stall", "… of it during a fetch"]
    head += ["wall", "other outcomes"]
    rows = []
    for r in results:
        if r.skipped:
            rows.append([r.name, r.skipped])
            continue
        row = [
            r.name,
            str(r.token_requests),
            f"{r.ok}/{r.total}",
            ms(max(r.waits) if r.waits else None),
        ]
        if with_stall:
            row += [ms(r.stall), ms(r.fetch_stall)]
        row += [f"{r.wall:.2f} s", other_statuses(r)]
        rows.append(row)
    table(rows, head)


def refresh_report(title: str, results: list[Result], *, with_stall: bool) -> None:
    print(f"\n{title}")
    head = [
        "contender",
        "run",
        "requests",
        "token reqs",
        "lifetimes in run",
        "auth p50",
        "auth p99",
        "longest auth step",
        "steps ≥ " + " / ".join(f"{t * 1000:.0f}" for t in SLOW_STEPS) + " ms",
    ]
    if with_stall:
        head += ["longest loop stall", "… of it during a fetch"]
    head += ["expired tokens sent", "other outcomes"]
    rows = []
    for r in results:
        if r.skipped:
            rows.append([r.name, r.skipped])
            continue
        waits = r.waits
        row = [
            r.name,
            f"{r.duration:.0f} s",
            str(r.total),
            "—" if r.token_requests == 0 else str(r.token_requests),
            "—" if r.token_requests == 0 else f"{r.duration / r.lifetime:.1f}",
            ms(statistics.median(waits) if waits else None),
            ms(p99(waits)),
            ms(max(waits) if waits else None),
            " / ".join(str(sum(w >= t for w in waits)) for t in SLOW_STEPS),
        ]
        if with_stall:
            row += [ms(r.stall), ms(r.fetch_stall)]
        row += ["—" if r.token_requests == 0 else str(r.stale), other_statuses(r)]
        rows.append(row)
    table(rows, head)


def burst_report(title: str, bursts: list[Burst], *, tasks: int, delay: float) -> None:
    print(f"\n{title}")
    head = [
        "contender",
        "token requests",
        f"all {tasks:,} had it after",
        "range",
        "start to server",
        "one fetch (server)",
        "answer to last task",
        "longest loop stall",
        "… of it during the fetch",
        "anyio worker threads",
        "fetch threads",
        "failed",
    ]
    rows = []
    for b in bursts:
        if b.skipped:
            rows.append([b.name, b.skipped])
            continue
        runs = b.runs
        requests_made = sorted({r.token_requests for r in runs})
        done = [r.all_had_it for r in runs]
        fetches = [r.fetch for r in runs if r.fetch is not None]
        to_server = [r.to_server for r in runs if r.to_server is not None]
        after = [r.after_answer for r in runs if r.after_answer is not None]
        fetch_stalls = [r.fetch_stall for r in runs if r.fetch_stall is not None]
        rows.append(
            [
                b.name,
                "-".join(str(n) for n in (requests_made[0], requests_made[-1]))
                if len(requests_made) > 1
                else str(requests_made[0]),
                ms(statistics.median(done)),
                f"{min(done) * 1000:.1f}-{max(done) * 1000:.1f} ms",
                ms(statistics.median(to_server)) if to_server else "—",
                ms(statistics.median(fetches)) if fetches else "—",
                ms(statistics.median(after)) if after else "—",
                ms(max(r.stall for r in runs)),
                ms(max(fetch_stalls)) if fetch_stalls else "—",
                f"{max(r.workers for r in runs)} of {runs[0].capacity:.0f}",
                str(max(r.fetch_threads for r in runs)),
                str(sum(r.failed for r in runs)),
            ]
        )
    table(rows, head)
    ours = next((b for b in bursts if b.runs and b.name.endswith("atoken()")), None)
    if ours is not None:
        runs = ours.runs
        fetches = [r.fetch for r in runs if r.fetch is not None]
        print(
            f"  → bearer_m2m: all {tasks:,} tasks had the token "
            f"{statistics.median(r.all_had_it for r in runs) * 1000:.0f} ms after start "
            f"(median of {len(runs)} runs); one fetch takes "
            f"{statistics.median(fetches) * 1000:.0f} ms at the server "
            f"({delay * 1000:.0f} ms delay); "
            f"{max(r.token_requests for r in runs)} token request per run; "
            f"{max(r.workers for r in runs)} anyio worker thread "
            f"and {max(r.fetch_threads for r in runs)} fetch thread while waiting."
        )


# -- main ---------------------------------------------------------------------------------------


Outcome = TypeVar("Outcome", Result, Burst)


def guarded(name: str, run: Callable[[], Outcome], kind: type[Outcome] = Result) -> Outcome:
    # Keep what earlier scenarios left behind out of the timed run's collections.
    gc.collect()
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            return run()
    except Exception as exc:
        return kind(name, skipped=f"failed: {type(exc).__name__}: {exc}"[:100])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter refresh runs")
    args = parser.parse_args()
    lifetime = 3.0
    ours_duration = 7.0 if args.quick else 10.0  # ~4 refresh cycles at full length
    peer_duration = 4.0 if args.quick else 7.0
    ref_duration = 2.0
    async_duration = 4.0 if args.quick else 6.0
    burst_runs = 3 if args.quick else 5
    tasks = 1000

    ra = requests_auth_factory()
    ha = httpx_auth_factory()
    ra_name = "requests-auth OAuth2ClientCredentials"
    ha_name = "httpx-auth OAuth2ClientCredentials"

    print(
        f"bearer_m2m concurrency — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"requests {requests.__version__}, httpx {httpx.__version__}; "
        "servers run in this process"
    )
    print(
        "servers: bearer_m2m.testing.AuthorizationServer (RS256 JWTs, every token request "
        f"delayed) and ProtectedAPI (audience {AUDIENCE}); every contender asks for that audience"
    )
    started = time.perf_counter()

    # (a)
    a = [
        guarded(
            "bearer_m2m",
            lambda: cold_threads("bearer_m2m", bearer_factory, threads=64, each=10),
        )
    ]
    if ra is None:
        a.append(Result(ra_name, skipped="not installed"))
    else:
        a.append(guarded(ra_name, lambda: cold_threads(ra_name, ra, threads=64, each=10)))
    cold_report(
        "(a) cold start: 64 threads x 10 requests (requests), token endpoint delay 50 ms",
        a,
        with_stall=False,
    )

    # (b)
    def burst(name: str, factory: Factory, getter: Getter) -> Burst:
        return guarded(
            name,
            lambda: token_burst(name, factory, getter, tasks=tasks, runs=burst_runs),
            Burst,
        )

    bursts = [
        burst("static header, auth_flow step (reference)", static_httpx_factory, via_auth_flow),
        burst("bearer_m2m, await auth.atoken()", bearer_factory, via_atoken),
        burst("bearer_m2m, async_auth_flow step", bearer_factory, via_auth_flow),
    ]
    if ha is None:
        bursts.append(Burst(ha_name + ", async_auth_flow step", skipped="not installed"))
    else:
        bursts.append(burst(ha_name + ", async_auth_flow step", ha, via_auth_flow))
    burst_report(
        f"(b) cold start, token only: {tasks:,} concurrent asyncio tasks ask one fresh auth object"
        f" for the token; token endpoint delay 50 ms; median of {burst_runs} runs",
        bursts,
        tasks=tasks,
        delay=0.050,
    )

    # (b')
    b = [
        guarded(
            "static header (reference)",
            lambda: cold_tasks("static header (reference)", static_httpx_factory, tasks=tasks),
        ),
        guarded("bearer_m2m", lambda: cold_tasks("bearer_m2m", bearer_factory, tasks=tasks)),
    ]
    if ha is None:
        b.append(Result(ha_name, skipped="not installed"))
    else:
        b.append(guarded(ha_name, lambda: cold_tasks(ha_name, ha, tasks=tasks)))
    cold_report(
        f"(b') cold start, end to end: {tasks:,} concurrent tasks each call the API on one"
        " httpx.AsyncClient, token endpoint delay 50 ms",
        b,
        with_stall=True,
    )
    # (c) threads
    c = [
        guarded(
            "static header (noise reference)",
            lambda: refresh_threads(
                "static header (noise reference)",
                static_requests_factory,
                threads=16,
                duration=ref_duration,
                lifetime=lifetime,
            ),
        ),
        guarded(
            "bearer_m2m",
            lambda: refresh_threads(
                "bearer_m2m", bearer_factory, threads=16, duration=ours_duration, lifetime=lifetime
            ),
        ),
    ]
    if ra is None:
        c.append(Result(ra_name, skipped="not installed"))
    else:
        c.append(
            guarded(
                ra_name,
                lambda: refresh_threads(
                    ra_name, ra, threads=16, duration=peer_duration, lifetime=lifetime
                ),
            )
        )
    refresh_report(
        "(c) refresh ahead, 16 threads (requests): tokens live 3 s, token endpoint delay 100 ms;"
        " auth-step times after the first fetch",
        c,
        with_stall=False,
    )

    # (c) asyncio
    d = [
        guarded(
            "static header (noise reference)",
            lambda: refresh_tasks(
                "static header (noise reference)",
                static_httpx_factory,
                tasks=16,
                duration=ref_duration,
                lifetime=lifetime,
            ),
        ),
        guarded(
            "bearer_m2m",
            lambda: refresh_tasks(
                "bearer_m2m", bearer_factory, tasks=16, duration=async_duration, lifetime=lifetime
            ),
        ),
    ]
    if ha is None:
        d.append(Result(ha_name, skipped="not installed"))
    else:
        d.append(
            guarded(
                ha_name,
                lambda: refresh_tasks(
                    ha_name, ha, tasks=16, duration=async_duration, lifetime=lifetime
                ),
            )
        )
    refresh_report(
        "(c') refresh ahead, 16 asyncio tasks on one httpx.AsyncClient: same servers",
        d,
        with_stall=True,
    )

    served, early = DELAY_CHECK["served"], DELAY_CHECK["early"]
    print(
        f"\ndelay check: {served} token requests served in all scenarios; "
        + (
            "each took at least its scripted delay."
            if early == 0
            else f"{early} were answered sooner than their delay (see delay_next)!"
        )
    )
    print(
        "\nNotes:\n"
        "- 'longest auth step' is wall time inside auth(...) / the first auth_flow step; it\n"
        "  includes waiting for the GIL (client threads + in-process server threads, which\n"
        "  also sign and verify RS256 tokens) and, for asyncio, for the event loop: compare\n"
        "  with the static-header reference rows.\n"
        "- (b) times the token alone: from the start of 1,000 tasks until the last one has\n"
        "  the token (or the Authorization header, for the auth_flow rows), split into:\n"
        "  start to server (tasks reach the auth, the fetch starts, connects, sends),\n"
        "  one fetch (the token request at the server, arrival to answer: delay + signing)\n"
        "  and answer to last task (the client reads the answer, the tasks wake up).\n"
        "  Loop stalls are the worst run's; scheduling 1,000 tasks alone stalls the loop\n"
        "  (see the static-header row).\n"
        "  Threads are sampled every ms while the tasks wait: anyio worker threads are\n"
        "  tokens borrowed from anyio's default limiter; bearer_m2m fetches in a thread of\n"
        "  its own. httpx-auth fetches on the event loop thread (hence its loop stall).\n"
        "- A client that refreshes ahead makes about 1 + run / (0.8 x lifetime) token requests.\n"
        "- Peers get early_expiry = 15 % of the lifetime (their 30-s default is longer than a\n"
        "  3-s token, and 0 is read as 30). 'expired tokens sent' counts API requests whose\n"
        "  token was past its expires_in (counted from its issue at the server); the API\n"
        "  itself refuses a token only after its exp claim, in whole seconds, so such\n"
        "  requests may still get 200s. Refusals show under 'other outcomes'.\n"
        "- 'of it during a fetch': the longest time the event loop stayed blocked while a\n"
        "  token request was at the server (arrival to answer); the part of a stall after\n"
        "  the answer (1,000 tasks waking into the pool, in (b')) is not counted. In (b')\n"
        "  the loop is busy during bearer_m2m's fetch with the other tasks building their\n"
        "  requests (~50 ms for 1,000 on httpx.AsyncClient before they reach the auth);\n"
        "  httpx-auth blocks it with the fetch itself. (b) tells the two apart.\n"
        "- The API here is http://127.0.0.1, so bearer_m2m runs its loopback-http check on\n"
        "  every call (a few µs; see benchmarks/overhead.py), which its p50 includes.\n"
        f"- (b') caps the client pool at {POOL_CONNECTIONS} connections: httpcore's pool does\n"
        "  O(queued x connections) work per event, which at 1,000 queued requests and 100\n"
        "  connections dominates everything. The auth step runs before the pool, so all\n"
        "  1,000 tasks still reach it at once; its 'longest auth step' and loop stalls are\n"
        "  mostly pool scheduling (the static-header row has them too): (b) is the clean figure."
    )
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
