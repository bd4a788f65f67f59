"""pytest fixtures for code that calls OAuth2-protected APIs (registered as ``pytest11``).

::

    def test_my_service_lists_orders(m2m_server, m2m_api, m2m_auth):
        orders = my_service.list_orders(base_url=m2m_api.url, auth=m2m_auth)
        assert m2m_server.token_requests == 1

One authorization server and one API run for the whole session (starting them
generates an RSA key); each test gets them back with counters at zero, faults
cleared and ``reject_all_tokens`` off.

pytest loads this module into every run of every project that has the package
installed, so it imports nothing but pytest: the servers (Authlib, the HTTP
stack, the key generation) are imported when a fixture is first used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .. import ClientCredentialsAuth, RetryPolicy
    from ._api import ProtectedAPI
    from ._authorization_server import AuthorizationServer

#: The audience of the session's API, as an Auth0 API identifier would be.
M2M_AUDIENCE = "https://api.example"


def fast_retry() -> RetryPolicy:
    """Retries for tests: the default policy, on a shorter clock (also ``TEST_RETRY``)."""
    from .._policy import RetryPolicy

    return RetryPolicy(deadline=5.0, initial_backoff=0.02, max_backoff=0.2)


def __getattr__(name: str) -> Any:
    if name == "TEST_RETRY":  # built on first use, like everything else here
        value = globals()["TEST_RETRY"] = fast_retry()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture(scope="session")
def _bearer_m2m_servers() -> Iterator[tuple[AuthorizationServer, ProtectedAPI]]:
    from ._api import ProtectedAPI
    from ._authorization_server import AuthorizationServer

    with (
        AuthorizationServer(default_audience=M2M_AUDIENCE) as server,
        ProtectedAPI(server, audience=M2M_AUDIENCE) as api,
    ):
        yield server, api


@pytest.fixture
def m2m_server(
    _bearer_m2m_servers: tuple[AuthorizationServer, ProtectedAPI],
) -> AuthorizationServer:
    """The local authorization server: ``token_url``, ``issuer``, ``client`` (a registered
    client with ``client_id`` and ``client_secret``), counters and fault injection."""
    server, _ = _bearer_m2m_servers
    server.reset()
    return server


@pytest.fixture
def m2m_api(
    m2m_server: AuthorizationServer, _bearer_m2m_servers: tuple[AuthorizationServer, ProtectedAPI]
) -> ProtectedAPI:
    """A protected API that accepts the server's tokens for ``M2M_AUDIENCE`` (its ``url``
    ends with a slash; ``requests`` and ``unauthorized`` count what it saw)."""
    _, api = _bearer_m2m_servers
    api.reset()
    return api


@pytest.fixture
def m2m_auth(m2m_server: AuthorizationServer, m2m_api: ProtectedAPI) -> ClientCredentialsAuth:
    """A fresh ``ClientCredentialsAuth`` for the server's client and the API's audience,
    retrying a failing token endpoint within milliseconds rather than seconds."""
    from .._auth import ClientCredentialsAuth

    return ClientCredentialsAuth(
        m2m_server.token_url,
        client_id=m2m_server.client.client_id,
        client_secret=m2m_server.client.client_secret,
        audience=m2m_api.audience,
        retry=fast_retry(),
    )
