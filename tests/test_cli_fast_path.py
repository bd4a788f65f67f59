"""``bearer-m2m token`` reads a cached token without building a client (issue 11).

The fast path names the configuration as the library does and opens its sealed
entry; it never takes the refresh lock and imports neither requests, Authlib,
joserfc nor filelock. Whenever it cannot be sure (no entry, one due for refresh,
one sealed for another secret, a configuration it does not handle), the command
goes the full way, so what it prints is what it printed before. Every run here is
a real ``python -m bearer_m2m`` process or ``main()`` against the real local
authorization server, whose token requests are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bearer_m2m import ClientCredentialsAuth, FileCache
from bearer_m2m._cli import EXIT_OK, EXIT_REJECTED
from bearer_m2m._cli_cache import DirectoryCache, cached_token
from bearer_m2m._policy import RefreshPolicy
from bearer_m2m.caches._shared import SharedTokens, _Stored, cache_key
from bearer_m2m.testing import AuthorizationServer
from tests.test_cli_cache import AUDIENCE, cache_home, settings

__all__ = ["cache_home", "settings"]  # the command's fixtures, written once there
#: Modules a cached read must not import: what building a client costs.
HEAVY = ("requests", "authlib", "joserfc", "filelock")

#: Runs the command in this interpreter and reports, on stderr's last line, which of
#: HEAVY it imported.
PROBE = f"""
import json, sys
from bearer_m2m._cli import main
code = main(sys.argv[1:])
sys.stdout.flush()
heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)
print(json.dumps({{"code": code, "imported": heavy}}), file=sys.stderr)
"""


def run(
    argv: list[str], settings: dict[str, str], **options: object
) -> subprocess.CompletedProcess[str]:
    """``bearer-m2m ARGV`` as its own process."""
    return subprocess.run(
        [sys.executable, "-m", "bearer_m2m", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **settings},
        stdin=subprocess.DEVNULL,
        **options,  # type: ignore[call-overload]
    )


def probe(argv: list[str], settings: dict[str, str]) -> tuple[int, str, str, list[str]]:
    """``bearer-m2m ARGV`` in a fresh interpreter: exit code, stdout, the rest of
    stderr, and which of HEAVY it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **settings},
        stdin=subprocess.DEVNULL,
    )
    *rest, last = done.stderr.splitlines()
    report = json.loads(last)
    return report["code"], done.stdout, "\n".join(rest), report["imported"]


def write_config(path: Path, **values: str) -> str:
    lines = ["[bearer_m2m]", *(f"{name} = {value}" for name, value in values.items())]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# -- found, and cheap ------------------------------------------------------------------------


