"""One token fetch in progress, and the ways to wait for it.

A fetch runs in a thread of its own. Threads wait on a :class:`threading.Event`;
an event loop sends one worker thread to wait and parks its other tasks on a
loop-local :class:`anyio.Event`, so a thousand waiting tasks hold one worker
thread, not anyio's whole thread pool.
"""

from __future__ import annotations

import threading

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

    def finish(self, token: str | None = None, error: BaseException | None = None) -> None:
        self._token, self._error = token, error
        self._done.set()

    def result(self) -> str:
        """The token, or the fetch's error raised again. Only once finished."""
        if self._error is not None:
            raise self._error
        assert self._token is not None
        return self._token

    def wait(self) -> str:
        self._done.wait()
        return self.result()

    async def wait_async(self) -> str:
        watches = _watches_of_this_loop()
        while not self._done.is_set():
            watch = watches.get(self)
            if watch is not None:
                await watch.wait()
                continue
            # This task watches for the whole loop; if it is cancelled, the
            # others wake up and one of them takes over.
            watch = watches[self] = anyio.Event()
            try:
                await anyio.to_thread.run_sync(self._done.wait, abandon_on_cancel=True)
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
