"""httpx and httpx2: one ``Auth`` protocol, two packages, each with its own classes.

An adapter serves the package its requests come from, and uses that package's
``Cookies`` and ``RequestNotRead`` only: ``httpx2.RequestNotRead`` is not
``httpx.RequestNotRead``, and catching one for the other's request would let a
streamed body be replayed half-sent, or not at all. After ``httpx2.alias_httpx()``
the two names are one package, and so one adapter.

``sync_auth_flow`` and ``async_auth_flow`` are overridden directly, as httpx's
docs advise for auth that does I/O: one generator per request, not two.

httpx follows redirects inside the auth flow, so the flow sees only the last
hop's answer, and a replay goes to the request that drew it: for a DPoP proof,
which httpx carries on to every hop as it found it, that is the one URL a new
proof can be right for.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator
from types import ModuleType
from typing import TYPE_CHECKING, Any

from .._exchange import Exchange, settled

if TYPE_CHECKING:
    from .._scheme import Bearer
    from .._source import TokenSource

_AUTHORIZATION = "Authorization"


class HttpxAuth:
    """The flows of one package (``httpx`` or ``httpx2``)."""

    def __init__(
        self,
        source: TokenSource,
        scheme: Bearer,
        check_url: Callable[[str], None],
        package: ModuleType,
    ) -> None:
        self._source = source
        self._scheme = scheme
        self._check_url = check_url
        self._cookies: Any = package.Cookies
        self._request_not_read: type[Exception] = package.RequestNotRead
        self._byte_stream: type = package.ByteStream

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        self._check(request)
        sent = self._source.token()
        self._scheme.authorize(request.headers, request.method, request.url, sent)
        response = yield request
        exchange = self._exchange(sent, response)
        while exchange is not None and self._wants_replay(exchange, response):
            replacement = None
            if exchange.needs_new_token:
                replacement = self._source.token_after_rejection(exchange.sent)
            token = exchange.replay_token(replacement)
            if token is None:
                return
            response = yield self._replay(response, token)

    async def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        self._check(request)
        sent = self._source.current() or await self._source.atoken()
        self._scheme.authorize(request.headers, request.method, request.url, sent)
        response = yield request
        exchange = self._exchange(sent, response)
        while exchange is not None and self._wants_replay(exchange, response):
            replacement = None
            if exchange.needs_new_token:
                replacement = await self._source.atoken_after_rejection(exchange.sent)
            token = exchange.replay_token(replacement)
            if token is None:
                return
            response = yield self._replay(response, token)

    def _check(self, request: Any) -> None:
        if request.url.scheme != "https":
            self._check_url(str(request.url))

    def _exchange(self, sent: str, response: Any) -> Exchange | None:
        """The exchange for an answer that needs a decision (a 401), else ``None``."""
        if self._scheme.proves_requests:
            self._scheme.heard(response.url, response.headers)
        if settled(self._source, sent, response.status_code):
            return None
        return Exchange(self._source, self._scheme, sent)

    def _wants_replay(self, exchange: Exchange, response: Any) -> bool:
        # After redirects, response.request is the last hop: httpx dropped our
        # header if that hop went to another origin.
        answered = response.request
        return exchange.wants_replay(
            response.status_code,
            answered.headers.get(_AUTHORIZATION),
            response.headers,
            self._can_resend,
            answered,
        )

    def _can_resend(self, request: Any) -> bool:
        """Whether httpx holds the body in memory (streamed bodies cannot be sent twice).

        A redirect's request shares the body of the request redirected, in the
        stream httpx keeps in memory when it was given as bytes, without reading
        it into ``content``."""
        try:
            request.content  # noqa: B018  (raises RequestNotRead for a stream)
        except self._request_not_read:
            return isinstance(request.stream, self._byte_stream)
        return True

    def _replay(self, response: Any, token: str) -> Any:
        """The request that drew ``response`` again, with ``token`` and any cookies the
        401 set (as DigestAuth does)."""
        request = response.request
        if response.cookies:
            self._cookies(response.cookies).set_cookie_header(request)
        self._scheme.authorize(request.headers, request.method, request.url, token)
        return request
