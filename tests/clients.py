"""Every HTTP client bearer_m2m serves, driven the same way, so a behaviour test is written once.

Each driver opens its client with the public spelling a user writes::

    requests.get(url, auth=auth)
    httpx.Client(auth=auth)            httpx.AsyncClient(auth=auth)     # asyncio and trio
    httpx2.Client(auth=auth)           httpx2.AsyncClient(auth=auth)    # asyncio and trio
    niquests.Session(auth=auth)        niquests.AsyncSession(auth=auth.niquests_async)
    aiohttp.ClientSession(middlewares=(auth.aiohttp_middleware,))

and answers every call with an :class:`Answer`, alike for all of them. The async clients
run on an event loop of their own (an anyio blocking portal, asyncio or trio) that lives
as long as the driver, so one client serves every call of a test as it would serve an
application. A client that is not installed raises ImportError when its driver is made.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bearer_m2m import ClientCredentialsAuth

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

#: The cold start: threads x calls each for the sync clients, tasks for the async ones.
THREADS, PER_THREAD, TASKS = 64, 2, 1000
#: Connections an async client opens at once: a thousand tasks queue for them after the
#: auth step (which is where they race for the token), not before it.
ASYNC_CONNECTIONS = 5
#: Upper bound on any wait (a timeout, never a measurement).
PATIENCE = 10.0
#: Pause between two ticks of the liveness ticker.
TICK = 0.01


@dataclass(frozen=True)
class Answer:
    """One call's outcome, alike for every client."""

    status: int
    #: Redirects followed before the final response.
    redirects: int
    #: The Authorization header of the request that drew the final response.
    authorization: str | None
    #: The API's JSON description of the request, when it accepted the token.
    payload: dict[str, Any] | None


@dataclass(frozen=True)
class OneShotBody:
    """A request body that can be read only once: a generator for the sync clients, an
    async generator for the async ones (each client's own kind of stream)."""

    chunks: tuple[bytes, ...]

    def iterate(self) -> Iterator[bytes]:
        yield from self.chunks

    async def aiterate(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


Body = bytes | OneShotBody | None


class Client(Protocol):
    """One HTTP client on one auth object, driven the same way whatever it is."""

    kind: str
    is_async: bool

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        body: Body = None,
        follow_redirects: bool = False,
    ) -> Answer: ...

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        """Many callers at once (THREADS threads or TASKS tasks) on a client that has no
        token yet; ``on_start`` runs in each just before its first call."""
        ...

    def call_while_ticking(self, url: str, tick: Callable[[], None]) -> Answer:
        """Async clients only: ``call(url)`` while another task on the same event loop
        runs ``tick`` every TICK seconds until the call returns."""
        ...

    def close(self) -> None: ...


def _payload(status: int, content_type: str, data: Callable[[], Any]) -> dict[str, Any] | None:
    if status != 200 or not content_type.startswith("application/json"):
        return None
    payload: dict[str, Any] = data()
    return payload


def _redirects(history: Any) -> int:
    return sum(1 for response in history if 300 <= _status_of(response) < 400)


def _status_of(response: Any) -> int:
    status: int = getattr(response, "status_code", None) or response.status
    return status


def _from_requests_family(response: Any) -> Answer:
    """requests, niquests and httpx responses share these attributes."""
    return Answer(
        status=response.status_code,
        redirects=_redirects(response.history),
        authorization=response.request.headers.get("Authorization"),
        payload=_payload(
            response.status_code, response.headers.get("Content-Type", ""), response.json
        ),
    )


# -- sync clients -------------------------------------------------------------------------


class _SyncClient:
    """What every sync driver shares; each says how to send, and what a thread sends with."""

    is_async = False
    kind = ""

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        body: Body = None,
        follow_redirects: bool = False,
    ) -> Answer:
        return self._send(self._client, url, method, body, follow_redirects)

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        barrier = threading.Barrier(THREADS)

        def work() -> list[Answer]:
            with self._for_a_thread() as client:
                barrier.wait(timeout=PATIENCE)
                on_start()
                return [self._send(client, url, "GET", None, False) for _ in range(PER_THREAD)]

        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            futures = [pool.submit(work) for _ in range(THREADS)]
            return [answer for future in futures for answer in future.result()]

    def call_while_ticking(self, url: str, tick: Callable[[], None]) -> Answer:
        raise TypeError(f"{self.kind} is not an async client")

    _client: Any

    def _send(
        self, client: Any, url: str, method: str, body: Body, follow_redirects: bool
    ) -> Answer:
        raise NotImplementedError

    @contextlib.contextmanager
    def _for_a_thread(self) -> Iterator[Any]:
        """What one thread of the cold start sends with: the shared client by default."""
        yield self._client

    def close(self) -> None:
        self._client.close()


