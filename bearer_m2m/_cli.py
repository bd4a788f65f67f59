"""The ``bearer-m2m`` command (also ``python -m bearer_m2m``).

``token`` prints an access token for shell use, ``proof`` the two headers of one
DPoP request, ``inspect`` shows what a token says, ``demo`` and ``serve`` run the
embedded authorization server. Secrets are
never taken from the command line, where ``ps`` would show them: only from the
environment, a file or standard input.

``token`` and ``inspect`` keep their token in a cache file between invocations
(see ``_cli_cache``), so a script that asks before every call spends one token
per lifetime, not one per call; and they bound the retries of a failing token
endpoint by a deadline of their own, shorter than a long-running service's.
The heavy imports (requests, Authlib, cryptography) wait until a token is
needed: ``--version``, ``--help`` and ``inspect --stdin`` never pay for them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from . import __version__
from .errors import (
    ConfigurationError,
    TLSError,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)

if TYPE_CHECKING:
    import configparser

    from ._auth import ClientCredentialsAuth
    from ._policy import RetryPolicy

#: Exit codes a script can rely on.
EXIT_OK = 0
EXIT_USAGE = 2  # bad arguments or configuration
EXIT_REJECTED = 3  # the token endpoint refused the credentials
EXIT_UNAVAILABLE = 4  # the token endpoint could not be reached or kept failing
EXIT_BAD_RESPONSE = 5  # the token endpoint answered something unusable, or another failure

#: The longest line read from standard input (a token or a client secret): 1 MiB.
MAX_STDIN_LINE = 1024 * 1024
#: The largest --config file read: 1 MiB, far beyond a few settings.
MAX_CONFIG_BYTES = 1024 * 1024

#: Flag -> setting name (as in ``from_env``, without the prefix). Every ``{prefix}*``
#: variable reaches ``from_env`` as well, so a setting it learns (DPoP's, say) works from
#: the environment and --config at once; its flag, if it gets one, is one more line here.
SETTING_FLAGS = {
    "token_url": "TOKEN_URL",
    "issuer": "ISSUER",
    "client_id": "CLIENT_ID",
    "client_secret_file": "CLIENT_SECRET_FILE",
    "private_key_file": "PRIVATE_KEY_FILE",
    "cert_file": "CERT_FILE",
    "key_file": "KEY_FILE",
    "audience": "AUDIENCE",
    "resource": "RESOURCE",
    "organization": "ORGANIZATION",
    "scope": "SCOPE",
    "auth_method": "AUTH_METHOD",
    "ca_bundle": "CA_BUNDLE",
    "dpop_key_file": "DPOP_KEY_FILE",
    "dpop_algorithm": "DPOP_ALGORITHM",
}
#: Flag -> setting of the command itself: layered like the client's settings (flags over
#: --config over the environment), then kept from ``from_env``, which does not know them.
COMMAND_FLAGS = {
    "cache": "CACHE",  # off, or a file; unset: one file per configuration (see _cli_cache)
    "deadline": "RETRY_DEADLINE",
}
CONFIG_SECTION = "bearer_m2m"

#: Seconds within which a failing token endpoint is retried by default. A service rides
#: out an outage for the library's 30 s; a command in a script had better say soon that
#: the endpoint is down: 10 s covers one slow answer and the quick retries of a 5xx.
DEFAULT_DEADLINE = 10.0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; its exit code (see ``EXIT_*``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # ``token``, a script's call, builds its own subcommand only (the rest costs ms).
    parser = _parser(only="token" if argv[:1] == ["token"] else None)
    args, rest = parser.parse_known_args(argv)
    if args.command == "serve":
        from .testing._cli import main as serve

        return serve(rest)
    if rest:
        parser.error(_unrecognized(rest))
    if args.command == "demo":
        try:
            from ._demo import run_demo
        except ImportError:
            print(
                "bearer-m2m demo: the demo shows httpx2 (or httpx) beside requests; "
                "install it with: python -m pip install 'bearer-m2m[httpx2]'",
                file=sys.stderr,
            )
            return EXIT_USAGE

        return run_demo(sys.stdout)
    try:
        if args.command == "token":  # shows the library's warnings once it builds a client
            return _token(args, sys.stdout)
        with _library_warnings_on(sys.stderr):
            if args.command == "proof":
                return _proof(args, sys.stdout)
            return _inspect(args, sys.stdout)
    except TokenError as exc:
        print(f"bearer-m2m: error: {exc}", file=sys.stderr)
        return _exit_code(exc)
    except Exception as exc:  # never a traceback: it could show a secret or a token
        print(
            f"bearer-m2m: error: unexpected {type(exc).__name__} (its message is not shown, "
            "as it may contain a secret)",
            file=sys.stderr,
        )
        return EXIT_BAD_RESPONSE


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser; with ``only``, just that subcommand's (the same help and
    errors for it: every subcommand parses its own arguments)."""
    parser = argparse.ArgumentParser(
        prog="bearer-m2m",
        allow_abbrev=False,
        description="OAuth2 client-credentials tokens for requests and httpx.",
        epilog="Exit codes: 0 ok, 2 usage or configuration error, 3 credentials refused, "
        "4 token endpoint unavailable, 5 unusable answer or another failure.",
    )
    parser.add_argument("--version", action="version", version=f"bearer-m2m {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    token = commands.add_parser(
        "token",
        allow_abbrev=False,
        help="print an access token to stdout",
        description='Print a valid access token, e.g. curl -H "Authorization: Bearer '
        '$(bearer-m2m token)" ... Settings come from the flags, then --config, then '
        "BEARER_M2M_* environment variables. The client secret is read from "
        "BEARER_M2M_CLIENT_SECRET, --client-secret-file or --client-secret-stdin, "
        "never from an argument.",
    )
    _add_settings(token)
    token.add_argument(
        "--json",
        action="store_true",
        help='print {"access_token", "token_type", "expires_at"} (epoch seconds, or null)',
    )
    if only is None:
        _add_other_commands(commands)
    return parser


