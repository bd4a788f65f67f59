"""``serve``: run the test authorization server and a protected API until stopped.

The client secret is a throwaway, made at random for this process and good
only against this loopback server; it is printed (labelled as such) so that
it can be pasted, or, with ``--secret-file``, written to a file readable by
its owner only and left out of the output, for scripts and CI logs.

With ``--tls`` both servers speak HTTPS with certificates from a CA made for
the process (its file is printed as ``ca_bundle``), and the token endpoint's
mutual-TLS alias is printed as ``mtls_token_url``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TextIO

from ._api import ProtectedAPI
from ._authorization_server import AuthorizationServer
from ._clients import check_lifetime


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
    server = AuthorizationServer(
        port=options.port,
        token_lifetime=options.token_lifetime,
        tls=tls,
        expiry_skew=options.expiry_skew,
    )
    with server, ProtectedAPI(server, options.audience, port=options.api_port, tls=tls) as api:
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
        print("\n".join(lines), file=out, flush=True)
        # A timeout keeps the wait responsive to signals on every platform.
        while not stop.wait(timeout=0.5):
            pass


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
