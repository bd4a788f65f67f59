"""``bearer-m2m demo``: the library's promises, shown against an embedded server.

Every scenario checks what it shows, so the demo doubles as a smoke test of an
installation: it exits 1 if any promise did not hold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

import requests

try:  # the maintained httpx line first; the demo runs its sync and async checks on it
    import httpx2 as httpx
except ImportError:  # pragma: no cover  (the test extra installs httpx2)
    import httpx  # type: ignore[no-redef]  # httpx 0.28: the same API

from . import ClientCredentialsAuth, TokenRequestRejected
from .testing import AuthorizationServer, ProtectedAPI

AUDIENCE = "https://api.example"


class Report:
    """Prints what happened and remembers whether every check held."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failures: list[str] = []

    def section(self, title: str) -> None:
        print(f"\n{title}", file=self.out)

    def line(self, text: str, ok: bool = True) -> None:
        print(f"  {'ok ' if ok else 'FAIL'} {text}", file=self.out)
        if not ok:
            self.failures.append(text)


#: Which httpx line the demo shows.
LINE = httpx.__name__


def run_demo(out: TextIO) -> int:
    started = time.perf_counter()
    report = Report(out)
    with AuthorizationServer() as server, ProtectedAPI(server, audience=AUDIENCE) as api:
        print("bearer_m2m demo", file=out)
        print(
            f"  authorization server {server.issuer} (token endpoint {server.token_url})", file=out
        )
        print(f"  protected API        {api.url} (audience {AUDIENCE})", file=out)
        scenarios: list[Callable[[Report, AuthorizationServer, ProtectedAPI], None]] = [
            reuse,
            cold_start,
            refresh_ahead,
            revoked_token,
            auth0_errors,
            dpop,
        ]
        for scenario in scenarios:
            server.reset()
            scenario(report, server, api)
    elapsed = time.perf_counter() - started
    if report.failures:
        print(f"\n{len(report.failures)} check(s) failed in {elapsed:.1f} s", file=out)
        return 1
    print(f"\nall checks held, in {elapsed:.1f} s", file=out)
    return 0


def auth_for(server: AuthorizationServer, **options: object) -> ClientCredentialsAuth:
    client = server.client
    return ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        client_secret=client.client_secret,
        audience=AUDIENCE,
        **options,  # type: ignore[arg-type]
    )


def reuse(report: Report, server: AuthorizationServer, api: ProtectedAPI) -> None:
    report.section("1. One token serves every request (one auth object for all three clients)")
    auth = auth_for(server)
    url = f"{api.url}things"
    with requests.Session() as session:
        session.auth = auth
        statuses = [session.get(url).status_code for _ in range(20)]
    report.line(f"requests:    20 requests, {statuses.count(200)} answered 200")
    with httpx.Client(auth=auth) as client:
        statuses = [client.get(url).status_code for _ in range(20)]
    report.line(f"{LINE + ':':<12} 20 requests, {statuses.count(200)} answered 200")

    async def from_async() -> list[int]:
        async with httpx.AsyncClient(auth=auth) as client:
            return [(await client.get(url)).status_code for _ in range(20)]

    statuses = asyncio.run(from_async())
    report.line(f"{LINE + ' async:':<12} 20 requests, {statuses.count(200)} answered 200")
    report.line(
        f"token requests made for 60 API calls: {server.token_requests}",
        ok=server.token_requests == 1 and api.unauthorized == 0,
    )


