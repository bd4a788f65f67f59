"""How many token requests concurrent callers cause, and how long they wait.

Everything runs against real loopback servers from tests/servers.py (a token
endpoint with an artificial delay, and a protected API), in this process:

(a) cold start, threads: 64 threads x 10 requests with ``requests``;
    a fresh auth object, token server delay 50 ms. Target: 1 token request.
(b) cold start, asyncio: 1,000 concurrent tasks on one ``httpx.AsyncClient``;
    token server delay 50 ms. Target: 1 token request, event loop never blocked.
(c) refresh ahead: tokens live 3 s, token server delay 100 ms; 16 threads
    (and, separately, 16 asyncio tasks) request continuously for several token
    lifetimes. The time each request spends in the auth step is recorded;
    target: after the first fetch no request waits for a token (the longest
    auth step stays far below the 100 ms delay).

Peers are measured the same way when installed: requests-auth for threads,
httpx-auth for asyncio tasks. A static-header auth is run as a reference for
the noise of this machine (GIL hand-offs between 16 threads and the in-process
servers, event-loop scheduling of 1,000 tasks). Nothing is asserted.

Run from the repository root::

    python benchmarks/concurrency.py           # ~50 s
    python benchmarks/concurrency.py --quick   # ~25 s
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import httpx  # noqa: E402
import requests  # noqa: E402
from requests.auth import AuthBase  # noqa: E402

import tests.servers  # noqa: E402
from bearer_m2m import ClientCredentialsAuth  # noqa: E402
from tests.servers import ApiServer, Reply, TokenServer  # noqa: E402

# socketserver listens with a backlog of 5; 64 threads (or httpx's pool of 100
# connections) connecting at once would then see dropped SYNs and 1-s
# retransmits, which measure the test server, not the auth. Raised for this
# process only.
tests.servers._Server.request_queue_size = 256

CLIENT = {"client_id": "bench-client", "client_secret": "bench-secret"}
POOL_CONNECTIONS = 10  # (b) only; see the note printed at the end
SLOW_STEPS = (0.010, 0.050)  # auth steps at least this long are counted


# -- servers -------------------------------------------------------------------------


class TimedTokenServer(TokenServer):
    """A TokenServer that remembers when (monotonic clock) each token was issued,
    and the intervals during which a token request was being served."""

    def __init__(self, expires_in: float | None = 3600, delay: float = 0.0) -> None:
        self.issued_at: dict[str, float] = {}
        self.busy: list[tuple[float, float]] = []
        super().__init__(expires_in=expires_in, delay=delay)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        arrived = time.monotonic()
        reply = super().handle(method, path, headers, body)
        if reply.status == 200:
            token = json.loads(reply.body)["access_token"]
            self.issued_at[token] = arrived
        self.busy.append((arrived, arrived + reply.delay))  # the reply leaves after the delay
        return reply

    def expired(self, token: str) -> bool:
        issued = self.issued_at.get(token)
        if issued is None or self.expires_in is None:
            return issued is None
        return time.monotonic() >= issued + self.expires_in


class Servers:
    """A token server and an API that accepts its tokens (or any token, for peers)
    and counts the tokens it sees after their expiry."""

    def __init__(self, *, delay: float, expires_in: float = 3600, strict: bool) -> None:
        self.token = TimedTokenServer(expires_in=expires_in, delay=delay)
        self.stale = 0
        self._strict = strict
        self.api = ApiServer(accepts=self._accepts)
        self.url = f"{self.api.origin}/v1/items"

    def _accepts(self, token: str) -> bool:
        if self.token.expired(token):
            self.stale += 1
            return not self._strict
        return True

    def close(self) -> None:
        self.api.close()
        self.token.close()


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
    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = "Bearer static"
        return r


class StaticHttpxAuth(httpx.Auth):
    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer static"
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
        """The longest stall that overlapped one of ``intervals`` (token fetches);
        None when there were none."""
        if not intervals:
            return None
        return max(
            (
                woke - due
                for due, woke in self.stalls
                if any(due < end and woke > start for start, end in intervals)
            ),
            default=0.0,
        )


# -- contenders -----------------------------------------------------------------------------

Factory = Callable[[str, float], Any]  # (token_url, lifetime-hint) -> auth object


def bearer_factory(token_url: str, lifetime: float) -> Any:
    return ClientCredentialsAuth(token_url, **CLIENT)


def static_requests_factory(token_url: str, lifetime: float) -> Any:
    return StaticRequestsAuth()


def static_httpx_factory(token_url: str, lifetime: float) -> Any:
    return StaticHttpxAuth()


def requests_auth_factory() -> Factory | None:
    try:
        from requests_auth import OAuth2, OAuth2ClientCredentials
    except ImportError:
        return None

    def make(token_url: str, lifetime: float) -> Any:
        OAuth2.token_cache.clear()  # a process-wide cache; start cold
        # early_expiry defaults to 30 s (longer than a 3-s token); 0 is read as 30.
        return OAuth2ClientCredentials(token_url, **CLIENT, early_expiry=min(30.0, lifetime * 0.15))

    return make


def httpx_auth_factory() -> Factory | None:
    try:
        from httpx_auth import OAuth2, OAuth2ClientCredentials
    except ImportError:
        return None

    def make(token_url: str, lifetime: float) -> Any:
        OAuth2.token_cache.clear()  # a process-wide cache; start cold
        return OAuth2ClientCredentials(token_url, **CLIENT, early_expiry=min(30.0, lifetime * 0.15))

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
    fetch_stall: float | None = None  # the longest loop stall while a token was being fetched
    stale: int = 0
    wall: float = 0.0
    duration: float = 0.0
    lifetime: float = 0.0


# -- (a) cold start, threads -------------------------------------------------------------------


def cold_threads(name: str, factory: Factory, *, strict: bool, threads: int, each: int) -> Result:
    servers = Servers(delay=0.050, strict=strict)
    try:
        log = Log()
        auth = TimedRequestsAuth(factory(servers.token.token_url, 3600), log)
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
            token_requests=servers.token.count,
            ok=statuses[200],
            total=threads * each,
            statuses=statuses,
            waits=log.waits(),
            stale=servers.stale,
            wall=wall,
        )
    finally:
        servers.close()


# -- (b) cold start, asyncio ----------------------------------------------------------------


def cold_tasks(name: str, factory: Factory, *, strict: bool, tasks: int) -> Result:
    servers = Servers(delay=0.050, strict=strict)
    try:
        log = Log()
        auth = TimedHttpxAuth(factory(servers.token.token_url, 3600), log)

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
            token_requests=servers.token.count,
            ok=statuses[200],
            total=tasks,
            statuses=statuses,
            waits=log.waits(),
            stall=monitor.max_stall,
            fetch_stall=monitor.max_stall_during(servers.token.busy),
            stale=servers.stale,
            wall=wall,
        )
    finally:
        servers.close()


# -- (c) refresh ahead -------------------------------------------------------------------------


def refresh_threads(
    name: str, factory: Factory, *, threads: int, duration: float, lifetime: float
) -> Result:
    servers = Servers(delay=0.100, expires_in=lifetime, strict=False)
    try:
        log = Log()
        inner = factory(servers.token.token_url, lifetime)
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
            token_requests=servers.token.count,
            ok=statuses[200],
            total=sum(statuses.values()),
            statuses=statuses,
            waits=log.waits(after=first_fetch_done),
            stale=servers.stale,
            wall=wall,
            duration=duration,
            lifetime=lifetime,
        )
    finally:
        servers.close()


def refresh_tasks(
    name: str, factory: Factory, *, tasks: int, duration: float, lifetime: float
) -> Result:
    servers = Servers(delay=0.100, expires_in=lifetime, strict=False)
    try:
        log = Log()
        inner = factory(servers.token.token_url, lifetime)
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
            token_requests=servers.token.count,
            ok=statuses[200],
            total=sum(statuses.values()),
            statuses=statuses,
            waits=log.waits(),
            stall=monitor.max_stall,
            fetch_stall=monitor.max_stall_during(servers.token.busy),
            stale=servers.stale,
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
        head += ["longest loop stall", "… during a token fetch"]
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
        head += ["longest loop stall", "… during a token fetch"]
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


# -- main ---------------------------------------------------------------------------------------


def guarded(name: str, run: Callable[[], Result]) -> Result:
    # Keep what earlier scenarios left behind out of the timed run's collections.
    gc.collect()
    gc.freeze()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            return run()
    except Exception as exc:
        return Result(name, skipped=f"failed: {type(exc).__name__}: {exc}"[:100])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter refresh-ahead runs")
    args = parser.parse_args()
    lifetime = 3.0
    ours_duration = 7.0 if args.quick else 13.0  # ~5 refresh cycles at full length
    peer_duration = 4.0 if args.quick else 8.0
    ref_duration = 2.0
    async_duration = 4.0 if args.quick else 6.0

    ra = requests_auth_factory()
    ha = httpx_auth_factory()
    ra_name = "requests-auth OAuth2ClientCredentials"
    ha_name = "httpx-auth OAuth2ClientCredentials"

    print(
        f"bearer_m2m concurrency — Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"requests {requests.__version__}, httpx {httpx.__version__}; "
        "servers run in this process"
    )
    started = time.perf_counter()

    # (a)
    a = [
        guarded(
            "bearer_m2m",
            lambda: cold_threads("bearer_m2m", bearer_factory, strict=True, threads=64, each=10),
        )
    ]
    if ra is None:
        a.append(Result(ra_name, skipped="not installed"))
    else:
        a.append(
            guarded(
                ra_name,
                lambda: cold_threads(ra_name, ra, strict=False, threads=64, each=10),
            )
        )
    cold_report(
        "(a) cold start: 64 threads x 10 requests (requests), token server delay 50 ms",
        a,
        with_stall=False,
    )

    # (b)
    b = [
        guarded(
            "static header (reference)",
            lambda: cold_tasks(
                "static header (reference)", static_httpx_factory, strict=False, tasks=1000
            ),
        ),
        guarded(
            "bearer_m2m",
            lambda: cold_tasks("bearer_m2m", bearer_factory, strict=True, tasks=1000),
        ),
    ]
    if ha is None:
        b.append(Result(ha_name, skipped="not installed"))
    else:
        b.append(guarded(ha_name, lambda: cold_tasks(ha_name, ha, strict=False, tasks=1000)))
    cold_report(
        "(b) cold start: 1,000 concurrent tasks on one httpx.AsyncClient, token server delay 50 ms",
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
        "(c) refresh ahead, 16 threads (requests): tokens live 3 s, token server delay 100 ms;"
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

    print(
        "\nNotes:\n"
        "- 'longest auth step' is wall time inside auth(...) / the first auth_flow step; it\n"
        "  includes waiting for the GIL (16 client threads + in-process server threads) and,\n"
        "  for asyncio, for the event loop: compare with the static-header reference rows.\n"
        "- A client that refreshes ahead makes about 1 + run / (0.8 x lifetime) token requests.\n"
        "- Peers get early_expiry = 15 % of the lifetime (their 30-s default is longer than a\n"
        "  3-s token, and 0 is read as 30). The API accepts any token from peers; 'expired\n"
        "  tokens sent' is counted by the API on the token server's clock.\n"
        "- The API here is http://127.0.0.1, so bearer_m2m runs its loopback-http check on\n"
        "  every call (a few µs; see benchmarks/overhead.py), which its p50 includes.\n"
        f"- (b) caps the client pool at {POOL_CONNECTIONS} connections: httpcore's pool does\n"
        "  O(queued x connections) work per event, which at 1,000 queued requests and 100\n"
        "  connections dominates everything. The auth step runs before the pool, so all\n"
        "  1,000 tasks still reach it at once."
    )
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