def _add_other_commands(commands: Any) -> None:
    proof = commands.add_parser(
        "proof",
        allow_abbrev=False,
        help="print the Authorization and DPoP headers of one DPoP request",
        description="For a DPoP configuration (a key file: --dpop-key-file or "
        "BEARER_M2M_DPOP_KEY_FILE): print 'Authorization: DPoP <token>' and "
        "'DPoP: <proof>' for one request, e.g. bearer-m2m proof GET URL > headers; "
        "curl -H @headers URL. A proof is good for that method and URL only, once.",
    )
    proof.add_argument("method", help="the request's method, e.g. GET")
    proof.add_argument("url", help="the request's URL (the proof leaves out query and fragment)")
    proof.add_argument(
        "--nonce", help="the API's DPoP-Nonce, when it asked for one (--nonce=VALUE)"
    )
    _add_settings(proof)
    inspect = commands.add_parser(
        "inspect",
        allow_abbrev=False,
        help="show a token's header, claims and expiry (not verified)",
        description="Fetch a token with the same settings as 'token' (or read one from "
        "standard input with --stdin) and show its JOSE header, its claims and when it "
        "expires. The signature is NOT verified: this is for reading, not for trusting.",
    )
    _add_settings(inspect)
    inspect.add_argument("--stdin", action="store_true", help="read the token from standard input")
    commands.add_parser(
        "demo",
        help="run the library against an embedded authorization server and API, and report",
        description="Start a local authorization server and API on 127.0.0.1 and show token "
        "reuse, single flight, refresh ahead, 401 replay and error reporting with requests, "
        "httpx and httpx async.",
    )
    commands.add_parser(
        "serve", help="run the local authorization server and API until interrupted", add_help=False
    )


