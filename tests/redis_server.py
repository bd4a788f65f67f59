"""A real ``redis-server`` (Debian's package) on a free loopback port, for the Redis tests.

::

    with RedisServer() as server:
        client = server.client()
        ...
        server.kill()  # Redis gone mid-test, as in an outage

``redis_server`` is the same thing as a pytest fixture (one server per test).
Nothing is persisted (``--save "" --appendonly no``), and the server is killed
at the end whatever happened. There is no skipping: when ``redis-server`` is
missing the tests fail, saying how to install it (CI's ``.ci/run`` does).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

import pytest
import redis

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

#: Debian's redis-server package puts it here; PATH is searched too.
REDIS_SERVER = "/usr/bin/redis-server"
#: Upper bound on waiting for the server to answer PING (never a measurement).
STARTUP_PATIENCE = 15.0


class RedisServerMissing(RuntimeError):
    """No redis-server binary on this machine."""


def redis_server_binary() -> str:
    if os.access(REDIS_SERVER, os.X_OK):
        return REDIS_SERVER
    found = shutil.which("redis-server")
    if found is None:
        raise RedisServerMissing(
            "redis-server is not installed: the RedisCache tests run a real one. "
            "Install Debian's package (apt-get install redis-server), as .ci/run does."
        )
    return found


def free_port() -> int:
    """A loopback port nobody listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1; ``password`` sets ``--requirepass``."""

    def __init__(self, *, password: str | None = None) -> None:
        self.password = password
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, with the password if there is one."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._process is not None, "the server is not running"
        return self._process.pid

    def client(self, **options: Any) -> redis.Redis:
        """A new client of this server (close it, or use it with ``with``)."""
        options.setdefault("socket_timeout", 5.0)
        options.setdefault("socket_connect_timeout", 5.0)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **options)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> Self:
        binary = redis_server_binary()
        self._directory = tempfile.TemporaryDirectory(prefix="bearer_m2m-redis-")
        error = "no attempt"
        for _ in range(3):  # another process may take the free port before Redis binds it
            self.port = free_port()
            self._process = self._spawn(binary, self._directory.name)
            try:
                self._wait_until_ready()
                return self
            except _NotStarted as failure:
                error = str(failure)
                self._terminate()
        self.stop()
        raise RuntimeError(f"redis-server did not start: {error}")

    def kill(self) -> None:
        """SIGKILL the server and reap it: Redis is gone, without a goodbye."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
        self._terminate()

    def stop(self) -> None:
        self.kill()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside ----------------------------------------------------------------

    def _spawn(self, binary: str, directory: str) -> subprocess.Popen[bytes]:
        arguments = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", directory,
            "--logfile", os.path.join(directory, "redis.log"),
        ]  # fmt: skip
        if self.password:
            arguments += ["--requirepass", self.password]
        return subprocess.Popen(
            arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def _wait_until_ready(self) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + STARTUP_PATIENCE
        with self.client(socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            while True:
                if process.poll() is not None:
                    stderr = (
                        process.stderr.read().decode(errors="replace") if process.stderr else ""
                    )
                    raise _NotStarted(f"exited with {process.returncode}: {stderr}{self._log()}")
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise _NotStarted(f"no answer to PING within {STARTUP_PATIENCE:.0f} s")
                time.sleep(0.01)

    def _log(self) -> str:
        if self._directory is None:
            return ""
        try:
            with open(os.path.join(self._directory.name, "redis.log"), encoding="utf-8") as log:
                return log.read()[-2000:]
        except OSError:
            return ""

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=STARTUP_PATIENCE)
        if process.stderr is not None:
            process.stderr.close()


class _NotStarted(Exception):
    pass


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh, empty ``redis-server`` for one test, killed afterwards."""
    missing: str | None = None
    try:
        redis_server_binary()
    except RedisServerMissing as error:
        missing = str(error)
    if missing is not None:
        pytest.fail(missing, pytrace=False)
    with RedisServer() as server:
        yield server
