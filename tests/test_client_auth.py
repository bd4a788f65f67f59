"""Client authentication methods: what each one puts on the wire, and bad keys and certificates."""

from __future__ import annotations

import base64
import datetime
import json
import time
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import requests_mock
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from bearer_m2m import ClientCredentialsAuth, ConfigurationError

URL = "https://tenant.example/oauth/token"
GOOD = {"json": {"access_token": "tok", "token_type": "Bearer", "expires_in": 3600}}
RSA_KEY = RSAKey.generate_key(2048, private=True)
EC_KEY = ECKey.generate_key("P-256", private=True)


def form_of(m: requests_mock.Mocker, index: int = 0) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(m.request_history[index].text).items()}


def fetch(auth: ClientCredentialsAuth, times: int = 1) -> requests_mock.Mocker:
    with requests_mock.Mocker() as m:
        m.post(URL, **GOOD)
        for _ in range(times):
            auth.invalidate()
            auth.token()
    return m


def verified_claims(
    assertion: str, key: object, algorithm: str
) -> tuple[dict[str, object], dict[str, object]]:
    token = jwt.decode(assertion, key, algorithms=[algorithm])  # type: ignore[arg-type]
    return dict(token.header), dict(token.claims)


@pytest.mark.parametrize(
    "source",
    ["pem-string", "pem-bytes", "pem-file", "jwk"],
)
def test_private_key_jwt_signs_a_fresh_short_assertion(source: str, tmp_path: Path) -> None:
    pem = RSA_KEY.as_pem(private=True)
    given: object = {
        "pem-string": pem.decode(),
        "pem-bytes": pem,
        "pem-file": tmp_path / "key.pem",
        "jwk": RSA_KEY.as_dict(private=True),
    }[source]
    (tmp_path / "key.pem").write_bytes(pem)
    auth = ClientCredentialsAuth(URL, client_id="svc", private_key=given, private_key_id="k1")  # type: ignore[arg-type]
    m = fetch(auth, times=2)
    forms = [form_of(m, 0), form_of(m, 1)]
    assert (
        forms[0]["client_assertion_type"]
        == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assert "client_secret" not in forms[0]
    header, claims = verified_claims(forms[0]["client_assertion"], RSA_KEY, "RS256")
    assert header["alg"] == "RS256" and header["kid"] == "k1"
    assert claims["iss"] == claims["sub"] == "svc"
    assert claims["aud"] == URL
    assert claims["exp"] - claims["iat"] == 60  # type: ignore[operator]
    assert abs(claims["iat"] - time.time()) < 5  # type: ignore[operator]
    _, second = verified_claims(forms[1]["client_assertion"], RSA_KEY, "RS256")
    assert second["jti"] != claims["jti"]


@pytest.mark.parametrize(("algorithm", "key"), [("ES256", EC_KEY), ("PS256", RSA_KEY)])
def test_other_signing_algorithms(algorithm: str, key: RSAKey | ECKey) -> None:
    auth = ClientCredentialsAuth(
        URL,
        client_id="svc",
        private_key=key.as_pem(private=True).decode(),
        signing_algorithm=algorithm,
        assertion_audience="https://tenant.example/",
    )
    header, claims = verified_claims(form_of(fetch(auth))["client_assertion"], key, algorithm)
    assert header["alg"] == algorithm and "kid" not in header
    assert claims["aud"] == "https://tenant.example/"  # Auth0 wants its domain, slash included


def test_a_jwk_kid_is_announced_unless_overridden() -> None:
    jwk = {**RSA_KEY.as_dict(private=True), "kid": "from-jwk"}
    auth = ClientCredentialsAuth(URL, client_id="svc", private_key=jwk)
    header, _ = verified_claims(form_of(fetch(auth))["client_assertion"], RSA_KEY, "RS256")
    assert header["kid"] == "from-jwk"


def test_client_secret_jwt_signs_with_the_secret() -> None:
    auth = ClientCredentialsAuth(
        URL, client_id="svc", client_secret="s" * 32, auth_method="client_secret_jwt"
    )
    form = form_of(fetch(auth))
    header, claims = verified_claims(form["client_assertion"], OctKey.import_key("s" * 32), "HS256")
    assert header["alg"] == "HS256" and claims["sub"] == "svc" and claims["aud"] == URL
    assert "client_secret" not in form and "s" * 32 not in json.dumps(form)


def make_certificate(tmp_path: Path, name: str = "svc") -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("method", ["tls_client_auth", "self_signed_tls_client_auth"])
def test_tls_client_auth_names_the_client_and_presents_the_certificate(
    tmp_path: Path, method: str
) -> None:
    cert = make_certificate(tmp_path)
    auth = ClientCredentialsAuth(URL, client_id="svc", cert=cert, auth_method=method)
    m = fetch(auth)
    assert form_of(m) == {"grant_type": "client_credentials", "client_id": "svc"}
    assert m.request_history[0].cert == cert
    assert "Authorization" not in m.request_history[0].headers


def test_a_certificate_alone_implies_tls_client_auth(tmp_path: Path) -> None:
    auth = ClientCredentialsAuth(URL, client_id="svc", cert=make_certificate(tmp_path))
    assert auth._config.auth_method == "tls_client_auth"


def test_basic_credentials_are_form_encoded() -> None:
    auth = ClientCredentialsAuth(
        URL, client_id="a b", client_secret="p+ss", auth_method="client_secret_basic"
    )
    header = fetch(auth).request_history[0].headers["Authorization"]
    assert base64.b64decode(header.removeprefix("Basic ")).decode() == "a+b:p%2Bss"


# -- bad keys and certificates fail at construction, naming the file, never the key ----------


def test_a_missing_key_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.pem"
    with pytest.raises(ConfigurationError, match=r"cannot read private key file .*nope\.pem"):
        ClientCredentialsAuth(URL, client_id="svc", private_key=path)


def test_a_garbage_key_file_is_named_without_its_content(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigurationError) as caught:
        ClientCredentialsAuth(URL, client_id="svc", private_key=path)
    assert "key.pem" in str(caught.value) and "TOPSECRETMATERIAL" not in str(caught.value)
    assert caught.value.__cause__ is None


def test_a_public_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="public key"):
        ClientCredentialsAuth(
            URL, client_id="svc", private_key=RSA_KEY.as_pem(private=False).decode()
        )