class RequestsClient(_SyncClient):
    """``requests.get(url, auth=auth)``: a session per thread (requests' advice), the auth
    object passed with every call."""

    kind = "requests"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        import requests

        self._requests = requests
        self._auth = auth
        self._client = requests.Session()

    def _send(
        self, client: Any, url: str, method: str, body: Body, follow_redirects: bool
    ) -> Answer:
        data = body.iterate() if isinstance(body, OneShotBody) else body
        response = client.request(
            method,
            url,
            data=data,
            auth=self._auth,
            allow_redirects=follow_redirects,
            timeout=PATIENCE,
        )
        return _from_requests_family(response)

    @contextlib.contextmanager
    def _for_a_thread(self) -> Iterator[Any]:
        with self._requests.Session() as session:
            yield session


class NiquestsClient(RequestsClient):
    """``niquests.Session(auth=auth)``: requests' own shape, with niquests' sessions."""

    kind = "niquests"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        import niquests

        self._niquests = niquests
        self._auth = auth
        self._client = niquests.Session(auth=auth)

    def _send(
        self, client: Any, url: str, method: str, body: Body, follow_redirects: bool
    ) -> Answer:
        data = body.iterate() if isinstance(body, OneShotBody) else body
        response = client.request(
            method, url, data=data, allow_redirects=follow_redirects, timeout=PATIENCE
        )
        return _from_requests_family(response)

    @contextlib.contextmanager
    def _for_a_thread(self) -> Iterator[Any]:
        with self._niquests.Session(auth=self._auth) as session:
            yield session


class HttpxClient(_SyncClient):
    """``httpx.Client(auth=auth)`` (or httpx2's), one client shared by every thread."""

    kind = "httpx"
    module_name = "httpx"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        module = _import(self.module_name)
        self._client = module.Client(auth=auth, timeout=PATIENCE)

    def _send(
        self, client: Any, url: str, method: str, body: Body, follow_redirects: bool
    ) -> Answer:
        content = body.iterate() if isinstance(body, OneShotBody) else body
        response = client.request(method, url, content=content, follow_redirects=follow_redirects)
        return _from_requests_family(response)


class Httpx2Client(HttpxClient):
    kind = "httpx2"
    module_name = "httpx2"


# -- async clients ------------------------------------------------------------------------


class _AsyncClient:
    """An async client on an event loop of its own, in a thread, for the driver's life.

    Subclasses open, send with and close their client inside that loop; this class
    runs them there, and holds the cold start and the ticker, written once.
    """

    is_async = True
    kind = ""
    backend = "asyncio"

    def __init__(self, auth: ClientCredentialsAuth) -> None:
        self._exit = contextlib.ExitStack()
        from anyio.from_thread import start_blocking_portal  # with the async clients only

        self._portal: BlockingPortal = self._exit.enter_context(start_blocking_portal(self.backend))
        try:
            self._portal.call(self._open, auth)
        except BaseException:
            self._exit.close()
            raise

    def call(
        self,
        url: str,
        *,
        method: str = "GET",
        body: Body = None,
        follow_redirects: bool = False,
    ) -> Answer:
        return self._portal.call(self._send, url, method, body, follow_redirects)

    def cold_start(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        return self._portal.call(self._burst, url, on_start)

    def call_while_ticking(self, url: str, tick: Callable[[], None]) -> Answer:
        return self._portal.call(self._while_ticking, url, tick)

    def close(self) -> None:
        try:
            self._portal.call(self._aclose)
        finally:
            self._exit.close()

    async def _burst(self, url: str, on_start: Callable[[], None]) -> list[Answer]:
        import anyio

        answers: list[Answer] = []

        async def one() -> None:
            on_start()
            answers.append(await self._send(url, "GET", None, False))

        async with anyio.create_task_group() as tasks:
            for _ in range(TASKS):
                tasks.start_soon(one)
        return answers

    async def _while_ticking(self, url: str, tick: Callable[[], None]) -> Answer:
        import anyio

        done = anyio.Event()

        async def ticker() -> None:
            while not done.is_set():
                tick()
                await anyio.sleep(TICK)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ticker)
            try:
                answer = await self._send(url, "GET", None, False)
            finally:
                done.set()
        return answer

    async def _open(self, auth: ClientCredentialsAuth) -> None:
        raise NotImplementedError

    async def _send(self, url: str, method: str, body: Body, follow_redirects: bool) -> Answer:
        raise NotImplementedError

    async def _aclose(self) -> None:
        raise NotImplementedError


