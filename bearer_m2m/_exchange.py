"""What happens after a response to a request that carried our token (sans-I/O).

Every adapter drives the same :class:`Exchange`; none of them decides anything
itself. The exchange never sends, reads or waits: it tells the adapter whether
to ask the token source for a replacement (the one step that may wait, which
each adapter does the sync or the async way) and with which header to replay.

The rules, written once here:

* an answer other than 401 to our token is the quota guard's signal that the
  token works (:meth:`TokenSource.accepted`);
* a 401 calls for a replacement only if the request it answers carried the
  token we sent. Every supported client drops ``Authorization`` when it follows
  a redirect to another origin, so a 401 from there neither triggers a replay
  nor gets a token; the replay goes to the URL the token was sent to in the
  first place;
* a body the client cannot send again (a generator, a consumed stream) is
  never replayed;
* one replay at most: whatever answers the replay is the caller's answer.

The cached fast path (set the header, send) stays in the adapters, and so does
the usual answer: :func:`settled` hears it in one call, and an :class:`Exchange`
is made only for a 401.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from ._source import TokenSource

_R = TypeVar("_R")

#: The scheme prefix of every Authorization header we set.
BEARER = "Bearer "
#: The status that may call for a replacement token.
UNAUTHORIZED = 401


def bearer_token(authorization: str | None) -> str | None:
    """The token of a Bearer ``Authorization`` header, ``None`` for any other or none."""
    if authorization and authorization.startswith(BEARER):
        return authorization[len(BEARER) :]
    return None


def settled(source: TokenSource, sent: str, status: int) -> bool:
    """True when an answer to ``sent`` needs no decision: anything but a 401, which
    tells the token source that the token works (its quota guard's signal)."""
    if status != UNAUTHORIZED:
        source.accepted(sent)
        return True
    return False


class Exchange:
    """The decisions after the answers to one request that carried token :attr:`sent`."""

    __slots__ = ("_source", "replayed", "sent")

    def __init__(self, source: TokenSource, sent: str, *, replayed: bool = False) -> None:
        self._source = source
        #: The token the latest attempt carried.
        self.sent = sent
        #: Whether the one replay has been made (then no 401 leads to another).
        self.replayed = replayed

    def wants_replacement(
        self,
        status: int,
        answered_authorization: str | None,
        can_resend: Callable[[_R], bool],
        request: _R,
    ) -> bool:
        """After an answer: True when the adapter should ask the token source for a
        replacement of :attr:`sent` and then call :meth:`replay_header`.

        ``answered_authorization`` is the header of the request the answer is for
        (after redirects, the last one); ``can_resend(request)`` makes the body
        ready to send again, or says it cannot be, and is asked only on a 401 that
        would otherwise be replayed.
        """
        if settled(self._source, self.sent, status):
            return False
        if self.replayed or bearer_token(answered_authorization) != self.sent:
            return False
        return can_resend(request)

    def replay_header(self, replacement: str | None) -> str | None:
        """The ``Authorization`` header for the one replay, or ``None`` to hand the 401
        to the caller (no replacement could be had, or the quota guard said no)."""
        if replacement is None or replacement == self.sent:
            return None
        self.sent, self.replayed = replacement, True
        return BEARER + replacement
