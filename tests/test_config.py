from __future__ import annotations

import pytest

from bearer_m2m import ClientCredentialsAuth, ConfigurationError, TokenError

URL = "https://tenant.eu.auth0.com/oauth/token"


def make(**overrides: object) -> ClientCredentialsAuth:
    options: dict[str, object] = {"client_id": "cid", "client_secret": "secret"}
    options.update(overrides)
    return ClientCredentialsAuth(URL, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"client_id": ""}, "client_id"),
        ({"client_secret": None}, "client_secret"),
        ({"auth_method": "magic_link"}, "auth_method"),
        ({"timeout": 0}, "timeout"),
        ({"audience": ""}, "audience"),
        ({"scope": ""}, "scope"),
        ({"scope": ["read", "has space"]}, "scope"),
        ({"extra_params": {"client_id": "other"}}, "client_id"),
        ({"extra_params": {"audience": "x"}}, "audience"),
        ({"extra_params": {"grant_type": "password"}}, "grant_type"),
        ({"extra_params": {"n": 1}}, "strings"),
    ],
)
def test_misconfiguration_is_a_clear_typed_error(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        make(**overrides)
    assert isinstance(caught.value, TokenError) and isinstance(caught.value, ValueError)


@pytest.mark.parametrize("token_url", ["ftp://x/token", "not a url", "https:///token"])
def test_token_url_must_be_http(token_url: str) -> None:
    with pytest.raises(ConfigurationError, match="token_url"):
        ClientCredentialsAuth(token_url, client_id="cid", client_secret="secret")


def test_scope_list_and_string_are_the_same_field() -> None:
    assert make(scope=["read:a", "write:b"])._config.form["scope"] == "read:a write:b"
    assert make(scope="read:a  write:b")._config.form["scope"] == "read:a write:b"


def test_repr_names_the_client_but_not_the_secret() -> None:
    auth = make(audience="https://api.example", organization="org_1")
    text = repr(auth)
    assert "secret" not in text
    assert "cid" in text and "https://api.example" in text and "org_1" in text
