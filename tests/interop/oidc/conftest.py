"""Fixtures of the node oidc-provider interop tests: one provider and one API per session.

Node.js and npm must be on PATH. Without them every test here FAILS, with a
message that says what ``.ci/run`` must install: an interop suite that skips
quietly would let CI go green without ever talking to the server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from bearer_m2m import ClientCredentialsAuth, RetryPolicy
from tests.interop.oidc.harness import (
    HarnessError,
    NodeProvider,
    OidcClient,
    OrdersApi,
    install_provider,
    node_tools,
)

#: Retries that keep the suite fast (milliseconds between attempts) with a deadline
#: long enough for a node process on a busy 2-core machine: a 2 s deadline made
#: token requests time out there while oidc-provider was merely slow.
FAST_RETRY = RetryPolicy(deadline=20.0, initial_backoff=0.01, max_backoff=0.05)

#: RFC 8707 resources the provider knows, each with its token lifetime.
ORDERS = "https://orders.example.test/"
#: Tokens of 2 s and 3 s: oidc-provider floors ``iat`` to whole seconds, so they
#: really live 1-2 s and 2-3 s (issue 8 item A).
CLOCK_2S = "https://clock-2s.example.test/"
CLOCK_3S = "https://clock-3s.example.test/"
#: Known to the provider, but the API does not accept its tokens.
ELSEWHERE = "https://elsewhere.example.test/"

#: Token lifetime (``expires_in``) of each resource, in seconds.
TOKEN_LIFETIMES = {ORDERS: 300, CLOCK_2S: 2, CLOCK_3S: 3, ELSEWHERE: 300}
RESOURCE_SCOPES = {ORDERS: "orders:read orders:write orders:admin"}

PROVIDER_CONFIG = {
    "scopes": ["openid", "orders:read", "orders:write", "orders:admin"],
    "resources": {
        resource: {"scope": RESOURCE_SCOPES.get(resource, "orders:read"), "ttl": ttl}
        for resource, ttl in TOKEN_LIFETIMES.items()
    },
    "dpop": {"requireNonce": False},
}

MakeAuth = Callable[..., ClientCredentialsAuth]


def start_provider(
    tmp_path_factory: pytest.TempPathFactory, config: Mapping[str, Any], name: str
) -> NodeProvider:
    """An oidc-provider process with ``config``, installed from the lockfile if needed;
    a missing Node.js or a failed install or start fails the test, with one message."""
    try:
        node, npm = node_tools()
        install_provider(npm)
        return NodeProvider(node, config, tmp_path_factory.mktemp(name) / "stderr.log")
    except HarnessError as exc:
        problem = str(exc)
    # Failed outside the except block: one message, no chained traceback.
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    """oidc-provider, installed from the lockfile if needed, for the whole session."""
    provider = start_provider(tmp_path_factory, PROVIDER_CONFIG, "oidc-provider")
    yield provider
    provider.close()


@pytest.fixture(scope="session")
def orders_api(oidc_provider: NodeProvider) -> Iterator[OrdersApi]:
    api = OrdersApi(oidc_provider, audiences=[ORDERS, CLOCK_2S, CLOCK_3S])
    yield api
    api.close()


@pytest.fixture(scope="session")
def dpop_nonce_api(oidc_provider: NodeProvider) -> Iterator[OrdersApi]:
    """The orders API on another port, demanding its own DPoP nonce in every proof."""
    api = OrdersApi(oidc_provider, audiences=[ORDERS], require_dpop_nonce=True)
    yield api
    api.close()


@pytest.fixture
def provider_dpop_nonces(oidc_provider: NodeProvider) -> Iterator[NodeProvider]:
    """The provider demanding a DPoP nonce of every client for the test, and no longer after."""
    oidc_provider.require_dpop_nonce(True)
    try:
        yield oidc_provider
    finally:
        oidc_provider.require_dpop_nonce(False)


@pytest.fixture
def oidc_client(oidc_provider: NodeProvider) -> OidcClient:
    """A client of its own for each test (client_secret_basic registered; oidc-provider
    then takes client_secret_post from it too), so the provider's record of token
    requests tells what this test did."""
    return oidc_provider.register_client()


@pytest.fixture
def make_oidc_auth(oidc_provider: NodeProvider, oidc_client: OidcClient) -> MakeAuth:
    """Build a ``ClientCredentialsAuth`` for ``oidc_client`` and the orders API;
    keyword arguments override."""

    def make(**overrides: object) -> ClientCredentialsAuth:
        options: dict[str, object] = {
            "client_id": oidc_client.client_id,
            "client_secret": oidc_client.client_secret,
            "resource": ORDERS,
            "retry": FAST_RETRY,
        }
        options.update(overrides)
        return ClientCredentialsAuth(oidc_provider.token_url, **options)  # type: ignore[arg-type]

    return make
