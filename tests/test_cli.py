"""The ``bearer-m2m`` command: the demo (the main job) and its argument handling."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bearer_m2m import _demo
from bearer_m2m._cli import main


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
