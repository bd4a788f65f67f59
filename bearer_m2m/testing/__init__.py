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
"""

from ._api import ProtectedAPI
from ._authorization_server import AuthorizationServer
from ._clients import RegisteredClient

__all__ = ["AuthorizationServer", "ProtectedAPI", "RegisteredClient"]