def _add_settings(parser: argparse.ArgumentParser) -> None:
    endpoint = parser.add_mutually_exclusive_group()
    endpoint.add_argument("--token-url", metavar="URL")
    endpoint.add_argument("--issuer", metavar="URL", help="discover the token endpoint")
    parser.add_argument("--client-id", metavar="ID")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--client-secret-file", metavar="PATH")
    secret.add_argument(
        "--client-secret-stdin", action="store_true", help="read the client secret from stdin"
    )
    parser.add_argument("--private-key-file", metavar="PATH", help="for private_key_jwt")
    parser.add_argument("--cert-file", metavar="PATH", help="client certificate, for mTLS")
    parser.add_argument("--key-file", metavar="PATH", help="its private key")
    parser.add_argument("--audience")
    parser.add_argument("--resource")
    parser.add_argument("--organization")
    parser.add_argument("--scope")
    parser.add_argument("--auth-method", metavar="METHOD")
    parser.add_argument(
        "--ca-bundle", metavar="PATH", help="CA certificates to trust for the token endpoint"
    )
    parser.add_argument(
        "--dpop-key-file",
        metavar="PATH",
        help="bind tokens to this key with DPoP (RFC 9449); see 'proof'",
    )
    parser.add_argument("--dpop-algorithm", metavar="ALG", help="ES256 (default), ES384, ...")
    parser.add_argument(
        "--config", metavar="FILE", help=f"an INI file with a [{CONFIG_SECTION}] section"
    )
    parser.add_argument("--env-prefix", default="BEARER_M2M_", metavar="PREFIX")
    parser.add_argument(
        "--allow-insecure-http", action="store_true", help="allow http to non-loopback hosts"
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--no-cache",
        dest="cache",
        action="store_const",
        const="off",
        help="fetch a new token rather than reuse one (env BEARER_M2M_CACHE=off)",
    )
    cache.add_argument(
        "--cache-file",
        dest="cache",
        metavar="PATH",
        help="keep tokens in this file (env BEARER_M2M_CACHE=PATH; default: one file per "
        "configuration in $XDG_CACHE_HOME/bearer-m2m or ~/.cache/bearer-m2m)",
    )
    parser.add_argument(
        "--deadline",
        metavar="SECONDS",
        help="give up retrying a failing token endpoint after this long "
        f"(env BEARER_M2M_RETRY_DEADLINE; default: {DEFAULT_DEADLINE:g})",
    )


def _token(args: argparse.Namespace, out: TextIO) -> int:
    layered = _layered(args)
    cached = _cached_token(args, layered)  # logs nothing: no handler needed yet
    expires_at: int | None
    if cached is not None:  # the common call of a script: a file read, no client built
        token, token_type, expires_at = cached
    else:
        with _library_warnings_on(sys.stderr):
            auth = _auth_from(args, layered)
            if auth.dpop_thumbprint is not None and not args.json:
                # Pasted into "Authorization: Bearer ...", a DPoP token is refused by every API.
                raise ConfigurationError(
                    "this configuration uses DPoP: its token is sent as 'Authorization: DPoP' "
                    "with a proof made for each request, so it is no use alone; run "
                    "'bearer-m2m proof METHOD URL' for both headers (or 'token --json')"
                )
            token = auth.token()
        token_type = auth._config.token_type  # Bearer, or DPoP with a DPoP key
        expires_at = _expires_at(auth)
    if args.json:
        answer = {"access_token": token, "token_type": token_type, "expires_at": expires_at}
        print(json.dumps(answer), file=out)
    else:
        print(token, file=out)
    return EXIT_OK


def _proof(args: argparse.Namespace, out: TextIO) -> int:
    """The two headers of one DPoP request, the token reused across invocations."""
    auth = _auth_from(args)
    scheme = auth._scheme
    if not scheme.proves_requests:
        raise ConfigurationError(
            "proof needs a DPoP key: --dpop-key-file or BEARER_M2M_DPOP_KEY_FILE"
        )
    try:
        auth._check_url(args.url)
        token = auth.token()
        if args.nonce is not None:
            scheme.heard(args.url, {"DPoP-Nonce": args.nonce})
        headers: dict[str, str] = {}
        scheme.authorize(headers, args.method, args.url, token)
    except ValueError as exc:  # its message quotes nothing of the arguments
        raise ConfigurationError(f"cannot make a proof: {exc}") from None
    for name, value in headers.items():
        print(f"{name}: {value}", file=out)
    return EXIT_OK


#: The layered settings (names without the prefix), the command's cache setting and
#: its deadline: what both the cached fast path and the full client are built from.
Layered = tuple[dict[str, str], str, float]


