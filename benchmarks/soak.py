"""Soak: what users see and what they pay when tokens die early or an API refuses them all.

Everything runs in this process against the project's local authorization server
(``bearer_m2m.testing``), whose ``expiry_skew`` makes the API refuse each token
from a random instant within the last second before its announced expiry, as
servers do that floor ``iat`` to whole seconds or run a clock ahead. Four runs:

(a) threads: 3 s tokens with early expiry; 16 threads, one request each every
    50 ms, for 30 s, with ``requests``. Target: 0 user-visible 401s, about one
    token request per lifetime.
(b) asyncio: the same server; 200 tasks on one ``httpx.AsyncClient``, one request
    each every 2 s, for 20 s (100 requests a second: what the in-process servers
    answer here without a queue; a request that waits in the pool for longer than
    its token has left meets a 401 that no client can avoid). Target: 0
    user-visible 401s.
(c) always-401, day-long tokens: an API that refuses every token
    (``reject_all_tokens``), one request every 100 ms. Ten minutes run at 1/30
    scale, in 20 s: ``rejection_backoff=1`` and ``max_rejection_backoff=20``
    instead of 30 s and 600 s, so every back-off is 30 times shorter and the
    number of token requests is the one ten real minutes cost. Target: at most 6.
(d) always-401, 3 s tokens, real back-off settings, 60 s. Target: at most one
    token request per lifetime (after the first token and the replacement of the
    first strike: the guard adds none and skips the refresh ahead).

Nothing is asserted: each run prints its figures and whether it met its target.

Run from the repository root::

    python benchmarks/soak.py           # ~130 s
    python benchmarks/soak.py --quick   # ~60 s (shorter runs, the same targets)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import requests

from bearer_m2m import ClientCredentialsAuth, RetryPolicy
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI

SHORT_LIFETIME = 3.0
PACE = 0.05  # seconds between one thread's requests
ASYNC_PACE = 2.0  # seconds between one task's requests


@dataclass
class Outcome:
    name: str
    seconds: float
    statuses: Counter[int]
    replays: int
    token_requests: int
    lifetime: float

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def per_lifetime(self) -> float:
        return self.token_requests / (self.seconds / self.lifetime)

    def show(self, target: str, met: bool) -> None:
        print(
            f"{self.name}\n"
            f"  {self.requests} requests in {self.seconds:.0f} s: statuses {dict(self.statuses)}, "
            f"{self.statuses[401]} user-visible 401s, {self.replays} replayed after a 401\n"
            f"  {self.token_requests} token requests = {self.per_lifetime:.2f} per "
            f"{self.lifetime:g} s lifetime\n"
            f"  target: {target}: {'met' if met else 'NOT MET'}\n"
        )


def auth_for(
    server: AuthorizationServer, api: ProtectedAPI, **options: object
) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        audience=api.audience,
        retry=RetryPolicy(deadline=5, initial_backoff=0.05, max_backoff=0.5),
        **options,  # type: ignore[arg-type]
    )


def threads_run(seconds: float, threads: int = 16) -> Outcome:
    server = AuthorizationServer(token_lifetime=SHORT_LIFETIME, expiry_skew=1.0)
    with server, ProtectedAPI(server) as api:
        auth = auth_for(server, api)
        statuses: Counter[int] = Counter()
        replays = 0
        lock = threading.Lock()
        end = time.monotonic() + seconds

        def caller() -> None:
            nonlocal replays
            with requests.Session() as session:
                while time.monotonic() < end:
                    response = session.get(api.url, auth=auth, timeout=10)
                    with lock:
                        statuses[response.status_code] += 1
                        replays += bool(response.history)
                    time.sleep(PACE)

        workers = [threading.Thread(target=caller) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        return Outcome(
            f"(a) {threads} threads, requests, 3 s tokens dying up to 1 s early",
            seconds,
            statuses,
            replays,
            server.token_requests,
            SHORT_LIFETIME,
        )


def asyncio_run(seconds: float, tasks: int = 200) -> Outcome:
    server = AuthorizationServer(token_lifetime=SHORT_LIFETIME, expiry_skew=1.0)
    with server, ProtectedAPI(server) as api:
        auth = auth_for(server, api)
        statuses: Counter[int] = Counter()
        replays = 0

        async def main() -> None:
            nonlocal replays
            limits = httpx.Limits(max_connections=20)
            timeout = httpx.Timeout(10, pool=None)
            async with httpx.AsyncClient(auth=auth, limits=limits, timeout=timeout) as client:
                end = time.monotonic() + seconds

                async def caller() -> None:
                    nonlocal replays
                    while time.monotonic() < end:
                        response = await client.get(api.url)
                        statuses[response.status_code] += 1
                        replays += bool(response.history)
                        await asyncio.sleep(ASYNC_PACE)

                await asyncio.gather(*(caller() for _ in range(tasks)))

        asyncio.run(main())
        return Outcome(
            f"(b) {tasks} asyncio tasks, httpx.AsyncClient, 3 s tokens dying up to 1 s early",
            seconds,
            statuses,
            replays,
            server.token_requests,
            SHORT_LIFETIME,
        )


def always_401_run(name: str, seconds: float, lifetime: float, **options: object) -> Outcome:
    server = AuthorizationServer(token_lifetime=lifetime)
    with server, ProtectedAPI(server) as api:
        server.reject_all_tokens = True
        auth = auth_for(server, api, **options)
        statuses: Counter[int] = Counter()
        replays = 0
        end = time.monotonic() + seconds
        with requests.Session() as session:
            while time.monotonic() < end:
                response = session.get(api.url, auth=auth, timeout=10)
                statuses[response.status_code] += 1
                replays += bool(response.history)
                time.sleep(0.1)
        return Outcome(name, seconds, statuses, replays, server.token_requests, lifetime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    quick = parser.parse_args().quick
    # The guard's warnings are expected here; keep the report readable.
    logging.getLogger("bearer_m2m").setLevel(logging.ERROR)
    print(f"Python {sys.version.split()[0]}\n")

    a = threads_run(10 if quick else 30)
    a.show(
        "0 user-visible 401s, about one token request per lifetime",
        a.statuses[401] == 0 and a.per_lifetime < 2,
    )
    b = asyncio_run(8 if quick else 20, tasks=100 if quick else 200)
    b.show("0 user-visible 401s", b.statuses[401] == 0)

    scaled = 20.0  # 10 minutes at 1/30 scale
    c = always_401_run(
        "(c) always-401, day-long tokens, 10 minutes at 1/30 scale",
        scaled,
        86400.0,
        rejection_backoff=1.0,
        max_rejection_backoff=20.0,
    )
    c.show("at most 6 token requests", c.token_requests <= 6)
    d = always_401_run("(d) always-401, 3 s tokens", 20 if quick else 60, SHORT_LIFETIME)
    # The first token and the replacement of the first strike come at once; after them,
    # one token per lifetime as the client uses it (the last 5 % are the expiry leeway).
    steady = (d.token_requests - 2) / (d.seconds / (SHORT_LIFETIME * 0.95))
    print(f"  after the first two: {steady:.2f} per lifetime in use (2.85 s)\n")
    d.show("at most one token request per lifetime", steady <= 1.0)


if __name__ == "__main__":
    main()
