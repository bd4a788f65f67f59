"""The ``bearer-m2m`` command (also ``python -m bearer_m2m``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bearer-m2m",
        description="OAuth2 client-credentials tokens for requests and httpx.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="run the library against an embedded authorization server and API, and report",
        description="Start a local authorization server and API on 127.0.0.1 and show token "
        "reuse, single flight, refresh ahead, 401 replay and error reporting with requests, "
        "httpx and httpx async.",
    )
    commands.add_parser(
        "serve",
        help="run the local authorization server and API until interrupted",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        from .testing._cli import main as serve

        return serve(rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from ._demo import run_demo

    return run_demo(sys.stdout)
