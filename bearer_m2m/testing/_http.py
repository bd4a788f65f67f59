"""A tiny threaded HTTP server on 127.0.0.1, the base of the test servers.

The standard library's :class:`~http.server.ThreadingHTTPServer` does the work;
this module adds what tests need around it: a background thread, a free port by
default, clean start and stop, optional TLS, and a request/response pair of
plain values so that the servers built on it are written as functions of a
request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
#: Seconds a client has to complete the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0

logger = logging.getLogger("bearer_m2m.testing")

Headers = Sequence[tuple[str, str]]
_RequestType = socket.socket | tuple[bytes, socket.socket]  # as socketserver has it
_Self = TypeVar("_Self", bound="LoopbackServer")


@dataclass(frozen=True)
class Request:
    """One HTTP request, read in full.

    ``client_certificate`` is the DER certificate the client presented on a TLS
    connection that asked for one (``None``: none asked for, or none given).
    The server's TLS context has checked it against its trust store.
    """

    method: str
    target: str  # the path and query, as sent
    headers: Message
    body: bytes
    client_certificate: bytes | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.target).query))


@dataclass(frozen=True)
class Response:
    """What to answer. A handler returns ``None`` instead to drop the connection."""

    status: int
    body: bytes = b""
    headers: Headers = ()

    @classmethod
    def json(cls, payload: object, status: int = 200, headers: Headers = ()) -> Response:
        body = json.dumps(payload).encode()
        return cls(status, body, [("Content-Type", "application/json"), *headers])


Handler = Callable[[Request], Response | None]


class LoopbackServer:
    """An HTTP server on 127.0.0.1 that answers each request with :meth:`handle`.

    Every connection gets a daemon thread, so a slow answer (or a client that
    keeps its connection open) never holds up the others or the interpreter's
    exit. Use it as a context manager, or call :meth:`start` and :meth:`stop`.

    With ``tls`` (a server-side :class:`ssl.SSLContext`) it serves HTTPS; the
    handshake happens on the connection's own thread.
    """

    def __init__(self, port: int = 0, *, tls: ssl.SSLContext | None = None) -> None:
        self._port = port
        self._ssl_context = tls
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # -- lifecycle ----------------------------------------------------------------

    def start(self: _Self) -> _Self:
        """Bind the port and serve in a background thread; a running server is left as is."""
        if self._stopping.is_set():
            raise RuntimeError(f"{type(self).__name__} was stopped; create a new one")
        if self._httpd is None:
            httpd = _HTTPServer((HOST, self._port), self._answer, self._ssl_context)
            self._httpd = httpd
            self._port = httpd.server_address[1]
            self._bound()
            self._thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}:{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port. Safe to call more than once.

        A stopped server answers nothing more: requests in progress (delayed
        ones included) are dropped and kept-alive connections closed, so that a
        client sees the server go down as it would a real one.
        """
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
            httpd.close_connections()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    close = stop

    def __enter__(self: _Self) -> _Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/`` (``https://`` with TLS), once started."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{HOST}:{self._port}/"

    def __repr__(self) -> str:
        where = self.url if self._httpd is not None else "not running"
        return f"<{type(self).__name__} {where}>"

    # -- for subclasses -------------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        """Answer ``request``; ``None`` closes the connection without an answer."""
        raise NotImplementedError

    def _bound(self) -> None:
        """Called once the port is known, before the first request is served."""

    def _sleep(self, seconds: float) -> None:
        """Wait, unless the server stops first: a delayed answer never delays ``stop``."""
        self._stopping.wait(seconds)

    def _answer(self, request: Request) -> Response | None:
        try:
            response = self.handle(request)
        except Exception:
            # The traceback names no token or secret: handlers never put them in errors.
            logger.exception(
                "%s failed on %s %s", type(self).__name__, request.method, request.path
            )
            response = Response.json(
                {"error": "server_error", "error_description": "the test server failed"}, 500
            )
        return None if self._stopping.is_set() else response


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Bursts of a thousand simultaneous connections queue rather than get refused.
    request_queue_size = 1024

    def __init__(
        self, address: tuple[str, int], handler: Handler, tls: ssl.SSLContext | None = None
    ) -> None:
        self.handler = handler
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def process_request(self, request: _RequestType, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: _RequestType, client_address: Any) -> None:
        """With TLS, the handshake first, here on the connection's thread: a slow or
        failed handshake holds up no other connection."""
        if self.tls is None or not isinstance(request, socket.socket):
            super().process_request_thread(request, client_address)
            return
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            # Wrapping detaches ``request``: the TLS socket takes its place.
            connection = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError) as error:
            # A client that refuses our certificate, or that we refuse (an unknown
            # client certificate): the client sees why; nothing to report here.
            logger.debug("TLS handshake with %s failed: %s", client_address, error)
            self.shutdown_request(request)
            return
        with self._connections_lock:
            self._connections.discard(request)
            self._connections.add(connection)
        super().process_request_thread(connection, client_address)

    def shutdown_request(self, request: _RequestType) -> None:
        if isinstance(request, socket.socket):
            with self._connections_lock:
                self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open connection; their threads then read the end of input and finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: _RequestType, client_address: Any) -> None:
        """A client that hung up is no error; anything else is logged, not printed."""
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError):
            logger.debug("TLS connection from %s failed: %s", client_address, error)
        elif not isinstance(error, ConnectionError):
            logger.error("connection from %s failed", client_address, exc_info=error)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    disable_nagle_algorithm = True  # small answers leave at once
    timeout = 60  # an idle kept-alive connection frees its thread eventually
    server: _HTTPServer

    def log_message(self, format: str, *args: object) -> None:
        """Silent: a request line may carry a token in its query."""

    def _serve(self) -> None:
        certificate = None
        if isinstance(self.connection, ssl.SSLSocket):
            certificate = self.connection.getpeercert(binary_form=True)
        request = Request(self.command, self.path, self.headers, self._read_body(), certificate)
        response = self.server.handler(request)
        if response is None:
            self.close_connection = True  # the socket closes with no answer
            return
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _serve

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunks()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_chunks(self) -> bytes:
        """A chunked body (httpx streams generators this way), trailers skipped."""
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():
            pass
        return b"".join(chunks)
