"""Per-request cost of the auth object once a token is cached.

Every contender first fetches a real token (an RS256 JWT for the audience
``AUDIENCE``) from the project's local authorization server,
``bearer_m2m.testing.AuthorizationServer``, and the header it then sets is
checked against ``bearer_m2m.testing.ProtectedAPI`` (so each peer demonstrably
sent the audience). Then only the header-setting step is timed, on fresh request
objects built outside the timed loop; nothing is sent during the timed loops:

* requests:      ``auth(prepared_request)``
* httpx, httpx2: ``next(auth.sync_auth_flow(request))`` on a new generator each time
* aiohttp:       ``await auth.aiohttp_middleware(client_request, handler)``, the
  handler answering 200 at once (the middleware's whole cost, the answer included)

Each family also times the same auth with ``dpop=True`` (ES256): a DPoP proof
signed per request, compared with the Bearer row of the same run. Its warm-up
checks that the token is DPoP-bound (the local server verified the proof of the
token request); the proofs timed here are for ``API_URL`` and are not sent.

Each contender is compared with a static-header auth measured in the same run
(the floor). For the httpx lines there are two floors of the same shape: the
idiomatic ``auth_flow`` (which httpx wraps in a second generator) and an
override of ``sync_auth_flow`` (one generator, as bearer_m2m does); both are
quoted. Figures are medians over several repeats; nothing is asserted. A family
whose client is not installed is skipped.

Run from the repository root::

    python benchmarks/overhead.py            # 5 repeats x 20,000 calls
    python benchmarks/overhead.py --quick    # 3 repeats x 5,000 calls
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import os
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import requests  # noqa: E402
from requests.auth import AuthBase  # noqa: E402
from requests.hooks import default_hooks  # noqa: E402

from bearer_m2m import ClientCredentialsAuth  # noqa: E402
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI  # noqa: E402

#: What the API call would go to; https like production, so that no
#: insecure-transport check runs. Nothing is ever sent there.
API_URL = "https://api.example.com/v1/items?page=2"
#: The same over plain http to a loopback host (dev/test set-ups).
LOOPBACK_API_URL = "http://127.0.0.1:8080/v1/items?page=2"

#: The API the tokens are for. Every contender sends it as ``audience`` in its token
#: request; the server's default audience is another one, so a token requested
#: without it would be refused by the API.
AUDIENCE = "https://api.example.com/"

TARGET_REQUESTS_US = 1.0
TARGET_HTTPX_US = 1.5
TARGET_AIOHTTP_US = 1.5


class Servers:
    """The local authorization server and an API that accepts its tokens for ``AUDIENCE``."""

    def __init__(self) -> None:
        self.token = AuthorizationServer().start()
        self.api = ProtectedAPI(self.token, audience=AUDIENCE).start()
        self.token_url = self.token.token_url
        self.credentials = {
            "client_id": self.token.client.client_id,
            "client_secret": self.token.client.client_secret,
        }

    def accepts(self, authorization: str) -> bool:
        """Whether the API answers 200 to this ``Authorization`` header."""
        response = requests.get(
            self.api.url + "v1/items", headers={"Authorization": authorization}, timeout=10
        )
        return response.status_code == 200

    def close(self) -> None:
        self.api.stop()
        self.token.stop()


# -- the floors -----------------------------------------------------------------


class StaticRequestsAuth(AuthBase):
    """The cheapest useful requests auth: a constant bearer header."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = "Bearer x"
        return r


def static_httpx_auths(package: Any) -> tuple[Any, Any]:
    """The two floors of one httpx line: ``auth_flow`` (two generators per request) and
    ``sync_auth_flow`` (one)."""

    class StaticHttpxAuth(package.Auth):  # type: ignore[misc,name-defined]
        """The idiomatic trivial auth: ``auth_flow`` sets a constant header."""

        def auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            request.headers["Authorization"] = "Bearer x"
            yield request

    class StaticHttpxSyncFlowAuth(package.Auth):  # type: ignore[misc,name-defined]
        """A leaner floor: overrides ``sync_auth_flow`` directly, as bearer_m2m does."""

        def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
            request.headers["Authorization"] = "Bearer x"
            yield request

    return StaticHttpxAuth(), StaticHttpxSyncFlowAuth()


