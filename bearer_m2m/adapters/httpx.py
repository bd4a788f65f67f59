"""httpx and httpx2: one ``Auth`` protocol, two packages, each with its own classes.

An adapter serves the package its requests come from, and uses that package's
``Cookies`` and ``RequestNotRead`` only: ``httpx2.RequestNotRead`` is not
``httpx.RequestNotRead``, and catching one for the other's request would let a
streamed body be replayed half-sent, or not at all. After ``httpx2.alias_httpx()``
the two names are one package, and so one adapter.

``sync_auth_flow`` and ``async_auth_flow`` are overridden directly, as httpx's
docs advise for auth that does I/O: one generator per request, not two.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._exchange import BEARER, Exchange, settled

if TYPE_CHECKING:
    from .._source import TokenSource

_AUTHORIZATION = "Authorization"


class HttpxAuth:
    """The flows of one package (``httpx`` or ``httpx2``)."""

    def __init__(
        self, source: TokenSource, check_url: Callable[[str], None], package: ModuleType
    ) -> None:
        self._source = source
        self._check_url = check_url
        self._cookies: Any = package.Cookies
        self._request_not_read: type[Exception] = package.RequestNotRead

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        if request.url.scheme != "https":
            self._check_url(str(request.url))
        sent = self._source.token()
        request.headers[_AUTHORIZATION] = BEARER + sent
        response = yield request
        if settled(self._source, sent, response.status_code):
            return
        exchange = Exchange(self._source, sent)
        while self._wants_replacement(exchange, request, response):
            header = exchange.replay_header(self._source.token_after_rejection(exchange.sent))
            if header is None:
                return
            response = yield self._replay(request, response, header)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        if request.url.scheme != "https":
            self._check_url(str(request.url))
        sent = self._source.current() or await self._source.atoken()
        request.headers[_AUTHORIZATION] = BEARER + sent
        response = yield request
        if settled(self._source, sent, response.status_code):
            return
        exchange = Exchange(self._source, sent)
        while self._wants_replacement(exchange, request, response):
            replacement = await self._source.atoken_after_rejection(exchange.sent)
            header = exchange.replay_header(replacement)
            if header is None:
                return
            response = yield self._replay(request, response, header)

    def _wants_replacement(self, exchange: Exchange, request: Any, response: Any) -> bool:
        # After redirects, response.request is the last hop: httpx dropped our
        # header if that hop went to another origin.
        answered_authorization = response.request.headers.get(_AUTHORIZATION)
        return exchange.wants_replacement(
            response.status_code, answered_authorization, self._can_resend, request
        )

    def _can_resend(self, request: Any) -> bool:
        """Whether httpx holds the body in memory (streamed bodies cannot be sent twice)."""
        try:
            request.content  # noqa: B018  (raises RequestNotRead for a stream)
        except self._request_not_read:
            return False
        return True

    def _replay(self, request: Any, response: Any, header: str) -> Any:
        """The request again, with ``header`` and any cookies the 401 set (as DigestAuth)."""
        if response.cookies:
            self._cookies(response.cookies).set_cookie_header(request)
        request.headers[_AUTHORIZATION] = header
        return request
