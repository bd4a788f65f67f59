"""The fetch worker: jobs run in a long-lived thread; a hung job never blocks the next."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from bearer_m2m import _worker
from bearer_m2m._policy import RefreshPolicy
from bearer_m2m._source import TokenSource
from bearer_m2m._tokens import GrantedToken
from bearer_m2m._worker import FetchWorker


def run(worker: FetchWorker) -> str:
    done = threading.Event()
    ran_in: list[str] = []

    def job() -> None:
        ran_in.append(threading.current_thread().name)
        done.set()

    worker.submit(job)
    assert done.wait(5)
    return ran_in[0]


def test_jobs_run_one_after_another_in_one_thread() -> None:
    worker = FetchWorker("fetcher")
    threads = set()
    for _ in range(5):
        done = threading.Event()
        worker.submit(lambda done=done: (threads.add(threading.get_ident()), done.set()))
        assert done.wait(5)
    assert len(threads) == 1
    assert run(worker) == "fetcher"


def test_a_hung_job_does_not_hold_up_the_next() -> None:
    worker = FetchWorker("fetcher")
    release = threading.Event()
    worker.submit(release.wait)  # hangs until released
    second_done = threading.Event()
    worker.submit(second_done.set)
    assert second_done.wait(5)
    release.set()


def test_an_idle_worker_retires_and_the_next_job_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_worker, "IDLE_SECONDS", 0.05)
    worker = FetchWorker("fetcher")
    run(worker)
    first = worker._current
    assert first is not None
    first.join(5)
    assert not first.is_alive() and worker._current is None
    run(worker)
    assert worker._current is not None and worker._current is not first


def test_after_fork_the_next_job_starts_a_thread() -> None:
    worker = FetchWorker("fetcher")
    run(worker)
    worker.reset_after_fork()
    assert worker._current is None
    assert run(worker) == "fetcher"


def test_a_worker_thread_ends_when_its_owner_is_gone() -> None:
    workers = [FetchWorker("fetcher") for _ in range(50)]
    for worker in workers:
        run(worker)
    threads = [worker._current for worker in workers]
    assert all(thread is not None and thread.is_alive() for thread in threads)
    del workers, worker
    gc.collect()
    for thread in threads:
        assert thread is not None
        thread.join(5)
        assert not thread.is_alive()


def test_sources_that_are_dropped_leave_no_threads_behind() -> None:
    before = threading.active_count()
    for serial in range(50):
        source = TokenSource(
            lambda rejected, serial=serial: GrantedToken(f"t{serial}", 3600.0),
            RefreshPolicy(),
            wait_limit=5,
        )
        assert source.token() == f"t{serial}"
    del source
    gc.collect()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before
