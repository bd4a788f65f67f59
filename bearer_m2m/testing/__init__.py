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

from ._api import ProtectedAPI
from ._authorization_server import AuthorizationServer
from ._clients import RegisteredClient
from ._pki import ClientCertificate, make_self_signed_certificate
from ._pki import thumbprint as certificate_thumbprint
from ._quota import Quota

__all__ = [
    "AuthorizationServer",
    "ClientCertificate",
    "ProtectedAPI",
    "Quota",
    "RegisteredClient",
    "certificate_thumbprint",
    "make_self_signed_certificate",
]
