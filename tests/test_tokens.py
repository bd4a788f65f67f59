from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from bearer_m2m import InvalidTokenResponse
from bearer_m2m._tokens import fingerprint, granted_token


def jwt_with(claims: dict[str, object]) -> str:
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key("k" * 32))


def test_bearer_token_with_integer_expiry() -> None:
    granted = granted_token({"access_token": "abc", "token_type": "Bearer", "expires_in": 86400})
    assert (granted.access_token, granted.expires_in) == ("abc", 86400)


@pytest.mark.parametrize("token_type", ["bearer", "BEARER", "Bearer"])
def test_token_type_is_case_insensitive(token_type: str) -> None:
    assert granted_token({"access_token": "a", "token_type": token_type}).access_token == "a"


def test_numeric_string_expiry_is_accepted() -> None:
    assert (
        granted_token(
            {"access_token": "a", "token_type": "Bearer", "expires_in": "3600"}
        ).expires_in
        == 3600
    )


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"token_type": "Bearer"}, "no access_token"),
        ({"access_token": "", "token_type": "Bearer"}, "no access_token"),
        ({"access_token": 7, "token_type": "Bearer"}, "no access_token"),
        ({"access_token": "a", "token_type": "mac"}, "'mac'"),
        ({"access_token": "a"}, "token_type"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": "soon"}, "not a number"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": -5}, "non-negative"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": True}, "bool"),
        ({"access_token": "a", "token_type": "Bearer", "expires_in": [1]}, "list"),
    ],
)
def test_unusable_responses_are_typed_errors(payload: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTokenResponse, match=message):
        granted_token(payload)


def test_missing_expiry_falls_back_to_the_jwt_exp_claim() -> None:
    token = jwt_with({"exp": int(time.time()) + 600, "sub": "svc"})
    granted = granted_token({"access_token": token, "token_type": "Bearer"})
    assert granted.expires_in is not None
    assert 595 <= granted.expires_in <= 600


@pytest.mark.parametrize(
    "token",
    ["opaque-token", "not.a.jwt", jwt_with({"sub": "no exp"}), jwt_with({"exp": "tomorrow"})],
)
def test_missing_expiry_without_a_usable_exp_is_unknown(token: str) -> None:
    assert granted_token({"access_token": token, "token_type": "Bearer"}).expires_in is None


def test_fingerprint_is_short_stable_and_not_the_token() -> None:
    assert fingerprint("secret-token") == fingerprint("secret-token")
    assert fingerprint("secret-token") != fingerprint("other-token")
    assert len(fingerprint("secret-token")) == 8
    assert "secret" not in repr(
        granted_token({"access_token": "secret-token", "token_type": "Bearer"})
    )