def _layered(args: argparse.Namespace) -> Layered:
    """Flags over the config file over the environment; read once per invocation
    (``--client-secret-stdin`` consumes standard input)."""
    prefix = args.env_prefix
    settings = {name[len(prefix) :]: v for name, v in os.environ.items() if name.startswith(prefix)}
    if args.config:
        _layer(settings, _config_file(args.config))
    flags = {name: getattr(args, flag) for flag, name in {**SETTING_FLAGS, **COMMAND_FLAGS}.items()}
    if args.client_secret_stdin:
        flags["CLIENT_SECRET"] = _stdin_line("the client secret")
    _layer(settings, {name: value for name, value in flags.items() if value is not None})
    own = {name: settings.pop(name, "") for name in COMMAND_FLAGS.values()}
    deadline = _deadline(own["RETRY_DEADLINE"], prefix)
    if _switched_on(settings.get("DPOP")) and not settings.get("DPOP_KEY_FILE"):
        raise ConfigurationError(
            f"DPoP in the command needs a key file ({prefix}DPOP_KEY_FILE or --dpop-key-file): "
            "a key made for one invocation dies with it, and each call would cost a token"
        )
    return settings, own["CACHE"], deadline


def _auth_from(args: argparse.Namespace, layered: Layered | None = None) -> ClientCredentialsAuth:
    """The client the layered settings describe, validated by ``from_env``."""
    from ._auth import ClientCredentialsAuth
    from ._cli_cache import command_cache

    settings, cache, deadline = _layered(args) if layered is None else layered
    prefix = args.env_prefix
    return ClientCredentialsAuth.from_env(
        prefix,
        environ={prefix + name: value for name, value in settings.items()},
        allow_insecure_http=args.allow_insecure_http,
        retry=_retry_policy(deadline),
        # Waiting for another invocation's fetch takes no longer than one fetch may.
        cache=command_cache(cache or None, os.environ, lock_timeout=deadline),
    )


def _cached_token(args: argparse.Namespace, layered: Layered) -> tuple[str, str, int] | None:
    """The token, its type and ``expires_at`` from the command's cache, read without
    building a client (no requests, Authlib or filelock), or ``None`` whenever that
    is not certain to give what the full path would: then the full path runs.

    The configuration is the one the full path builds: the same ``settings_from_env``
    and ``build_config``, with the constructor's defaults for what the command never
    sets; so the cache key and the sealing key are the library's own. Only a client
    secret with a token URL qualifies: an issuer needs discovery, a private key, a
    certificate or a DPoP key costs the imports this path avoids.
    """
    from ._cli_cache import cached_token

    settings, cache, deadline = layered
    prefix = args.env_prefix
    return cached_token(
        prefix,
        {prefix + name: value for name, value in settings.items()},
        cache or None,
        os.environ,
        lock_timeout=deadline,
        allow_insecure_http=args.allow_insecure_http,
    )


def _switched_on(text: str | None) -> bool:
    from ._env import DPOP_SWITCH

    return text is not None and DPOP_SWITCH.get(text.strip().lower()) is True


def _deadline(text: str, prefix: str) -> float:
    """The retry deadline a setting gives (unset or empty: the default), in seconds.

    Its value is not quoted in the error: a --config file may hold anything."""
    if not text:
        return DEFAULT_DEADLINE
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise ConfigurationError(
            f"--deadline ({prefix}RETRY_DEADLINE) must be a positive number of seconds"
        )
    return seconds


def _retry_policy(deadline: float) -> RetryPolicy:
    """The library's retries (backoff, jitter, Retry-After, at most 4 attempts) within
    the command's deadline."""
    from ._policy import RetryPolicy

    return RetryPolicy(deadline=deadline)


def _expires_at(auth: ClientCredentialsAuth) -> int | None:
    """The epoch second from which the library would no longer hand out the token it
    just gave: the server's expiry less the library's leeway (at most 10 s), the
    instant a script that keeps the token should ask again. ``None`` if unknown.

    The token source schedules on the monotonic clock; this reads its schedule
    (there is no public accessor yet) and moves it onto the wall clock.
    """
    cached = auth._source._cached
    if cached is None:
        return None
    return math.floor(time.time() + (cached.expires_at - time.monotonic()))


@contextlib.contextmanager
def _library_warnings_on(stream: TextIO) -> Iterator[None]:
    """Show the library's warnings (a failing cache, a retried token request) on
    ``stream`` as the command's own, one line each and never with a traceback
    (the library logs none, and its messages hold no secret or token)."""
    import logging

    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("bearer-m2m: warning: %(message)s"))
    logger = logging.getLogger("bearer_m2m")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


