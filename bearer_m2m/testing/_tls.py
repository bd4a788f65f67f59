"""The TLS set-up of a test authorization server: its CA, certificate files and contexts."""

from __future__ import annotations

import re
import secrets
import shutil
import ssl
import tempfile
import threading
import weakref
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ._pki import CertificateAuthority, ClientCertificate, make_self_signed_certificate


class ServerTLS:
    """A CA made for one server, its files in a private temporary directory, and the
    server-side contexts: ``context`` asks for no client certificate, ``mutual_context``
    asks for one (``CERT_OPTIONAL``) and trusts the CA and the certificates
    passed to :meth:`trust`.

    :meth:`close` removes the directory (as does garbage collection, or the
    interpreter's exit, for a server never stopped).
    """

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="bearer-m2m-tls-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.directory, True)
        self.ca = CertificateAuthority()
        self.ca_bundle = str(self.directory / "ca.pem")
        Path(self.ca_bundle).write_bytes(self.ca.pem)
        server = self.ca.issue(self.directory, "server", "127.0.0.1", server=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(server.cert_path, server.key_path)
        self.mutual_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.mutual_context.load_cert_chain(server.cert_path, server.key_path)
        self.mutual_context.verify_mode = ssl.CERT_OPTIONAL
        self.mutual_context.load_verify_locations(cafile=self.ca_bundle)
        self._lock = threading.Lock()

    def trust(self, certificate: x509.Certificate) -> None:
        """Let ``certificate`` (a self-signed one) through the mutual-TLS handshake.

        Python's :mod:`ssl` has no "any certificate" mode (nginx's
        ``optional_no_ca``): a client certificate the context does not trust
        ends the handshake. The application checks what it lets through.
        """
        pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        with self._lock:
            self.mutual_context.load_verify_locations(cadata=pem)

    def issue_client_certificate(self, subject_cn: str) -> ClientCertificate:
        return self.ca.issue(self.directory, _file_name("client", subject_cn), subject_cn)

    def make_self_signed_certificate(self, cn: str) -> ClientCertificate:
        certificate = make_self_signed_certificate(
            self.directory, cn, name=_file_name("self-signed", cn)
        )
        self.trust(certificate.certificate)
        return certificate

    def client_context(self, certificate: ClientCertificate | None = None) -> ssl.SSLContext:
        """A client-side context that trusts the CA and presents ``certificate``, if given."""
        context = ssl.create_default_context(cafile=self.ca_bundle)
        if certificate is not None:
            context.load_cert_chain(certificate.cert_path, certificate.key_path)
        return context

    def close(self) -> None:
        self._finalizer()


def _file_name(kind: str, cn: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", cn)[:40]
    return f"{kind}-{safe}-{secrets.token_hex(4)}"
