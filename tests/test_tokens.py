from __future__ import annotations

import base64
import hashlib
import re
import time

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey

from bearer_m2m import InvalidTokenResponse
from bearer_m2m._tokens import MAX_LIFETIME, MAX_TOKEN_LENGTH, fingerprint, granted_token


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
        ({"access_token": "a"}, "token_type of type NoneType"),
        ({"access_token": "a", "token_type": ["Bearer"]}, "token_type of type list"),
        ({"access_token": "a", "token_type": "Bearer\r\nX: 1"}, "that is not a token type name;"),
        ({"access_token": "a", "token_type": "x" * 21}, "that is not a token type name;"),
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


# --- expires_in: every bad value is a typed error, every huge one is capped -------------------

BEARER = {"token_type": "Bearer"}
TEN_YEARS = MAX_LIFETIME


@pytest.mark.parametrize(
    "expires_in, seconds",
    [
        (float("inf"), TEN_YEARS),  # what JSON's 1e999 (and Python's Infinity) decode to
        (10**400, TEN_YEARS),
        ("9" * 400, TEN_YEARS),
        (int(TEN_YEARS) + 1, TEN_YEARS),
        (int(TEN_YEARS), TEN_YEARS),
        (" 3600 ", 3600),
        ("3600.5", 3600.5),
        (0, 0),
        (1e-400, 0),
    ],
)
def test_expires_in_beyond_ten_years_is_read_as_ten_years(
    expires_in: object, seconds: float
) -> None:
    granted = granted_token({"access_token": "a", **BEARER, "expires_in": expires_in})
    assert granted.expires_in == seconds


@pytest.mark.parametrize(
    "expires_in, message",
    [
        (float("nan"), "non-negative number"),
        (-1, "non-negative number"),
        (-(10**400), "non-negative number"),
        (float("-inf"), "non-negative number"),
        ("-5", "non-negative number"),
        ({"seconds": 3600}, "dict, not a number"),
        ([3600], "list, not a number"),
        ("\u0663", "not a number"),  # ARABIC-INDIC DIGIT THREE, which float() reads as 3
        ("1_000", "not a number"),
        ("nan", "not a number"),
        ("Infinity", "not a number"),
        ("1e3", "not a number"),
        ("9" * 10_000, None),  # a huge decimal string is capped, see above
    ],
)
def test_unreadable_expires_in_is_a_typed_error(expires_in: object, message: str | None) -> None:
    payload = {"access_token": "secret-token-value", **BEARER, "expires_in": expires_in}
    if message is None:
        assert granted_token(payload).expires_in == TEN_YEARS
        return
    with pytest.raises(InvalidTokenResponse, match=message) as caught:
        granted_token(payload)
    assert "secret-token-value" not in str(caught.value)


@pytest.mark.parametrize(
    "expires_at", [{"at": 1}, [1], "tomorrow", 10**400, float("nan"), True, -1, "1700000000"]
)
def test_expires_at_is_ignored_whatever_it_holds(expires_at: object) -> None:
    granted = granted_token(
        {"access_token": "a", **BEARER, "expires_in": 60, "expires_at": expires_at}
    )
    assert granted.expires_in == 60
    assert granted_token({"access_token": "a", **BEARER, "expires_at": expires_at}).expires_in is None


def test_an_answer_that_is_not_an_object_is_a_typed_error() -> None:
    for payload in ([], "token", 7, None):
        with pytest.raises(InvalidTokenResponse, match="not a JSON object"):
            granted_token(payload)  # type: ignore[arg-type]


def test_a_deeply_nested_expires_in_is_a_typed_error() -> None:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(InvalidTokenResponse, match="list"):
        granted_token({"access_token": "a", **BEARER, "expires_in": nested})


# --- access tokens that cannot travel in a header --------------------------------------------

SECRETISH = "Zq9-secret-part-"


@pytest.mark.parametrize(
    "token",
    [
        f"{SECRETISH}\r\nX-Injected: 1",
        f"{SECRETISH}\n",
        f"{SECRETISH}\x00",
        f"{SECRETISH}\tx",
        f"{SECRETISH}\x7f",
        f"{SECRETISH}\r\n folded",  # obs-fold
        f"{SECRETISH} x",
        f"{SECRETISH}\u00e9",  # Latin-1, which http.client would still send
        f"{SECRETISH}\u2028",
        f"{SECRETISH}\ud800",  # a lone surrogate, which JSON can carry
        f"{SECRETISH}\u0663",
    ],
)
def test_a_token_that_cannot_be_a_header_value_is_refused_without_quoting_it(token: str) -> None:
    with pytest.raises(InvalidTokenResponse, match="cannot be sent in an HTTP header") as caught:
        granted_token({"access_token": token, **BEARER, "expires_in": 60})
    assert SECRETISH not in str(caught.value)
    assert SECRETISH not in repr(caught.value)


