"""What happens after a response to a request that carried our token (sans-I/O).

Every adapter drives the same :class:`Exchange`; none of them decides anything
itself. The exchange never sends, reads or waits: it tells the adapter whether
to ask the token source for a replacement (the one step that may wait, which
each adapter does the sync or the async way) and with which token to replay.

The rules, written once here:

* an answer other than 401 to our token is the quota guard's signal that the
  token works (:meth:`TokenSource.accepted`);
* a 401 calls for a replay only if the request it answers carried the token
  we sent; the scheme says which kind (:class:`~bearer_m2m._scheme.Replay`): a
  new token, or, for a DPoP nonce challenge, the same token with a new proof.
  Every supported client drops ``Authorization`` when it follows a redirect to
  another origin, so a 401 from there neither triggers a replay nor gets a
  token (nor a proof for that origin's nonce); the replay goes to the request
  that drew the 401;
* a body the client cannot send again (a generator, a consumed stream) is
  never replayed;
* one replay at most, of either kind: whatever answers it is the caller's answer;
  each is told as a :class:`~bearer_m2m._events.Replayed` event.

The cached fast path (set the header, send) stays in the adapters, and so does
the usual answer: :func:`settled` hears it in one call, and an :class:`Exchange`
is made only for a 401.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from . import _events as events
from ._scheme import Replay

if TYPE_CHECKING:
    from ._scheme import Bearer
    from ._source import TokenSource

_R = TypeVar("_R")

#: The status that may call for a replay.
UNAUTHORIZED = 401


def settled(source: TokenSource, sent: str, status: int) -> bool:
    """True when an answer to ``sent`` needs no decision: anything but a 401, which
    tells the token source that the token works (its quota guard's signal)."""
    if status != UNAUTHORIZED:
        source.accepted(sent)
        return True
    return False


class Exchange:
    """The decisions after the answers to one request that carried token :attr:`sent`."""

    __slots__ = ("_scheme", "_source", "needs_new_token", "replayed", "sent")

    def __init__(
        self, source: TokenSource, scheme: Bearer, sent: str, *, replayed: bool = False
    ) -> None:
        self._source = source
        self._scheme = scheme
        #: The token the latest attempt carried.
        self.sent = sent
        #: Whether the one replay has been made (then no 401 leads to another).
        self.replayed = replayed
        #: After :meth:`wants_replay`: whether the replay needs a replacement of :attr:`sent`.
        self.needs_new_token = True

    def wants_replay(
        self,
        status: int,
        answered_authorization: str | None,
        headers: Any,
        can_resend: Callable[[_R], bool],
        request: _R,
    ) -> bool:
        """After an answer: True when the adapter should replay. If
        :attr:`needs_new_token`, it first asks the token source for a replacement of
        :attr:`sent`; either way it then calls :meth:`replay_token`.

        ``answered_authorization`` is the header of the request the answer is for
        (after redirects, the last one), ``headers`` the answer's;
        ``can_resend(request)`` makes the body ready to send again, or says it cannot
        be, and is asked only on a 401 that would otherwise be replayed.
        """
        if settled(self._source, self.sent, status):
            return False
        if self.replayed or self._scheme.token_in(answered_authorization) != self.sent:
            return False
        replay = self._scheme.replay_for(headers)
        if replay is None:
            return False
        self.needs_new_token = replay is Replay.NEW_TOKEN
        return can_resend(request)

    def replay_token(self, replacement: str | None = None) -> str | None:
        """The token for the one replay, or ``None`` to hand the 401 to the caller (no
        replacement could be had, or the quota guard said no). ``replacement`` is what
        the token source gave when :attr:`needs_new_token`."""
        if self.needs_new_token:
            if replacement is None or replacement == self.sent:
                return None
            self.sent = replacement
        self.replayed = True
        events.emit(events.Replayed("new_token" if self.needs_new_token else "new_proof"))
        return self.sent
