"""A long-lived thread that runs one token source's fetches.

Starting a thread per fetch made the request that started a refresh wait for
``Thread.start()``, which blocks until the new thread has run, and under GIL
contention that is milliseconds. Handing the fetch to a thread that is already
waiting costs a queue put.

A fetch that hangs past every timeout is abandoned by the token source; the
next fetch must not queue behind it, so a busy worker is replaced by a fresh
thread and retires once its hung job ends. The thread holds its owner only
weakly and ends when the owner (the token source's worker) is collected, or
after ``IDLE_SECONDS`` without work, so an application that builds many auth
objects does not collect threads.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable

Job = Callable[[], None]

#: An idle worker thread ends after this long (day-long tokens need one a day).
IDLE_SECONDS = 120.0


class FetchWorker:
    """Runs jobs one after another in a daemon thread of its own, started on first use."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._current: _Thread | None = None

    def submit(self, job: Job) -> None:
        """Run ``job`` soon in the worker thread; never waits for it."""
        with self._lock:
            worker = self._current
            if worker is None or worker.busy or not worker.is_alive():
                worker = self._current = _Thread(self)
                weakref.finalize(self, worker.stop)
                worker.start()
            worker.give(job)

    def retire_if_idle(self, worker: _Thread) -> bool:
        """Let ``worker`` end unless a job reached it meanwhile (jobs are given under this lock)."""
        with self._lock:
            if worker.has_jobs():
                return False
            if worker is self._current:
                self._current = None
            return True

    def is_current(self, worker: _Thread) -> bool:
        with self._lock:
            return worker is self._current

    def reset_after_fork(self) -> None:
        """The child inherits no threads: the next job starts a new one."""
        self._lock = threading.Lock()
        self._current = None


class _Thread(threading.Thread):
    def __init__(self, owner: FetchWorker) -> None:
        super().__init__(name=owner._name, daemon=True)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._owner = weakref.ref(owner)
        #: Set when a job is handed over, cleared when it ends: a busy worker takes no more.
        self.busy = False

    def give(self, job: Job) -> None:
        self.busy = True
        self._jobs.put(job)

    def stop(self) -> None:
        """End after the job at hand, if any (the owner is gone)."""
        self._jobs.put(None)

    def has_jobs(self) -> bool:
        return not self._jobs.empty()

    def run(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                if self._retire_if_idle():
                    return
                continue
            if job is None:
                return
            try:
                job()
            finally:
                self.busy = False
                del job  # hold nothing of the source between jobs
            if not self._still_wanted():  # the owner is gone, or replaced this hung thread
                return

    # Each look at the owner is a method of its own, so that no strong reference to it
    # outlives the look while this thread waits for work.

    def _retire_if_idle(self) -> bool:
        owner = self._owner()
        return owner is None or owner.retire_if_idle(self)

    def _still_wanted(self) -> bool:
        owner = self._owner()
        return owner is not None and owner.is_current(self)