def _throttled_transport(module: Any) -> Any:
    """A real ``AsyncHTTPTransport`` of ``module`` (httpx or httpx2) that lets
    ASYNC_CONNECTIONS requests into its pool at a time.

    httpcore's pool scans every queued request whenever a connection frees up, so a
    thousand requests queued there take seconds; queued here instead, a fraction of
    that. The auth flow runs in the client, before the transport: every task still
    races for the token at once.
    """

    class Throttled(module.AsyncBaseTransport):  # type: ignore[misc]
        def __init__(self) -> None:
            limits = module.Limits(max_connections=ASYNC_CONNECTIONS)
            self._transport = module.AsyncHTTPTransport(limits=limits)
            import anyio

            self._slots = anyio.Semaphore(ASYNC_CONNECTIONS)

        async def handle_async_request(self, request: Any) -> Any:
            async with self._slots:
                response = await self._transport.handle_async_request(request)
                await response.aread()  # the connection is free before the slot is
                return response

        async def aclose(self) -> None:
            await self._transport.aclose()

    return Throttled()


class AsyncHttpxClient(_AsyncClient):
    """``httpx.AsyncClient(auth=auth)`` (or httpx2's), on asyncio or trio."""

    kind = "httpx-asyncio"
    module_name = "httpx"

    async def _open(self, auth: ClientCredentialsAuth) -> None:
        module = _import(self.module_name)
        self._client = module.AsyncClient(
            auth=auth, timeout=PATIENCE, transport=_throttled_transport(module)
        )

    async def _send(self, url: str, method: str, body: Body, follow_redirects: bool) -> Answer:
        content = body.aiterate() if isinstance(body, OneShotBody) else body
        response = await self._client.request(
            method, url, content=content, follow_redirects=follow_redirects
        )
        return _from_requests_family(response)

    async def _aclose(self) -> None:
        await self._client.aclose()


class TrioHttpxClient(AsyncHttpxClient):
    kind = "httpx-trio"
    backend = "trio"


class AsyncHttpx2Client(AsyncHttpxClient):
    kind = "httpx2-asyncio"
    module_name = "httpx2"


class TrioHttpx2Client(AsyncHttpxClient):
    kind = "httpx2-trio"
    module_name = "httpx2"
    backend = "trio"


class AsyncNiquestsClient(_AsyncClient):
    """``niquests.AsyncSession(auth=auth.niquests_async)``, its pool blocking at
    ASYNC_CONNECTIONS connections (after the auth step)."""

    kind = "niquests-async"

    async def _open(self, auth: ClientCredentialsAuth) -> None:
        import niquests
        from niquests.adapters import AsyncHTTPAdapter

        self._session = niquests.AsyncSession(
            auth=auth.niquests_async,
            pool_maxsize=ASYNC_CONNECTIONS,
            timeout=PATIENCE,
        )
        adapter = AsyncHTTPAdapter(pool_maxsize=ASYNC_CONNECTIONS, pool_block=True)
        self._session.mount("http://", adapter)

    async def _send(self, url: str, method: str, body: Body, follow_redirects: bool) -> Answer:
        data = body.aiterate() if isinstance(body, OneShotBody) else body
        response = await self._session.request(
            method, url, data=data, allow_redirects=follow_redirects
        )
        return _from_requests_family(response)

    async def _aclose(self) -> None:
        await self._session.close()


class AiohttpClient(_AsyncClient):
    """``aiohttp.ClientSession(middlewares=(auth.aiohttp_middleware,))``, its connector
    limited to ASYNC_CONNECTIONS (which the middleware runs before)."""

    kind = "aiohttp"

    async def _open(self, auth: ClientCredentialsAuth) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(
            middlewares=(auth.aiohttp_middleware,),
            connector=aiohttp.TCPConnector(limit=ASYNC_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=PATIENCE),
        )

    async def _send(self, url: str, method: str, body: Body, follow_redirects: bool) -> Answer:
        data = body.aiterate() if isinstance(body, OneShotBody) else body
        async with self._session.request(
            method, url, data=data, allow_redirects=follow_redirects
        ) as response:
            content_type = response.headers.get("Content-Type", "")
            payload = None
            if response.status == 200 and content_type.startswith("application/json"):
                payload = await response.json()
            return Answer(
                status=response.status,
                redirects=_redirects(response.history),
                authorization=response.request_info.headers.get("Authorization"),
                payload=payload,
            )

    async def _aclose(self) -> None:
        await self._session.close()


def _import(name: str) -> Any:
    import importlib

    return importlib.import_module(name)


#: Every client, by the name tests are parametrized with.
CLIENTS: dict[str, Callable[[ClientCredentialsAuth], Client]] = {
    driver.kind: driver
    for driver in (
        RequestsClient,
        HttpxClient,
        AsyncHttpxClient,
        TrioHttpxClient,
        Httpx2Client,
        AsyncHttpx2Client,
        TrioHttpx2Client,
        NiquestsClient,
        AsyncNiquestsClient,
        AiohttpClient,
    )
}
ASYNC_CLIENTS = [kind for kind, driver in CLIENTS.items() if getattr(driver, "is_async", False)]