def test_a_key_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="RSA private key for RS256"):
        ClientCredentialsAuth(
            URL, client_id="svc", private_key=EC_KEY.as_pem(private=True).decode()
        )
    p384 = ECKey.generate_key("P-384", private=True).as_pem(private=True).decode()
    with pytest.raises(ConfigurationError, match="ES256 needs P-256"):
        ClientCredentialsAuth(URL, client_id="svc", private_key=p384, signing_algorithm="ES256")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"client_secret": "s", "private_key": "k.pem"},
            "client_secret is not used with private_key_jwt",
        ),
        ({"auth_method": "private_key_jwt"}, "needs private_key"),
        ({"auth_method": "tls_client_auth"}, "needs cert"),
        ({"client_secret": "s", "signing_algorithm": "RS256"}, "signing_algorithm is not used"),
        (
            {
                "client_secret": "s",
                "auth_method": "client_secret_jwt",
                "signing_algorithm": "RS256",
            },
            "HS256",
        ),
        (
            {"private_key": RSA_KEY.as_dict(private=True), "signing_algorithm": "none"},
            "signing_algorithm",
        ),
        ({}, "client_secret_post needs client_secret"),
    ],
)
def test_contradictory_or_missing_credentials(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClientCredentialsAuth(URL, client_id="svc", **options)  # type: ignore[arg-type]


def test_certificate_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"missing\.crt.* does not exist"):
        ClientCredentialsAuth(URL, client_id="svc", cert=(str(tmp_path / "missing.crt"), "k"))
    cert, _ = make_certificate(tmp_path, "one")
    _, other_key = make_certificate(tmp_path, "two")
    with pytest.raises(ConfigurationError, match=r"one\.crt.*two\.key.*matching"):
        ClientCredentialsAuth(URL, client_id="svc", cert=(cert, other_key))


def test_a_key_pasted_where_a_path_was_expected_is_not_repeated() -> None:
    pasted = base64.b64encode(
        RSA_KEY.as_pem(private=True)
    ).decode()  # as a secret store hands it out
    with pytest.raises(ConfigurationError) as caught:
        ClientCredentialsAuth(URL, client_id="svc", private_key=pasted)
    assert pasted[:40] not in str(caught.value) and "cannot read private_key" in str(caught.value)


def test_a_jwk_as_a_json_string_is_a_key() -> None:
    auth = ClientCredentialsAuth(
        URL, client_id="svc", private_key=json.dumps(RSA_KEY.as_dict(private=True))
    )
    _, claims = verified_claims(form_of(fetch(auth))["client_assertion"], RSA_KEY, "RS256")
    assert claims["sub"] == "svc"
    with pytest.raises(ConfigurationError, match="not valid JSON") as caught:
        ClientCredentialsAuth(URL, client_id="svc", private_key='{"kty": "RSA", "d": "SECRETPART"')
    assert "SECRETPART" not in str(caught.value)


def test_an_encrypted_tls_key_is_refused_without_a_prompt(tmp_path: Path) -> None:
    cert, key_file = make_certificate(tmp_path)
    key = serialization.load_pem_private_key(Path(key_file).read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    Path(key_file).write_bytes(encrypted)
    with pytest.raises(ConfigurationError, match="unencrypted private key"):
        ClientCredentialsAuth(URL, client_id="svc", cert=(cert, key_file))


def test_client_secret_jwt_needs_a_secret_as_long_as_the_hash() -> None:
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        ClientCredentialsAuth(
            URL, client_id="svc", client_secret="short", auth_method="client_secret_jwt"
        )
    with pytest.raises(ConfigurationError, match="at least 64 bytes"):
        ClientCredentialsAuth(
            URL,
            client_id="svc",
            client_secret="s" * 32,
            auth_method="client_secret_jwt",
            signing_algorithm="HS512",
        )
