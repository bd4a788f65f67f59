"""niquests: ``Session(auth=auth)`` takes the requests adapter with niquests' own
helpers; ``AsyncSession(auth=auth.niquests_async)`` takes :class:`NiquestsAsyncAuth`.

niquests awaits an auth whose ``__call__`` is a coroutine function and calls any
other one in place, so the object itself would block the event loop for a whole
token fetch; hence the separate async adapter, with async response hooks.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .requests import Kit, RequestsHooks

if TYPE_CHECKING:
    from .._scheme import Bearer
    from .._source import TokenSource


def niquests_kit() -> Kit:
    from niquests.cookies import extract_cookies_to_jar
    from niquests.exceptions import UnrewindableBodyError
    from niquests.utils import requote_uri, rewind_body

    return Kit(extract_cookies_to_jar, rewind_body, UnrewindableBodyError, requote_uri)


class NiquestsAsyncAuth:
    """``await auth(prepared_request)``: the token without blocking the loop, and an
    async hook that drives the exchange."""

    def __init__(
        self, source: TokenSource, scheme: Bearer, check_url: Callable[[str], None]
    ) -> None:
        self._source = source
        self._scheme = scheme
        self._check_url = check_url
        self._family = RequestsHooks(source, scheme, niquests_kit())

    def __repr__(self) -> str:
        return "<bearer_m2m niquests async auth>"

    async def __call__(self, request: Any) -> Any:
        url = request.url or ""
        if not url.startswith("https://"):
            self._check_url(url)
        sent = self._source.current() or await self._source.atoken()
        self._scheme.authorize(request.headers, request.method, url, sent)
        request.hooks["response"].append(self._on_response)
        return request

    async def _on_response(self, response: Any, **send_kwargs: Any) -> Any:
        family = self._family
        exchange = family.answered(response, replayed=False)
        if exchange is None or not family.wants_replay(exchange, response):
            return response
        replacement = None
        if exchange.needs_new_token:
            replacement = await self._source.atoken_after_rejection(exchange.sent)
        token = exchange.replay_token(replacement)
        if token is None:
            return response
        await _settled(response.content)  # read, so that the connection can be reused
        await _settled(response.close())
        hooks = (self._on_response, self._after_replay)
        original, replay = family.replay_of(response, token, hooks)
        replayed = await _settled(response.connection.send(replay, **send_kwargs))
        return family.settle_replay(exchange, response, replayed, original)

    async def _after_replay(self, response: Any, **send_kwargs: Any) -> Any:
        self._family.answered(response, replayed=True)  # no second replay
        return response


async def _settled(value: Any) -> Any:
    """niquests' async responses read and close with coroutines, its sync ones do not."""
    return await value if inspect.isawaitable(value) else value