async def static_aiohttp_middleware(request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
    """The cheapest useful aiohttp middleware: a constant bearer header."""
    request.headers["Authorization"] = "Bearer x"
    return await handler(request)


# -- contenders -----------------------------------------------------------------


@dataclass
class Contender:
    name: str
    call: Callable[[Any], Any] | None = None  # one timed step on one fresh request
    make_batch: Callable[[int], list[Any]] | None = None
    note: str = ""
    skipped: str = ""  # reason, when it could not be measured
    is_floor: bool = False
    #: False when its first call fetches no token (static auths, tokens fetched while
    #: building the contender, a second row for an auth object already warmed up).
    fetches_on_first_call: bool = True
    alt_floor: bool = False  # a second, leaner floor also compared with
    target_us: float | None = None
    #: The Bearer row this DPoP row is compared with.
    bearer: Contender | None = None
    #: For coroutine steps: runs a coroutine to its end on the family's event loop.
    run: Callable[[Awaitable[Any]], Any] | None = None
    samples_ns: list[float] = field(default_factory=list)

    @property
    def median_ns(self) -> float:
        return statistics.median(self.samples_ns)


def requests_batch(url: str) -> Callable[[int], list[requests.PreparedRequest]]:
    template = requests.Request("GET", url, headers={"Accept": "application/json"}).prepare()

    def make(n: int) -> list[requests.PreparedRequest]:
        batch = []
        for _ in range(n):
            p = template.copy()
            p.hooks = default_hooks()  # copy() shares the hooks dict; give each its own
            batch.append(p)
        return batch

    return make


def httpx_batch(package: Any, url: str) -> Callable[[int], list[Any]]:
    def make(n: int) -> list[Any]:
        headers = {"Accept": "application/json"}
        return [package.Request("GET", url, headers=headers) for _ in range(n)]

    return make


def httpx_step(auth: Any) -> Callable[[Any], Any]:
    def step(request: Any) -> Any:
        return next(auth.sync_auth_flow(request))

    return step


def one_call(contender: Contender, request: Any) -> Any:
    """One step, awaited on the family's loop when it is a coroutine."""
    assert contender.call is not None
    outcome = contender.call(request)
    if contender.run is not None:
        outcome = contender.run(outcome)
    return outcome if outcome is not None else request


def warm_up(contender: Contender, servers: Servers) -> None:
    """Fetch the contender's token (one real request to the token server) and
    check that the API accepts the header it sets (static floors excepted)."""
    assert contender.call is not None and contender.make_batch is not None
    before = servers.token.token_requests
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        request = contender.make_batch(1)[0]
        one_call(contender, request)
        one_call(contender, contender.make_batch(1)[0])
    fetched = servers.token.token_requests - before
    header = request.headers.get("Authorization", "")
    if contender.bearer is not None:
        if not header.startswith("DPoP ") or "DPoP" not in request.headers:
            raise RuntimeError("no DPoP token and proof on the request")
        if servers.token.dpop_proofs_accepted == 0:
            contender.note += " [the token endpoint accepted no proof]"
    elif not header.startswith("Bearer "):
        raise RuntimeError(f"unexpected Authorization header {header[:20]!r}")
    elif not (contender.is_floor or contender.alt_floor) and not servers.accepts(header):
        contender.note += " [the API refused its token]"
    expected = 1 if contender.fetches_on_first_call and not contender.is_floor else 0
    if fetched != expected:
        contender.note += f" [warm-up made {fetched} token requests]"
    for w in caught:
        if issubclass(w.category, DeprecationWarning) or "Deprecat" in w.category.__name__:
            contender.note += f" [{w.category.__name__} at first call]"


def measure(contenders: list[Contender], repeats: int, iterations: int) -> None:
    """Round-robin over the contenders so drift affects them all alike."""
    live = [c for c in contenders if not c.skipped]
    for _ in range(repeats):
        for c in live:
            assert c.call is not None and c.make_batch is not None
            batch = c.make_batch(iterations)
            call = c.call
            gc.collect()
            gc.disable()
            try:
                if c.run is None:
                    start = time.perf_counter_ns()
                    for item in batch:
                        call(item)
                    elapsed = time.perf_counter_ns() - start
                else:
                    elapsed = c.run(_timed_awaits(call, batch))
            finally:
                gc.enable()
            c.samples_ns.append(elapsed / iterations)
            del batch


async def _timed_awaits(call: Callable[[Any], Awaitable[Any]], batch: list[Any]) -> int:
    start = time.perf_counter_ns()
    for item in batch:
        await call(item)
    return time.perf_counter_ns() - start


# -- building each family --------------------------------------------------------


def quiet_import(fn: Callable[[], Any]) -> tuple[Any, list[str]]:
    """Run an import/constructor, returning what it made and the names of any
    deprecation warnings it raised (which are kept off the console)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        made = fn()
    names = sorted(
        {
            w.category.__name__
            for w in caught
            if issubclass(w.category, DeprecationWarning) or "Deprecat" in w.category.__name__
        }
    )
    return made, names


def requests_contenders(servers: Servers) -> list[Contender]:
    batch = requests_batch(API_URL)
    floor = StaticRequestsAuth()
    ours = ClientCredentialsAuth(servers.token_url, **servers.credentials, audience=AUDIENCE)
    bearer = Contender(
        "bearer_m2m ClientCredentialsAuth", ours, batch, target_us=TARGET_REQUESTS_US
    )
    out = [
        Contender("static header (floor)", floor, batch, is_floor=True),
        bearer,
        Contender("bearer_m2m, dpop=True (ES256)", dpop_auth(servers), batch, bearer=bearer),
        Contender(
            "bearer_m2m, http://127.0.0.1 API url",
            ours,
            requests_batch(LOOPBACK_API_URL),
            note="same auth object; loopback-http check runs on every call",
            fetches_on_first_call=False,
        ),
    ]

    try:
        from requests_auth import OAuth2ClientCredentials as RAClientCredentials
    except ImportError:
        out.append(Contender("requests-auth OAuth2ClientCredentials", skipped="not installed"))
    else:
        # Extra keyword arguments go into the token request's body.
        ra = RAClientCredentials(servers.token_url, **servers.credentials, audience=AUDIENCE)
        out.append(Contender("requests-auth OAuth2ClientCredentials", ra, batch))

    try:
        from authlib.integrations.requests_client import OAuth2Session
    except ImportError:
        out.append(Contender("Authlib OAuth2Session.token_auth", skipped="not installed"))
    else:

        def make_session() -> Any:
            session = OAuth2Session(token_endpoint=servers.token_url, **servers.credentials)
            session.fetch_token(
                servers.token_url, grant_type="client_credentials", audience=AUDIENCE
            )
            return session

        session, deprecations = quiet_import(make_session)
        c = Contender(
            "Authlib OAuth2Session.token_auth",
            session.token_auth,
            batch,
            note="token fetched via session.fetch_token()",
            fetches_on_first_call=False,
        )
        if deprecations:
            c.note += f" [{', '.join(deprecations)}; suppressed]"
        out.append(c)
    return out


def httpx_line_contenders(name: str) -> Callable[[Servers], list[Contender]]:
    """The contenders of one httpx line; the peers exist for httpx only."""

    def build(servers: Servers) -> list[Contender]:
        package = importlib.import_module(name)
        batch = httpx_batch(package, API_URL)
        ours = ClientCredentialsAuth(servers.token_url, **servers.credentials, audience=AUDIENCE)
        two_generators, one_generator = static_httpx_auths(package)
        bearer = Contender(
            "bearer_m2m ClientCredentialsAuth", httpx_step(ours), batch, target_us=TARGET_HTTPX_US
        )
        out = [
            Contender(
                "static header, auth_flow (floor)",
                httpx_step(two_generators),
                batch,
                is_floor=True,
            ),
            Contender(
                "static header, sync_auth_flow",
                httpx_step(one_generator),
                batch,
                note="leaner floor: one generator, as bearer_m2m uses",
                fetches_on_first_call=False,
                alt_floor=True,
            ),
            bearer,
            Contender(
                "bearer_m2m, dpop=True (ES256)",
                httpx_step(dpop_auth(servers)),
                batch,
                bearer=bearer,
            ),
            Contender(
                "bearer_m2m, http://127.0.0.1 API url",
                httpx_step(ours),
                httpx_batch(package, LOOPBACK_API_URL),
                note="same auth object; loopback-http check runs on every call",
                fetches_on_first_call=False,
            ),
        ]
        if name == "httpx":
            out += httpx_peers(servers, batch)
        return out

    return build


def httpx_peers(servers: Servers, batch: Callable[[int], list[Any]]) -> list[Contender]:
    out = []
    try:
        from httpx_auth import OAuth2ClientCredentials as HAClientCredentials
    except ImportError:
        out.append(Contender("httpx-auth OAuth2ClientCredentials", skipped="not installed"))
    else:
        # Extra keyword arguments go into the token request's body.
        ha = HAClientCredentials(servers.token_url, **servers.credentials, audience=AUDIENCE)
        out.append(Contender("httpx-auth OAuth2ClientCredentials", httpx_step(ha), batch))

    name = "Authlib httpx_client OAuth2Auth"
    try:
        (client_cls, deprecations) = quiet_import(_import_authlib_httpx)
    except ImportError:
        out.append(Contender(name, skipped="not installed"))
    else:

        def make_auth() -> Any:
            client = client_cls(token_endpoint=servers.token_url, **servers.credentials)
            client.fetch_token(
                servers.token_url, grant_type="client_credentials", audience=AUDIENCE
            )
            client.close()
            return client.token_auth

        auth, more = quiet_import(make_auth)
        deprecations = sorted(set(deprecations) | set(more))
        c = Contender(
            name,
            httpx_step(auth),
            batch,
            note="static token: no expiry check on this path",
            fetches_on_first_call=False,
        )
        if deprecations:
            c.note += f" [{', '.join(deprecations)} on import; suppressed]"
        out.append(c)
    return out


def aiohttp_contenders(servers: Servers) -> list[Contender]:
    """The middleware on real ``ClientRequest`` objects, built on the family's own loop;
    the handler answers at once, so the figure is the middleware's whole cost."""
    aiohttp = importlib.import_module("aiohttp")
    from yarl import URL

    loop = asyncio.new_event_loop()
    run = loop.run_until_complete

    class Answer:
        status = 200
        url = API_URL
        headers: dict[str, str] = {}  # noqa: RUF012  (read only)

    answer = Answer()

    async def handler(request: Any) -> Any:
        return answer

    def batch_for(url: str) -> Callable[[int], list[Any]]:
        async def build(n: int) -> list[Any]:
            target, headers = URL(url), {"Accept": "application/json"}
            make = aiohttp.ClientRequest
            return [make("GET", target, headers=headers, loop=loop) for _ in range(n)]

        return lambda n: run(build(n))

    def step(middleware: Any) -> Callable[[Any], Awaitable[Any]]:
        async def call(request: Any) -> Any:
            await middleware(request, handler)
            return request

        return call

    ours = ClientCredentialsAuth(servers.token_url, **servers.credentials, audience=AUDIENCE)
    batch = batch_for(API_URL)
    bearer = Contender(
        "bearer_m2m auth.aiohttp_middleware",
        step(ours.aiohttp_middleware),
        batch,
        target_us=TARGET_AIOHTTP_US,
        run=run,
    )
    return [
        Contender(
            "static header middleware (floor)",
            step(static_aiohttp_middleware),
            batch,
            is_floor=True,
            run=run,
        ),
        bearer,
        Contender(
            "bearer_m2m, dpop=True (ES256)",
            step(dpop_auth(servers).aiohttp_middleware),
            batch,
            bearer=bearer,
            run=run,
        ),
        Contender(
            "bearer_m2m, http://127.0.0.1 API url",
            step(ours.aiohttp_middleware),
            batch_for(LOOPBACK_API_URL),
            note="same middleware; loopback-http check runs on every call",
            fetches_on_first_call=False,
            run=run,
        ),
    ]


def dpop_auth(servers: Servers) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        servers.token_url, **servers.credentials, audience=AUDIENCE, dpop=True
    )


