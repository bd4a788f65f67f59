"""How a token goes on a request: Bearer (RFC 6750) or DPoP (RFC 9449). Sans-I/O.

An adapter asks its scheme to put the token on each request and, when a
response needs a decision, what kind of replay a 401 calls for. Bearer is one
header. DPoP adds a proof per request (signed for its method and URL, bound to
the token by ``ath``, with the latest nonce its origin gave) and reads the
API's challenges: a nonce challenge or a refused proof is answered with a new
proof and the same token, anything else with a new token.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._dpop import DPoPKey, NonceStore

AUTHORIZATION = "Authorization"
DPOP = "DPoP"
DPOP_NONCE = "DPoP-Nonce"
WWW_AUTHENTICATE = "WWW-Authenticate"

Headers = MutableMapping[str, Any]
#: A request's or response's URL: a string, or the client's URL type (``httpx.URL``,
#: ``yarl.URL``), whose ``str()`` is the URL. Only DPoP reads it.
URL = Any


class Replay(enum.Enum):
    """What a 401 to our token calls for."""

    #: The token is refused: replace it, then replay with the new one.
    NEW_TOKEN = enum.auto()
    #: The proof is at fault (a nonce challenge, or a proof the server could not accept): replay
    #: with a new proof and the same token, which costs no token request.
    SAME_TOKEN = enum.auto()


class Bearer:
    """``Authorization: Bearer <token>``, and nothing else to decide."""

    #: Whether requests carry proofs (which adapters then renew across redirects, and
    #: whose nonces they note from every answer).
    proves_requests = False
    _prefix = "Bearer "

    def __repr__(self) -> str:
        return "<Bearer>"

    def authorize(self, headers: Headers, method: str, url: URL, token: str) -> None:
        headers[AUTHORIZATION] = self._prefix + token

    def token_in(self, authorization: str | None) -> str | None:
        """The token an ``Authorization`` header of this scheme carries, else ``None``."""
        if authorization and authorization.startswith(self._prefix):
            return authorization[len(self._prefix) :]
        return None

    def replay_for(self, headers: Any) -> Replay | None:
        """What a 401 (with these response headers) to our token calls for."""
        return Replay.NEW_TOKEN

    def heard(self, url: URL, headers: Any) -> None:
        """A response from ``url``: nothing to note for bearer tokens."""

    def redirected(self, headers: Headers, token: str, method: str, url: str, to: str) -> None:
        """A redirect of a request that carried ``token``: the client handles Authorization."""


class DPoP(Bearer):
    """``Authorization: DPoP <token>`` and a ``DPoP`` proof for each request.

    The nonces are the APIs', one per origin; the token endpoint's are the fetcher's,
    so neither kind is ever sent to the other.
    """

    proves_requests = True
    _prefix = "DPoP "

    def __init__(self, key: DPoPKey, nonces: NonceStore) -> None:
        self._key = key
        self._nonces = nonces

    def __repr__(self) -> str:
        return f"<DPoP {self._key.thumbprint}>"

    def authorize(self, headers: Headers, method: str, url: URL, token: str) -> None:
        headers[AUTHORIZATION] = self._prefix + token
        headers[DPOP] = self._proof(method, str(url), token)

    def replay_for(self, headers: Any) -> Replay | None:
        from ._dpop import dpop_challenge, is_valid_nonce

        challenge = dpop_challenge(_all_values(headers, WWW_AUTHENTICATE))
        error = challenge.params.get("error") if challenge is not None else None
        if error == "use_dpop_nonce":
            # Without a nonce to send, a replay would draw the same answer.
            return Replay.SAME_TOKEN if is_valid_nonce(headers.get(DPOP_NONCE)) else None
        if error == "invalid_dpop_proof":
            # A proof made for another URL (a redirect the client followed with it) or
            # outside the server's clock window: a new one may do; a new token would not.
            return Replay.SAME_TOKEN
        return Replay.NEW_TOKEN

    def heard(self, url: URL, headers: Any) -> None:
        """Keep the nonce an answer brings: the newest from an origin wins."""
        nonce = headers.get(DPOP_NONCE)
        if nonce is not None:
            with contextlib.suppress(ValueError):  # a URL no proof could be made for
                self._nonces.remember(str(url), nonce)

    def redirected(self, headers: Headers, token: str, method: str, url: str, to: str) -> None:
        """For clients that build the next hop from the redirected request's headers: a
        new proof for the next URL when it is the same origin (a proof is bound to one
        URL); for another origin neither proof nor token, even where the client would
        keep the token (requests, from ``http://host`` to ``https://host``): without a
        proof it would only draw a 401."""
        from ._dpop import origin

        try:
            same_origin = origin(to) == origin(url)
        except ValueError:  # not a URL the client can follow
            same_origin = False
        if same_origin:
            headers[DPOP] = self._proof(method, to, token)
        else:
            headers.pop(DPOP, None)
            headers.pop(AUTHORIZATION, None)

    def _proof(self, method: str, url: str, token: str) -> str:
        return self._key.proof(method, url, access_token=token, nonce=self._nonces.get(url))


def _all_values(headers: Any, name: str) -> str | Iterable[str] | None:
    """Every value of a header that may come more than once: aiohttp's ``get`` gives
    the first only; requests and httpx join them with ``", "`` already."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values: list[str] = getall(name, [])
        return values
    value: str | None = headers.get(name)
    return value
