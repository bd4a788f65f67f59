"""A real django-oauth-toolkit (DOT) site on loopback, for the interop tests.

``DotSite(db_path)`` configures Django in this process (once: Django settings
are process-global), migrates a temp-file SQLite database, and serves the WSGI app
from a threading ``wsgiref`` server on 127.0.0.1 and a free port. Nothing here
touches Django at import time, so importing this module is harmless to the
rest of the test suite.

The URLconf lives in :mod:`tests.interop.dot_urls`, which Django imports on the
first request: DOT's view modules read the Django settings when imported.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from oauth2_provider.models import AbstractAccessToken, AbstractApplication

TOKEN_PATH = "/o/token/"
REVOKE_PATH = "/o/revoke_token/"
INTROSPECT_PATH = "/o/introspect/"
#: RFC 9728 view: 401 with a ``WWW-Authenticate: Bearer`` challenge for a bad token.
WHOAMI_PATH = "/api/whoami/"
#: DOT's default ``ProtectedResourceView``: a bare 403 for a bad token.
LEGACY_PATH = "/api/legacy/"
#: RFC 9728 view that requires the ``write`` scope (403 ``insufficient_scope`` otherwise).
WRITE_PATH = "/api/write/"

#: Marks the settings this module configured, to tell them from someone else's.
_MARKER = "BEARER_M2M_INTEROP_DOT_SITE"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    # Non-daemon handler threads: ``server_close`` joins them, so no request is
    # still running (and holding a database connection) after shutdown.
    daemon_threads = False


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _TrafficCounter:
    """WSGI middleware that counts requests as ``"METHOD /path STATUS"``."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._seen: Counter[str] = Counter()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def counting_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            key = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']} {status.split()[0]}"
            with self._lock:
                self._seen[key] += 1
            return start_response(status, headers, exc_info)

        return self._app(environ, counting_start_response)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return self._seen.copy()


def _configure_django(db_path: Path) -> None:
    from django.conf import settings

    if settings.configured:
        if getattr(settings, _MARKER, False):
            return
        raise RuntimeError("Django settings were configured by someone else in this process")
    settings.configure(
        DEBUG=False,
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["127.0.0.1"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "oauth2_provider",
        ],
        MIDDLEWARE=[],
        ROOT_URLCONF="tests.interop.dot_urls",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db_path)}},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        # DOT hashes client secrets with Django's first password hasher. PBKDF2's
        # million iterations would cost ~0.3 s per token request; MD5 keeps the
        # same hash-and-check path fast (Django's docs advise it for tests).
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        # Leave the test process's logging alone: Django's dictConfig would
        # replace the handlers pytest installed.
        LOGGING_CONFIG=None,
        OAUTH2_PROVIDER={
            "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
            "SCOPES": {"read": "Read", "write": "Write"},
            # Adopt DOT 4.0's RFC 9700 defaults now: tokens are stored as a
            # SHA-256 checksum only, and no legacy path warns (which
            # filterwarnings=error would turn into a 500 in the server thread).
            "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
            "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
            "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
            "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
            "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
            "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
        },
        **{_MARKER: True},
    )


def token_checksum(access_token: str) -> str:
    """What DOT stores instead of the token (``COMPLIANT_BCP_RFC9700_TOKEN_STORAGE``)."""
    return hashlib.sha256(access_token.encode()).hexdigest()


@dataclass(frozen=True)
class DotClient:
    """An application registered in DOT, with the plaintext secret DOT keeps only a hash of."""

    client_id: str
    secret: str = field(repr=False)
    application: AbstractApplication


class DotSite:
    """A running DOT site: built running, stopped with :meth:`close`."""

    def __init__(self, db_path: Path) -> None:
        import django
        from django.core.handlers.wsgi import WSGIHandler
        from django.core.management import call_command

        _configure_django(db_path)
        django.setup()
        call_command("migrate", verbosity=0, interactive=False)

        self._traffic = _TrafficCounter(WSGIHandler())
        self._httpd = make_server(
            "127.0.0.1",
            0,
            self._traffic,
            server_class=_ThreadingWSGIServer,
            handler_class=_QuietHandler,
        )
        self.origin = f"http://127.0.0.1:{self._httpd.server_port}"
        self.token_url = self.origin + TOKEN_PATH
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="dot-site",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        from django.db import connections

        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        connections.close_all()

    def url(self, path: str) -> str:
        return self.origin + path

    def traffic(self) -> Counter[str]:
        """Requests served so far, as ``"METHOD /path STATUS"``: subtract two snapshots."""
        return self._traffic.snapshot()

    # -- DOT's database, seen from the test thread ----------------------------

    def register_client(self, secret: str, name: str = "interop") -> DotClient:
        """Register a confidential client-credentials application whose secret is ``secret``.

        DOT stores only a hash of the secret, so the plaintext is kept here.
        """
        from oauth2_provider.models import get_application_model

        application_model = get_application_model()
        application = application_model.objects.create(
            name=name,
            client_type=application_model.CLIENT_CONFIDENTIAL,
            authorization_grant_type=application_model.GRANT_CLIENT_CREDENTIALS,
            client_secret=secret,
            hash_client_secret=True,
        )
        return DotClient(application.client_id, secret, application)

    def tokens_of(self, application: AbstractApplication) -> list[AbstractAccessToken]:
        from oauth2_provider.models import get_access_token_model

        query = get_access_token_model().objects.filter(application=application)
        return list(query.order_by("id"))

    def delete_token(self, access_token: str) -> None:
        """Revoke behind the client's back: delete the row, as an admin would."""
        from oauth2_provider.models import get_access_token_model

        deleted, _ = (
            get_access_token_model()
            .objects.filter(token_checksum=token_checksum(access_token))
            .delete()
        )
        assert deleted == 1

    # -- DOT's own endpoints, called the way a resource server or an admin would --

    def revoke(self, client_id: str, secret: str, access_token: str) -> None:
        """RFC 7009 revocation through DOT's ``revoke_token`` endpoint."""
        response = requests.post(
            self.url(REVOKE_PATH),
            data={"token": access_token, "token_type_hint": "access_token"},
            auth=_basic(client_id, secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text

    def introspect(self, client_id: str, secret: str, access_token: str) -> dict[str, Any]:
        """RFC 7662 introspection through DOT's ``introspect`` endpoint."""
        response = requests.post(
            self.url(INTROSPECT_PATH),
            data={"token": access_token},
            auth=_basic(client_id, secret),
            timeout=10,
        )
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


def _basic(client_id: str, secret: str) -> tuple[str, str]:
    """HTTP Basic credentials as RFC 6749 section 2.3.1 wants them: form-urlencoded first."""
    return quote_plus(client_id), quote_plus(secret)
