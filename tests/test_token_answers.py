"""Property-based: whatever JSON a token endpoint answers, granted_token returns a usable
GrantedToken or raises InvalidTokenResponse, and never quotes the token."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bearer_m2m import InvalidTokenResponse
from bearer_m2m._tokens import (
    JWT_SHORTENING_FRACTION,
    JWT_SHORTENING_SECONDS,
    MAX_LIFETIME,
    MAX_TOKEN_LENGTH,
    GrantedToken,
    granted_token,
)

#: Wrapped around generated tokens, so that "the message quotes the token" is detectable.
MARK_START, MARK_END = "Zq9", "Xw7"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**63, 2**1024, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 1e308, 5e-324, -0.0]),
    st.text(),
    st.sampled_from(["3600", "9" * 400, "1e999", "Infinity", "NaN", "-1", "\u0663", "1_0"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
visible_ascii = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def deeply_nested(depth: int) -> object:
    value: object = []
    for _ in range(depth):
        value = [value]
    return value


def jwt_shaped(claims: object) -> str:
    """A three-part token whose middle part is ``claims`` as JSON (NaN and Infinity allowed)."""
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{body}.sig"


tokens = st.one_of(
    st.text(min_size=1).map(lambda text: MARK_START + text + MARK_END),
    st.text(visible_ascii, min_size=1).map(lambda text: MARK_START + text + MARK_END),
    st.dictionaries(st.sampled_from(["exp", "iat", "sub"]), json_values).map(jwt_shaped),
    st.lists(st.text(visible_ascii), min_size=3, max_size=3).map(".".join),
    json_values,
)
payloads = st.one_of(
    st.fixed_dictionaries(
        {"access_token": tokens, "token_type": st.sampled_from(["Bearer", "bearer", "mac"])},
        optional={"expires_in": json_values, "expires_at": json_values, "scope": json_values},
    ),
    st.dictionaries(st.text(max_size=12), json_values),
    json_values,
)


def assert_usable(granted: GrantedToken) -> None:
    token = granted.access_token
    assert 0 < len(token) <= MAX_TOKEN_LENGTH
    assert all(0x21 <= ord(char) <= 0x7E for char in token)
    if granted.expires_in is not None:
        assert isinstance(granted.expires_in, float)
        assert 0 <= granted.expires_in <= MAX_LIFETIME


@given(payloads)
@example({"access_token": "a", "token_type": "Bearer", "expires_in": 10**400})
@example({"access_token": "a", "token_type": "Bearer", "expires_in": float("inf")})
@example({"access_token": "a", "token_type": "Bearer", "expires_in": float("nan")})
@example({"access_token": "a", "token_type": "Bearer", "expires_in": [1, [2]]})
@example({"access_token": "a", "token_type": "Bearer", "expires_at": {"when": 1}})
@example({"access_token": jwt_shaped({"exp": 10**400}), "token_type": "Bearer"})
@example({"access_token": jwt_shaped({"exp": float("nan")}), "token_type": "Bearer"})
@example(
    {"access_token": jwt_shaped({"exp": float("-inf")}), "token_type": "Bearer", "expires_in": 9}
)
def test_any_answer_gives_a_usable_token_or_a_typed_error(payload: Any) -> None:
    try:
        granted = granted_token(payload)
    except InvalidTokenResponse as exc:
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if isinstance(token, str) and token.startswith(MARK_START):
            assert token not in str(exc)
    else:
        assert_usable(granted)


def test_deeply_nested_answers_are_typed_errors() -> None:
    """Hypothesis cannot print such examples, so they are tried here."""
    for payload in (
        {"access_token": "a", "token_type": "Bearer", "expires_in": deeply_nested(10_000)},
        {"access_token": deeply_nested(10_000), "token_type": "Bearer"},
        {"access_token": "a", "token_type": deeply_nested(10_000)},
    ):
        with pytest.raises(InvalidTokenResponse):
            granted_token(payload)


@given(st.text(min_size=1))
@example("\r\n")
@example("\x00")
@example("a\r\n b")
@example("\x7f")
@example("\ud800")
def test_a_token_is_accepted_exactly_when_it_is_visible_ascii(text: str) -> None:
    token = MARK_START + text + MARK_END
    sendable = all(0x21 <= ord(char) <= 0x7E for char in text)
    try:
        granted = granted_token({"access_token": token, "token_type": "Bearer"})
    except InvalidTokenResponse as exc:
        assert not sendable
        assert MARK_START not in str(exc)
    else:
        assert sendable
        assert granted.access_token == token


stated_lifetimes = st.floats(min_value=0, max_value=MAX_LIFETIME) | st.integers(0, 10**6)
exp_claims = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from([10**400, -(10**400)]),
)


@given(expires_in=stated_lifetimes, exp=exp_claims, iat=st.none() | exp_claims)
def test_a_jwt_never_lengthens_expires_in_nor_shortens_it_beyond_the_bound(
    expires_in: float, exp: float, iat: float | None
) -> None:
    claims: dict[str, object] = {"exp": exp} if iat is None else {"exp": exp, "iat": iat}
    granted = granted_token(
        {"access_token": jwt_shaped(claims), "token_type": "Bearer", "expires_in": expires_in}
    )
    assert granted.expires_in is not None
    bound = max(JWT_SHORTENING_SECONDS, expires_in * JWT_SHORTENING_FRACTION)
    assert max(0.0, expires_in - bound) <= granted.expires_in <= expires_in


@given(claims=st.dictionaries(st.sampled_from(["exp", "iat", "nbf"]), json_values))
def test_a_jwt_without_expires_in_gives_a_finite_lifetime_or_none(claims: dict[str, Any]) -> None:
    granted = granted_token({"access_token": jwt_shaped(claims), "token_type": "Bearer"})
    assert granted.expires_in is None or (
        math.isfinite(granted.expires_in) and 0 <= granted.expires_in <= MAX_LIFETIME
    )


@given(
    st.sampled_from(["1e999", "-1e999", "Infinity", "-Infinity", "NaN", "9" * 400, "-" + "9" * 400])
    | st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
)
def test_expires_in_as_any_json_number_text(number: str) -> None:
    """The raw JSON texts servers were seen to send, decoded as the fetcher decodes them."""
    payload = json.loads(f'{{"access_token": "a", "token_type": "Bearer", "expires_in": {number}}}')
    try:
        granted = granted_token(payload)
    except InvalidTokenResponse:
        assert number.startswith("-") or number == "NaN"
    else:
        assert_usable(granted)
