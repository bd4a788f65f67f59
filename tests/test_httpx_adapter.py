"""ClientCredentialsAuth as ``httpx`` auth: sync, asyncio and trio, over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import requests
import requests_mock
import trio

from bearer_m2m import ClientCredentialsAuth
from tests.conftest import FAST_RETRY
from tests.servers import ApiServer, TokenServer


def test_client_sends_and_reuses_the_token(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(auth=make_auth()) as client:
        statuses = {client.get(f"{api_server.origin}/things").status_code for _ in range(20)}
    assert statuses == {200} and token_server.count == 1
    assert {seen[1] for seen in api_server.seen} == {"Bearer tok-1"}


def test_httpx_get_function(make_auth, api_server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    assert httpx.get(f"{api_server.origin}/things", auth=make_auth()).status_code == 200


def test_sync_replay_after_revocation(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(auth=make_auth()) as client:
        client.get(f"{api_server.origin}/things")
        token_server.issued.clear()
        response = client.post(f"{api_server.origin}/things", content=b"payload")
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert [seen[1:] for seen in api_server.seen[1:]] == [
        ("Bearer tok-1", b"payload"),
        ("Bearer tok-2", b"payload"),
    ]


def test_async_replay_after_revocation(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    async def main() -> httpx.Response:
        async with httpx.AsyncClient(auth=make_auth()) as client:
            await client.get(f"{api_server.origin}/things")
            token_server.issued.clear()
            return await client.post(f"{api_server.origin}/things", json={"a": 1})

    response = asyncio.run(main())
    assert response.status_code == 200 and len(response.history) == 1
    assert token_server.count == 2


def test_trio_client(make_auth, token_server: TokenServer, api_server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[int]:
        async with httpx.AsyncClient(auth=make_auth()) as client:
            return [(await client.get(f"{api_server.origin}/t")).status_code for _ in range(5)]

    assert trio.run(main) == [200] * 5 and token_server.count == 1


def test_streamed_bodies_are_not_replayed(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    auth = make_auth()
    auth.token()
    token_server.issued.clear()

    def chunks() -> Iterator[bytes]:
        yield b"once"

    async def achunks() -> AsyncIterator[bytes]:
        yield b"once"

    async def send_async() -> int:
        async with httpx.AsyncClient(auth=auth) as client:
            return (await client.post(f"{api_server.origin}/s", content=achunks())).status_code

    with httpx.Client(auth=auth) as client:
        assert client.post(f"{api_server.origin}/s", content=chunks()).status_code == 401
    assert asyncio.run(send_async()) == 401
    assert len(api_server.seen) == 2 and token_server.count == 1


def test_one_object_serves_requests_and_httpx_with_one_token(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    auth = make_auth()
    url = f"{api_server.origin}/things"

    async def from_async() -> int:
        async with httpx.AsyncClient(auth=auth) as client:
            return (await client.get(url)).status_code

    assert requests.get(url, auth=auth).status_code == 200
    with httpx.Client(auth=auth) as client:
        assert client.get(url).status_code == 200
    assert asyncio.run(from_async()) == 200
    assert token_server.count == 1


def test_1000_concurrent_tasks_on_one_async_client_make_one_token_request(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer
) -> None:
    token_server.delay = 0.2  # a slow endpoint makes the race real

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=request.headers["Authorization"])

    async def main() -> set[str]:
        transport = httpx.MockTransport(handler)
        async with httpx.AsyncClient(auth=make_auth(), transport=transport) as client:
            responses = await asyncio.gather(
                *(client.get("https://api.example/x") for _ in range(1000))
            )
        return {r.text for r in responses}

    assert asyncio.run(main()) == {"Bearer tok-1"}
    assert token_server.count == 1


def test_an_api_that_rejects_every_token_cannot_burn_the_quota() -> None:
    auth = ClientCredentialsAuth(
        "https://tenant.example/oauth/token", client_id="cid", client_secret="s", retry=FAST_RETRY
    )
    api_calls = 0

    def always_401(request: httpx.Request) -> httpx.Response:
        nonlocal api_calls
        api_calls += 1
        return httpx.Response(401)

    with requests_mock.Mocker() as m:
        tokens = m.post(
            "https://tenant.example/oauth/token",
            json=lambda request, context: {
                "access_token": f"t{tokens.call_count}",
                "token_type": "Bearer",
            },
        )
        with httpx.Client(auth=auth, transport=httpx.MockTransport(always_401)) as client:
            statuses = {client.get("https://api.example/x").status_code for _ in range(1000)}
    assert statuses == {401} and tokens.call_count == 2 and api_calls == 1001
