"""Shared token caches across processes: token requests made, cached-path cost, Redis dying.

Everything it needs is started here: the project's local authorization server,
``bearer_m2m.testing.AuthorizationServer`` (RS256 JWT access tokens), and a
``bearer_m2m.testing.ProtectedAPI`` that validates them for ``AUDIENCE``, both
in this process; and a ``redis-server`` of its own on a free loopback port
(``--save "" --appendonly no``), killed at the end. Worker processes are
started with multiprocessing's ``spawn`` method, so each is a fresh interpreter
with its own ``ClientCredentialsAuth`` (no token inherited from a fork).

(1) Cold start, one host: 8 processes x 16 threads share one ``FileCache``;
    every thread makes a few API calls with ``requests``; the processes are
    released together by a barrier and every token request is delayed 200 ms
    by the server, so they all race for the token. Target: 1 token request.
    The same without a cache is the baseline (one per process: 8).
(2) Two "hosts": two groups of 4 processes x 16 threads; each process uses a
    ``TieredCache`` of its group's own ``FileCache`` in front of one shared
    ``RedisCache``. Target: 1 token request.
(3) The cached path: ``auth(prepared_request)`` once a token is cached, timed
    as ``benchmarks/overhead.py`` does, without a cache, with a ``FileCache``
    and with a ``RedisCache``, in the same run. Target: the shared caches
    within 0.5 µs of the plain in-memory one (the store must not be touched;
    calls to it during the timed loops are counted).
(4) Redis killed mid-run: a few processes x threads call the API continuously
    with tokens that live 3 s (refreshed every ~2.4 s) through a ``RedisCache``;
    the ``redis-server`` process is killed (SIGKILL) part-way through. Counted:
    failed requests (target 0), token requests before and after the kill, the
    slowest request, and the warnings bearer_m2m logged.

Timings are printed, never asserted.

Run from the repository root::

    python benchmarks/shared_cache.py            # ~40 s
    python benchmarks/shared_cache.py --quick    # ~20 s
"""

from __future__ import annotations

import argparse
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import redis  # noqa: E402
import requests  # noqa: E402
from requests.auth import AuthBase  # noqa: E402
from requests.hooks import default_hooks  # noqa: E402

from bearer_m2m import ClientCredentialsAuth, FileCache, RedisCache, TieredCache  # noqa: E402
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI  # noqa: E402

#: The API the tokens are for; every auth object asks for it as ``audience``.
AUDIENCE = "https://api.shared-cache.example/"
#: Where the timed auth calls of (3) would go; https, so no insecure-transport check runs.
TIMED_URL = "https://api.example.com/v1/items?page=2"
COLD_DELAY = 0.2  # token endpoint delay in (1) and (2)
REFRESH_DELAY = 0.05  # token endpoint delay in (4)
DELAYED_REQUESTS = 10_000  # more delayed answers than any scenario asks for
TARGET_CACHED_PATH_US = 0.5
SLOW_REQUEST = 0.25  # (4): API calls at least this long are counted


# -- services ----------------------------------------------------------------------------


class Services:
    """The authorization server and the API, in this process."""

    def __init__(self) -> None:
        self.server = AuthorizationServer().start()
        self.api = ProtectedAPI(self.server, audience=AUDIENCE).start()

    def client_settings(self, token_lifetime: float = 3600.0) -> dict[str, str]:
        """A newly registered client (so no scenario finds another's token cached)."""
        client = self.server.register_client(token_lifetime=token_lifetime)
        return {
            "token_url": self.server.token_url,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "audience": AUDIENCE,
            "api_url": self.api.url + "v1/items",
        }

    def fresh_counters(self, delay: float) -> None:
        self.server.reset()
        self.api.reset()
        if delay > 0:
            self.server.delay_next(delay, times=DELAYED_REQUESTS)

    def close(self) -> None:
        self.api.stop()
        self.server.stop()


