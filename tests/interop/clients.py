"""The interop tests' one way to call an API with requests, httpx or httpx async.

Both third-party servers (django-oauth-toolkit, node oidc-provider) are exercised the
same way, so the clients and what a test reads of their answers are written once here.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import requests

from bearer_m2m import ClientCredentialsAuth

Kind = Literal["requests", "httpx", "httpx-async"]
KINDS: list[Kind] = ["requests", "httpx", "httpx-async"]


@dataclass(frozen=True)
class Reply:
    """What a test needs of a requests or httpx response."""

    status: int
    body: Any
    challenge: str | None
    history: tuple[int, ...]


def _reply(status: int, headers: Any, content: bytes, history: list[int]) -> Reply:
    body = json.loads(content) if headers.get("Content-Type") == "application/json" else None
    return Reply(status, body, headers.get("WWW-Authenticate"), tuple(history))


def send(
    kind: Kind,
    auth: ClientCredentialsAuth,
    url: str,
    *,
    method: str = "GET",
    payload: Any = None,
    times: int = 1,
) -> list[Reply]:
    """Send ``times`` requests with ``auth`` through one client of the given kind.

    requests and httpx send them one after the other; httpx async sends them
    all at once, so that a cold start has them wait together for one token.
    """
    if kind == "requests":
        with requests.Session() as session:
            responses = [
                session.request(method, url, json=payload, auth=auth, timeout=10)
                for _ in range(times)
            ]
        return [
            _reply(r.status_code, r.headers, r.content, [h.status_code for h in r.history])
            for r in responses
        ]
    if kind == "httpx":
        with httpx.Client(auth=auth, timeout=10) as client:
            replies = [client.request(method, url, json=payload) for _ in range(times)]
    else:

        async def main() -> list[httpx.Response]:
            async with httpx.AsyncClient(auth=auth, timeout=10) as client:
                return await asyncio.gather(
                    *(client.request(method, url, json=payload) for _ in range(times))
                )

        replies = asyncio.run(main())
    return [
        _reply(r.status_code, r.headers, r.content, [h.status_code for h in r.history])
        for r in replies
    ]