def _import_authlib_httpx() -> Any:
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client


# -- report ----------------------------------------------------------------------


def fmt_us(ns: float) -> str:
    return f"{ns / 1000:7.3f}"


def report(title: str, contenders: list[Contender], fetched: int) -> None:
    print(f"\n{title}")
    floor = next(c for c in contenders if c.is_floor)
    width = max(len(c.name) for c in contenders) + 2
    head = (
        f"  {'contender':<{width}}{'median µs':>10}{'min µs':>9}"
        f"{'+µs over floor':>16}{'x floor':>9}"
    )
    print(head)
    print("  " + "-" * (len(head) - 2))
    for c in contenders:
        if c.skipped:
            print(f"  {c.name:<{width}}{'— ' + c.skipped}")
            continue
        med = c.median_ns
        extra = med - floor.median_ns
        line = (
            f"  {c.name:<{width}}{fmt_us(med):>10}{fmt_us(min(c.samples_ns)):>9}"
            f"{'—' if c.is_floor else f'{extra / 1000:+.3f}':>16}"
            f"{med / floor.median_ns:>8.2f}x"
        )
        if c.target_us is not None:
            verdict = "met" if extra / 1000 <= c.target_us else "MISSED"
            line += f"   target ≤ {c.target_us:.1f} µs over floor: {verdict}"
        print(line)
        alt = next((a for a in contenders if a.alt_floor and a.samples_ns), None)
        if c.target_us is not None and alt is not None:
            print(
                f"  {'':<{width}}  ↳ vs the leaner floor ({alt.name}): "
                f"{(med - alt.median_ns) / 1000:+.3f} µs, {med / alt.median_ns:.2f}x"
            )
        if c.bearer is not None and c.bearer.samples_ns:
            print(
                f"  {'':<{width}}  ↳ DPoP over the Bearer row: "
                f"{(med - c.bearer.median_ns) / 1000:+.3f} µs, {med / c.bearer.median_ns:.2f}x"
            )
        if c.note:
            print(f"  {'':<{width}}  ↳ {c.note.strip()}")
    print(f"  token requests made during the timed loops: {fetched}")


