"""The adapters beyond what the client-parametrized harness (tests/test_end_to_end.py)
proves: which ``Auth`` classes the object is an instance of, in either order of
import, after ``httpx2.alias_httpx()`` and with one of httpx / httpx2 missing; each
client's exceptions kept to its own requests; niquests' async auth off the event
loop; one replay per call, even when the replay's redirect draws a 401 too.

Anything that depends on what a process has imported runs in a fresh interpreter.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from requests.auth import AuthBase

from bearer_m2m import ClientCredentialsAuth, TokenEndpointUnavailable
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from bearer_m2m.testing._http import Request, Response
from tests.clients import CLIENTS, Client
from tests.conftest import SECRET
from tests.isolated import run_isolated
from tests.servers import ApiServer, HarnessAPI, TokenServer

#: The httpx lines installed here (a tox env has httpx2 without httpx).
HTTPX_LINES = [name for name in ("httpx", "httpx2") if importlib.util.find_spec(name)]


@pytest.fixture
def api() -> Iterator[tuple[str, str]]:
    """A token endpoint and an API over loopback, for other processes: (token_url, api_url)."""
    tokens = TokenServer()
    server = ApiServer(accepts=lambda token: token in tokens.issued)
    yield tokens.token_url, f"{server.origin}/things"
    server.close()
    tokens.close()


# -- which classes the object is an instance of -----------------------------------------


@pytest.mark.parametrize("name", HTTPX_LINES)
def test_the_object_is_an_instance_of_each_imported_clients_auth(make_auth, name: str) -> None:  # type: ignore[no-untyped-def]
    package = importlib.import_module(name)
    auth = make_auth()
    assert type(auth) is ClientCredentialsAuth
    assert isinstance(auth, ClientCredentialsAuth) and isinstance(auth, AuthBase)
    assert isinstance(auth, package.Auth)
    assert not isinstance(auth, (tuple, str, package.Request))
    # The client takes the object as its own Auth, not as a plain function.
    with package.Client(auth=auth) as client:
        assert client.auth is auth


@pytest.mark.parametrize("name", HTTPX_LINES)
def test_a_subclass_keeps_its_own_class_and_the_clients_auth_class(make_auth, name: str) -> None:  # type: ignore[no-untyped-def]
    class Tailored(ClientCredentialsAuth):
        pass

    package = importlib.import_module(name)
    auth = make_auth()
    tailored = Tailored(auth.token_url, client_id="client-1", client_secret=SECRET)
    assert type(tailored) is Tailored and isinstance(tailored, Tailored)
    assert isinstance(tailored, package.Auth)
    assert not isinstance(auth, Tailored)


#: Calls one client of ``package`` (its name is ``sys.argv[3]``) sync and async, after
#: building the auth before or after importing it (``sys.argv[4]``).
_ONE_PACKAGE = """
import asyncio, importlib
from bearer_m2m import ClientCredentialsAuth
token_url, api_url, name, order = _sys.argv[1:]

def build():
    return ClientCredentialsAuth(token_url, client_id="c", client_secret="s")

if order == "auth first":
    auth = build()
    seen_before = sorted(m for m in ("httpx", "httpx2") if m in _sys.modules)
    package = importlib.import_module(name)
else:
    package = importlib.import_module(name)
    seen_before = None
    auth = build()

async def call_async():
    async with package.AsyncClient(auth=auth) as client:
        return (await client.get(api_url)).status_code

with package.Client(auth=auth) as client:
    status = client.get(api_url).status_code
    taken_as_auth = client.auth is auth
report({"before": seen_before, "instance": isinstance(auth, package.Auth),
        "taken": taken_as_auth, "statuses": [status, asyncio.run(call_async())]})
