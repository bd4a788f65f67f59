"""bearer_m2m._dpop: DPoP keys, proofs, nonces and the answers that ask for one (RFC 9449)."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import pickle
import re
import threading
import warnings
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

from bearer_m2m import ConfigurationError
from bearer_m2m._dpop import (
    ALGORITHMS,
    DPoPKey,
    NonceStore,
    dpop_challenge,
    dpop_key,
    htu,
    is_nonce_challenge,
    is_nonce_error,
    is_valid_nonce,
    origin,
    parse_www_authenticate,
)
from bearer_m2m.testing._dpop import normalise_url

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
#: RFC 7638 section 3.2: the members a thumbprint covers, per key type.
THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}
URL = "https://api.example.com/v1/things"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def verified(
    proof: str, public_jwk: dict[str, Any], algorithm: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``proof``, whose signature joserfc checks with ``public_jwk``."""
    registry = JWSRegistry(algorithms=[algorithm])
    registry.max_header_length = 4096  # an RSA key's header exceeds joserfc's default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # joserfc deprecates the name EdDSA
        compact = jws.deserialize_compact(proof, import_key(public_jwk), registry=registry)
    return compact.headers(), json.loads(compact.payload)


def private_pem(key: Any, password: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.NoEncryption()
        if password is None
        else serialization.BestAvailableEncryption(password)
    )
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def source_key(algorithm: str) -> Key:
    """A joserfc private key of the kind ``algorithm`` signs with."""
    if algorithm.startswith("ES"):
        return ECKey.generate_key("P-256" if algorithm == "ES256" else "P-384")
    if algorithm == "EdDSA":
        return OKPKey.generate_key("Ed25519")
    return RSAKey.generate_key(2048)


# -- keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_generated_key_signs_proofs_its_public_jwk_verifies(algorithm: str) -> None:
    key = DPoPKey.generate(algorithm)
    header, claims = verified(key.proof("GET", URL), key.public_jwk, algorithm)
    assert header == {"typ": "dpop+jwt", "alg": algorithm, "jwk": key.public_jwk}
    assert key.algorithm == algorithm and claims["htm"] == "GET"


def test_dpop_option_true_makes_a_new_es256_key_each_time() -> None:
    first, second = dpop_key(True), dpop_key(True)
    assert first is not None and second is not None
    assert first.algorithm == "ES256" and first.public_jwk["crv"] == "P-256"
    assert first.thumbprint != second.thumbprint


@pytest.mark.parametrize(
    ("algorithm", "kty"), [("ES384", "EC"), ("PS256", "RSA"), ("EdDSA", "OKP")]
)
def test_dpop_algorithm_picks_the_kind_of_key_made(algorithm: str, kty: str) -> None:
    key = dpop_key(True, algorithm)
    assert key is not None and key.algorithm == algorithm and key.public_jwk["kty"] == kty


def test_no_dpop_means_no_key_and_an_algorithm_alone_is_an_error() -> None:
    assert dpop_key(None) is None and dpop_key(False) is None
    with pytest.raises(ConfigurationError, match="dpop_algorithm"):
        dpop_key(False, "ES256")


@pytest.mark.parametrize("algorithm", ["HS256", "none", "ES512", "es256", "", 256])
def test_unsupported_algorithms_are_configuration_errors(algorithm: Any) -> None:
    with pytest.raises(ConfigurationError, match="dpop_algorithm must be one of ES256"):
        dpop_key(True, algorithm)
    with pytest.raises(ConfigurationError, match="dpop_algorithm must be one of ES256"):
        DPoPKey.load(ECKey.generate_key("P-256").as_dict(private=True), algorithm)


