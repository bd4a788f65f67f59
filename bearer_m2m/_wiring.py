"""How one ``ClientCredentialsAuth`` is put together: fetcher, shared cache, token source,
and the scheme its adapters use.

The facade only validates and keeps its options; this is the one place that
decides what sits between the token source and the token endpoint, and how long
a caller may wait for a token. The shared-cache machinery (and the cryptography
it seals tokens with) is imported only when a cache is given.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ._fetcher import TokenFetcher
from ._scheme import Bearer
from ._source import Fetch, TokenSource

if TYPE_CHECKING:
    from ._config import ClientConfig
    from ._policy import RefreshPolicy, RetryPolicy
    from .caches._shared import TokenCache

#: Added to the longest fetch, so that a waiter never gives up on a fetch that is
#: about to end by its own timeouts.
_WAIT_MARGIN = 1.0


def token_source(
    config: ClientConfig,
    policy: RefreshPolicy,
    retry: RetryPolicy,
    cache: TokenCache | None,
) -> TokenSource:
    """The token source of one auth object, fetching through ``cache`` when there is one.

    No caller waits longer than one fetch may take, retries included; with a
    shared cache, also as long as another process may hold its refresh lock.
    """
    fetcher = TokenFetcher(config, retry)
    wait_limit = retry.deadline + config.timeout + _WAIT_MARGIN
    obtain: Fetch = fetcher.fetch
    if cache is not None:
        from .caches._shared import SharedTokens

        shared = SharedTokens(cache, config, policy)
        obtain = functools.partial(shared.obtain, fetcher.fetch)
        wait_limit += shared.lock_timeout
    return TokenSource(obtain, policy, wait_limit=wait_limit)


def scheme_for(config: ClientConfig) -> Bearer:
    """How the adapters put the token on requests: DPoP when the client has a key,
    with a nonce store of its own for the APIs (the fetcher keeps the token
    endpoint's)."""
    if config.dpop_key is None:
        return Bearer()
    from ._dpop import NonceStore
    from ._scheme import DPoP

    return DPoP(config.dpop_key, NonceStore())