def test_a_token_the_full_path_stored_is_read_without_requests_or_authlib(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    code, first, err, imported = probe(["token"], settings)
    assert (code, err) == (EXIT_OK, "") and m2m_server.token_requests == 1
    assert {"requests", "authlib"} <= set(imported)  # no entry yet: the full path fetched
    code, second, err, imported = probe(["token"], settings)
    assert (code, err, second) == (EXIT_OK, "", first)
    assert imported == [] and m2m_server.token_requests == 1


@pytest.mark.parametrize(
    "layout",
    ["environment", "config file", "flags", "secret file", "basic, scope and organization"],
)
def test_the_fast_path_names_the_configuration_as_the_library_does(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    cache_home: Path,
    tmp_path: Path,
    layout: str,
) -> None:
    """A token the library stored (a ``ClientCredentialsAuth`` with the command's cache)
    is found by the fast path, whichever layers carried the settings."""
    server = m2m_server
    secret_file = tmp_path / "secret"
    secret_file.write_text(server.client.client_secret + "\n")
    options: dict[str, str] = {"audience": AUDIENCE}
    env = {"BEARER_M2M_TOKEN_URL": "https://wrong.example/token", **settings}
    argv = ["token"]
    if layout == "config file":
        env = {"BEARER_M2M_CLIENT_SECRET": settings["BEARER_M2M_CLIENT_SECRET"]}
        config = write_config(
            tmp_path / "m2m.ini",
            token_url=server.token_url,
            client_id=server.client.client_id,
            audience=AUDIENCE,
        )
        argv += ["--config", config]
    elif layout == "flags":
        env = {**env, "BEARER_M2M_AUDIENCE": "https://other.example"}
        argv += ["--token-url", server.token_url, "--audience", AUDIENCE]
    elif layout == "secret file":
        del env["BEARER_M2M_CLIENT_SECRET"]
        argv += ["--client-secret-file", str(secret_file), "--token-url", server.token_url]
    elif layout == "basic, scope and organization":
        options.update(scope="read write", organization="org_1", auth_method="client_secret_basic")
        env.update(
            BEARER_M2M_SCOPE="read  write",  # split and joined as the library does
            BEARER_M2M_ORGANIZATION="org_1",
            BEARER_M2M_AUTH_METHOD="client_secret_basic",
        )
        argv += ["--token-url", server.token_url]
    else:
        env["BEARER_M2M_TOKEN_URL"] = server.token_url

    library = ClientCredentialsAuth(
        server.token_url,
        client_id=server.client.client_id,
        client_secret=server.client.client_secret,
        cache=DirectoryCache(str(cache_home / "bearer-m2m"), lock_timeout=5),
        **options,  # type: ignore[arg-type]
    )
    stored = library.token()
    assert server.token_requests == 1
    code, out, err, imported = probe(argv, env)
    assert (code, err, out.strip()) == (EXIT_OK, "", stored)
    assert imported == [] and server.token_requests == 1


def test_token_json_from_the_cache_says_what_the_full_path_said(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    code, out, _, imported = probe(["token", "--json"], settings)
    full = json.loads(out)
    assert code == EXIT_OK and "requests" in imported
    code, out, err, imported = probe(["token", "--json"], settings)
    fast = json.loads(out)
    assert (code, err, imported) == (EXIT_OK, "", [])
    assert (fast["access_token"], fast["token_type"]) == (full["access_token"], "Bearer")
    # The same instant (the library's leeway before expiry), up to the rounding to seconds.
    assert abs(fast["expires_at"] - full["expires_at"]) <= 1
    assert m2m_server.token_requests == 1


def test_inspect_reads_the_cached_token_the_same_way(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    assert probe(["token"], settings)[0] == EXIT_OK
    code, out, err, imported = probe(["inspect"], settings)
    assert (code, err, imported) == (EXIT_OK, "", [])
    assert out.startswith("NOT VERIFIED") and m2m_server.token_requests == 1


# -- any doubt: the full path ----------------------------------------------------------------


def test_a_token_due_for_refresh_is_not_printed_by_the_fast_path(
    m2m_server: AuthorizationServer, settings: dict[str, str], cache_home: Path
) -> None:
    old = probe(["token"], settings)[1].strip()
    config = ClientCredentialsAuth(
        m2m_server.token_url,
        client_id=settings["BEARER_M2M_CLIENT_ID"],
        client_secret=settings["BEARER_M2M_CLIENT_SECRET"],
        audience=AUDIENCE,
    )._config
    key = cache_key(config)
    directory = DirectoryCache(str(cache_home / "bearer-m2m"), lock_timeout=1)
    store = FileCache(directory.file_path(key))
    # 30 s left of an hour: inside the 60 s refresh-ahead window.
    store.store(
        key,
        SharedTokens(store, config, RefreshPolicy())._seal(_Stored(old, time.time() + 30, 3600.0)),
        30,
    )
    assert peek(settings) is None

    code, new, err, imported = probe(["token"], settings)
    assert (code, err) == (EXIT_OK, "") and new.strip() != old
    assert "requests" in imported and m2m_server.token_requests == 2
    code, again, _, imported = probe(["token"], settings)
    assert (code, again, imported) == (EXIT_OK, new, [])


def test_an_entry_sealed_for_another_secret_is_never_printed(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    """The cache key leaves the secret out, so a wrong secret names the same file; its
    entry does not open, and the server refuses the wrong secret."""
    assert probe(["token"], settings)[0] == EXIT_OK
    wrong = {**settings, "BEARER_M2M_CLIENT_SECRET": "not-the-secret"}
    code, out, err, _ = probe(["token"], wrong)
    assert (code, out) == (EXIT_REJECTED, "")
    assert "not-the-secret" not in err and m2m_server.token_requests == 2


def test_no_cache_and_another_configuration_are_not_served_from_the_cache(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    first = probe(["token"], settings)[1]
    code, out, _, imported = probe(["token", "--no-cache"], settings)
    assert code == EXIT_OK and out != first and "requests" in imported
    code, out, _, imported = probe(["token", "--scope", "read"], settings)
    assert code == EXIT_OK and out != first and "requests" in imported
    assert m2m_server.token_requests == 3
    assert peek({**settings, "BEARER_M2M_CACHE": "off"}) is None


def test_an_unknown_setting_is_warned_of_once(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    unknown = {**settings, "BEARER_M2M_AUDIENCES": "typo"}
    for expected_requests in (1, 1):  # fetched, then from the cache: one warning each time
        done = run(["token"], unknown)
        assert done.returncode == EXIT_OK and m2m_server.token_requests == expected_requests
        assert done.stderr.count("ignoring unknown settings: BEARER_M2M_AUDIENCES") == 1


def test_a_secret_file_that_is_a_pipe_is_read_once(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    """``--client-secret-file <(...)`` can be read only once: the fast path leaves it
    to the full path, which then finds the secret there."""
    env = {k: v for k, v in settings.items() if k != "BEARER_M2M_CLIENT_SECRET"}
    for expected_requests in (1, 1):
        reader, writer = os.pipe()
        os.write(writer, settings["BEARER_M2M_CLIENT_SECRET"].encode() + b"\n")
        os.close(writer)
        try:
            done = run(
                ["token", "--client-secret-file", f"/dev/fd/{reader}"], env, pass_fds=(reader,)
            )
        finally:
            os.close(reader)
        assert (done.returncode, done.stderr) == (EXIT_OK, "")
        assert done.stdout.count(".") == 2 and m2m_server.token_requests == expected_requests


def peek(settings: dict[str, str]) -> tuple[str, str, int] | None:
    """The fast path's answer in this process, for the environment ``settings``."""
    cache = settings.get("BEARER_M2M_CACHE") or None
    return cached_token(
        "BEARER_M2M_", settings, cache, os.environ, lock_timeout=1.0, allow_insecure_http=False
    )


def test_the_token_only_parser_gives_token_the_same_help_and_usage() -> None:
    """``bearer-m2m token ...`` builds only its own subcommand: its help, and the usage
    line of the command's errors, are the full parser's."""
    from bearer_m2m._cli import _parser

    def token_help(parser: argparse.ArgumentParser) -> str:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return str(action.choices["token"].format_help())
        raise AssertionError("no subcommands")

    only, full = _parser(only="token"), _parser()
    assert token_help(only) == token_help(full)
    assert only.format_usage() == full.format_usage()
    assert only.parse_args(["token", "--json", "--scope", "a b"]) == full.parse_args(
        ["token", "--json", "--scope", "a b"]
    )