@pytest.mark.parametrize("option", [42, 1.5, ["key"], object()])
def test_other_dpop_values_are_configuration_errors(option: Any) -> None:
    with pytest.raises(ConfigurationError, match="dpop must be True"):
        dpop_key(option)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_thumbprint_is_rfc_7638_base64url_sha256_of_the_required_members(
    algorithm: str,
) -> None:
    key = DPoPKey.generate(algorithm)
    jwk = key.public_jwk
    members = {name: jwk[name] for name in THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    assert key.thumbprint == b64url(hashlib.sha256(canonical).digest())
    assert set(jwk) == set(members)  # the header carries those members and no others


def given_forms(tmp_path: Path, key: Key) -> dict[str, Any]:
    """Every way a user may hand over ``key``."""
    pem = key.as_pem(private=True)
    jwk = key.as_dict(private=True)
    (tmp_path / "key.pem").write_bytes(pem)
    (tmp_path / "key.jwk").write_text(json.dumps(jwk))
    return {
        "pem bytes": pem,
        "pem text": pem.decode(),
        "path text": str(tmp_path / "key.pem"),
        "path object": tmp_path / "key.pem",
        "jwk dict": jwk,
        "jwk text": json.dumps(jwk),
        "jwk file": str(tmp_path / "key.jwk"),
    }


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_given_key_is_used_as_is_in_every_form(tmp_path: Path, algorithm: str) -> None:
    original = source_key(algorithm)
    for form, source in given_forms(tmp_path, original).items():
        key = DPoPKey.load(source, algorithm)
        assert key.thumbprint == original.thumbprint(), form
        public = original.as_dict(private=False)
        verified(key.proof("POST", URL), public, algorithm)  # the user's key signed it


@pytest.mark.parametrize(
    ("make", "implied"),
    [
        (lambda: ECKey.generate_key("P-256"), "ES256"),
        (lambda: ECKey.generate_key("P-384"), "ES384"),
        (lambda: RSAKey.generate_key(2048), "RS256"),
        (lambda: OKPKey.generate_key("Ed25519"), "EdDSA"),
        (lambda: RSAKey.generate_key(2048, parameters={"alg": "PS256"}), "PS256"),
    ],
)
def test_without_an_algorithm_a_given_key_implies_one(make: Any, implied: str) -> None:
    key: Key = make()
    assert DPoPKey.load(key.as_dict(private=True)).algorithm == implied
    if "alg" not in key.as_dict():
        assert DPoPKey.load(key.as_pem(private=True)).algorithm == implied


def refused_sources() -> dict[str, tuple[Any, str | None]]:
    """Keys that must be refused: (source, algorithm)."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    es256 = ECKey.generate_key("P-256")
    small_rsa = rsa.generate_private_key(65537, 1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        small_jwk = RSAKey.import_key(small_rsa).as_dict(private=True)
    return {
        "public PEM": (es256.as_pem(private=False), None),
        "public JWK": (es256.as_dict(private=False), None),
        "symmetric JWK": ({"kty": "oct", "k": b64url(b"0" * 32)}, None),
        "encrypted PEM": (private_pem(ec_key, b"pass"), None),
        "short RSA PEM": (private_pem(small_rsa), "RS256"),
        "short RSA JWK": (small_jwk, "RS256"),
        "X25519 key": (private_pem(x25519.X25519PrivateKey.generate()), None),
        "P-521 key": (private_pem(ec.generate_private_key(ec.SECP521R1())), None),
        "P-384 key for ES256": (ECKey.generate_key("P-384").as_pem(private=True), "ES256"),
        "RSA key for ES256": (RSAKey.generate_key(2048).as_pem(private=True), "ES256"),
        "EC key for PS256": (es256.as_pem(private=True), "PS256"),
        "Ed25519 key for ES256": (private_pem(ed25519.Ed25519PrivateKey.generate()), "ES256"),
        "JWK for another alg": ({**es256.as_dict(private=True), "alg": "ES384"}, None),
        "JWK for encryption": ({**es256.as_dict(private=True), "use": "enc"}, None),
        "JWK only for verifying": ({**es256.as_dict(private=True), "key_ops": ["verify"]}, None),
        "JWK that is no key": ({"kty": "EC", "crv": "P-256", "d": "AAAA"}, None),
        "PEM that is no key": (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
        ),
        "JWK text that is no JSON": ('{"kty": "EC", ', None),
        "JWK text without a key type": ("{}", None),
    }


@pytest.mark.parametrize("name", list(refused_sources()))
def test_keys_that_cannot_sign_proofs_are_refused_without_quoting_them(name: str) -> None:
    source, algorithm = refused_sources()[name]
    with pytest.raises(ConfigurationError) as raised:
        DPoPKey.load(source, algorithm)
    message = str(raised.value)
    assert "given as dpop" in message
    assert_no_key_material(message, source)


def assert_no_key_material(message: str, source: Any) -> None:
    """No part of the key (a PEM line, a JWK member's value) is in ``message``."""
    if isinstance(source, dict):
        pieces = [str(value) for value in source.values() if len(str(value)) > 8]
    else:
        text = source.decode() if isinstance(source, bytes) else str(source)
        pieces = [line for line in text.splitlines() if len(line) > 8 and "-----" not in line]
    for piece in pieces:
        assert piece not in message


def test_an_unreadable_key_file_is_named_and_its_content_is_not_quoted(tmp_path: Path) -> None:
    missing = tmp_path / "dpop-key.pem"
    with pytest.raises(ConfigurationError, match=re.escape(str(missing))):
        DPoPKey.load(str(missing))
    with pytest.raises(ConfigurationError, match="cannot read"):
        DPoPKey.load(tmp_path)  # a directory
    public = tmp_path / "public.pem"
    public_pem = ECKey.generate_key("P-256").as_pem(private=False)
    public.write_bytes(public_pem)
    with pytest.raises(ConfigurationError, match=re.escape(str(public)) + ".*public key") as raised:
        DPoPKey.load(public)
    assert_no_key_material(str(raised.value), public_pem)


def test_a_key_pasted_where_a_path_belongs_is_never_quoted() -> None:
    der = ECKey.generate_key("P-256").as_der(private=True)
    pasted = base64.b64encode(der).decode()  # base64 from a secret store, say
    with pytest.raises(ConfigurationError) as raised:
        DPoPKey.load(pasted)
    assert pasted not in str(raised.value) and pasted[:16] not in str(raised.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_repr_pickling_and_copies_never_expose_the_key(algorithm: str) -> None:
    original = source_key(algorithm)
    key = DPoPKey.load(original.as_dict(private=True), algorithm)
    private = {name: str(value) for name, value in original.as_dict(private=True).items()
               if name in PRIVATE_MEMBERS}
    shown = repr(key) + str(key)
    assert key.thumbprint in shown and algorithm in shown
    assert not any(value in shown for value in private.values())
    with pytest.raises(TypeError, match="never serialised"):
        pickle.dumps(key)
    assert copy.copy(key) is key and copy.deepcopy({"k": key})["k"] is key


# -- proofs -----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_proof_header_carries_the_public_key_only(algorithm: str) -> None:
    key = DPoPKey.generate(algorithm)
    header, _ = verified(key.proof("GET", URL, access_token="t"), key.public_jwk, algorithm)
    assert set(header) == {"typ", "alg", "jwk"}
    assert not PRIVATE_MEMBERS & set(header["jwk"])


def test_a_proof_for_the_token_endpoint_has_jti_htm_htu_iat_and_nothing_else() -> None:
    key = DPoPKey.generate(clock=lambda: 1_700_000_123.9)
    _, claims = verified(key.proof("POST", "https://Tenant.EU.auth0.com:443/oauth/token?x=1#f"),
                         key.public_jwk, "ES256")
    assert set(claims) == {"jti", "htm", "htu", "iat"}
    assert claims["htm"] == "POST" and claims["iat"] == 1_700_000_123
    assert claims["htu"] == "https://tenant.eu.auth0.com/oauth/token"


def test_a_proof_for_an_api_binds_the_token_and_carries_the_nonce() -> None:
    key = DPoPKey.generate()
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    _, claims = verified(key.proof("DELETE", URL, access_token=token, nonce="n-1_~!"),
                         key.public_jwk, "ES256")
    assert claims["ath"] == b64url(hashlib.sha256(token.encode("ascii")).digest())
    assert claims["nonce"] == "n-1_~!" and claims["htm"] == "DELETE"


def test_every_proof_has_a_new_random_jti_and_a_fresh_signature() -> None:
    key = DPoPKey.generate()
    proofs = [key.proof("GET", URL, access_token="t") for _ in range(500)]
    jtis = {verified(proof, key.public_jwk, "ES256")[1]["jti"] for proof in proofs[:50]}
    assert len(set(proofs)) == 500 and len(jtis) == 50
    assert all(len(jti) >= 22 for jti in jtis)  # 128 random bits, base64url


def test_proofs_from_many_threads_all_verify() -> None:
    key = DPoPKey.generate("EdDSA")
    proofs: list[str] = []

    def sign() -> None:
        proofs.extend(key.proof("GET", URL, access_token="t") for _ in range(50))

    threads = [threading.Thread(target=sign) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(proofs)) == 400
    assert all(verified(proof, key.public_jwk, "EdDSA")[1]["htu"] == URL for proof in proofs)


@pytest.mark.parametrize(
    ("method", "url", "nonce"),
    [
        ("GET POST", URL, None),
        ("", URL, None),
        ("GET", "/relative/path?token=SECRETQUERY", None),
        ("GET", "ftp://files.example/x?token=SECRETQUERY", None),
        ("GET", "https://host:99999/x?token=SECRETQUERY", None),
        ("GET", "https://host:12ab/x?token=SECRETQUERY", None),
        ("GET", "https:///x?token=SECRETQUERY", None),
        ("GET", URL, 'has "quotes"'),
        ("GET", URL, "has space"),
        ("GET", URL, ""),
    ],
)
def test_a_proof_for_a_bad_request_is_a_value_error_that_quotes_nothing(
    method: str, url: str, nonce: str | None
) -> None:
    with pytest.raises(ValueError) as raised:
        DPoPKey.generate().proof(method, url, nonce=nonce)
    assert "SECRETQUERY" not in str(raised.value) and (not nonce or nonce not in str(raised.value))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com", "https://api.example.com/"),
        ("https://api.example.com?q", "https://api.example.com/"),
        ("HTTPS://API.Example.COM:443/A/b", "https://api.example.com/A/b"),
        ("http://api.example.com:80/x#frag", "http://api.example.com/x"),
        ("http://api.example.com:443/x", "http://api.example.com:443/x"),
        ("https://api.example.com:8443/x", "https://api.example.com:8443/x"),
        ("https://api.example.com:/x", "https://api.example.com/x"),
        ("https://api.example.com:0443/x", "https://api.example.com/x"),
        ("https://user:pass@api.example.com/x", "https://api.example.com/x"),
        ("http://[::1]:8080/x?y", "http://[::1]:8080/x"),
        ("http://[FE80::1]:80/", "http://[fe80::1]/"),
        ("https://h/a/../b/%7e%2F", "https://h/a/../b/%7e%2F"),  # the path goes as sent
    ],
)
def test_htu_examples(url: str, expected: str) -> None:
    assert htu(url) == expected


_SCHEMES = st.sampled_from(["http", "https"]).flatmap(
    lambda scheme: st.tuples(
        st.just(scheme), st.sampled_from([scheme, scheme.upper(), scheme.title()])
    )
)
_HOSTS = st.from_regex(
    r"[A-Za-z0-9]([A-Za-z0-9\-]{0,10}[A-Za-z0-9])?(\.[A-Za-z0-9]{1,8}){0,3}", fullmatch=True
)
_PATHS = st.lists(
    st.one_of(
        st.text(alphabet="abcXYZ019-._~!$&'()*+,;=:@", max_size=8),
        st.sampled_from([".", "..", "%7e", "%7E", "%2f", "%41"]),
    ),
    max_size=5,
).map(lambda segments: "".join("/" + segment for segment in segments))
_TAILS = st.sampled_from(["", "?", "?a=1&b=/c?d", "#", "#frag/x?y", "?q#f"])


@given(
    scheme=_SCHEMES,
    host=_HOSTS,
    port=st.one_of(st.none(), st.just("default"), st.integers(1, 65535)),
    userinfo=st.sampled_from(["", "user@", "user:secret@"]),
    path=_PATHS,
    tail=_TAILS,
)
def test_htu_is_the_url_without_query_fragment_or_credentials_scheme_and_host_normalised(
    scheme: tuple[str, str], host: str, port: int | str | None, userinfo: str, path: str, tail: str
) -> None:
    name, written = scheme
    default = {"http": 80, "https": 443}[name]
    port_text = "" if port is None else f":{default if port == 'default' else port}"
    url = f"{written}://{userinfo}{host}{port_text}{path}{tail}"
    shown_port = "" if port in (None, "default", default) else f":{port}"
    expected = f"{name}://{host.lower()}{shown_port}{path or '/'}"
    assert htu(url) == expected
    assert htu(expected) == expected  # normalised already
    assert origin(url) == (name, host.lower(), default if shown_port == "" else port)
    # A server that normalises as RFC 3986 says sees the request's own URL.
    assert normalise_url(htu(url)) == normalise_url(url)


# -- nonces -----------------------------------------------------------------------------


def test_nonces_are_kept_per_origin() -> None:
    store = NonceStore()
    assert store.remember("https://tenant.auth0.com/oauth/token", "token-endpoint-nonce")
    assert store.remember("https://api.example.com/v1/x", "api-nonce")
    assert store.get("https://TENANT.auth0.com:443/other/path?q") == "token-endpoint-nonce"
    assert store.get("https://api.example.com/v2") == "api-nonce"
    # Never to another scheme, port or host: the token endpoint's nonce stays there.
    for elsewhere in (
        "http://tenant.auth0.com/oauth/token",
        "https://tenant.auth0.com:8443/oauth/token",
        "https://evil.example/oauth/token",
        "https://tenant.auth0.com.evil.example/oauth/token",
    ):
        assert store.get(elsewhere) is None
    assert len(store) == 2 and "nonce" not in repr(store).replace("NonceStore", "")


def test_the_newest_nonce_of_an_origin_wins() -> None:
    store = NonceStore()
    for nonce in ("first", "second", "third"):
        store.remember("https://api.example.com/a", nonce)
    assert store.get("https://api.example.com/b") == "third"
    store.forget("https://api.example.com/")
    assert store.get("https://api.example.com/a") is None


@pytest.mark.parametrize("nonce", [None, "", "with space", 'with"quote', "back\\slash", "x" * 1025,
                                   "tab\there", "new\nline", "é", 7])
def test_values_that_are_no_nonce_are_ignored(nonce: Any) -> None:
    store = NonceStore()
    store.remember(URL, "kept")
    assert not store.remember(URL, nonce) and not is_valid_nonce(nonce)
    assert store.get(URL) == "kept"


def test_the_least_recently_updated_origins_go_when_the_store_is_full() -> None:
    store = NonceStore(max_origins=3)
    for port in (1, 2, 3):
        store.remember(f"https://h:{port}/", f"n{port}")
    store.remember("https://h:1/", "n1-again")  # origin 1 is fresh again
    store.remember("https://h:4/", "n4")
    seen = [store.get(f"https://h:{port}/") for port in (1, 2, 3, 4)]
    assert seen == ["n1-again", None, "n3", "n4"]
    with pytest.raises(ValueError):
        NonceStore(max_origins=0)


def test_a_store_shared_by_threads_only_ever_answers_a_nonce_its_origin_gave() -> None:
    store = NonceStore(max_origins=4)
    wrong: list[tuple[int, str | None]] = []

    def work(origin_port: int) -> None:
        url = f"https://api.example:{origin_port}/x"
        for round_ in range(300):
            store.remember(url, f"p{origin_port}-{round_}")
            seen = store.get(url)
            if seen is not None and not seen.startswith(f"p{origin_port}-"):
                wrong.append((origin_port, seen))

    threads = [threading.Thread(target=work, args=(port,)) for port in range(8000, 8008)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == [] and len(store) == 4


# -- answers that ask for a nonce -------------------------------------------------------


def test_www_authenticate_with_several_challenges_quoted_strings_and_token68() -> None:
    challenges = parse_www_authenticate(
        'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple", '
        "Basic2 YWxhZGRpbjpvcGVuc2VzYW1l==, DPoP ERROR=use_dpop_nonce, Algs=\"ES256 PS256\""
    )
    assert [(c.scheme, dict(c.params), c.token68) for c in challenges] == [
        ("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}, None),
        ("basic", {"realm": "simple"}, None),
        ("basic2", {}, "YWxhZGRpbjpvcGVuc2VzYW1l=="),
        ("dpop", {"error": "use_dpop_nonce", "algs": "ES256 PS256"}, None),
    ]


@pytest.mark.parametrize(
    "header",
    [
        'DPoP error="use_dpop_nonce"',
        'dpop error="use_dpop_nonce", error_description="Resource server requires nonce"',
        'Bearer realm="api", DPoP algs="ES256", error="use_dpop_nonce"',
        ['Bearer realm="api", error="invalid_token"', 'DPOP error=use_dpop_nonce'],
        'Basic realm="x, y", Bearer, DPoP error = "use_dpop_nonce"',
    ],
)
def test_nonce_challenges_are_recognised(header: str | list[str]) -> None:
    assert is_nonce_challenge(401, header)
    challenge = dpop_challenge(header)
    assert challenge is not None and challenge.params["error"] == "use_dpop_nonce"


@pytest.mark.parametrize(
    ("status", "header"),
    [
        (403, 'DPoP error="use_dpop_nonce"'),
        (400, 'DPoP error="use_dpop_nonce"'),
        (401, 'Bearer error="use_dpop_nonce"'),
        (401, 'DPoP error="invalid_token"'),
        (401, 'DPoP error="USE_DPOP_NONCE"'),  # error codes are case-sensitive
        (401, 'Bearer error_description="then DPoP error=\\"use_dpop_nonce\\" it said"'),
        (401, 'Bearer realm="DPoP error=use_dpop_nonce"'),
        (401, "DPoPX error=use_dpop_nonce"),
        (401, ""),
        (401, None),
        (401, []),
    ],
)
def test_other_answers_are_no_nonce_challenge(status: int, header: str | None) -> None:
    assert not is_nonce_challenge(status, header)


_PARAM_VALUES = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_\-]{0,8}", fullmatch=True)


@given(
    st.lists(
        st.tuples(_NAMES, st.dictionaries(_NAMES.map(str.lower), _PARAM_VALUES, max_size=4)),
        min_size=1,
        max_size=4,
    ),
    st.booleans(),
)
def test_formatted_challenges_parse_back(
    challenges: list[tuple[str, dict[str, str]]], split: bool
) -> None:
    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    formatted = [
        f"{scheme} " + ", ".join(f"{name}={quoted(value)}" for name, value in params.items())
        if params
        else scheme
        for scheme, params in challenges
    ]
    parsed = parse_www_authenticate(formatted if split else ", ".join(formatted))
    assert [(c.scheme, dict(c.params)) for c in parsed] == [
        (scheme.lower(), params) for scheme, params in challenges
    ]


@given(st.text(max_size=200))
def test_any_header_text_parses_without_error(text: str) -> None:
    for challenge in parse_www_authenticate(text):
        assert challenge.scheme == challenge.scheme.lower() and challenge.scheme


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": "use_dpop_nonce", "error_description": "Authorization server requires nonce"}',
        '{"error":"use_dpop_nonce"}',
        {"error": "use_dpop_nonce"},
    ],
)
def test_a_token_endpoint_nonce_error_is_recognised(body: Any) -> None:
    assert is_nonce_error(400, body)
    assert not is_nonce_error(401, body) and not is_nonce_error(200, body)


@pytest.mark.parametrize(
    "body",
    [None, b"", b"use_dpop_nonce", b'{"error": "invalid_dpop_proof"}', b'["use_dpop_nonce"]',
     b"\xff\xfe", {"error_description": "use_dpop_nonce"}, b"[" * 100_000 + b"]" * 100_000],
)
def test_other_token_endpoint_answers_are_no_nonce_error(body: Any) -> None:
    assert not is_nonce_error(400, body)
