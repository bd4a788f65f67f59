"""requests, and niquests' ``Session`` (which takes requests-style auth): a response hook.

Both clients call the auth object itself, so its ``__call__`` holds this adapter's
cached fast path (set the header, register :meth:`RequestsHooks.on_response`);
everything after the response is here.

The replay follows requests' ``HTTPDigestAuth.handle_401``. One thing differs:
requests builds the requests of any redirect from the request it first sent, not
from the replay, so the replacement token is written onto that request too.
Otherwise a replay answered by a same-origin redirect would follow it with the
rejected token, draw a second 401 and be replayed a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._exchange import Exchange, bearer_token, settled

if TYPE_CHECKING:
    from .._source import TokenSource

_AUTHORIZATION = "Authorization"


@dataclass(frozen=True)
class Kit:
    """The client's own helpers: niquests' are not requests', nor are its errors."""

    extract_cookies_to_jar: Callable[..., Any]
    rewind_body: Callable[[Any], None]
    unrewindable_body_error: type[Exception]


def requests_kit() -> Kit:
    from requests.cookies import extract_cookies_to_jar
    from requests.exceptions import UnrewindableBodyError
    from requests.utils import rewind_body

    return Kit(extract_cookies_to_jar, rewind_body, UnrewindableBodyError)


class RequestsHooks:
    """The response hook that drives the exchange, with the client's own helpers."""

    def __init__(self, source: TokenSource, kit: Kit) -> None:
        self._source = source
        self.kit = kit

    def on_response(self, response: Any, **send_kwargs: Any) -> Any:
        exchange = answered(self._source, response, replayed=False)
        if exchange is None or not self.wants_replacement(exchange, response):
            return response
        header = exchange.replay_header(self._source.token_after_rejection(exchange.sent))
        if header is None:
            return response
        response.content  # noqa: B018  (read the body so the connection can be reused)
        response.close()
        replay = self.replay_of(response, header, (self.on_response, self._after_replay))
        replayed = response.connection.send(replay, **send_kwargs)
        return self.settle_replay(exchange, response, replayed)

    def _after_replay(self, response: Any, **send_kwargs: Any) -> Any:
        """The hook of the redirects that follow a replay: no second replay."""
        answered(self._source, response, replayed=True)
        return response

    # -- shared with niquests' async adapter ----------------------------------------

    def wants_replacement(self, exchange: Exchange, response: Any) -> bool:
        return exchange.wants_replacement(
            response.status_code,
            response.request.headers.get(_AUTHORIZATION),
            self._rewind,
            response.request,
        )

    def replay_of(
        self, response: Any, header: str, hooks: tuple[Callable[..., Any], Callable[..., Any]]
    ) -> Any:
        """The request again with ``header`` and any cookies the 401 set.

        The request that drew the 401 gets ``header`` too (the 401 keeps a copy of
        what was sent), since requests copies any redirect from it; and in the hooks
        that every copy shares, ``hooks[0]`` gives way to ``hooks[1]``.
        """
        rejected = response.request
        response.request = rejected.copy()
        rejected.headers[_AUTHORIZATION] = header
        hook, after_replay = hooks
        registered = rejected.hooks["response"]
        registered[:] = [after_replay if h == hook else h for h in registered]
        replay = rejected.copy()
        self.kit.extract_cookies_to_jar(replay._cookies, rejected, response.raw)
        replay.prepare_cookies(replay._cookies)
        return replay

    def settle_replay(self, exchange: Exchange, rejected: Any, replayed: Any) -> Any:
        self.wants_replacement(exchange, replayed)  # the source hears how the replay went
        replayed.history.append(rejected)
        return replayed

    def _rewind(self, request: Any) -> bool:
        """Make the body ready to send again; False when it cannot be (a generator, say)."""
        body = request.body
        if body is None or isinstance(body, (bytes, str)):
            return True
        try:
            self.kit.rewind_body(request)
        except self.kit.unrewindable_body_error:
            return False
        return True


def answered(source: TokenSource, response: Any, *, replayed: bool) -> Exchange | None:
    """The exchange for a 401 to a request that carried our token, else ``None``: the
    answer needs no decision (any other status, which :func:`settled` reports), or the
    request carried no token of ours (a redirect to another origin, where the client
    dropped the header)."""
    sent = bearer_token(response.request.headers.get(_AUTHORIZATION))
    if sent is None or settled(source, sent, response.status_code):
        return None
    return Exchange(source, sent, replayed=replayed)
