"""aiohttp (3.12 and later): a client middleware, ``ClientSession(middlewares=(...,))``.

aiohttp runs the middlewares again for every redirect it follows, after it has
dropped ``Authorization`` for a new origin, so a middleware that simply set the
header would hand our token to whatever origin a redirect names. Each redirect
answer is therefore noted (in a context variable: per task, as each task runs
its own requests one at a time), and the hop that follows it to another origin
passes through untouched, as does every hop after it, back to the token's origin
included: as on requests and httpx, a chain that has left the origin gets no
token again, on a path another server chose. The note also says whether the chain has had its
replay, so that a redirect after a replay is never replayed. A redirect that is
not followed (``allow_redirects=False``) leaves the note for the task's next
request: if that goes to the named origin, it is taken for the hop and gets no
token either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, NamedTuple

from .._exchange import Exchange, settled

if TYPE_CHECKING:
    from .._scheme import Bearer
    from .._source import TokenSource

_AUTHORIZATION = "Authorization"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Hop(NamedTuple):
    """A redirect answer: the origin the token belongs to, the one it points to, and
    whether the chain it is part of has been replayed. Only a redirect is noted, so the
    usual request never computes an origin."""

    home: Any
    target: Any
    replayed: bool = False
    #: Whether the chain has been to another origin (then no hop of it gets a token).
    left: bool = False


_pending_hop: ContextVar[_Hop | None] = ContextVar("bearer_m2m_aiohttp_hop", default=None)


class AiohttpMiddleware:
    """``await middleware(request, handler)``: the token, and one replay after a 401."""

    def __init__(
        self, source: TokenSource, scheme: Bearer, check_url: Callable[[str], None]
    ) -> None:
        self._source = source
        self._scheme = scheme
        self._check_url = check_url

    def __repr__(self) -> str:
        return "<bearer_m2m aiohttp middleware>"

    async def __call__(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        home, replayed = None, False
        hop = _pending_hop.get()
        if hop is not None:  # the previous call in this task answered a redirect
            _pending_hop.set(None)
            if request.url.origin() == hop.target:
                home, replayed = hop.home, hop.replayed
                if hop.left or hop.target != home:  # elsewhere, or after it: not ours
                    response = await handler(request)
                    if response.status in _REDIRECTS:
                        _note_redirect(_Hop(home, None, replayed, left=True), request, response)
                    return response
        url = request.url
        if url.scheme != "https":
            self._check_url(str(url))
        sent = self._source.current() or await self._source.atoken()
        self._scheme.authorize(request.headers, request.method, url, sent)
        response = await self._send(request, handler)
        if not settled(self._source, sent, response.status):
            response = await self._after_401(request, handler, response, sent, replayed)
        elif response.status in _REDIRECTS:
            _note_redirect(_Hop(home, None, replayed), request, response)
        return response

    async def _after_401(
        self,
        request: Any,
        handler: Callable[[Any], Awaitable[Any]],
        response: Any,
        sent: str,
        replayed: bool,
    ) -> Any:
        """The exchange: at most one replay, whose answer (a redirect, say) is noted."""
        exchange = Exchange(self._source, self._scheme, sent, replayed=replayed)
        while exchange.wants_replay(
            response.status,
            request.headers.get(_AUTHORIZATION),
            response.headers,
            _can_resend,
            request,
        ):
            replacement = None
            if exchange.needs_new_token:
                replacement = await self._source.atoken_after_rejection(exchange.sent)
            token = exchange.replay_token(replacement)
            if token is None:
                break
            response.release()
            request.update_cookies(response.cookies)
            self._scheme.authorize(request.headers, request.method, request.url, token)
            response = await self._send(request, handler)
        if response.status in _REDIRECTS:
            _note_redirect(_Hop(None, None, exchange.replayed), request, response)
        return response

    async def _send(self, request: Any, handler: Callable[[Any], Awaitable[Any]]) -> Any:
        response = await handler(request)
        if self._scheme.proves_requests:
            self._scheme.heard(response.url, response.headers)
        return response


def _note_redirect(chain: _Hop, request: Any, response: Any) -> None:
    """Note a redirect answer for the hop that follows it: ``chain`` with its target
    set (and its home, when unset, the request's own origin)."""
    location = response.headers.get("Location")
    if location:
        try:
            target = response.url.join(type(response.url)(location)).origin()
            home = request.url.origin() if chain.home is None else chain.home
        except ValueError:  # aiohttp refuses such a redirect itself
            return
        _pending_hop.set(chain._replace(home=home, target=target))


def _can_resend(request: Any) -> bool:
    """aiohttp resends a payload it has not consumed (bytes, files it can seek)."""
    body = request.body
    return body == b"" or not body.consumed