#: Settings that replace each other: a layer that sets one hides the others below it.
ALTERNATIVES = (
    ("TOKEN_URL", "ISSUER"),
    ("CLIENT_SECRET", "CLIENT_SECRET_FILE", "PRIVATE_KEY_FILE", "CERT_FILE", "KEY_FILE"),
)


def _layer(settings: dict[str, str], overrides: Mapping[str, str]) -> None:
    for group in ALTERNATIVES:
        if any(name in overrides for name in group):
            for name in group:
                settings.pop(name, None)
    settings.update(overrides)


def _unrecognized(arguments: list[str]) -> str:
    """Name unknown options without their values: someone may have typed a secret."""
    flags = sorted({item.split("=")[0] for item in arguments if item.startswith("-")})
    positional = sum(not item.startswith("-") for item in arguments)
    named = ", ".join(flags + ([f"{positional} more value(s)"] if positional else []))
    return (
        f"unrecognized arguments: {named} (values not shown; secrets are read from "
        "BEARER_M2M_CLIENT_SECRET, --client-secret-file or --client-secret-stdin)"
    )


def _stdin_line(what: str) -> str:
    """One line of standard input, without its line ending, or a ConfigurationError
    that says ``what`` was expected and never quotes what was read.

    Read as bytes and decoded strictly: Python's own text stdin would, under a
    POSIX locale, turn invalid bytes into lone surrogates instead of an error.
    """
    buffer = getattr(sys.stdin, "buffer", None)
    raw: bytes | None = buffer.readline(MAX_STDIN_LINE + 1) if buffer is not None else None
    line: str
    try:
        if raw is not None:
            line = raw.decode("utf-8")
        else:
            line = sys.stdin.readline(MAX_STDIN_LINE + 1)
            line.encode("utf-8")  # lone surrogates are no text either
    except UnicodeError:  # its message would quote a byte of the secret
        raise ConfigurationError(f"{what} on standard input is not UTF-8 text") from None
    if len(raw if raw is not None else line) > MAX_STDIN_LINE:
        raise ConfigurationError(f"{what} on standard input is longer than 1 MiB")
    return line.rstrip("\r\n")


