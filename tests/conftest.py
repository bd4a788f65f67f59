from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from bearer_m2m import ClientCredentialsAuth, RetryPolicy
from tests.servers import ApiServer, TokenServer

pytest_plugins = ["bearer_m2m.testing.pytest_plugin"]

# Property-based suites run a bounded number of examples, with no per-example deadline
# (a shared 2-core machine makes timings meaningless); HYPOTHESIS_PROFILE=thorough digs deeper.
settings.register_profile(
    "default", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=5000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

#: Retries that keep the suite fast: milliseconds instead of seconds.
FAST_RETRY = RetryPolicy(deadline=2.0, initial_backoff=0.01, max_backoff=0.05)
SECRET = "s3cr3t-Th4t-Must-N3ver-Leak"


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture
def api_server(token_server: TokenServer) -> Iterator[ApiServer]:
    server = ApiServer(accepts=lambda token: token in token_server.issued)
    yield server
    server.close()


@pytest.fixture
def make_auth(token_server: TokenServer):  # type: ignore[no-untyped-def]
    def make(**overrides: object) -> ClientCredentialsAuth:
        options: dict[str, object] = {
            "client_id": "client-1",
            "client_secret": SECRET,
            "audience": "https://api.example",
            "retry": FAST_RETRY,
        }
        options.update(overrides)
        return ClientCredentialsAuth(token_server.token_url, **options)  # type: ignore[arg-type]

    return make
