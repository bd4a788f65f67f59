"""Building the auth from discovery, from an Auth0 domain and from the environment."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import requests
import requests_mock
from joserfc.jwk import RSAKey

from bearer_m2m import (
    ClientCredentialsAuth,
    ConfigurationError,
    TokenEndpointUnavailable,
    _discovery,
)
from bearer_m2m.testing import AuthorizationServer

ISSUER = "https://login.example.com/"
RFC8414 = "https://login.example.com/.well-known/oauth-authorization-server"
OIDC = "https://login.example.com/.well-known/openid-configuration"
KEY_PEM = RSAKey.generate_key(2048, private=True).as_pem(private=True).decode()


@pytest.fixture(autouse=True)
def fresh_discovery_cache() -> None:
    _discovery._documents.clear()


def metadata(**fields: object) -> dict[str, object]:
    return {"issuer": ISSUER, "token_endpoint": "https://login.example.com/oauth/token", **fields}


# -- discovery -------------------------------------------------------------------------------


def test_discovery_against_the_local_server() -> None:
    with AuthorizationServer() as server:
        client = server.client
        auth = ClientCredentialsAuth.from_issuer(
            server.issuer, client_id=client.client_id, client_secret=client.client_secret
        )
        assert auth._config.token_url == server.token_url
        assert auth.token()


def test_rfc8414_first_then_openid_connect() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, status_code=404)
        m.get(OIDC, json=metadata())
        auth = ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")
    assert auth._config.token_url == "https://login.example.com/oauth/token"
    assert [r.url for r in m.request_history] == [RFC8414, OIDC]


def test_rfc8414_inserts_the_well_known_segment_before_the_path() -> None:
    assert _discovery.metadata_urls("https://as.example/tenant1") == [
        "https://as.example/.well-known/oauth-authorization-server/tenant1",
        "https://as.example/tenant1/.well-known/openid-configuration",
    ]


def test_the_document_is_fetched_once() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=metadata())
        for _ in range(3):
            ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")
    assert m.call_count == 1


def test_a_document_for_another_issuer_is_refused() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=metadata(issuer="https://evil.example/"))
        with pytest.raises(ConfigurationError, match="names another issuer"):
            ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")


def test_a_trailing_slash_is_not_a_mismatch() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=metadata())
        auth = ClientCredentialsAuth.from_issuer(
            ISSUER.rstrip("/"), client_id="c", client_secret="s"
        )
    assert auth._config.token_url.endswith("/oauth/token")


def test_no_document_is_a_clear_error() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, status_code=404)
        m.get(OIDC, text="<html>", status_code=200)
        with pytest.raises(ConfigurationError, match="no discovery document found"):
            ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")


@pytest.mark.parametrize(
    ("supported", "credentials", "chosen"),
    [
        (None, {"client_secret": "s"}, "client_secret_basic"),  # RFC 8414's default
        (
            ["client_secret_basic", "client_secret_post"],
            {"client_secret": "s"},
            "client_secret_post",
        ),
        (["client_secret_jwt"], {"client_secret": "s" * 32}, "client_secret_jwt"),
        (["client_secret_post", "private_key_jwt"], {"private_key": KEY_PEM}, "private_key_jwt"),
    ],
)
def test_the_method_is_one_the_server_supports(
    supported: list[str] | None, credentials: dict[str, str], chosen: str
) -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=metadata(token_endpoint_auth_methods_supported=supported))
        auth = ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", **credentials)
    assert auth._config.auth_method == chosen


def test_no_common_method_is_a_clear_error() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=metadata(token_endpoint_auth_methods_supported=["private_key_jwt"]))
        with pytest.raises(ConfigurationError, match="supports private_key_jwt"):
            ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")


def test_tls_methods_use_the_mtls_alias(tmp_path: Path) -> None:
    from tests.test_client_auth import make_certificate

    cert = make_certificate(tmp_path)
    document = metadata(
        token_endpoint_auth_methods_supported=["tls_client_auth"],
        mtls_endpoint_aliases={"token_endpoint": "https://mtls.login.example.com/oauth/token"},
    )
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=document)
        auth = ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", cert=cert)
    assert auth._config.auth_method == "tls_client_auth"
    assert auth._config.token_url == "https://mtls.login.example.com/oauth/token"


def test_discovery_over_plain_http_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="discovery"):
        ClientCredentialsAuth.from_issuer(
            "http://login.example.com/", client_id="c", client_secret="s"
        )


def test_an_unreachable_issuer_is_a_typed_error() -> None:
    with requests_mock.Mocker() as m:
        m.get(RFC8414, exc=requests.ConnectionError)
        with pytest.raises(TokenEndpointUnavailable, match=r"discovery at login\.example\.com"):
            ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")


# -- Auth0 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain",
    ["my-tenant.eu.auth0.com", "https://my-tenant.eu.auth0.com/", "https://my-tenant.eu.auth0.com"],
)
def test_auth0_shortcut(domain: str) -> None:
    auth = ClientCredentialsAuth.auth0(
        domain, "cid", "secret", audience="https://api.example", organization="org_1"
    )
    config = auth._config
    assert config.token_url == "https://my-tenant.eu.auth0.com/oauth/token"
    assert config.form == {"audience": "https://api.example", "organization": "org_1"}
    assert config.auth_method == "client_secret_post"


def test_auth0_private_key_jwt_on_a_custom_domain() -> None:
    auth = ClientCredentialsAuth.auth0(
        "login.example.com", "cid", private_key=KEY_PEM, audience="https://api.example"
    )
    assert auth._config.auth_method == "private_key_jwt"
    assert auth._config.assertion_audience == "https://login.example.com/"
    assert auth._config.token_url == "https://login.example.com/oauth/token"


# -- the environment -------------------------------------------------------------------------


def test_from_env_with_a_secret() -> None:
    env = {
        "BEARER_M2M_TOKEN_URL": "https://t.example/oauth/token",
        "BEARER_M2M_CLIENT_ID": "cid",
        "BEARER_M2M_CLIENT_SECRET": "s",
        "BEARER_M2M_AUDIENCE": "https://api.example",
        "BEARER_M2M_ORGANIZATION": "org_1",
        "BEARER_M2M_SCOPE": "read write",
        "BEARER_M2M_RESOURCE": "https://api.example/v2",
        "BEARER_M2M_AUTH_METHOD": "client_secret_basic",
        "UNRELATED": "x",
    }
    config = ClientCredentialsAuth.from_env(environ=env)._config
    assert (config.token_url, config.client_id, config.client_secret) == (
        "https://t.example/oauth/token",
        "cid",
        "s",
    )
    assert config.auth_method == "client_secret_basic"
    assert config.form == {
        "audience": "https://api.example",
        "organization": "org_1",
        "resource": "https://api.example/v2",
        "scope": "read write",
    }


def test_from_env_reads_a_mounted_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    env = {
        "APP_TOKEN_URL": "https://t.example/token",
        "APP_CLIENT_ID": "cid",
        "APP_CLIENT_SECRET_FILE": str(tmp_path / "secret"),
    }
    assert ClientCredentialsAuth.from_env("APP_", environ=env)._config.client_secret == "from-file"


def test_from_env_with_a_private_key_file_and_a_certificate(tmp_path: Path) -> None:
    from tests.test_client_auth import make_certificate

    (tmp_path / "key.pem").write_text(KEY_PEM)
    cert, key = make_certificate(tmp_path)
    base = {"BEARER_M2M_TOKEN_URL": "https://t.example/token", "BEARER_M2M_CLIENT_ID": "c"}
    with_key = ClientCredentialsAuth.from_env(
        environ={**base, "BEARER_M2M_PRIVATE_KEY_FILE": str(tmp_path / "key.pem")}
    )
    assert with_key._config.auth_method == "private_key_jwt"
    with_cert = ClientCredentialsAuth.from_env(
        environ={**base, "BEARER_M2M_CERT_FILE": cert, "BEARER_M2M_KEY_FILE": key}
    )
    assert with_cert._config.auth_method == "tls_client_auth" and with_cert._config.cert == (
        cert,
        key,
    )


def test_from_env_with_an_issuer() -> None:
    env = {
        "BEARER_M2M_ISSUER": ISSUER,
        "BEARER_M2M_CLIENT_ID": "c",
        "BEARER_M2M_CLIENT_SECRET": "s",
    }
    with requests_mock.Mocker() as m:
        m.get(RFC8414, json=metadata())
        auth = ClientCredentialsAuth.from_env(environ=env)
    assert auth._config.token_url == "https://login.example.com/oauth/token"


def test_keyword_arguments_override_the_environment() -> None:
    env = {
        "BEARER_M2M_TOKEN_URL": "https://t.example/token",
        "BEARER_M2M_CLIENT_ID": "c",
        "BEARER_M2M_CLIENT_SECRET": "s",
    }
    auth = ClientCredentialsAuth.from_env(
        environ=env, audience="https://override.example", timeout=3
    )
    assert auth._config.form["audience"] == "https://override.example" and auth._config.timeout == 3


@pytest.mark.parametrize(
    ("env", "messages"),
    [
        ({}, ["BEARER_M2M_TOKEN_URL or BEARER_M2M_ISSUER", "BEARER_M2M_CLIENT_ID", "a credential"]),
        (
            {
                "BEARER_M2M_TOKEN_URL": "https://t/x",
                "BEARER_M2M_ISSUER": "https://t/",
                "BEARER_M2M_CLIENT_ID": "c",
                "BEARER_M2M_CLIENT_SECRET": "s",
                "BEARER_M2M_CLIENT_SECRET_FILE": "/run/secret",
            },
            [
                "only one of BEARER_M2M_TOKEN_URL and BEARER_M2M_ISSUER",
                "only one of BEARER_M2M_CLIENT_SECRET and BEARER_M2M_CLIENT_SECRET_FILE",
            ],
        ),
        (
            {
                "BEARER_M2M_TOKEN_URL": "https://t/x",
                "BEARER_M2M_CLIENT_ID": "c",
                "BEARER_M2M_KEY_FILE": "k.pem",
            },
            ["BEARER_M2M_KEY_FILE needs BEARER_M2M_CERT_FILE", "a credential"],
        ),
        (
            {
                "BEARER_M2M_TOKEN_URL": "https://t/x",
                "BEARER_M2M_CLIENT_ID": "c",
                "BEARER_M2M_CLIENT_SECRET_FILE": "/nonexistent/secret",
            },
            ["cannot read client secret file '/nonexistent/secret'"],
        ),
    ],
)
def test_what_is_missing_or_contradictory_is_listed_at_once(
    env: dict[str, str], messages: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ClientCredentialsAuth.from_env(environ=env)
    for message in messages:
        assert message in str(caught.value)


def test_secret_and_private_key_together_are_contradictory(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text(KEY_PEM)
    env = {
        "BEARER_M2M_TOKEN_URL": "https://t.example/token",
        "BEARER_M2M_CLIENT_ID": "c",
        "BEARER_M2M_CLIENT_SECRET": "s",
        "BEARER_M2M_PRIVATE_KEY_FILE": str(tmp_path / "key.pem"),
    }
    with pytest.raises(ConfigurationError, match="client_secret is not used with private_key_jwt"):
        ClientCredentialsAuth.from_env(environ=env)


def test_unknown_prefixed_variables_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    env = {
        "BEARER_M2M_TOKEN_URL": "https://t/x",
        "BEARER_M2M_CLIENT_ID": "c",
        "BEARER_M2M_CLIENT_SECRET": "s",
        "BEARER_M2M_AUDIENENCE": "typo",
    }
    with caplog.at_level(logging.WARNING, logger="bearer_m2m"):
        ClientCredentialsAuth.from_env(environ=env)
    assert "BEARER_M2M_AUDIENENCE" in caplog.text and "typo" not in caplog.text


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BEARER_M2M_TOKEN_URL", "https://t.example/token")
    monkeypatch.setenv("BEARER_M2M_CLIENT_ID", "from-os")
    monkeypatch.setenv("BEARER_M2M_CLIENT_SECRET", "s")
    assert ClientCredentialsAuth.from_env()._config.client_id == "from-os"


def test_from_env_trusts_a_private_ca_bundle() -> None:
    env = {
        "BEARER_M2M_TOKEN_URL": "https://t.example/token",
        "BEARER_M2M_CLIENT_ID": "c",
        "BEARER_M2M_CLIENT_SECRET": "s",
        "BEARER_M2M_CA_BUNDLE": "/etc/ssl/private-ca.pem",
    }
    auth = ClientCredentialsAuth.from_env(environ=env)
    assert auth._config.verify == "/etc/ssl/private-ca.pem"
    assert (auth.token_url, auth.auth_method) == ("https://t.example/token", "client_secret_post")


@pytest.mark.parametrize(
    ("env", "options", "expected"),
    [
        (
            {"BEARER_M2M_CLIENT_ID": "c", "BEARER_M2M_CLIENT_SECRET": "s"},
            {"token_url": "https://t.example/k"},
            "https://t.example/k",
        ),
        (
            {"BEARER_M2M_TOKEN_URL": "https://t.example/env", "BEARER_M2M_CLIENT_SECRET": "s"},
            {"client_id": "kw"},
            "https://t.example/env",
        ),
        (
            {
                "BEARER_M2M_ISSUER": ISSUER,
                "BEARER_M2M_CLIENT_ID": "c",
                "BEARER_M2M_CLIENT_SECRET": "s",
            },
            {"token_url": "https://t.example/kw"},
            "https://t.example/kw",
        ),
    ],
)
def test_keywords_replace_their_alternatives_in_the_environment(
    env: dict[str, str], options: dict[str, str], expected: str
) -> None:
    assert ClientCredentialsAuth.from_env(environ=env, **options).token_url == expected


def test_a_keyword_credential_replaces_the_environments(tmp_path: Path) -> None:
    env = {
        "BEARER_M2M_TOKEN_URL": "https://t.example/token",
        "BEARER_M2M_CLIENT_ID": "c",
        "BEARER_M2M_CLIENT_SECRET": "s",
    }
    auth = ClientCredentialsAuth.from_env(environ=env, private_key=KEY_PEM)
    assert auth.auth_method == "private_key_jwt" and auth._config.client_secret is None


def test_both_endpoints_as_keywords_or_a_token_url_for_discovery_are_refused() -> None:
    env = {"BEARER_M2M_CLIENT_ID": "c", "BEARER_M2M_CLIENT_SECRET": "s"}
    with pytest.raises(ConfigurationError, match="not both"):
        ClientCredentialsAuth.from_env(environ=env, token_url="https://a/t", issuer="https://a/")
    with pytest.raises(ConfigurationError, match="do not pass token_url"):
        ClientCredentialsAuth.from_issuer(
            ISSUER, token_url="https://a/t", client_id="c", client_secret="s"
        )


def test_a_methods_list_that_is_not_a_list_is_refused() -> None:
    with requests_mock.Mocker() as m:
        m.get(
            RFC8414,
            json=metadata(
                token_endpoint_auth_methods_supported="client_secret_basic private_key_jwt"
            ),
        )
        with pytest.raises(ConfigurationError, match="not a list"):
            ClientCredentialsAuth.from_issuer(ISSUER, client_id="c", client_secret="s")


@pytest.mark.parametrize("domain", ["http://tenant.eu.auth0.com", "ftp://tenant.eu.auth0.com/"])
def test_auth0_refuses_a_domain_with_another_scheme(domain: str) -> None:
    with pytest.raises(ConfigurationError, match="https only"):
        ClientCredentialsAuth.auth0(domain, "cid", "secret", audience="https://api.example")


def test_auth0_takes_the_domain_with_or_without_https() -> None:
    for domain in ("tenant.eu.auth0.com", "https://tenant.eu.auth0.com/", "HTTPS://tenant.eu.auth0.com"):
        auth = ClientCredentialsAuth.auth0(domain, "cid", "secret", audience="https://api.example")
        assert auth.token_url == "https://tenant.eu.auth0.com/oauth/token"
