"""ClientCredentialsAuth as ``httpx`` auth: sync, asyncio and trio, over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import requests
import requests_mock
import trio

from bearer_m2m import ClientCredentialsAuth, TokenRequestRejected
from tests.conftest import FAST_RETRY
from tests.servers import ApiServer, TokenServer, json_reply


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


def test_the_replay_carries_cookies_the_401_set() -> None:
    auth = ClientCredentialsAuth("https://t.example/token", client_id="c", client_secret="s")
    seen: list[str | None] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Cookie"))
        if len(seen) == 1:
            return httpx.Response(401, headers={"Set-Cookie": "lb=node7; Path=/"})
        return httpx.Response(200)

    with requests_mock.Mocker() as m:
        m.post(
            "https://t.example/token",
            json=lambda request, context: {
                "access_token": f"t{m.call_count}",
                "token_type": "Bearer",
            },
        )
        with httpx.Client(auth=auth, transport=httpx.MockTransport(api)) as client:
            assert client.get("https://api.example/x").status_code == 200
    assert seen == [None, "lb=node7"]


def test_when_no_new_token_can_be_had_the_401_is_returned(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    url = f"{api_server.origin}/things"

    def revoke_token_and_client() -> None:
        token_server.issued.clear()
        for _ in range(2):
            token_server.script.append(json_reply({"error": "invalid_client"}, status=401))

    async def from_async(auth: ClientCredentialsAuth) -> list[int]:
        async with httpx.AsyncClient(auth=auth) as client:
            statuses = [(await client.get(url)).status_code]
            revoke_token_and_client()
            statuses.append((await client.get(url)).status_code)
            with pytest.raises(TokenRequestRejected):
                await client.get(url)  # the next request raises the error
            return statuses

    with httpx.Client(auth=make_auth()) as client:
        assert client.get(url).status_code == 200
        revoke_token_and_client()
        assert client.get(url).status_code == 401
        with pytest.raises(TokenRequestRejected):
            client.get(url)
    assert asyncio.run(from_async(make_auth())) == [200, 401]
