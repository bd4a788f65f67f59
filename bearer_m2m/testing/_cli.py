"""``serve``: run the test authorization server and a protected API until stopped.

The client secret is a throwaway, made at random for this process and good
only against this loopback server; it is printed (labelled as such) so that
it can be pasted, or, with ``--secret-file``, written to a file readable by
its owner only and left out of the output, for scripts and CI logs.

With ``--tls`` both servers speak HTTPS with certificates from a CA made for
the process (its file is printed as ``ca_bundle``), and the token endpoint's
mutual-TLS alias is printed as ``mtls_token_url``.

While it serves, each token request and each API request is one line on the
output (the client, the status, the token's fingerprint: never a token or a
secret), and the counters are printed when it stops, so that a developer
running a client against it sees what the client cost.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote

from .._tokens import fingerprint
from ._api import ProtectedAPI
from ._authorization_server import AuthorizationServer
from ._clients import check_lifetime, printable
from ._http import Request, Response


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM, then exit 0 (1 if a port cannot be had)."""
    options = _parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        serve(options, stop, sys.stdout)
    except OSError as exc:
        print(f"bearer-m2m serve: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def serve(options: argparse.Namespace, stop: threading.Event, out: TextIO) -> None:
    """Start the servers, describe them on ``out``, and serve until ``stop`` is set."""
    tls = bool(getattr(options, "tls", False))
    log = RequestLog(out)
    server = _LoggedAuthorizationServer(
        log,
        port=options.port,
        token_lifetime=options.token_lifetime,
        tls=tls,
        expiry_skew=options.expiry_skew,
    )
    api_options = {"port": options.api_port, "tls": tls}
    with server, _LoggedAPI(log, server, options.audience, **api_options) as api:
        client = server.client
        if options.secret_file:
            _write_private(options.secret_file, client.client_secret + "\n")
            secret_line = f"client_secret  in {options.secret_file}"
        else:
            secret_line = f"client_secret  {client.client_secret}  (throwaway: this process only)"
        lines = [
            "bearer_m2m test authorization server - Ctrl-C to stop",
            f"  token_url      {server.token_url}",
            f"  issuer         {server.issuer}",
            f"  jwks_url       {server.jwks_url}",
            f"  api_url        {api.url}  (audience {api.audience})",
        ]
        if tls:
            lines += [
                f"  mtls_token_url {server.mtls_token_url}",
                f"  ca_bundle      {server.ca_bundle}",
            ]
        lines += [
            f"  client_id      {client.client_id}",
            f"  {secret_line}",
        ]
        log.write("\n".join(lines))
        # A timeout keeps the wait responsive to signals on every platform.
        while not stop.wait(timeout=0.5):
            pass
        log.write(
            f"stopped: {server.token_requests} token request(s), {server.tokens_issued} "
            f"token(s) issued; {api.requests} API request(s), {api.unauthorized} answered 401"
        )


class RequestLog:
    """One line per request on ``out``, each written whole: the servers answer on a
    thread per connection. A line names the client, the status and the token by its
    fingerprint; a token or a secret never reaches it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            print(text, file=self._out, flush=True)

    def token_request(self, request: Request, response: Response | None) -> None:
        answer = _json_body(response)
        issued = answer.get("access_token")
        client = _claimed_client(issued) or _requesting_client(request)
        if isinstance(issued, str):
            outcome = f"token={fingerprint(issued)}"
        else:
            outcome = f"error={printable(str(answer.get('error', '-')))[:40]}"
        self.write(f"token  {_status(response)}  client={client or '-'}  {outcome}")

    def api_request(self, request: Request, response: Response | None) -> None:
        _, _, token = (request.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        shown = fingerprint(token) if token else "-"
        client = _claimed_client(token) or "-"
        where = f"{printable(request.method)[:10]} {printable(request.path)[:80]}"
        self.write(f"api    {_status(response)}  client={client}  token={shown}  {where}")


class _LoggedAuthorizationServer(AuthorizationServer):
    """The test server, with each token request (mutual-TLS alias included) logged."""

    def __init__(self, log: RequestLog, **options: Any) -> None:
        super().__init__(**options)
        self._log = log

    def _token_endpoint(self, request: Request, url: str | None = None) -> Response | None:
        response = super()._token_endpoint(request, url)
        self._log.token_request(request, response)
        return response


class _LoggedAPI(ProtectedAPI):
    """The protected API, with each request logged."""

    def __init__(self, log: RequestLog, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._log = log

    def handle(self, request: Request) -> Response:
        response = super().handle(request)
        self._log.api_request(request, response)
        return response


def _status(response: Response | None) -> str:
    return "---" if response is None else str(response.status)  # None: the connection was dropped


def _json_body(response: Response | None) -> dict[str, Any]:
    try:
        answer = json.loads(response.body) if response is not None else None
    except ValueError:  # an injected HTML page or broken JSON
        return {}
    return answer if isinstance(answer, dict) else {}


def _claimed_client(token: object) -> str | None:
    """The ``client_id`` claim of a JWT, unverified (the log shows who a token says it
    is for, even a refused one), made printable; ``None`` for anything else."""
    if not isinstance(token, str) or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (ValueError, RecursionError):
        return None
    client = claims.get("client_id") if isinstance(claims, dict) else None
    return printable(client)[:80] if isinstance(client, str) else None


def _requesting_client(request: Request) -> str | None:
    """The client id a refused token request named: its form's, else its Basic user's."""
    named = parse_qs(request.body.decode("utf-8", "replace")).get("client_id")
    if named:
        return printable(named[0])[:80]
    scheme, _, credentials = (request.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None
    return printable(unquote(user.partition(":")[0]))[:80] or None


def _write_private(path: str, text: str) -> None:
    """Write ``text`` to a file only its owner can read, replacing any old one."""
    if os.path.lexists(path):
        os.unlink(path)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)


def _lifetime(text: str) -> float:
    try:
        return check_lifetime(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError("a number of seconds, at least 1") from None


def _skew(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError("a non-negative number of seconds")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bearer-m2m serve",
        description="Run a local OAuth2 authorization server and a protected API for tests "
        "and demos, on 127.0.0.1.",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="token server port (default: a free one)"
    )
    parser.add_argument("--api-port", type=int, default=0, help="API port (default: a free one)")
    parser.add_argument(
        "--token-lifetime",
        type=_lifetime,
        default=3600.0,
        metavar="SECONDS",
        help="lifetime of issued tokens (default: 3600)",
    )
    parser.add_argument(
        "--expiry-skew",
        type=_skew,
        default=0.0,
        metavar="SECONDS",
        help="the API refuses each token up to this long before its expires_in ends, "
        "as servers that floor iat do (default: 0)",
    )
    parser.add_argument(
        "--audience",
        default="https://api.example",
        help="audience the API accepts (default: https://api.example)",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS (a throwaway CA; its file is printed) and a mutual-TLS token endpoint",
    )
    parser.add_argument(
        "--secret-file",
        metavar="PATH",
        help="write the client secret to PATH (mode 600) instead of printing it",
    )
    return parser
