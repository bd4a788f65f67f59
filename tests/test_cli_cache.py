"""``bearer-m2m token`` spends one token per lifetime, not one per call (issue 11).

The command keeps its token in a sealed ``FileCache`` file per configuration
under ``$XDG_CACHE_HOME/bearer-m2m``. Every test points ``XDG_CACHE_HOME`` at a
directory of its own and counts token requests on the real local server; the
runs that are about processes (a shell loop, parallel calls) are real
``python -m bearer_m2m`` processes, the others call ``main()`` in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

import bearer_m2m
from bearer_m2m import ClientCredentialsAuth, FileCache, RetryPolicy
from bearer_m2m._cli import DEFAULT_DEADLINE, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE, main
from bearer_m2m._cli_cache import DirectoryCache
from bearer_m2m._policy import RefreshPolicy
from bearer_m2m._tokens import fingerprint
from bearer_m2m.caches._shared import SharedTokens, _Stored, cache_key
from bearer_m2m.testing import AuthorizationServer
from tests.servers import TokenServer

AUDIENCE = "https://api.example"  # the session server's default audience


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``XDG_CACHE_HOME`` for this test alone, and no ``BEARER_M2M_*`` setting but ours."""
    for name in list(os.environ):
        if name.startswith("BEARER_M2M_"):
            monkeypatch.delenv(name)
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def settings(m2m_server: AuthorizationServer, cache_home: Path) -> dict[str, str]:
    """The session server's client, as the environment of an invocation."""
    return {
        "BEARER_M2M_TOKEN_URL": m2m_server.token_url,
        "BEARER_M2M_CLIENT_ID": m2m_server.client.client_id,
        "BEARER_M2M_CLIENT_SECRET": m2m_server.client.client_secret,
        "BEARER_M2M_AUDIENCE": AUDIENCE,
    }


def command(argv: list[str]) -> list[str]:
    return [sys.executable, "-m", "bearer_m2m", *argv]


def environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment (``XDG_CACHE_HOME`` included) with ``settings``."""
    return {**os.environ, **settings}


def run(argv: list[str], settings: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bearer-m2m ARGV`` as its own process, as a shell script runs it."""
    return subprocess.run(
        command(argv),
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(settings),
        stdin=subprocess.DEVNULL,
    )


