"""Small loopback HTTP servers for tests that cross a real socket.

``TokenServer`` plays a client-credentials token endpoint whose answers a test
can script; ``ApiServer`` plays a protected API that accepts only the tokens
the token server issued and not revoked. Both listen on 127.0.0.1, on a free
port, in a background thread. ``HarnessAPI`` is bearer_m2m.testing's
``ProtectedAPI`` with cookies set by its 401s and a redirect that checks the token.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from bearer_m2m.testing import ProtectedAPI

if TYPE_CHECKING:
    from bearer_m2m.testing._http import Request, Response


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Base:
    def __init__(self, host: str = "127.0.0.1") -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                reply = owner.handle(self.command, self.path, dict(self.headers), body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = _serve

        self._httpd = _Server((host, 0), Handler)
        self.port = self._httpd.server_address[1]
        self.origin = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        raise NotImplementedError

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def json_reply(payload: object, status: int = 200, **headers: str) -> Reply:
    return Reply(
        status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers}
    )


class TokenServer(_Base):
    """A token endpoint at ``/oauth/token`` that issues ``tok-1``, ``tok-2``...

    ``script`` holds replies for the next requests (a callable or a ``Reply``);
    when it is empty a fresh token is issued with ``expires_in``.
    """

    def __init__(self, expires_in: float | None = 3600, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self.script: list[Reply] = []
        #: Cleared by a test to hold every answer until it is set again.
        self.gate = threading.Event()
        self.gate.set()
        self.requests: list[dict[str, str]] = []
        self.issued: list[str] = []
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__()
        self.token_url = f"{self.origin}/oauth/token"

    @property
    def count(self) -> int:
        return len(self.requests)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self.requests.append(dict(parse_qsl(body.decode())))
        self.gate.wait(timeout=30)
        with self._lock:
            if self.script:
                return self.script.pop(0)
            token = f"tok-{next(self._serial)}"
            self.issued.append(token)
        payload: dict[str, object] = {"access_token": token, "token_type": "Bearer"}
        if self.expires_in is not None:
            payload["expires_in"] = self.expires_in
        reply = json_reply(payload)
        reply.delay = self.delay
        return reply


class ApiServer(_Base):
    """A protected API: 200 for a token ``accepts`` approves, else 401.

    ``/redirect-to?url=...`` answers 302 to that URL, for redirect tests.
    """

    def __init__(self, accepts: Callable[[str], bool], host: str = "127.0.0.1") -> None:
        self.accepts = accepts
        self.seen: list[tuple[str, str | None, bytes]] = []
        self.unauthorized = 0
        self._lock = threading.Lock()
        super().__init__(host)

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        authorization = headers.get("Authorization")
        with self._lock:
            self.seen.append((path, authorization, body))
        if path.startswith("/redirect-to?url="):
            return Reply(302, headers={"Location": path.split("=", 1)[1]})
        token = (authorization or "").removeprefix("Bearer ")
        if authorization and self.accepts(token):
            return Reply(200, b"ok", {"Content-Type": "text/plain"})
        with self._lock:
            self.unauthorized += 1
        return Reply(401, b"", {"WWW-Authenticate": 'Bearer error="invalid_token"'})


@contextmanager
def serving(server: _Base) -> Iterator[_Base]:
    try:
        yield server
    finally:
        server.close()


class HarnessAPI(ProtectedAPI):
    """bearer_m2m.testing's ``ProtectedAPI`` with two habits of real deployments.

    * Every 401 sets ``affinity=401-<n>`` (the n-th 401), as a load balancer pinning a
      client to a node would; a replay after a 401 should carry it. ``cookies`` holds
      each request's Cookie header, in order (``None``: it sent none).
    * ``/guarded-redirect?to=URL`` checks the token like any other path and, when it
      is valid, answers 302 to ``URL`` (``ProtectedAPI``'s ``/redirect`` ignores it):
      the answer to a replay can be a redirect.
    """

    COOKIE = "affinity"
    GUARDED_REDIRECT = "/guarded-redirect"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.cookies: list[str | None] = []
        self._refusals = itertools.count(1)
        self._cookie_lock = threading.Lock()

    def handle(self, request: Request) -> Response:
        with self._cookie_lock:
            self.cookies.append(request.headers.get("Cookie"))
        if request.path == self.GUARDED_REDIRECT:
            response = super().handle(replace(request, target="/guarded"))
            if response.status == 200:
                response = replace(
                    response, status=302, body=b"", headers=[("Location", request.query["to"])]
                )
        else:
            response = super().handle(request)
        if response.status != 401:
            return response
        cookie = f"{self.COOKIE}=401-{next(self._refusals)}; Path=/"
        return replace(response, headers=[*response.headers, ("Set-Cookie", cookie)])