class RedisServer:
    """A ``redis-server`` of our own on a free loopback port, without persistence."""

    def __init__(self, executable: str) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(  # the same arguments as the project's tests use
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        self.client = client

    def commands_processed(self) -> int:
        return int(self.client.info("stats")["total_commands_processed"])

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would end it; safe to call twice."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- worker processes --------------------------------------------------------------------


class _Counting(logging.Handler):
    """Counts what the ``bearer_m2m`` logger says in a worker, printing nothing."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.adopted = 0
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.warnings.append(message)
        elif message.startswith("adopted token"):
            self.adopted += 1


def _make_cache(spec: tuple[str, ...] | None) -> Any:
    if spec is None:
        return None
    kind = spec[0]
    if kind == "file":
        return FileCache(spec[1])
    if kind == "redis-url":
        return RedisCache(spec[1])
    if kind == "tiered":  # a host's file in front of the fleet's Redis
        return TieredCache(FileCache(spec[1]), RedisCache(spec[2]))
    if kind == "redis-client":  # a client passed in, as Cluster and Sentinel users do
        client = redis.Redis(
            host="127.0.0.1", port=int(spec[1]), socket_timeout=1.0, socket_connect_timeout=1.0
        )
        return RedisCache(client)
    raise ValueError(kind)


def worker(
    settings: dict[str, Any],
    start: Any,  # a multiprocessing Barrier shared with the parent
    results: Any,  # a multiprocessing Queue
    index: int,
) -> None:
    """One process: ``threads`` threads, each with its own ``requests.Session``, call the
    API ``calls`` times each, or for ``duration`` seconds when that is given."""
    log = logging.getLogger("bearer_m2m")
    counting = _Counting()
    log.addHandler(counting)
    log.setLevel(logging.DEBUG)
    log.propagate = False

    auth = ClientCredentialsAuth(
        settings["token_url"],
        client_id=settings["client_id"],
        client_secret=settings["client_secret"],
        audience=settings["audience"],
        cache=_make_cache(settings["cache"]),
        allow_insecure_http=True,  # the local API is plain http on 127.0.0.1
    )
    threads: int = settings["threads"]
    duration: float | None = settings.get("duration")
    go = threading.Event()
    lock = threading.Lock()
    tally: Counter[str] = Counter()
    first_ok: list[float] = []
    timeline: list[tuple[float, float]] = []  # (wall-clock start, seconds), every call
    errors: Counter[str] = Counter()

    def run() -> None:
        session = requests.Session()
        go.wait()
        began = time.time()
        first: float | None = None
        done = 0
        while (done < settings["calls"]) if duration is None else (time.time() < stop_at):
            started = time.perf_counter()
            wall = time.time()
            try:
                response = session.get(settings["api_url"], auth=auth, timeout=30)
                ok = response.status_code == 200
                if not ok:
                    error = f"HTTP {response.status_code}"
            except Exception as exc:
                ok = False
                error = type(exc).__name__
            elapsed = time.perf_counter() - started
            done += 1
            with lock:
                tally["ok" if ok else "failed"] += 1
                if not ok:
                    errors[error] += 1
                timeline.append((wall, elapsed))
            if ok and first is None:
                first = time.time() - began
        session.close()
        if first is not None:
            with lock:
                first_ok.append(first)

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    start.wait(timeout=120)  # every process is ready: release them together
    stop_at = time.time() + (duration or 0.0)
    go.set()
    for thread in pool:
        thread.join()
    results.put(
        {
            "index": index,
            "ok": tally["ok"],
            "failed": tally["failed"],
            "errors": dict(errors),
            "threads_served": len(first_ok),
            "first_ok_max": max(first_ok, default=float("nan")),
            "timeline": timeline,
            "adopted": counting.adopted,
            "warnings": counting.warnings,
        }
    )


@dataclass
class Fleet:
    """What a group of worker processes reported, and the token requests they caused."""

    reports: list[dict[str, Any]]
    token_requests: int
    wall: float
    released_at: float

    def total(self, name: str) -> int:
        return sum(int(report[name]) for report in self.reports)

    @property
    def warnings(self) -> list[str]:
        return [message for report in self.reports for message in report["warnings"]]


def run_fleet(
    services: Services,
    settings: list[dict[str, Any]],
    *,
    delay: float,
    during: Callable[[float], None] | None = None,
) -> Fleet:
    """Start one process per entry of ``settings``, release them together, collect.

    ``during(released_at)`` runs in this process while the workers work (the
    Redis kill of scenario 4).
    """
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(len(settings) + 1)
    results = context.Queue()
    services.fresh_counters(delay)
    processes = [
        context.Process(target=worker, args=(entry, start, results, index), daemon=True)
        for index, entry in enumerate(settings)
    ]
    for process in processes:
        process.start()
    try:
        start.wait(timeout=120)
        released = time.time()
        began = time.perf_counter()
        if during is not None:
            during(released)
        reports = [results.get(timeout=120) for _ in processes]
        wall = time.perf_counter() - began
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    return Fleet(
        sorted(reports, key=lambda report: report["index"]),
        services.server.token_requests,
        wall,
        released,
    )


# -- (1) and (2): cold starts --------------------------------------------------------------


def cold_start(
    services: Services,
    caches: list[tuple[str, ...] | None],
    threads: int,
    calls: int,
) -> Fleet:
    client = services.client_settings()
    settings = [dict(client, cache=cache, threads=threads, calls=calls) for cache in caches]
    return run_fleet(services, settings, delay=COLD_DELAY)


def describe_cold(label: str, fleet: Fleet, processes: int, threads: int, calls: int) -> str:
    expected = processes * threads * calls
    return (
        f"  {label:<34}{fleet.token_requests:>6}"
        f"{fleet.total('adopted'):>9}/{processes:<3}"
        f"{fleet.total('ok'):>6}/{expected:<6}{fleet.total('failed'):>7}"
        f"{max(r['first_ok_max'] for r in fleet.reports) * 1000:>10.0f}"
        f"{fleet.wall:>8.2f}"
    )


COLD_HEADER = (
    f"  {'run':<34}{'token':>6}{'adopted':>11}{'API calls':>15}{'failed':>7}"
    f"{'1st 200':>10}{'wall':>8}\n"
    f"  {'':<34}{'reqs':>6}{'(procs)':>11}{'200/all':>15}{'':>7}{'max ms':>10}{'s':>8}"
)


def scenario_cold_file(
    services: Services, workdir: str, runs: int, processes: int, threads: int, calls: int
) -> None:
    print(
        f"\n(1) cold start, one host: {processes} processes x {threads} threads x {calls} API "
        f"calls, one FileCache; token endpoint delay {COLD_DELAY * 1000:.0f} ms; target 1"
    )
    print(COLD_HEADER)
    counts = []
    for run in range(runs):
        path = os.path.join(workdir, f"host-{run}", "token.cache")
        os.makedirs(os.path.dirname(path))
        fleet = cold_start(services, [("file", path)] * processes, threads, calls)
        counts.append(fleet.token_requests)
        print(describe_cold(f"FileCache, run {run + 1}", fleet, processes, threads, calls))
        if fleet.warnings:
            print(f"    warnings: {Counter(fleet.warnings).most_common(3)}")
    baseline = cold_start(services, [None] * processes, threads, calls)
    print(describe_cold("no cache (baseline)", baseline, processes, threads, calls))
    print(
        f"  token requests: FileCache {', '.join(map(str, counts))} per run; "
        f"without a cache {baseline.token_requests} (one per process)"
    )
    print(
        "  adopted: processes that took the token another process stored; "
        "1st 200 max: slowest thread's first successful call after the release"
    )


def scenario_cold_redis(
    services: Services,
    redis_server: RedisServer,
    runs: int,
    processes_per_group: int,
    threads: int,
    calls: int,
) -> None:
    processes = 2 * processes_per_group
    print(
        f"\n(2) cold start, two hosts: 2 groups x {processes_per_group} processes x {threads} "
        f"threads x {calls} API calls, each group with its own token file in front of one "
        f"RedisCache ({redis_server.url}); target 1"
    )
    print(
        "  configuration: each process uses TieredCache(FileCache(<its group's path>),\n"
        "  RedisCache(url)); all 8 processes run on this machine, two file paths for two hosts"
    )
    print(COLD_HEADER)
    counts = []
    for run in range(runs):
        redis_server.client.flushdb()
        hosts = tempfile.mkdtemp(prefix="bearer_m2m-hosts-")
        caches: list[tuple[str, ...] | None] = [
            ("tiered", os.path.join(hosts, f"host-{group}.cache"), redis_server.url)
            for group in "ab"
            for _ in range(processes_per_group)
        ]
        fleet = cold_start(services, caches, threads, calls)
        counts.append(fleet.token_requests)
        print(describe_cold(f"TieredCache, run {run + 1}", fleet, processes, threads, calls))
        if fleet.warnings:
            print(f"    warnings: {Counter(fleet.warnings).most_common(3)}")
    print(f"  token requests: TieredCache {', '.join(map(str, counts))} per run")


# -- (3): the cached path ------------------------------------------------------------------


class StaticRequestsAuth(AuthBase):
    """A constant bearer header: the floor, for reference."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = "Bearer x"
        return r


def requests_batch(n: int) -> list[requests.PreparedRequest]:
    template = requests.Request("GET", TIMED_URL, headers={"Accept": "application/json"}).prepare()
    batch = []
    for _ in range(n):
        prepared = template.copy()
        prepared.hooks = default_hooks()  # copy() shares the hooks dict; give each its own
        batch.append(prepared)
    return batch


class StoreCalls:
    """Counts calls to a cache's store methods (wrapped on the instance: the cached
    path never looks them up, so the wrapping costs it nothing)."""

    def __init__(self, cache: Any) -> None:
        self.calls = 0
        for name in ("load", "store", "refresh_lock"):
            setattr(cache, name, self._counted(getattr(cache, name)))

    def _counted(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any) -> Any:
            self.calls += 1
            return method(*args)

        return counted


def scenario_cached_path(
    services: Services, redis_server: RedisServer, workdir: str, repeats: int, iterations: int
) -> None:
    client = services.client_settings()
    credentials = {
        "client_id": client["client_id"],
        "client_secret": client["client_secret"],
        "audience": AUDIENCE,
    }
    file_cache = FileCache(os.path.join(workdir, "cached-path", "token.cache"))
    os.makedirs(os.path.dirname(file_cache.path))
    redis_cache = RedisCache(redis_server.url)
    contenders: list[tuple[str, Any]] = [
        ("static header (floor, reference)", StaticRequestsAuth()),
        ("no cache (in-memory only)", ClientCredentialsAuth(client["token_url"], **credentials)),
        (
            "FileCache",
            ClientCredentialsAuth(client["token_url"], **credentials, cache=file_cache),
        ),
        (
            "RedisCache",
            ClientCredentialsAuth(client["token_url"], **credentials, cache=redis_cache),
        ),
    ]
    services.fresh_counters(0.0)
    for name, auth in contenders:  # warm up: fetch or adopt the token, check the API takes it
        header = auth(requests_batch(1)[0]).headers["Authorization"]
        if name.startswith("static"):
            continue
        answer = requests.get(client["api_url"], headers={"Authorization": header}, timeout=10)
        if answer.status_code != 200:
            print(f"  note: the API refused the token of {name!r} ({answer.status_code})")
    warm_up_requests = services.server.token_requests
    watched = [StoreCalls(file_cache), StoreCalls(redis_cache)]
    redis_before = redis_server.commands_processed()
    file_stat = os.stat(file_cache.path)
    before = services.server.token_requests

    samples: dict[str, list[float]] = {name: [] for name, _ in contenders}
    for _ in range(repeats):  # round-robin, so drift affects every contender alike
        for name, auth in contenders:
            batch = requests_batch(iterations)
            gc.collect()
            gc.disable()
            try:
                started = time.perf_counter_ns()
                for prepared in batch:
                    auth(prepared)
                elapsed = time.perf_counter_ns() - started
            finally:
                gc.enable()
            samples[name].append(elapsed / iterations)
            del batch

    redis_commands = redis_server.commands_processed() - redis_before - 1  # less our INFO
    file_after = os.stat(file_cache.path)
    print(
        f"\n(3) cached path: auth(prepared_request), median of {repeats} repeats x "
        f"{iterations:,} calls, gc disabled; target: shared caches within "
        f"{TARGET_CACHED_PATH_US} µs of no cache"
    )
    head = (
        f"  {'auth':<34}{'median µs':>10}{'min µs':>9}"
        f"{'vs no cache: paired median':>28}{'min - min':>11}"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    plain = samples["no cache (in-memory only)"]
    for name, _ in contenders:
        median = statistics.median(samples[name])
        line = f"  {name:<34}{median / 1000:>10.3f}{min(samples[name]) / 1000:>9.3f}"
        if not name.startswith(("static", "no cache")):
            # Each repeat's difference to the no-cache loop run just before it, so that
            # load from elsewhere on the machine weighs on both sides alike.
            paired = statistics.median([a - b for a, b in zip(samples[name], plain, strict=True)])
            paired /= 1000
            floor_gap = (min(samples[name]) - min(plain)) / 1000
            verdict = "met" if paired <= TARGET_CACHED_PATH_US else "MISSED"
            line += (
                f"{paired:>+28.3f}{floor_gap:>+11.3f}"
                f"   within {TARGET_CACHED_PATH_US} µs: {verdict}"
            )
        print(line)
    print(
        f"  during the timed loops: token requests {services.server.token_requests - before}, "
        f"cache method calls {sum(w.calls for w in watched)}, Redis commands "
        f"{redis_commands}, token file "
        f"{'untouched' if file_after.st_mtime_ns == file_stat.st_mtime_ns else 'REWRITTEN'}"
        f" (warm-up: {warm_up_requests} token requests for 3 auth objects)"
    )


# -- (4): Redis killed mid-run --------------------------------------------------------------


def scenario_redis_killed(
    services: Services,
    redis_executable: str,
    processes: int,
    threads: int,
    duration: float,
    kill_after: float,
    lifetime: float,
) -> None:
    print(
        f"\n(4) Redis killed mid-run: {processes} processes x {threads} threads call the API "
        f"for {duration:.1f} s through one RedisCache;\n    tokens live {lifetime:.0f} s "
        f"(token endpoint delay {REFRESH_DELAY * 1000:.0f} ms); redis-server gets SIGKILL at "
        f"{kill_after:.1f} s; target 0 failed"
    )
    doomed = RedisServer(redis_executable)
    killed: dict[str, float] = {}

    def kill_redis(released: float) -> None:
        time.sleep(max(0.0, released + kill_after - time.time()))
        killed["requests"] = services.server.token_requests
        killed["at"] = time.time()
        doomed.kill()

    try:
        client = services.client_settings(token_lifetime=lifetime)
        settings = [
            dict(
                client,
                cache=("redis-url", doomed.url),
                threads=threads,
                calls=0,
                duration=duration,
            )
            for _ in range(processes)
        ]
        fleet = run_fleet(services, settings, delay=REFRESH_DELAY, during=kill_redis)
    finally:
        doomed.kill()

    total = fleet.total("ok") + fleet.total("failed")
    before_kill = int(killed.get("requests", 0))
    after_kill = fleet.token_requests - before_kill
    down_for = fleet.released_at + duration - killed.get("at", fleet.released_at)
    errors: Counter[str] = Counter()
    for report in fleet.reports:
        errors.update(report["errors"])
    print(
        f"  API calls {total:,} ({total / duration:,.0f}/s), failed {fleet.total('failed')}"
        + (f" {dict(errors)}" if errors else "")
    )
    print(
        f"  token requests: {fleet.token_requests} in all; {before_kill} in the "
        f"{kill_after:.1f} s before the kill (Redis up), {after_kill} in the "
        f"{down_for:.1f} s after it (Redis down: each process fetches its own); "
        f"tokens adopted from Redis: {fleet.total('adopted')}"
    )
    kill_at = killed.get("at", fleet.released_at)
    calls = [entry for report in fleet.reports for entry in report["timeline"]]
    phases = [
        ("first second (cold start)", lambda wall: wall < fleet.released_at + 1.0),
        ("then until the kill", lambda wall: fleet.released_at + 1.0 <= wall < kill_at),
        ("after the kill", lambda wall: wall >= kill_at),
    ]
    print(f"  API call durations (ms)        {'calls':>7}{'median':>8}{'max':>8}{'>=250 ms':>10}")
    for label, within in phases:
        spans = [seconds * 1000 for wall, seconds in calls if within(wall)]
        if not spans:
            continue
        slow = sum(1 for span in spans if span >= SLOW_REQUEST * 1000)
        print(
            f"    {label:<28}{len(spans):>7,}{statistics.median(spans):>8.1f}"
            f"{max(spans):>8.0f}{slow:>10}"
        )
    warnings = Counter(fleet.warnings)
    print(
        f"  bearer_m2m warnings: {sum(warnings.values())} "
        f"(processes: {processes}; the cache warns once per auth object)"
    )
    for message, count in warnings.most_common(4):
        print(f"    {count} x {message[:150]}")


# -- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, shorter; ~20 s")
    args = parser.parse_args()
    quick = args.quick
    runs = 1 if quick else 3
    processes, threads, calls = 8, 16, 3
    repeats, iterations = (11, 4_000) if quick else (25, 8_000)
    kill_duration, kill_after = (4.5, 1.5) if quick else (9.0, 3.5)
    lifetime = 3.0

    print(
        f"bearer_m2m shared token caches — Python {sys.version.split()[0]}, "
        f"redis-py {redis.__version__}, {os.cpu_count()} CPUs; worker processes: spawn"
    )
    print(
        "tokens: RS256 JWTs from bearer_m2m.testing.AuthorizationServer on loopback, "
        f"audience {AUDIENCE}, checked by ProtectedAPI; servers in this process"
    )
    started = time.perf_counter()
    redis_executable = shutil.which("redis-server") or "/usr/bin/redis-server"
    have_redis = os.access(redis_executable, os.X_OK)
    workdir = tempfile.mkdtemp(prefix="bearer-m2m-bench-")
    services = Services()
    redis_server: RedisServer | None = None
    try:
        if have_redis:
            redis_server = RedisServer(redis_executable)
            version = redis_server.client.info("server")["redis_version"]
            print(f"redis-server {version} on 127.0.0.1:{redis_server.port} (no persistence)")
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"load average at start: {load} (other work on the machine adds noise)")
        scenario_cold_file(services, workdir, runs, processes, threads, calls)
        if redis_server is None:
            print("\n(2)-(4) skipped: no redis-server found (apt-get install redis-server)")
        else:
            scenario_cold_redis(services, redis_server, runs, processes // 2, threads, calls)
            scenario_cached_path(services, redis_server, workdir, repeats, iterations)
            scenario_redis_killed(
                services, redis_executable, 3, 4, kill_duration, kill_after, lifetime
            )
    finally:
        if redis_server is not None:
            redis_server.kill()
        services.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # clean up Redis on SIGTERM too
    sys.exit(main())