def run_main(
    argv: list[str],
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    """``main(ARGV)`` in this process, with ``settings`` in the environment."""
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def cache_files(cache_home: Path) -> list[Path]:
    return sorted((cache_home / "bearer-m2m").glob("*.token"))


# -- one token per lifetime ---------------------------------------------------------------------


def test_twenty_invocations_in_a_row_cost_one_token_request(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    tokens = set()
    for _ in range(20):
        done = run(["token"], settings)
        assert (done.returncode, done.stderr) == (EXIT_OK, "")
        tokens.add(done.stdout)
    assert m2m_server.token_requests == 1
    assert len(tokens) == 1


def test_twenty_parallel_invocations_cost_one_token_request(
    m2m_server: AuthorizationServer, settings: dict[str, str]
) -> None:
    processes = [
        subprocess.Popen(
            command(["token"]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=environment(settings),
        )
        for _ in range(20)
    ]
    results = [(process.communicate(timeout=180), process.returncode) for process in processes]
    assert all(code == EXIT_OK and err == "" for (_, err), code in results)
    assert len({out for (out, _), _ in results}) == 1
    assert m2m_server.token_requests == 1


def test_no_cache_costs_one_token_request_per_call(
    m2m_server: AuthorizationServer, settings: dict[str, str], cache_home: Path
) -> None:
    for _ in range(3):
        assert run(["token", "--no-cache"], settings).returncode == EXIT_OK
    assert m2m_server.token_requests == 3
    for _ in range(2):
        assert run(["token"], {**settings, "BEARER_M2M_CACHE": "off"}).returncode == EXIT_OK
    assert m2m_server.token_requests == 5
    assert not cache_home.exists()


def test_the_cache_flags_win_over_the_environment(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    chosen = tmp_path / "chosen.cache"
    off = {**settings, "BEARER_M2M_CACHE": "off"}
    for _ in range(2):
        code, _, _ = run_main(["token", "--cache-file", str(chosen)], off, monkeypatch, capsys)
        assert code == EXIT_OK
    assert m2m_server.token_requests == 1 and chosen.is_file()
    elsewhere = {**settings, "BEARER_M2M_CACHE": str(chosen)}
    code, _, _ = run_main(["token", "--no-cache"], elsewhere, monkeypatch, capsys)
    assert code == EXIT_OK and m2m_server.token_requests == 2
    code, _, _ = run_main(["token"], elsewhere, monkeypatch, capsys)  # the env's file, reused
    assert code == EXIT_OK and m2m_server.token_requests == 2


def test_inspect_uses_the_token_that_token_cached(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main(["token"], settings, monkeypatch, capsys)[0] == EXIT_OK
    code, out, _ = run_main(["inspect"], settings, monkeypatch, capsys)
    assert code == EXIT_OK and out.startswith("NOT VERIFIED")
    assert m2m_server.token_requests == 1


def test_each_configuration_has_its_own_file(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    cache_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, first, _ = run_main(["token"], settings, monkeypatch, capsys)
    assert code == EXIT_OK
    code, other, _ = run_main(["token", "--scope", "read"], settings, monkeypatch, capsys)
    assert code == EXIT_OK and other != first
    files = cache_files(cache_home)
    assert len(files) == 2 and m2m_server.token_requests == 2
    for file in files:  # named by a hash: neither the client nor the audience shows
        assert len(file.stem) == 40 and all(c in "0123456789abcdef" for c in file.stem)


# -- the file ---------------------------------------------------------------------------------


def test_the_cache_directory_and_files_are_private(
    settings: dict[str, str],
    cache_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    previous = os.umask(0o022)  # a usual umask, which would leave new files readable to all
    try:
        assert run_main(["token"], settings, monkeypatch, capsys)[0] == EXIT_OK
    finally:
        os.umask(previous)
    directory = cache_home / "bearer-m2m"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (token_file,) = cache_files(cache_home)
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    for lock in directory.glob("*.lock"):
        assert stat.S_IMODE(lock.stat().st_mode) & 0o077 == 0


def test_a_cache_directory_others_could_enter_is_closed(
    settings: dict[str, str],
    cache_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    directory = cache_home / "bearer-m2m"
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    assert run_main(["token"], settings, monkeypatch, capsys)[0] == EXIT_OK
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_without_xdg_cache_home_the_cache_is_under_the_home_directory(
    settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")  # the XDG spec says so
    monkeypatch.chdir(tmp_path)
    assert run_main(["token"], settings, monkeypatch, capsys)[0] == EXIT_OK
    assert len(cache_files(home / ".cache")) == 1
    assert not (tmp_path / "relative").exists()


def test_the_token_and_the_secret_never_appear_in_clear_in_the_cache(
    settings: dict[str, str],
    cache_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run_main(["token"], settings, monkeypatch, capsys)
    token = out.strip()
    assert code == EXIT_OK and token
    secret = settings["BEARER_M2M_CLIENT_SECRET"]
    stored = b"".join(path.read_bytes() for path in (cache_home / "bearer-m2m").iterdir())
    for clear in (token, token.split(".")[1], token.split(".")[2], secret):
        assert clear.encode() not in stored
    assert settings["BEARER_M2M_CLIENT_ID"].encode() not in stored


def test_a_corrupted_cache_file_still_gives_a_token(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    cache_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_main(["token"], settings, monkeypatch, capsys)[0] == EXIT_OK
    (token_file,) = cache_files(cache_home)
    for junk in (b"\x00garbage{", b'{"bearer_m2m": 1, "tokens": {"x": 1}}', b""):
        token_file.write_bytes(junk)
        code, out, err = run_main(["token"], settings, monkeypatch, capsys)
        assert (code, err) == (EXIT_OK, "") and out.count(".") == 2
    assert m2m_server.token_requests == 4
    assert run_main(["token"], settings, monkeypatch, capsys)[0] == EXIT_OK
    assert m2m_server.token_requests == 4  # the last fetched token was stored again


@pytest.mark.parametrize("where", ["cache home is a file", "cache file in a missing directory"])
def test_a_cache_that_cannot_be_written_never_fails_the_command(
    where: str,
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A read-only or broken home: the token is printed, the problem is one warning line.

    (The tests run as root on CI, where permissions do not stop writes: a path through a
    regular file is what no user can create a directory in.)"""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    argv = ["token"]
    if where == "cache home is a file":
        monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    else:
        argv += ["--cache-file", str(blocker / "token.cache")]
    for _ in range(2):
        code, out, err = run_main(argv, settings, monkeypatch, capsys)
        assert code == EXIT_OK and out.count(".") == 2
        assert err.startswith("bearer-m2m: warning: the shared token cache")
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert out.strip() not in err and settings["BEARER_M2M_CLIENT_SECRET"] not in err
    assert m2m_server.token_requests == 2


def test_a_token_due_for_refresh_is_replaced_before_it_is_printed(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    cache_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A one-shot process must not print the old token and leave the refresh to a
    background thread that dies with it: the invocation that finds the token inside
    its refresh-ahead window fetches the new one, prints it and stores it."""
    code, out, _ = run_main(["token"], settings, monkeypatch, capsys)
    old = out.strip()
    assert code == EXIT_OK and m2m_server.token_requests == 1
    # Age the stored token: 30 s left of an hour, inside the 60 s refresh-ahead window.
    config = ClientCredentialsAuth(
        m2m_server.token_url,
        client_id=settings["BEARER_M2M_CLIENT_ID"],
        client_secret=settings["BEARER_M2M_CLIENT_SECRET"],
        audience=AUDIENCE,
    )._config
    key = cache_key(config)
    store = FileCache(DirectoryCache(str(cache_home / "bearer-m2m"), lock_timeout=1).file_path(key))
    sealer = SharedTokens(store, config, RefreshPolicy())
    store.store(key, sealer._seal(_Stored(old, time.time() + 30, 3600.0)), 30)

    code, out, _ = run_main(["token"], settings, monkeypatch, capsys)
    new = out.strip()
    assert code == EXIT_OK and new != old and m2m_server.token_requests == 2
    code, out, _ = run_main(["token"], settings, monkeypatch, capsys)
    assert (code, out.strip()) == (EXIT_OK, new) and m2m_server.token_requests == 2


# -- --json, --version --------------------------------------------------------------------------


def test_token_json_shape(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for _ in range(2):  # fetched, then from the cache: the same answer
        code, out, err = run_main(["token", "--json"], settings, monkeypatch, capsys)
        assert (code, err) == (EXIT_OK, "")
        answer = json.loads(out)
        assert set(answer) == {"access_token", "token_type", "expires_at"}
        assert answer["token_type"] == "Bearer"
        assert isinstance(answer["expires_at"], int)
        claims = json.loads(_segment(answer["access_token"].split(".")[1]))
        # The library stops using a token its leeway (10 s for an hour) before exp.
        assert claims["exp"] - 12 <= answer["expires_at"] <= claims["exp"] - 9
    assert m2m_server.token_requests == 1


def test_token_json_of_an_opaque_token(
    cache_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = TokenServer(expires_in=600)
    try:
        environ = {
            "BEARER_M2M_TOKEN_URL": server.token_url,
            "BEARER_M2M_CLIENT_ID": "svc",
            "BEARER_M2M_CLIENT_SECRET": "a-secret-of-svc",
        }
        before = time.time()
        code, out, _ = run_main(["token", "--json"], environ, monkeypatch, capsys)
        after = time.time()
    finally:
        server.close()
    answer = json.loads(out)
    assert code == EXIT_OK and answer["access_token"] == "tok-1"
    # 600 s less the leeway (5 % of the lifetime, at most 10 s)
    assert before + 600 - 11 <= answer["expires_at"] <= after + 600 - 10


def _segment(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"bearer-m2m {bearer_m2m.__version__}\n"
    done = subprocess.run(
        [sys.executable, "-m", "bearer_m2m", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, f"bearer-m2m {bearer_m2m.__version__}\n")


# -- --deadline ---------------------------------------------------------------------------------

#: With the library's backoff (0.25-0.5 s, then 0.5-1 s, then 1-2 s), a deadline of 0.6 s
#: leaves room for two attempts at most, whatever the machine's speed; the default
#: deadline lets max_attempts (4) end the fetch instead.
SHORT_DEADLINE = "0.6"


def test_deadline_bounds_the_attempts_on_a_failing_endpoint(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    m2m_server.fail_next(50, status=503)
    code, out, err = run_main(
        ["token", "--deadline", SHORT_DEADLINE], settings, monkeypatch, capsys
    )
    assert (code, out) == (EXIT_UNAVAILABLE, "")
    assert 1 <= m2m_server.token_requests <= 2
    assert err.splitlines()[-1].startswith("bearer-m2m: error: ") and "HTTP 503" in err
    m2m_server.reset()
    m2m_server.fail_next(50, status=503)
    with_env = {**settings, "BEARER_M2M_RETRY_DEADLINE": SHORT_DEADLINE}
    assert run_main(["token"], with_env, monkeypatch, capsys)[0] == EXIT_UNAVAILABLE
    assert 1 <= m2m_server.token_requests <= 2


def test_the_default_deadline_lets_max_attempts_end_the_retries(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert RetryPolicy(deadline=DEFAULT_DEADLINE).max_attempts == 4
    m2m_server.fail_next(50, status=503)
    code, _, err = run_main(["token"], settings, monkeypatch, capsys)
    assert code == EXIT_UNAVAILABLE and m2m_server.token_requests == 4
    assert "gave up after 4 attempt(s)" in err


def test_deadline_bounds_an_endpoint_that_is_down(settings: dict[str, str]) -> None:
    """Nothing listens on the port: the attempts are counted by the command's own report."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    down = {**settings, "BEARER_M2M_TOKEN_URL": f"http://127.0.0.1:{closed_port}/oauth/token"}
    done = run(["token", "--deadline", SHORT_DEADLINE], down)
    assert (done.returncode, done.stdout) == (EXIT_UNAVAILABLE, "")
    report = done.stderr.splitlines()[-1]
    assert "gave up after 1 attempt(s)" in report or "gave up after 2 attempt(s)" in report
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_deadline_is_a_usage_error_that_quotes_nothing(
    value: str,
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(["token", "--deadline", value], settings, monkeypatch, capsys)
    assert (code, out) == (EXIT_USAGE, "")
    assert err == (  # the value is not quoted: a --config file may hold anything
        "bearer-m2m: error: --deadline (BEARER_M2M_RETRY_DEADLINE) must be a positive "
        "number of seconds\n"
    )
    assert m2m_server.token_requests == 0
    # the flag wins: a bad value in the environment is not read when the flag is given
    bad_env = {**settings, "BEARER_M2M_RETRY_DEADLINE": value}
    assert run_main(["token", "--deadline", "5"], bad_env, monkeypatch, capsys)[0] == EXIT_OK


# -- bearer-m2m serve: a line per request, the counters at the end -------------------------------


def test_serve_logs_each_request_by_fingerprint_and_the_counters_when_stopped(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "secret"
    server = subprocess.Popen(
        [sys.executable, "-m", "bearer_m2m", "serve", "--secret-file", str(secret_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        banner: dict[str, str] = {}
        while "client_secret" not in banner:
            name, _, value = server.stdout.readline().strip().partition(" ")
            banner[name] = value.strip()
        secret = secret_file.read_text().strip()
        auth = ClientCredentialsAuth(
            banner["token_url"],
            client_id=banner["client_id"],
            client_secret=secret,
            audience=banner["api_url"].split("audience ")[1].rstrip(")"),
        )
        api_url = banner["api_url"].split()[0]
        token = auth.token()
        assert requests.get(api_url + "orders", auth=auth, timeout=10).status_code == 200
        refused = requests.post(
            banner["token_url"],
            data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
            timeout=10,
        )
        assert refused.status_code == 401
        unauthorized = requests.get(api_url, headers={"Authorization": "Bearer junk"}, timeout=10)
        assert unauthorized.status_code == 401
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0 and "Traceback" not in err
    lines = out.splitlines()
    client, mark = banner["client_id"], fingerprint(token)
    assert f"token  200  client={client}  token={mark}" in lines
    assert f"api    200  client={client}  token={mark}  GET /orders" in lines
    assert "token  401  client=nobody  error=invalid_client" in lines
    assert f"api    401  client=-  token={fingerprint('junk')}  GET /" in lines
    assert lines[-1] == (
        "stopped: 2 token request(s), 1 token(s) issued; 2 API request(s), 1 answered 401"
    )
    for never in (token, secret, "junk"):
        assert never not in out + err


def test_token_json_names_a_dpop_token_and_a_dpop_key_file_keeps_the_cache(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    key_file = tmp_path / "dpop.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with_dpop = {**settings, "BEARER_M2M_DPOP_KEY_FILE": str(key_file)}
    for _ in range(2):
        code, out, err = run_main(["token", "--json"], with_dpop, monkeypatch, capsys)
        assert (code, err) == (EXIT_OK, "")
        assert json.loads(out)["token_type"] == "DPoP"
    assert m2m_server.token_requests == 1
