"""``bearer-m2m`` with DPoP: ``proof`` prints the two headers of one request; ``token``
explains why a DPoP token alone is no use; an ephemeral key is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from bearer_m2m._cli import EXIT_OK, EXIT_USAGE
from bearer_m2m._dpop import DPoPKey
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from tests.test_cli_cache import cache_home, run_main, settings

__all__ = ["cache_home", "settings"]  # fixtures used below


@pytest.fixture
def dpop_settings(settings: dict[str, str], tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "dpop.pem"
    pem = DPoPKey.generate()._key.as_pem(private=True)
    key_file.write_bytes(pem if isinstance(pem, bytes) else pem.encode())
    return {**settings, "BEARER_M2M_DPOP_KEY_FILE": str(key_file)}


def headers_of(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines())


def test_proof_prints_headers_the_api_accepts_once_and_reuses_the_token(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    dpop_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = m2m_api.url + "things?page=1"
    answers = []
    for _ in range(2):
        code, out, err = run_main(["proof", "GET", url], dpop_settings, monkeypatch, capsys)
        assert (code, err) == (EXIT_OK, "")
        headers = headers_of(out)
        assert set(headers) == {"Authorization", "DPoP"}
        assert headers["Authorization"].startswith("DPoP ")
        answers.append(requests.get(url, headers=headers, timeout=10))
        # A proof is good once: the same headers again are refused.
        assert requests.get(url, headers=headers, timeout=10).status_code == 401

    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json()["token_type"] == "DPoP"
    assert m2m_server.token_requests == 1  # the token is kept between invocations
    assert m2m_api.dpop_jti_replays == 2


def test_proof_carries_the_nonce_it_is_given(
    m2m_server: AuthorizationServer,
    dpop_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with ProtectedAPI(m2m_server, "https://api.example", require_dpop_nonce=True) as api:
        url = api.url + "things"
        nonce = requests.get(url, headers={"Authorization": "DPoP x"}, timeout=10).headers[
            "DPoP-Nonce"
        ]
        argv = ["proof", "POST", url, f"--nonce={nonce}"]  # a nonce may start with "-"
        code, out, _ = run_main(argv, dpop_settings, monkeypatch, capsys)
        assert code == EXIT_OK
        assert requests.post(url, headers=headers_of(out), timeout=10).status_code == 200


def test_token_explains_that_a_dpop_token_needs_a_proof(
    m2m_server: AuthorizationServer,
    dpop_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_main(["token"], dpop_settings, monkeypatch, capsys)
    assert (code, out) == (EXIT_USAGE, "")
    assert "bearer-m2m proof METHOD URL" in err
    assert m2m_server.token_requests == 0


def test_an_ephemeral_key_and_a_bearer_configuration_are_refused_by_proof(
    m2m_server: AuthorizationServer,
    settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = "https://api.example/things"
    code, _, err = run_main(
        ["proof", "GET", url], {**settings, "BEARER_M2M_DPOP": "true"}, monkeypatch, capsys
    )
    assert code == EXIT_USAGE and "needs a key file" in err
    monkeypatch.delenv("BEARER_M2M_DPOP")
    code, _, err = run_main(["proof", "GET", url], settings, monkeypatch, capsys)
    assert code == EXIT_USAGE and "proof needs a DPoP key" in err
    assert m2m_server.token_requests == 0


@pytest.mark.parametrize("url", ["not a url", "ftp://api.example/x", "http://api.example/x"])
def test_a_url_no_proof_can_be_made_for_is_refused_without_a_token(
    m2m_server: AuthorizationServer,
    dpop_settings: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
) -> None:
    code, out, err = run_main(["proof", "GET", url], dpop_settings, monkeypatch, capsys)
    assert code == EXIT_USAGE and out == ""
    assert err.startswith("bearer-m2m: error:")