@pytest.mark.parametrize(
    "token",
    [
        "00D5e000000ABcd!AQ4AQH0dMHZfz972Szmpkb58urFRkgeBGsxL_QJWwYMfAbUeeG7c1E6LYUfiDUkWe6",
        "123456789|aBcDeFgHiJkLmNoPqRsTuV",  # an app token in Facebook's shape
        "gho_16C7e42F292c6912E7710c838347Ae178B4a",
        "a~b+c/d==",  # strict RFC 6750 b64token
        '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~',
    ],
)
def test_opaque_tokens_outside_b64token_are_accepted(token: str) -> None:
    assert granted_token({"access_token": token, **BEARER}).access_token == token


def test_a_token_longer_than_the_limit_is_refused() -> None:
    assert granted_token({"access_token": "a" * MAX_TOKEN_LENGTH, **BEARER}).access_token
    for length in (MAX_TOKEN_LENGTH + 1, 50 * 1024 * 1024):
        with pytest.raises(InvalidTokenResponse, match="more than the 65536") as caught:
            granted_token({"access_token": "Q" * length, **BEARER})
        assert "QQQQ" not in str(caught.value)


def test_fingerprint_of_any_string_is_eight_hex_digits() -> None:
    assert fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()[:8]
    assert re.fullmatch("[0-9a-f]{8}", fingerprint("\ud800\udfff\x00"))


# --- timing by expires_in and the JWT's exp ---------------------------------------------------

NOW = 1_700_000_000.0


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bearer_m2m._tokens.time.time", lambda: NOW)


def expiry_of(claims: dict[str, object], expires_in: object = None) -> float | None:
    payload: dict[str, object] = {"access_token": jwt_with(claims), **BEARER}
    if expires_in is not None:
        payload["expires_in"] = expires_in
    return granted_token(payload).expires_in


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    "expires_in, exp, seconds",
    [
        (3, NOW + 2.0, 2.0),  # iat floored to whole seconds: the JWT ends first
        (3600, NOW + 3599.25, 3599.25),
        (3600, NOW + 3240, 3240),  # shortened by exactly 10 %: still believed
        (3600, NOW + 3239.5, 3600),  # more: our clock runs ahead, expires_in is trusted
        (3600, NOW + 100, 3600),
        (3600, NOW - 50, 3600),  # our clock is past exp altogether
        (5, NOW + 3, 3),  # shortened by exactly the 2 s floor
        (5, NOW + 2.5, 5),
        (2, NOW - 0.0, 0.0),  # 2 s early on a 2 s token is within the floor
        (3600, NOW + 4000, 3600),  # our clock runs behind: expires_in ends first
        (3600, 10**400, 3600),
        (3600, float("nan"), 3600),
        (3600, "soon", 3600),
    ],
)
def test_the_earlier_end_wins_within_bounds(expires_in: float, exp: object, seconds: float) -> None:
    assert expiry_of({"exp": exp, "sub": "svc"}, expires_in) == seconds


@pytest.mark.usefixtures("frozen_clock")
@pytest.mark.parametrize(
    "claims, seconds",
    [
        ({"exp": NOW + 600}, 600),
        ({"exp": NOW - 5}, 0.0),  # no other information: as the clock says
        ({"exp": 10**400}, TEN_YEARS),
        ({"iat": NOW - 0.75, "exp": NOW - 0.75 + 3600}, 3599.25),
        ({"iat": NOW - 5000, "exp": NOW - 5000 + 3600}, 3600),  # clock far ahead: exp - iat
        ({"iat": NOW - 5000, "exp": NOW - 5000 + 3600.0 * 100_000_000}, TEN_YEARS),
        ({"iat": NOW + 10, "exp": NOW + 5}, 5),  # iat after exp says nothing
    ],
)
def test_without_expires_in_the_jwt_alone_times_the_token(
    claims: dict[str, object], seconds: float
) -> None:
    assert expiry_of(claims) == seconds


@pytest.mark.parametrize(
    "token",
    [
        "a.b.c",
        "..",
        "x..y",
        "e30.W10.x",  # payload is a JSON array
        "e30.bnVsbA.x",  # payload is null
        "e30.eyJleHAiOjF9x.x",  # bad base64 length
        "e30.____.x",
        "e30.gA.x",  # not UTF-8
        "e30." + base64.urlsafe_b64encode(b"[" * 40_000).decode().rstrip("=") + ".x",
        "e30." + base64.urlsafe_b64encode(b'{"exp": 1' + b"0" * 5000 + b"}").decode() + ".x",
        "e30." + base64.urlsafe_b64encode(b'{"exp": NaN, "iat": Infinity}').decode() + ".x",
    ],
)
def test_a_garbage_three_part_token_is_just_opaque(token: str) -> None:
    assert granted_token({"access_token": token, **BEARER}).expires_in is None
    assert granted_token({"access_token": token, **BEARER, "expires_in": 60}).expires_in == 60
