"""One token fetch in progress, and the ways to wait for it.

A fetch runs in a thread of its own. Threads wait on a :class:`threading.Event`;
an event loop sends one worker thread to wait and parks its other tasks on a
loop-local :class:`anyio.Event`, so a thousand waiting tasks hold one worker
thread, not anyio's whole thread pool.
"""

from __future__ import annotations

import copy
import threading
import time

import anyio
import anyio.lowlevel
import anyio.to_thread

#: Per event loop: the flights a worker thread is already waiting for.
_loop_watches: anyio.lowlevel.RunVar[dict[Flight, anyio.Event]] = anyio.lowlevel.RunVar(
    "bearer_m2m_flight_watches"
)


class Flight:
    """The outcome of one fetch: a token or the error that stopped it."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._token: str | None = None
        self._error: BaseException | None = None

    @classmethod
    def failed(cls, error: BaseException) -> Flight:
        """A flight that ended before it began: callers get ``error`` at once."""
        flight = cls()
        flight.finish(error=error)
        return flight

    def finish(self, token: str | None = None, error: BaseException | None = None) -> None:
        self._token, self._error = token, error
        self._done.set()

    def result(self) -> str:
        """The token, or the fetch's error. Only once finished.

        Each waiter raises its own copy of the error, so that concurrent waiters
        do not pile their tracebacks onto one shared exception object.
        """
        error = self._error
        if error is not None:
            own = copy.copy(error)
            own.__cause__ = error.__cause__
            raise own.with_traceback(None)
        assert self._token is not None
        return self._token

    def wait(self, timeout: float) -> str:
        """The token, once the fetch ends; :class:`TimeoutError` after ``timeout`` s."""
        if not self._done.wait(timeout):
            raise TimeoutError
        return self.result()

    async def wait_async(self, timeout: float) -> str:
        """Like :meth:`wait`, without blocking the event loop."""
        deadline = time.monotonic() + timeout
        watches = _watches_of_this_loop()
        while not self._done.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            watch = watches.get(self)
            if watch is not None:
                with anyio.move_on_after(remaining):
                    await watch.wait()
                continue
            # This task watches for the whole loop. If it is cancelled, its
            # worker thread stays blocked until the fetch ends (threads cannot be
            # interrupted), and the other tasks wake up for one of them to take over.
            watch = watches[self] = anyio.Event()
            try:
                await anyio.to_thread.run_sync(self._done.wait, remaining, abandon_on_cancel=True)
            finally:
                del watches[self]
                watch.set()
        return self.result()


def _watches_of_this_loop() -> dict[Flight, anyio.Event]:
    try:
        return _loop_watches.get()
    except LookupError:
        watches: dict[Flight, anyio.Event] = {}
        _loop_watches.set(watches)
        return watches