"""


@pytest.mark.parametrize("order", ["auth first", "client first"])
@pytest.mark.parametrize("name", HTTPX_LINES)
def test_either_order_of_import_works(name: str, order: str, api: tuple[str, str]) -> None:
    found = run_isolated(_ONE_PACKAGE, *api, name, order)
    assert found == {
        "before": [] if order == "auth first" else None,
        "instance": True,
        "taken": True,
        "statuses": [200, 200],
    }


_ALIASED = """
import asyncio
from bearer_m2m import ClientCredentialsAuth
token_url, api_url, order = _sys.argv[1:]

def build():
    return ClientCredentialsAuth(token_url, client_id="c", client_secret="s")

auth = build() if order == "auth first" else None
import httpx2
httpx2.alias_httpx()
import httpx
auth = auth or build()

async def call_async():
    async with httpx.AsyncClient(auth=auth) as client:
        return (await client.get(api_url)).status_code

with httpx.Client(auth=auth) as client, httpx2.Client(auth=auth) as client2:
    statuses = [client.get(api_url).status_code, client2.get(api_url).status_code]
    taken = client.auth is auth and client2.auth is auth
report({"one_class": httpx.Auth is httpx2.Auth, "instance": isinstance(auth, httpx.Auth),
        "taken": taken, "statuses": statuses + [asyncio.run(call_async())],
        "real_httpx": "httpx._client" in _sys.modules})
"""


@pytest.mark.parametrize("order", ["auth first", "alias first"])
def test_after_alias_httpx_the_one_auth_class_takes_the_object(
    order: str, api: tuple[str, str]
) -> None:
    pytest.importorskip("httpx2")
    found = run_isolated(_ALIASED, *api, order)
    assert found == {
        "one_class": True,
        "instance": True,
        "taken": True,
        "statuses": [200, 200, 200],
        "real_httpx": False,
    }


_WITHOUT = """
import importlib
absent, present = _sys.argv[3:]
_sys.modules[absent] = None  # as if it were not installed: importing it fails
from bearer_m2m import ClientCredentialsAuth
token_url, api_url = _sys.argv[1:3]
auth = ClientCredentialsAuth(token_url, client_id="c", client_secret="s")
package = importlib.import_module(present)
try:
    importlib.import_module(absent)
    absent_importable = True
except ImportError:
    absent_importable = False
with package.Client(auth=auth) as client:
    status = client.get(api_url).status_code
report({"absent_importable": absent_importable, "instance": isinstance(auth, package.Auth),
        "status": status})
"""


@pytest.mark.parametrize(("absent", "present"), [("httpx", "httpx2"), ("httpx2", "httpx")])
def test_either_line_works_without_the_other(
    absent: str, present: str, api: tuple[str, str]
) -> None:
    pytest.importorskip(present)
    found = run_isolated(_WITHOUT, *api, absent, present)
    assert found == {"absent_importable": False, "instance": True, "status": 200}


# -- each client's own exceptions ------------------------------------------------------


def _once() -> Iterator[bytes]:
    yield b"sent once"


async def _aonce() -> Any:
    yield b"sent once"


def test_a_stream_is_kept_from_replay_by_its_own_clients_exception(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    """httpx2.RequestNotRead is not httpx.RequestNotRead, niquests' UnrewindableBodyError is
    not requests': an adapter that caught the other one would let it escape here."""
    niquests = pytest.importorskip("niquests")
    lines = [importlib.import_module(name) for name in HTTPX_LINES]
    auth = make_auth()
    url = f"{api_server.origin}/uploads"
    auth.token()
    token_server.issued.clear()  # the API now refuses the token: every call below is a 401

    async def async_streams() -> list[int]:
        statuses = []
        for package in lines:
            async with package.AsyncClient(auth=auth) as client:
                statuses.append((await client.post(url, content=_aonce())).status_code)
        return statuses

    statuses = []
    for package in lines:
        with package.Client(auth=auth) as client:
            statuses.append(client.post(url, content=_once()).status_code)
    statuses += asyncio.run(async_streams())
    statuses.append(requests.post(url, data=_once(), auth=auth, timeout=10).status_code)
    with niquests.Session() as session:
        statuses.append(session.post(url, data=_once(), auth=auth, timeout=10).status_code)

    calls = 2 * len(lines) + 2
    assert statuses == [401] * calls
    assert len(api_server.seen) == calls  # not one replay
    assert token_server.count == 1  # and no token was fetched for one