def _config_file(path: str) -> Mapping[str, str]:
    """The ``[bearer_m2m]`` section of an INI file; every way the file can be wrong is a
    ConfigurationError that names the line, never what it holds (a secret, maybe)."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a file name"
        raise ConfigurationError(f"cannot read config file {path!r} ({reason})") from None
    try:
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigurationError(f"config file {path!r} is larger than 1 MiB")
        parser.read_string(raw.decode("utf-8-sig"), source=path)
    except UnicodeDecodeError:
        raise ConfigurationError(f"config file {path!r} is not UTF-8 text") from None
    except configparser.Error as exc:
        raise ConfigurationError(f"config file {path!r}: {_config_problem(exc)}") from None
    if not parser.has_section(CONFIG_SECTION):
        raise ConfigurationError(f"config file {path!r} has no [{CONFIG_SECTION}] section")
    return {key.upper(): value for key, value in parser.items(CONFIG_SECTION)}


def _config_problem(error: configparser.Error) -> str:
    """What is wrong with an INI file, by line number. configparser's own messages
    quote the offending line, which may be a secret; key names are shown only when
    they are settings, as a secret typed in the wrong place could be a key too."""
    import configparser

    from ._env import KNOWN

    if isinstance(error, configparser.DuplicateOptionError):
        known = error.option.upper() in KNOWN or error.option.upper() in COMMAND_FLAGS.values()
        key = repr(error.option) if known else "a key"
        return f"{key} is given twice in [{_section(error.section)}] (line {error.lineno})"
    if isinstance(error, configparser.DuplicateSectionError):
        return f"section [{_section(error.section)}] is given twice (line {error.lineno})"
    if isinstance(error, configparser.MissingSectionHeaderError):
        return f"line {error.lineno} comes before any [section] header"
    if isinstance(error, configparser.ParsingError):
        lines = ", ".join(str(number) for number, _ in error.errors[:10])
        return f"line(s) {lines} are not 'key = value'"
    return f"not a valid INI file ({type(error).__name__})"


def _section(name: str) -> str:
    return name if name == CONFIG_SECTION else "..."


#: Claims that are instants (RFC 7519 4.1.4-6): their label, and how to say one is past.
TIME_CLAIMS = {
    "exp": ("expires", "expired {} ago"),
    "iat": ("issued", "{} ago"),
    "nbf": ("not before", "{} ago"),
}


def _inspect(args: argparse.Namespace, out: TextIO) -> int:
    if args.stdin:
        token = _stdin_line("the token").strip()
    else:
        layered = _layered(args)
        cached = _cached_token(args, layered)
        token = cached[0] if cached is not None else _auth_from(args, layered).token()
    print("NOT VERIFIED: the signature was not checked.", file=out)
    for line in _description(token):
        print(line, file=out)
    return EXIT_OK


def _description(token: str) -> list[str]:
    """What a token says, line by line; never the token itself.

    Whatever a JWT holds (any JSON in its header and claims, any value in ``exp``),
    this says what it can and raises nothing.
    """
    from ._tokens import fingerprint

    jwt = _jwt_parts(token)
    if jwt is None:
        shape = f"{len(token)} characters, fingerprint {fingerprint(token)}"
        return [f"an opaque token (not a JWT): {shape}"]
    header, claims = jwt
    lines = [f"header: {_json_text(header)}"]
    if claims is _UNREADABLE:
        return [
            *lines,
            "claims: not readable (not base64url JSON, or nested too deeply)",
            "expires: not said (the claims cannot be read)",
        ]
    lines.append(f"claims: {_json_text(claims)}")
    if not isinstance(claims, dict):
        return [*lines, "expires: not said (the claims are not a JSON object)"]
    for name, (label, past) in TIME_CLAIMS.items():
        if name in claims:
            lines.append(f"{label}: {_instant(claims[name], past)}")
        elif name == "exp":
            lines.append("expires: not said (no exp claim)")
    return lines


def _jwt_parts(token: str) -> tuple[dict[str, Any], Any] | None:
    """A compact JWS's header (a JSON object) and payload (any JSON, or ``_UNREADABLE``),
    or ``None`` for anything that is not a JWS.

    Decoded here rather than by a JOSE library, which would refuse large headers
    (an ``x5c`` chain) that are worth showing.
    """
    segments = token.split(".")
    if len(segments) != 3:
        return None
    header = _json_segment(segments[0])
    if not isinstance(header, dict):
        return None
    return header, _json_segment(segments[1])


_UNREADABLE = object()


def _json_segment(segment: str) -> Any:
    """One base64url segment's JSON, or ``_UNREADABLE``."""
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (ValueError, RecursionError):  # bad base64 or UTF-8, not JSON, huge integers
        return _UNREADABLE


def _json_text(value: object) -> str:
    try:
        return json.dumps(value, indent=2, sort_keys=True)
    except (ValueError, RecursionError):
        return "(nested too deeply to show)"


def _instant(value: object, past: str) -> str:
    """An epoch-seconds claim as a date and a distance from now, or why it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"not a time (a JSON {_json_type(value)}, not a number)"
    try:
        seconds = float(value)
    except OverflowError:
        return "not a usable time (a number too large for any date)"
    if not math.isfinite(seconds):
        return "not a usable time (not a finite number)"
    import datetime

    try:
        when = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"not a usable time ({seconds:g} s from 1970 is outside years 1 to 9999)"
    left = seconds - datetime.datetime.now(datetime.timezone.utc).timestamp()
    state = f"in {_duration(left)}" if left > 0 else past.format(_duration(-left))
    return f"{when.isoformat(timespec='seconds')} ({state})"


def _json_type(value: object) -> str:
    names = {str: "string", list: "array", dict: "object", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def _exit_code(error: TokenError) -> int:
    if isinstance(error, ConfigurationError):
        return EXIT_USAGE
    if isinstance(error, TokenRequestRejected):
        return EXIT_REJECTED
    if isinstance(error, (TokenEndpointUnavailable, TLSError)):
        return EXIT_UNAVAILABLE
    return EXIT_BAD_RESPONSE