def cold_start(report: Report, server: AuthorizationServer, api: ProtectedAPI) -> None:
    report.section("2. Cold start: many callers at once, one token request")
    url = f"{api.url}things"
    server.delay_next(0.2)  # a slow token endpoint makes the race real
    auth = auth_for(server)
    statuses: list[int] = []
    with timed() as elapsed:

        def worker() -> None:
            with requests.Session() as session:
                session.auth = auth
                statuses.extend(session.get(url).status_code for _ in range(5))

        threads = [threading.Thread(target=worker) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    report.line(
        f"requests, 64 threads x 5: {statuses.count(200)}/320 answered 200 in {elapsed():.2f} s, "
        f"token requests: {server.token_requests}",
        ok=statuses.count(200) == 320 and server.token_requests == 1,
    )

    server.reset()
    server.delay_next(0.2)
    auth = auth_for(server)

    async def tasks() -> list[int]:
        # 500 requests queue for 20 connections: on a busy machine some wait longer than
        # httpx's default 5 s for one, which says nothing about tokens.
        limits = httpx.Limits(max_connections=20)
        timeout = httpx.Timeout(30.0, pool=None)
        async with httpx.AsyncClient(auth=auth, limits=limits, timeout=timeout) as client:
            responses = await asyncio.gather(*(client.get(url) for _ in range(500)))
        return [response.status_code for response in responses]

    with timed() as elapsed:
        statuses = asyncio.run(tasks())
    report.line(
        f"{LINE} async, 500 tasks: {statuses.count(200)}/500 answered 200 in {elapsed():.2f} s, "
        f"token requests: {server.token_requests}",
        ok=statuses.count(200) == 500 and server.token_requests == 1,
    )


def refresh_ahead(report: Report, server: AuthorizationServer, api: ProtectedAPI) -> None:
    lifetime = 3.0
    report.section(
        f"3. Refresh ahead: tokens living {lifetime:.0f} s, a token endpoint answering in 0.2 s"
    )
    client = server.register_client(token_lifetime=lifetime)
    auth = ClientCredentialsAuth(
        server.token_url,
        client_id=client.client_id,
        client_secret=client.client_secret,
        audience=AUDIENCE,
    )
    url = f"{api.url}things"
    auth.token()  # the first fetch is the only one anybody waits for
    server.delay_next(0.2, times=10)
    waits: list[float] = []
    statuses: list[int] = []
    stop = time.monotonic() + 2 * lifetime

    def worker() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                began = time.perf_counter()
                token = auth.token()
                waits.append(time.perf_counter() - began)
                headers = {"Authorization": f"Bearer {token}"}
                statuses.append(session.get(url, headers=headers).status_code)
                time.sleep(0.005)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    longest = max(waits)
    report.line(
        f"8 threads for {2 * lifetime:.0f} s: {statuses.count(200)}/{len(statuses)} answered 200, "
        f"token requests: {server.token_requests} (refreshes in the background)",
        ok=statuses.count(200) == len(statuses) and 2 <= server.token_requests <= 4,
    )
    report.line(
        f"longest wait for a token after the first fetch: {longest * 1000:.1f} ms "
        "(a fetch takes 200 ms)",
        ok=longest < 0.1,
    )


def revoked_token(report: Report, server: AuthorizationServer, api: ProtectedAPI) -> None:
    report.section("4. A revoked token: 401, a new token, the request replayed once")
    url = f"{api.url}orders"

    def requests_call(auth: ClientCredentialsAuth) -> tuple[int, list[int]]:
        response = requests.post(url, json={"sku": 42}, auth=auth, timeout=10)
        return response.status_code, [r.status_code for r in response.history]

    def httpx_call(auth: ClientCredentialsAuth) -> tuple[int, list[int]]:
        with httpx.Client(auth=auth) as client:
            response = client.post(url, json={"sku": 42})
        return response.status_code, [r.status_code for r in response.history]

    def httpx_async_call(auth: ClientCredentialsAuth) -> tuple[int, list[int]]:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(auth=auth) as client:
                response: httpx.Response = await client.post(url, json={"sku": 42})
            return response

        response = asyncio.run(call())
        return response.status_code, [r.status_code for r in response.history]

    calls = [("requests", requests_call), (LINE, httpx_call), (f"{LINE} async", httpx_async_call)]
    for name, call in calls:
        auth = auth_for(server)
        auth.token()
        server.revoke_all()
        before = server.token_requests
        status, history = call(auth)
        fetched = server.token_requests - before
        report.line(
            f"{name + ':':<12} answered {status} after {history}, new token requests: {fetched}",
            ok=status == 200 and history == [401] and fetched == 1,
        )


def auth0_errors(report: Report, server: AuthorizationServer, api: ProtectedAPI) -> None:
    report.section("5. Errors the way Auth0 reports them, raised as clear exceptions")
    wrong_secret = ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret="not-the-secret",  # noqa: S106  (wrong on purpose)
        audience=AUDIENCE,
    )
    expect_rejection(report, "wrong client secret", wrong_secret, 401, "invalid_client")

    narrow = server.register_client(audiences=["https://other.example"])
    not_granted = ClientCredentialsAuth(
        server.token_url,
        client_id=narrow.client_id,
        client_secret=narrow.client_secret,
        audience=AUDIENCE,
    )
    expect_rejection(report, "audience not granted", not_granted, 403, "access_denied")


def dpop(report: Report, server: AuthorizationServer, api: ProtectedAPI) -> None:
    report.section("6. DPoP: a token bound to a key, a proof per request, both servers' nonces")
    with (
        AuthorizationServer(require_dpop_nonce=True) as nonce_server,
        ProtectedAPI(nonce_server, audience=AUDIENCE, require_dpop_nonce=True) as nonce_api,
    ):
        auth = auth_for(nonce_server, dpop=True)
        url = f"{nonce_api.url}things"
        with requests.Session() as session:
            session.auth = auth
            answers = [session.get(url) for _ in range(10)]
        with httpx.Client(auth=auth) as client:
            answers += [client.get(url) for _ in range(10)]
        thumbprint = auth.dpop_thumbprint or ""
        # The API names the key a DPoP token it accepted is bound to.
        bound = [a for a in answers if a.status_code == 200 and a.json()["dpop_jkt"] == thumbprint]
        report.line(
            f"requests and {LINE}: {len(bound)} of 20 requests answered 200 with a DPoP token "
            f"bound to key {thumbprint[:12]}...",
            ok=len(bound) == 20,
        )
        report.line(
            f"token endpoint: {nonce_server.dpop_nonce_challenges} nonce challenge answered, "
            f"{nonce_server.tokens_issued} token issued",
            ok=(nonce_server.dpop_nonce_challenges, nonce_server.tokens_issued) == (1, 1),
        )
        report.line(
            f"API: {nonce_api.dpop_proofs_accepted} fresh proofs accepted, "
            f"{nonce_api.dpop_jti_replays} reused; its nonce challenge was answered with the "
            "same token",
            ok=(nonce_api.dpop_proofs_accepted, nonce_api.dpop_jti_replays) == (20, 0)
            and nonce_api.dpop_nonce_challenges == 1,
        )


def expect_rejection(
    report: Report, what: str, auth: ClientCredentialsAuth, status: int, error: str
) -> None:
    try:
        auth.token()
    except TokenRequestRejected as exc:
        report.line(
            f"{what}: {type(exc).__name__}: {exc}",
            ok=(exc.status_code, exc.error) == (status, error),
        )
    else:
        report.line(f"{what}: no error raised", ok=False)


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    began = time.perf_counter()
    ended: list[float] = []
    try:
        yield lambda: (ended[0] if ended else time.perf_counter()) - began
    finally:
        ended.append(time.perf_counter())
