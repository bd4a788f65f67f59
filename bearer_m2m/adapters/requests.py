"""requests, and niquests' ``Session`` (which takes requests-style auth): a response hook.

Both clients call the auth object itself, so its ``__call__`` holds this adapter's
cached fast path (put the token on, register :meth:`RequestsHooks.on_response`);
everything after the response is here.

The replay follows requests' ``HTTPDigestAuth.handle_401``. One thing differs:
requests builds the requests of any redirect from the request it first sent, not
from the replay, so the replay's credentials are written onto that request too.
Otherwise a replay answered by a same-origin redirect would follow it with the
rejected token, draw a second 401 and be replayed a second time.

The hook sees every redirect before requests builds the next hop from the
redirected request, so a DPoP proof (bound to one URL) is renewed there for a
same-origin hop and removed for another origin's: requests, left alone, sends
custom headers such as ``DPoP`` on to any origin.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from .._exchange import Exchange, settled

if TYPE_CHECKING:
    from .._scheme import Bearer
    from .._source import TokenSource

_AUTHORIZATION = "Authorization"
#: The redirects requests follows, and the method each turns a request into.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Kit:
    """The client's own helpers: niquests' are not requests', nor are its errors."""

    extract_cookies_to_jar: Callable[..., Any]
    rewind_body: Callable[[Any], None]
    unrewindable_body_error: type[Exception]
    requote_uri: Callable[[str], str]


def requests_kit() -> Kit:
    from requests.cookies import extract_cookies_to_jar
    from requests.exceptions import UnrewindableBodyError
    from requests.utils import requote_uri, rewind_body

    return Kit(extract_cookies_to_jar, rewind_body, UnrewindableBodyError, requote_uri)


class RequestsHooks:
    """The response hook that drives the exchange, with the client's own helpers."""

    def __init__(self, source: TokenSource, scheme: Bearer, kit: Kit) -> None:
        self._source = source
        self.scheme = scheme
        self.kit = kit

    def on_response(self, response: Any, **send_kwargs: Any) -> Any:
        exchange = self.answered(response, replayed=False)
        if exchange is None or not self.wants_replay(exchange, response):
            return response
        replacement = None
        if exchange.needs_new_token:
            replacement = self._source.token_after_rejection(exchange.sent)
        token = exchange.replay_token(replacement)
        if token is None:
            return response
        response.content  # noqa: B018  (read the body so the connection can be reused)
        response.close()
        original, replay = self.replay_of(response, token, (self.on_response, self._after_replay))
        replayed = response.connection.send(replay, **send_kwargs)
        return self.settle_replay(exchange, response, replayed, original)

    def _after_replay(self, response: Any, **send_kwargs: Any) -> Any:
        """The hook of the redirects that follow a replay: no second replay."""
        self.answered(response, replayed=True)
        return response

    # -- shared with niquests' async adapter ----------------------------------------

    def answered(self, response: Any, *, replayed: bool) -> Exchange | None:
        """The exchange for a 401 to a request that carried our token, else ``None``: the
        answer needs no decision (any other status, which :func:`settled` reports), or the
        request carried no token of ours (a redirect to another origin, where the client
        dropped the header)."""
        scheme = self.scheme
        request = response.request
        if scheme.proves_requests:
            scheme.heard(response.url, response.headers)
        sent = scheme.token_in(request.headers.get(_AUTHORIZATION))
        if sent is None:
            return None
        if settled(self._source, sent, response.status_code):
            if scheme.proves_requests and response.status_code in _REDIRECTS:
                self._before_next_hop(request, response, sent)
            return None
        return Exchange(self._source, scheme, sent, replayed=replayed)

    def wants_replay(self, exchange: Exchange, response: Any) -> bool:
        return exchange.wants_replay(
            response.status_code,
            response.request.headers.get(_AUTHORIZATION),
            response.headers,
            self._rewind,
            response.request,
        )

    def replay_of(
        self, response: Any, token: str, hooks: tuple[Callable[..., Any], Callable[..., Any]]
    ) -> tuple[Any, Any]:
        """The request that drew the 401, and a replay of it with ``token`` and any
        cookies the 401 set.

        The request that drew the 401 gets the credentials too (the 401 keeps a
        copy of what was sent), since requests copies any redirect from it; and in
        the hooks that every copy shares, ``hooks[0]`` gives way to ``hooks[1]``.
        """
        rejected = response.request
        response.request = rejected.copy()
        self.scheme.authorize(rejected.headers, rejected.method, rejected.url, token)
        hook, after_replay = hooks
        registered = rejected.hooks["response"]
        registered[:] = [after_replay if h == hook else h for h in registered]
        replay = rejected.copy()
        self.kit.extract_cookies_to_jar(replay._cookies, rejected, response.raw)
        replay.prepare_cookies(replay._cookies)
        return rejected, replay

    def settle_replay(self, exchange: Exchange, rejected: Any, replayed: Any, original: Any) -> Any:
        """The replay's answer, with the 401 in its history. The source hears how the
        replay went, and a redirect it answers is prepared on ``original``, the request
        requests copies the next hop from (see :meth:`replay_of`)."""
        self.wants_replay(exchange, replayed)
        if self.scheme.proves_requests:
            self.scheme.heard(replayed.url, replayed.headers)
        if self.scheme.proves_requests and replayed.status_code in _REDIRECTS:
            self._before_next_hop(original, replayed, exchange.sent)
        replayed.history.append(rejected)
        return replayed

    def _before_next_hop(self, request: Any, response: Any, token: str) -> None:
        """Renew the DPoP proof (or drop it) on ``request``, which requests copies for
        the hop that follows ``response``."""
        hop = next_hop(response, self.kit.requote_uri)
        if hop is not None:
            method, url = hop
            self.scheme.redirected(request.headers, token, method, request.url, url)

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


def next_hop(response: Any, requote_uri: Callable[[str], str]) -> tuple[str, str] | None:
    """The method and URL of the request requests sends after the redirect ``response``,
    worked out as ``Session.resolve_redirects`` and ``rebuild_method`` do (the fragment,
    which a proof leaves out, aside)."""
    location = response.headers.get("location")
    if not location:
        return None
    with contextlib.suppress(UnicodeError):  # as requests reads it: its bytes as UTF-8
        location = location.encode("latin1").decode("utf8")
    if location.startswith("//"):
        location = f"{urlsplit(response.url).scheme}:{location}"
    url = urljoin(response.url, requote_uri(location))
    method = response.request.method
    status = response.status_code
    if (status in (302, 303) and method != "HEAD") or (status == 301 and method == "POST"):
        method = "GET"
    return method, url
