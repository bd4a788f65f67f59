"""The ``bearer-m2m`` command: the demo (the main job) and its argument handling."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from bearer_m2m import RetryPolicy, _demo
from bearer_m2m._cli import main
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI


def test_the_demo_shows_every_promise_holding(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "all checks held" in out and "FAIL" not in out
    for section in (
        "1. One token",
        "2. Cold start",
        "3. Refresh ahead",
        "4. A revoked",
        "5. Errors",
    ):
        assert section in out
    assert "invalid_client" in out and "access_denied" in out


def test_the_demo_exits_1_when_a_promise_breaks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(report: _demo.Report, *_: object) -> None:
        report.line("token requests made: 7", ok=False)

    for name in ("reuse", "cold_start", "refresh_ahead", "revoked_token"):
        monkeypatch.setattr(_demo, name, broken)
    assert main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "FAIL token requests made: 7" in out and "4 check(s) failed" in out


@pytest.mark.parametrize("argv", [[], ["demo", "--unknown"], ["fly"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage: bearer-m2m" in capsys.readouterr().err


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bearer_m2m", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "demo" in done.stdout and "serve" in done.stdout


def test_serve_hands_its_options_to_the_server_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--help"])
    assert caught.value.code == 0
    assert "--token-lifetime" in capsys.readouterr().out


# -- bearer-m2m token / inspect ----------------------------------------------------------------


@pytest.fixture(autouse=True)
def private_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test caches its tokens in a directory of its own (its subprocesses too), never
    in the home directory: the session's server is the same for every test, so a token
    cached by one would be reused by the next."""
    home = tmp_path / "cache-home"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("BEARER_M2M_"):
            monkeypatch.delenv(name)
    return monkeypatch


def run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """``bearer-m2m ARGV`` as a separate process, as a shell script would run it."""
    done = subprocess.run(
        [sys.executable, "-m", "bearer_m2m", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("BEARER_M2M_")},
    )
    return done.returncode, done.stdout, done.stderr


def test_token_prints_a_token_the_api_accepts(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    client = m2m_server.client
    code, out, err = run(
        [
            "token",
            "--token-url",
            m2m_server.token_url,
            "--client-id",
            client.client_id,
            "--audience",
            m2m_api.audience,
            "--client-secret-stdin",
        ],
        stdin=client.client_secret + "\n",
    )
    assert (code, err) == (0, "")
    token = out.strip()
    response = requests.get(
        m2m_api.url + "x", headers={"Authorization": f"Bearer {token}"}, timeout=5
    )
    assert response.status_code == 200


def test_token_reads_the_environment_and_a_secret_file(
    m2m_server: AuthorizationServer,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "secret").write_text(m2m_server.client.client_secret)
    clean_env.setenv("BEARER_M2M_TOKEN_URL", m2m_server.token_url)
    clean_env.setenv("BEARER_M2M_CLIENT_ID", m2m_server.client.client_id)
    clean_env.setenv("BEARER_M2M_CLIENT_SECRET", "overridden-by-the-file-flag")
    assert main(["token", "--client-secret-file", str(tmp_path / "secret")]) == 0
    assert capsys.readouterr().out.count(".") == 2  # a JWT


def test_token_reads_a_config_file(
    m2m_server: AuthorizationServer,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("BEARER_M2M_ISSUER", "https://ignored.example/")  # the file's token_url wins
    config = tmp_path / "m2m.ini"
    config.write_text(
        "[bearer_m2m]\n"
        f"token_url = {m2m_server.token_url}\n"
        f"client_id = {m2m_server.client.client_id}\n"
        f"client_secret = {m2m_server.client.client_secret}\n"
    )
    assert main(["token", "--config", str(config)]) == 0
    assert m2m_server.token_requests == 1


@pytest.mark.parametrize(
    ("argv", "stdin", "code", "message"),
    [
        (["token"], "", 2, "set BEARER_M2M_TOKEN_URL or BEARER_M2M_ISSUER"),
        (["token", "--config", "/nonexistent.ini"], "", 2, "cannot read config file"),
        (
            ["token", "--client-secret", "s"],
            "",
            2,
            "unrecognized arguments: --client-secret",
        ),  # never on the command line
    ],
)
def test_token_usage_errors(argv: list[str], stdin: str, code: int, message: str) -> None:
    got, out, err = run(argv, stdin)
    assert got == code and out == "" and message in err


def test_token_exit_codes_for_a_refusal_and_an_outage(
    m2m_server: AuthorizationServer,
    clean_env: pytest.MonkeyPatch,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("BEARER_M2M_TOKEN_URL", m2m_server.token_url)
    clean_env.setenv("BEARER_M2M_CLIENT_ID", m2m_server.client.client_id)
    clean_env.setenv("BEARER_M2M_CLIENT_SECRET", "wrong")
    assert main(["token"]) == 3
    assert "invalid_client" in capsys.readouterr().err
    clean_env.setenv("BEARER_M2M_CLIENT_SECRET", m2m_server.client.client_secret)
    m2m_server.html_next(1)
    assert main(["token"]) == 5
    monkeypatch.setattr(
        "bearer_m2m._cli._retry_policy",
        lambda deadline: RetryPolicy(deadline=0.2, initial_backoff=0.01),
    )
    m2m_server.fail_next(50, status=503)
    assert main(["token"]) == 4
    assert "HTTP 503" in capsys.readouterr().err


def test_inspect_shows_claims_and_expiry_unverified(
    m2m_server: AuthorizationServer,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean_env.setenv("BEARER_M2M_TOKEN_URL", m2m_server.token_url)
    clean_env.setenv("BEARER_M2M_CLIENT_ID", m2m_server.client.client_id)
    clean_env.setenv("BEARER_M2M_CLIENT_SECRET", m2m_server.client.client_secret)
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NOT VERIFIED")
    assert '"typ": "at+jwt"' in out and f'"client_id": "{m2m_server.client.client_id}"' in out
    assert "expires: " in out and ("(in 0 h 59 min" in out or "(in 1 h 0 min" in out)


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("opaque-token-value", "an opaque token (not a JWT): 18 characters"),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "expires: not said"),
        ("eyJhbGciOiJub25lIn0.eyJleHAiOjF9.", "expired "),
    ],
)
def test_inspect_reads_a_token_from_stdin(token: str, expected: str) -> None:
    code, out, _ = run(["inspect", "--stdin"], stdin=token + "\n")
    assert code == 0 and expected in out and "opaque-token-value" not in out


def test_a_secret_typed_as_an_argument_is_not_echoed() -> None:
    code, _, err = run(["token", "--client-secret=TOPSECRET123", "ALSOSECRET456"])
    assert code == 2
    assert "TOPSECRET123" not in err and "ALSOSECRET456" not in err
    assert "--client-secret" in err and "1 more value(s)" in err


def test_a_credential_flag_replaces_the_credentials_of_the_environment(
    m2m_server: AuthorizationServer,
    tmp_path: Path,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True)
    client = m2m_server.register_client(public_key=key.as_dict(private=False))
    (tmp_path / "key.pem").write_bytes(key.as_pem(private=True))
    clean_env.setenv("BEARER_M2M_TOKEN_URL", m2m_server.token_url)
    clean_env.setenv("BEARER_M2M_CLIENT_ID", client.client_id)
    clean_env.setenv("BEARER_M2M_CLIENT_SECRET", "a-secret-the-flag-replaces")
    assert main(["token", "--private-key-file", str(tmp_path / "key.pem")]) == 0
    assert capsys.readouterr().out.count(".") == 2
