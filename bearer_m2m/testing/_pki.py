"""Certificates for the test servers' TLS: a throwaway CA, server and client certificates.

Everything is made with ``cryptography`` on P-256 keys (fast to generate) and
written as PEM files, the form ``requests``, ``httpx`` and :mod:`ssl` load.
Certificate thumbprints are RFC 8705's ``x5t#S256``: the unpadded base64url
SHA-256 digest of the DER certificate.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import os
import secrets
from pathlib import Path
from typing import NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long the certificates made here are valid: long enough for any test run.
VALIDITY = datetime.timedelta(days=7)
#: Backdating, so that a certificate made this instant is valid on a clock a little behind.
BACKDATE = datetime.timedelta(minutes=5)

PathLike = str | os.PathLike[str]


class ClientCertificate(NamedTuple):
    """A client certificate and its private key, as PEM files.

    It is a ``(cert_path, key_path)`` tuple, the shape ``requests`` takes as
    ``cert=``; the key file is unencrypted and readable by its owner only.
    """

    cert_path: str
    key_path: str

    @property
    def certificate(self) -> x509.Certificate:
        return load_certificate(self.cert_path)

    @property
    def pem(self) -> bytes:
        """The certificate (not the key) in PEM."""
        return Path(self.cert_path).read_bytes()

    @property
    def thumbprint(self) -> str:
        """RFC 8705's ``x5t#S256`` of the certificate."""
        return thumbprint(self.certificate)

    @property
    def subject_dn(self) -> str:
        """The subject as an RFC 4514 string (``CN=svc``), as ``tls_client_auth_subject_dn`` is."""
        return self.certificate.subject.rfc4514_string()


def thumbprint(certificate: x509.Certificate | bytes) -> str:
    """RFC 8705's ``x5t#S256`` of a certificate (an object, or its DER bytes)."""
    der = (
        certificate.public_bytes(serialization.Encoding.DER)
        if isinstance(certificate, x509.Certificate)
        else certificate
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def load_certificate(source: PathLike | bytes | ClientCertificate) -> x509.Certificate:
    """A certificate from PEM text, PEM or DER bytes, a PEM file or a :class:`ClientCertificate`.

    A ``str`` is PEM text when it holds a ``-----BEGIN`` line, else a path.
    """
    if isinstance(source, ClientCertificate):
        source = source.cert_path
    if isinstance(source, str) and "-----BEGIN" in source:
        data = source.encode()
    elif isinstance(source, bytes):
        data = source
    else:
        data = Path(source).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise ValueError("not an X.509 certificate in PEM or DER") from None


def make_self_signed_certificate(
    directory: PathLike, cn: str = "self-signed client", *, name: str | None = None
) -> ClientCertificate:
    """Make a self-signed client certificate (for ``self_signed_tls_client_auth``) in ``directory``.

    The files are ``<name>.pem`` and ``<name>-key.pem``; ``name`` defaults to a
    random one, so that several certificates can share a directory.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn)
    certificate = (
        _builder(subject, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        # Key identifiers let a TLS stack that trusts several self-signed certificates
        # with one subject find the right one.
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return _write(Path(directory), name or f"self-signed-{secrets.token_hex(4)}", certificate, key)


class CertificateAuthority:
    """A throwaway CA that signs the server's certificate and clients' certificates."""

    def __init__(self, common_name: str = "bearer_m2m test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        # A random serial in the name: two CAs of one run are told apart by their subject.
        name = _name(f"{common_name} {secrets.token_hex(4)}")
        public_key = self.key.public_key()
        self.certificate = (
            _builder(name, name, public_key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, directory: Path, name: str, cn: str, *, server: bool = False
    ) -> ClientCertificate:
        """A certificate for ``cn`` signed by this CA, written to ``directory``.

        A server certificate is for 127.0.0.1 and ``localhost``; a client one
        has the ``clientAuth`` extended key usage.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            _builder(_name(cn), self.certificate.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            alternative_names: list[x509.GeneralName] = [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.DNSName("localhost"),
            ]
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternative_names), critical=False
            )
        return _write(directory, name, builder.sign(self.key, hashes.SHA256()), key)

    def signed(self, certificate: x509.Certificate) -> bool:
        """Whether this CA issued ``certificate`` (its signature checks, and it is in date)."""
        try:
            certificate.verify_directly_issued_by(self.certificate)
        except (InvalidSignature, ValueError, TypeError):
            return False
        now = datetime.datetime.now(datetime.timezone.utc)
        return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _name(cn: str) -> x509.Name:
    if not isinstance(cn, str) or not cn:
        raise ValueError("a certificate's common name must be a non-empty string")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
    )


def _write(
    directory: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> ClientCertificate:
    cert_path = directory / f"{name}.pem"
    key_path = directory / f"{name}-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem_key)
    return ClientCertificate(str(cert_path), str(key_path))