def run_family(
    title: str,
    build: Callable[[Servers], list[Contender]],
    repeats: int,
    iterations: int,
) -> None:
    try:
        servers = Servers()
    except Exception as exc:  # pragma: no cover - reported, not raised
        print(f"\n{title}\n  — servers failed to start: {exc}")
        return
    try:
        try:
            contenders = build(servers)
        except ImportError as missing:
            print(f"\n{title}\n  — skipped: {missing.name or missing} is not installed")
            return
        for c in contenders:
            if c.skipped:
                continue
            try:
                warm_up(c, servers)
            except Exception as exc:
                c.skipped = f"skipped: warm-up failed ({type(exc).__name__}: {exc})"[:120]
        before = servers.token.token_requests
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            measure(contenders, repeats, iterations)
        report(title, contenders, servers.token.token_requests - before)
    finally:
        servers.close()


def version_of(name: str) -> str:
    try:
        return str(importlib.import_module(name).__version__)
    except ImportError:
        return "not installed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats x 5,000 calls")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=None)
    args = parser.parse_args()
    repeats = args.repeats or (3 if args.quick else 5)
    iterations = args.iterations or (5_000 if args.quick else 20_000)

    versions = ", ".join(
        f"{name} {version_of(name)}" for name in ("requests", "httpx", "httpx2", "aiohttp")
    )
    print(
        f"bearer_m2m overhead on the cached-token path — Python {sys.version.split()[0]}, "
        f"{versions}"
    )
    print(
        f"median of {repeats} repeats x {iterations:,} calls; per call, on a fresh request; "
        f"gc disabled while timing; API url {API_URL}"
    )
    print(
        "tokens: RS256 JWTs from bearer_m2m.testing.AuthorizationServer on loopback, "
        f"audience {AUDIENCE} (checked against ProtectedAPI before timing)"
    )
    started = time.perf_counter()
    run_family("requests: auth(prepared_request)", requests_contenders, repeats, iterations)
    for name in ("httpx", "httpx2"):
        title = f"{name}: next(auth.sync_auth_flow(request))"
        run_family(title, httpx_line_contenders(name), repeats, iterations)
    title = "aiohttp: await auth.aiohttp_middleware(request, handler)"
    run_family(title, aiohttp_contenders, repeats, iterations)
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
