"""When a token is needed: reuse, single flight, refresh ahead, replacement after a 401.

The source keeps one :class:`CachedToken` and at most one fetch in flight. The
fetch always runs in the source's fetch thread, so sync callers wait on an event,
async callers wait in a worker thread (the event loop never blocks), and
threads, asyncio tasks and trio tasks all share the same single flight.
"""

from __future__ import annotations

import contextvars
import functools
import os
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import replace

from . import _events as events
from ._flight import Flight
from ._policy import MAX_SERVER_WAIT, CachedToken, RefreshPolicy
from ._tokens import GrantedToken, fingerprint
from ._worker import FetchWorker
from .errors import TokenEndpointUnavailable, TokenError

#: Obtains a token; its argument is a token an API rejected, not to be handed out again
#: (a shared cache may still hold it).
Fetch = Callable[[str | None], GrantedToken]


class TokenSource:
    """Hands out a valid access token, fetching one only when it must."""

    def __init__(
        self,
        fetch: Fetch,
        policy: RefreshPolicy,
        *,
        wait_limit: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._policy = policy
        self._wait_limit = wait_limit
        self._clock = clock
        self._cached: CachedToken | None = None
        self._flight: Flight | None = None
        self._rejected: str | None = None
        # After a failure that named a wait (Retry-After, a spent Auth0 quota), callers
        # get that failure at once until then, rather than asking again.
        self._quiet_until = float("-inf")
        self._quiet_error: BaseException | None = None
        self._guard = policy.rejection_guard()
        self._guard_warned: str | None = None  # the token the guard last warned about
        self._last_fetch = float("-inf")  # when the last token request started
        # The newest token until a request succeeds with it: a 401 to it is a strike.
        self._unproven: str | None = None
        self._lock = threading.Lock()
        self._worker = FetchWorker("bearer_m2m-token-fetch")
        _live_sources.add(self)

    def current(self) -> str | None:
        """The cached token while no refresh is due, else ``None``.

        This is every request's path once a token is cached: it reads one
        attribute and the clock, and takes no lock.
        """
        cached = self._cached
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.access_token
        return None

    def token(self) -> str:
        """A valid token, waiting for a fetch only when none is valid."""
        token = self.current()
        if token is not None:
            return token
        outcome = self._check_in()
        if isinstance(outcome, str):
            return outcome
        try:
            return outcome.wait(self._wait_limit)
        except TimeoutError:
            raise self._give_up_on(outcome) from None

    async def atoken(self) -> str:
        token = self.current()
        if token is not None:
            return token
        outcome = self._check_in()
        if isinstance(outcome, str):
            return outcome
        try:
            return await outcome.wait_async(self._wait_limit)
        except TimeoutError:
            raise self._give_up_on(outcome) from None

    def token_after_rejection(self, rejected: str) -> str | None:
        """A token to replay with after ``rejected`` drew a 401, or ``None`` for no replay.

        When no new token can be had, the caller gets the API's 401 rather than
        our error; the next request raises it.
        """
        if not self._drop_rejected(rejected):
            return None
        try:
            token = self.token()
        except TokenError as exc:
            events.emit(events.ReplacementFailed(exc))
            return None
        return None if token == rejected else token

    async def atoken_after_rejection(self, rejected: str) -> str | None:
        if not self._drop_rejected(rejected):
            return None
        try:
            token = await self.atoken()
        except TokenError as exc:
            events.emit(events.ReplacementFailed(exc))
            return None
        return None if token == rejected else token

    def accepted(self, token: str) -> None:
        """An API answered a request that carried ``token`` with something other than 401.

        Adapters call this for every such answer; past a token's first success it
        costs one comparison.
        """
        if token == self._unproven:
            with self._lock:
                if token == self._unproven:
                    self._unproven = None
                    self._guard.accepted()

    def invalidate(self) -> None:
        """Forget the cached token, and any wait the token endpoint asked for:
        the next request fetches a new one."""
        with self._lock:
            self._cached = None
            self._quiet_until, self._quiet_error = float("-inf"), None

    def _drop_rejected(self, rejected: str) -> bool:
        """Forget ``rejected`` if it is still the cached token; False when the quota guard
        forbids fetching a replacement (see :class:`~bearer_m2m._policy.RejectionGuard`).

        Only the first of fifty concurrent 401s finds its token still cached, so
        they cause one fetch; the others get the replacement.
        """
        with self._lock:
            news = self._rejection_of(rejected)
        if news is not None:  # told outside the lock: a subscriber may take its time
            events.emit(news)
        return not isinstance(news, events.QuotaGuardTripped)

    def _rejection_of(
        self, rejected: str
    ) -> events.TokenRejected | events.QuotaGuardTripped | None:
        """What a 401 to ``rejected`` does, called with the lock held: nothing once another
        401 has dropped it, else it is dropped, unless the quota guard trips."""
        cached = self._cached
        if cached is None or cached.access_token != rejected:
            return None
        if self._flight is None:
            now = self._clock()
            allowed = self._guard.allows_replacement(
                rejected,
                proven=rejected != self._unproven
                or (cached.has_lived_half(now) and not self._guard.has_struck(rejected)),
                now=now,
                last_fetch=self._last_fetch,
            )
            if not allowed:
                first = self._guard_warned != rejected  # told once per token, counted per 401
                self._guard_warned = rejected
                return events.QuotaGuardTripped(
                    fingerprint(rejected),
                    self._guard.strikes,
                    self._guard.wait_after_strikes(),
                    first=first,
                )
        self._cached = None
        self._rejected = rejected
        return events.TokenRejected(fingerprint(rejected))

    def _check_in(self) -> str | Flight:
        """Decide, under the lock, what a caller gets: a token to use now, or
        the flight to wait for. A token inside its refresh-ahead window is
        returned at once while a flight replaces it in the background."""
        with self._lock:
            now = self._clock()
            cached = self._cached
            if cached is not None and now < cached.expires_at:
                if now >= cached.refresh_at and self._flight is None:
                    # Until the refresh ends, callers take this token on the lock-free path.
                    self._cached = replace(cached, refresh_at=cached.expires_at)
                    self._take_off()
                return cached.access_token
            if self._flight is None and now < self._quiet_until and self._quiet_error:
                return Flight.failed(self._quiet_error)
            return self._flight or self._take_off()

    def _take_off(self) -> Flight:
        """Start a fetch in the source's worker thread (called with the lock held).

        The fetch runs in a copy of the caller's context (``contextvars``), so what
        it reports belongs to the request that needed the token: its OpenTelemetry
        span, say, is the parent of the fetch's.
        """
        flight = self._flight = Flight()
        self._last_fetch = self._clock()
        caller = contextvars.copy_context()
        self._worker.submit(functools.partial(caller.run, self._fly, flight, self._rejected))
        return flight

    def _fly(self, flight: Flight, rejected: str | None) -> None:
        # BaseException too: whatever ends the fetch must reach the waiters,
        # or they would wait for nothing.
        try:
            granted = self._fetch(rejected)
        except BaseException as exc:
            kept_current = False
            with self._lock:
                if self._flight is flight:
                    self._flight = None
                    now = self._clock()
                    wait = min(getattr(exc, "retry_after", None) or 0.0, MAX_SERVER_WAIT)
                    if wait > 0:
                        self._quiet_until, self._quiet_error = now + wait, exc
                    cached = self._cached
                    if cached is not None and now < cached.expires_at:
                        self._cached = self._policy.after_failed_refresh(cached, now, wait)
                        kept_current = True
            if kept_current:
                events.emit(events.RefreshFailed(exc))
            flight.finish(error=exc)
        else:
            with self._lock:
                if self._flight is flight:  # not abandoned meanwhile
                    self._cached = self._policy.schedule(
                        granted, self._clock(), ahead=not self._guard.backing_off
                    )
                    self._unproven = granted.access_token
                    self._flight = None
            flight.finish(token=granted.access_token)

    def _give_up_on(self, flight: Flight) -> TokenEndpointUnavailable:
        """Abandon a fetch that outlived every timeout (a server that drips its
        answer byte by byte defeats per-read timeouts), so the next caller starts
        a fresh one instead of joining it."""
        with self._lock:
            if self._flight is flight:
                self._flight = None
        return TokenEndpointUnavailable(
            f"no token within {self._wait_limit:.0f} s: the token endpoint is not answering"
        )

    def _reset_after_fork(self) -> None:
        # The fetching thread, if any, did not survive the fork, and the lock may
        # have been held by it. The cached token is an immutable object that was
        # either fully stored or not at all, so it stays; if it was being
        # refreshed, the child refreshes it again.
        self._lock = threading.Lock()
        self._worker.reset_after_fork()
        if self._flight is not None:
            self._flight = None
            cached = self._cached
            if cached is not None:
                self._cached = replace(cached, refresh_at=min(cached.refresh_at, self._clock()))


_live_sources: weakref.WeakSet[TokenSource] = weakref.WeakSet()


def _reset_all_after_fork() -> None:
    for source in list(_live_sources):
        source._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
