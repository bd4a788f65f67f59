"""A real OAuth2 authorization server and protected API on loopback, for tests and demos.

::

    from bearer_m2m.testing import AuthorizationServer, ProtectedAPI

    with AuthorizationServer() as server, ProtectedAPI(server, "https://api.example") as api:
        auth = ClientCredentialsAuth(
            server.token_url,
            client_id=server.client.client_id,
            client_secret=server.client.client_secret,
            audience=api.audience,
        )
        requests.get(api.url + "things", auth=auth)

Clients can also authenticate with ``private_key_jwt``, ``client_secret_jwt``
and, on ``AuthorizationServer(tls=True)``, mutual TLS; see
:meth:`AuthorizationServer.register_client`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._api import ProtectedAPI
    from ._authorization_server import AuthorizationServer
    from ._clients import RegisteredClient
    from ._pki import ClientCertificate, make_self_signed_certificate
    from ._pki import thumbprint as certificate_thumbprint
    from ._quota import Quota

#: The servers (Authlib, cryptography) are imported when first named, so that the
#: pytest plugin costs nothing in a run that uses none of its fixtures.
_LAZY = {
    "AuthorizationServer": "._authorization_server",
    "ClientCertificate": "._pki",
    "ProtectedAPI": "._api",
    "Quota": "._quota",
    "RegisteredClient": "._clients",
    "certificate_thumbprint": "._pki:thumbprint",
    "make_self_signed_certificate": "._pki",
}

__all__ = [
    "AuthorizationServer",
    "ClientCertificate",
    "ProtectedAPI",
    "Quota",
    "RegisteredClient",
    "certificate_thumbprint",
    "make_self_signed_certificate",
]

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