def test_a_request_of_no_supported_client_is_refused_by_name(make_auth) -> None:  # type: ignore[no-untyped-def]
    auth = make_auth()

    class Envelope:
        url = "https://api.example/x"

    with pytest.raises(TypeError, match=r"cannot authorize a .*Envelope") as refused:
        auth(Envelope())
    assert SECRET not in str(refused.value)
    with pytest.raises(TypeError, match="PreparedRequest"):
        auth.sync_auth_flow(requests.Request("GET", "https://api.example/x").prepare())
    for name in HTTPX_LINES:
        with pytest.raises(TypeError, match="Request"):
            auth(importlib.import_module(name).Request("GET", "https://api.example/x"))


# -- niquests' async auth ----------------------------------------------------------------


def test_niquests_async_auth_waits_for_a_token_off_the_event_loop(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    """The token endpoint holds its answer until another task on the same loop releases
    it: that task can run only if the loop is free while the token is fetched."""
    niquests = pytest.importorskip("niquests")
    auth = make_auth()
    events: list[str] = []

    async def release() -> None:
        while token_server.count == 0:  # the fetch has not reached the server yet
            await asyncio.sleep(0.001)
        events.append("released by another task")
        token_server.gate.set()

    async def main() -> int:
        async with niquests.AsyncSession(auth=auth.niquests_async) as session:
            releaser = asyncio.create_task(release())
            response = await session.get(f"{api_server.origin}/things")
            events.append("answered")
            await releaser
            return response.status_code

    token_server.gate.clear()
    assert asyncio.run(main()) == 200
    assert events == ["released by another task", "answered"]


def test_the_object_itself_would_block_niquests_event_loop(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    """Why ``auth.niquests_async`` exists: niquests calls a sync auth in place, so
    no other task runs until the fetch gives up."""
    niquests = pytest.importorskip("niquests")
    auth = make_auth(timeout=0.3)
    events: list[str] = []

    async def release() -> None:
        events.append("another task ran")
        token_server.gate.set()

    async def main() -> None:
        async with niquests.AsyncSession(auth=auth) as session:
            releaser = asyncio.create_task(release())
            with pytest.raises(TokenEndpointUnavailable):
                await session.get(f"{api_server.origin}/things")
            events.append("the call gave up")
            await releaser

    token_server.gate.clear()
    try:
        asyncio.run(main())
    finally:
        token_server.gate.set()
    assert events == ["the call gave up", "another task ran"]


@pytest.mark.parametrize(
    ("accessor", "client"), [("niquests_async", "niquests"), ("aiohttp_middleware", "aiohttp")]
)
def test_each_accessor_is_built_once_over_the_one_token_source(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, accessor: str, client: str
) -> None:
    pytest.importorskip(client)
    auth = make_auth()
    adapter = getattr(auth, accessor)
    assert getattr(auth, accessor) is adapter
    assert adapter._source is auth._source
    assert SECRET not in repr(adapter)


# -- one replay per call ------------------------------------------------------------------


class RefusingLanding(HarnessAPI):
    """HarnessAPI whose ``/refuses`` answers 401 to every token, and which records the
    path and token of every request, in order."""

    REFUSES = "/refuses"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, str | None]] = []

    def handle(self, request: Request) -> Response:
        self.seen.append((request.path, request.headers.get("Authorization")))
        return super().handle(request)

    def _answer_to(self, request: Request) -> Response:
        if request.path == self.REFUSES:
            challenge = ("WWW-Authenticate", 'Bearer error="invalid_token"')
            return Response(401, b"", [challenge])
        return super()._answer_to(request)  # type: ignore[misc,no-any-return]


