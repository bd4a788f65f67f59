"""Fixtures of the interop tests: one django-oauth-toolkit site per test session."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import pytest

from bearer_m2m import ClientCredentialsAuth, RetryPolicy
from tests.interop.dot_site import DotClient, DotSite

#: Retries that keep the suite fast: milliseconds instead of seconds.
FAST_RETRY = RetryPolicy(deadline=2.0, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture(scope="session")
def dot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotSite]:
    """The DOT site, started once for the session and shut down at its end."""
    site = DotSite(tmp_path_factory.mktemp("dot-site") / "db.sqlite3")
    yield site
    site.close()


@pytest.fixture
def dot_client(dot: DotSite) -> DotClient:
    """A client of its own for each test, so that DOT's token rows tell what the test did."""
    return dot.register_client(secrets.token_urlsafe(32))


@pytest.fixture
def make_auth(dot: DotSite, dot_client: DotClient) -> Callable[..., ClientCredentialsAuth]:
    """Build a ``ClientCredentialsAuth`` for ``dot_client``; keyword arguments override."""

    def make(**overrides: object) -> ClientCredentialsAuth:
        options: dict[str, object] = {
            "client_id": dot_client.client_id,
            "client_secret": dot_client.secret,
            "retry": FAST_RETRY,
        }
        options.update(overrides)
        return ClientCredentialsAuth(dot.token_url, **options)  # type: ignore[arg-type]

    return make