@pytest.fixture(params=list(CLIENTS))
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[ClientCredentialsAuth], Client]]:
    opened: list[Client] = []

    def open_client(auth: ClientCredentialsAuth) -> Client:
        try:
            client = CLIENTS[request.param](auth)
        except ModuleNotFoundError as missing:
            pytest.skip(f"{missing.name} is not installed")
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        client.close()


def test_a_replay_redirected_to_a_401_is_not_replayed_again(
    connect: Callable[[ClientCredentialsAuth], Client],
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    """The replay is answered 302; the redirect, with the new token, draws a 401 of its
    own. A client whose redirects each started a fresh exchange would replay again."""
    with RefusingLanding(m2m_server, audience=m2m_api.audience) as api:
        client = connect(m2m_auth)
        first = client.call(api.url + "orders")
        m2m_server.revoke_all()
        to = api.url.rstrip("/") + api.REFUSES
        guarded = f"{api.url.rstrip('/')}{api.GUARDED_REDIRECT}?{urlencode({'to': to})}"

        answer = client.call(guarded, follow_redirects=True)

    assert (answer.status, answer.redirects) == (401, 1)
    old = first.authorization
    new = answer.authorization
    assert new not in (None, old)
    assert api.seen[1:] == [
        (api.GUARDED_REDIRECT, old),
        (api.GUARDED_REDIRECT, new),
        (api.REFUSES, new),
    ]
    assert m2m_server.token_requests == 2


def test_requests_follows_the_replays_redirect_with_the_new_token_only(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, m2m_auth: ClientCredentialsAuth
) -> None:
    """Issue 8 F2: requests builds a redirect from the request it first sent, so the
    redirect used to carry the rejected token and be replayed a second time."""
    with RefusingLanding(m2m_server, audience=m2m_api.audience) as api, requests.Session() as s:
        s.auth = m2m_auth
        old = s.get(api.url + "orders", timeout=10).request.headers["Authorization"]
        m2m_server.revoke_all()
        to = api.url + "landing"
        guarded = f"{api.url.rstrip('/')}{api.GUARDED_REDIRECT}?{urlencode({'to': to})}"

        answer = s.get(guarded, timeout=10)

    new = answer.request.headers["Authorization"]
    assert answer.status_code == 200 and new != old
    assert api.seen[1:] == [
        (api.GUARDED_REDIRECT, old),
        (api.GUARDED_REDIRECT, new),
        ("/landing", new),
    ]
    # The history tells what was sent: the 401 with the old token, the 302 with the new.
    assert [(r.status_code, r.request.headers["Authorization"]) for r in answer.history] == [
        (302, new)
    ]
    assert m2m_server.token_requests == 2


def test_an_aiohttp_401_elsewhere_after_a_redirect_is_nobodys_replay(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, m2m_auth: ClientCredentialsAuth
) -> None:
    aiohttp = pytest.importorskip("aiohttp")
    with ProtectedAPI(m2m_server, audience=m2m_api.audience) as elsewhere:
        start = f"{m2m_api.url}redirect?{urlencode({'to': elsewhere.url + 'there'})}"

        async def main() -> list[int]:
            middlewares = (m2m_auth.aiohttp_middleware,)
            async with aiohttp.ClientSession(middlewares=middlewares) as session:
                statuses = []
                for url in (start, elsewhere.url + "direct"):
                    async with session.get(url) as response:
                        statuses.append(response.status)
                return statuses

        # The redirected call reaches elsewhere without a token (401, no replay); the
        # next call, made there directly, is the application's own: it gets the token.
        assert asyncio.run(main()) == [401, 200]
        assert (elsewhere.requests, elsewhere.unauthorized) == (2, 1)
    assert m2m_server.token_requests == 1
