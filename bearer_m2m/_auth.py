"""``ClientCredentialsAuth``: one object that authenticates requests and httpx calls.

The adapters only set the header and replay once on a 401; every decision about
tokens belongs to :class:`~bearer_m2m._source.TokenSource`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from typing import Any

import httpx
import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from requests.exceptions import UnrewindableBodyError
from requests.utils import rewind_body

from ._client_auth import Cert, PrivateKeySource
from ._config import Verify, build_config
from ._discovery import choose_method, discover, token_endpoint
from ._env import settings_from_env
from ._fetcher import TokenFetcher
from ._policy import RefreshPolicy, RetryPolicy
from ._shared import SharedTokens, TokenCache
from ._source import Fetch, TokenSource
from ._transport import require_secure_url
from .errors import ConfigurationError

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

_BEARER = "Bearer "
_SHOWN_FIELDS = ("audience", "organization", "scope", "resource")


class ClientCredentialsAuth(AuthBase, httpx.Auth):
    """OAuth2 client-credentials bearer tokens for ``requests`` and ``httpx``.

    Pass the same object as ``auth=`` to requests, ``httpx.Client`` and
    ``httpx.AsyncClient``: they share one cached token. See the README for what
    each argument does and how refreshes, 401s and failures are handled.
    """

    def __init__(
        self,
        token_url: str,
        *,
        client_id: str,
        client_secret: str | None = None,
        private_key: PrivateKeySource | None = None,
        private_key_id: str | None = None,
        signing_algorithm: str | None = None,
        assertion_audience: str | None = None,
        audience: str | None = None,
        organization: str | None = None,
        scope: str | Iterable[str] | None = None,
        resource: str | None = None,
        extra_params: Mapping[str, str] | None = None,
        auth_method: str | None = None,
        timeout: float = 10.0,
        verify: Verify = True,
        cert: Cert = None,
        refresh_ahead: float = 60.0,
        expiry_leeway: float = 10.0,
        default_lifetime: float = 3600.0,
        rejection_backoff: float = 30.0,
        max_rejection_backoff: float = 600.0,
        retry: RetryPolicy | None = None,
        cache: TokenCache | None = None,
        allow_insecure_http: bool = False,
    ) -> None:
        self._config = build_config(
            token_url,
            client_id=client_id,
            client_secret=client_secret,
            private_key=private_key,
            private_key_id=private_key_id,
            signing_algorithm=signing_algorithm,
            assertion_audience=assertion_audience,
            audience=audience,
            organization=organization,
            scope=scope,
            resource=resource,
            extra_params=extra_params,
            auth_method=auth_method,
            timeout=timeout,
            verify=verify,
            cert=cert,
            allow_insecure_http=allow_insecure_http,
        )
        policy = RefreshPolicy(
            refresh_ahead=refresh_ahead,
            expiry_leeway=expiry_leeway,
            default_lifetime=default_lifetime,
            rejection_backoff=rejection_backoff,
            max_rejection_backoff=max_rejection_backoff,
        )
        retry = retry or RetryPolicy()
        fetcher = TokenFetcher(self._config, retry)
        # No caller waits longer than one fetch may take, retries included.
        wait_limit = retry.deadline + self._config.timeout + 1.0
        obtain: Fetch = fetcher.fetch
        if cache is not None:
            shared = SharedTokens(cache, self._config, policy)
            obtain = functools.partial(shared.obtain, fetcher.fetch)
            wait_limit += shared.lock_timeout  # another process may be fetching
        self._source = TokenSource(obtain, policy, wait_limit=wait_limit)
        self._allow_insecure_http = allow_insecure_http

    # -- other ways to build one --------------------------------------------------

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        *,
        auth_method: str | None = None,
        verify: Verify = True,
        timeout: float = 10.0,
        allow_insecure_http: bool = False,
        **options: Any,
    ) -> Self:
        """Configure from the issuer's discovery document (RFC 8414, then OpenID Connect).

        The document is fetched once per process and must name ``issuer`` as its
        own. Without ``auth_method``, the first method the server supports that
        the credentials allow is used; the TLS methods use the server's mTLS
        endpoint alias when it has one.
        """
        if "token_url" in options:
            raise ConfigurationError("from_issuer finds the token URL; do not pass token_url")
        document = discover(
            issuer, verify=verify, timeout=timeout, allow_insecure_http=allow_insecure_http
        )
        if auth_method is None:
            auth_method = choose_method(
                document,
                client_secret=options.get("client_secret"),
                private_key=options.get("private_key"),
                cert=options.get("cert"),
            )
        return cls(
            token_endpoint(document, auth_method),
            auth_method=auth_method,
            verify=verify,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
            **options,
        )

    @classmethod
    def auth0(
        cls,
        domain: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        audience: str,
        organization: str | None = None,
        **options: Any,
    ) -> Self:
        """Auth0: ``domain`` is the tenant's (``my-tenant.eu.auth0.com``) or a custom
        domain. Private Key JWT assertions get the audience Auth0 expects,
        ``https://{domain}/``."""
        host = domain.removeprefix("https://").split("/")[0]
        if not host:
            raise ConfigurationError("domain must name the Auth0 tenant or custom domain")
        options.setdefault("assertion_audience", f"https://{host}/")
        return cls(
            f"https://{host}/oauth/token",
            client_id=client_id,
            client_secret=client_secret,
            audience=audience,
            organization=organization,
            **options,
        )

    @classmethod
    def from_env(
        cls,
        prefix: str = "BEARER_M2M_",
        *,
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Self:
        """Configure from ``{prefix}TOKEN_URL`` or ``{prefix}ISSUER``, ``{prefix}CLIENT_ID``,
        ``{prefix}CLIENT_SECRET`` or ``{prefix}CLIENT_SECRET_FILE``, ``{prefix}PRIVATE_KEY_FILE``,
        ``{prefix}CERT_FILE`` and ``{prefix}KEY_FILE``, ``{prefix}AUDIENCE``, ``{prefix}RESOURCE``,
        ``{prefix}ORGANIZATION``, ``{prefix}SCOPE`` and ``{prefix}AUTH_METHOD``.

        Keyword arguments override the environment. What is missing or
        contradictory is reported in one :class:`ConfigurationError`.
        """
        if "token_url" in options and "issuer" in options:
            raise ConfigurationError("give token_url or issuer, not both")
        environ = os.environ if environ is None else environ
        settings = settings_from_env(prefix, environ, overridden=options.keys())
        settings.update(options)
        issuer = settings.pop("issuer", None)
        if issuer is not None:
            return cls.from_issuer(issuer, **settings)
        return cls(settings.pop("token_url"), **settings)

    def __repr__(self) -> str:
        config = self._config
        shown: dict[str, object] = {"token_url": config.token_url, "client_id": config.client_id}
        shown.update((name, config.form[name]) for name in _SHOWN_FIELDS if name in config.form)
        extras = sorted(set(config.form) - set(_SHOWN_FIELDS))
        if extras:  # their values could be anything, secrets included: names only
            shown["extra_params"] = extras
        fields = ", ".join(f"{name}={value!r}" for name, value in shown.items())
        return f"{type(self).__name__}({fields})"

    @property
    def token_url(self) -> str:
        """The token endpoint in use (after discovery, the one the server named)."""
        return self._config.token_url

    @property
    def auth_method(self) -> str:
        """How the client authenticates, as given or as chosen."""
        return self._config.auth_method

    # -- the token, for callers that need it directly -------------------------

    def token(self) -> str:
        """The current access token, fetched first if there is no valid one."""
        return self._source.token()

    async def atoken(self) -> str:
        """Like :meth:`token`, without blocking the event loop."""
        return await self._source.atoken()

    def invalidate(self) -> None:
        """Drop the cached token, so that the next request fetches a new one."""
        self._source.invalidate()

    # -- requests ---------------------------------------------------------------

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = request.url or ""
        if not url.startswith("https://"):
            self._check_plain_http(url)
        request.headers["Authorization"] = _BEARER + self._source.token()
        request.hooks["response"].append(self._replay_on_401)
        return request

    def _replay_on_401(self, response: requests.Response, **send_kwargs: Any) -> requests.Response:
        """Replay once with a new token, in the manner of ``HTTPDigestAuth.handle_401``."""
        request = response.request
        if response.status_code != 401:
            self._source.accepted(_carried_token(request.headers.get("Authorization")))
            return response
        sent = _sent_token(response.status_code, request.headers.get("Authorization"))
        if sent is None or not _rewind(request):
            return response
        token = self._source.token_after_rejection(sent)
        if token is None:
            return response

        response.content  # noqa: B018  (read the body so the connection can be reused)
        response.close()
        replay = request.copy()
        extract_cookies_to_jar(replay._cookies, request, response.raw)  # type: ignore[attr-defined,no-untyped-call]
        replay.prepare_cookies(replay._cookies)  # type: ignore[attr-defined]
        replay.headers["Authorization"] = _BEARER + token
        replayed: requests.Response = response.connection.send(replay, **send_kwargs)
        replayed.history.append(response)
        replayed.request = replay
        return replayed

    # -- httpx ------------------------------------------------------------------

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if request.url.scheme != "https":
            self._check_plain_http(str(request.url))
        sent = self._source.token()
        response = yield _authorized(request, sent)
        if response.status_code != 401:
            self._source.accepted(sent)
        elif _replayable(request, response, sent):
            token = self._source.token_after_rejection(sent)
            if token is not None:
                yield _replay(request, response, token)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if request.url.scheme != "https":
            self._check_plain_http(str(request.url))
        sent = await self._source.atoken()
        response = yield _authorized(request, sent)
        if response.status_code != 401:
            self._source.accepted(sent)
        elif _replayable(request, response, sent):
            token = await self._source.atoken_after_rejection(sent)
            if token is not None:
                yield _replay(request, response, token)

    # -- shared -----------------------------------------------------------------

    def _check_plain_http(self, url: str) -> None:
        """Refuse to send the token over plain http, loopback hosts excepted.

        Callers rule out https first, the cheap way for their URL type, so the
        usual request never parses its URL.
        """
        if not self._allow_insecure_http:
            require_secure_url(url, "the access token")


def _sent_token(status_code: int, authorization: str | None) -> str | None:
    """The token a 401 response's request carried, if it carried ours.

    requests and httpx drop the Authorization header on redirects to another
    origin, so a 401 from there has no token and triggers nothing.
    """
    if status_code != 401 or not authorization or not authorization.startswith(_BEARER):
        return None
    return authorization[len(_BEARER) :]


def _carried_token(authorization: str | None) -> str:
    """The token in a Bearer ``Authorization`` header ("" for none)."""
    return authorization[len(_BEARER) :] if authorization else ""


def _rewind(request: requests.PreparedRequest) -> bool:
    """Make the body ready to send again; False when it cannot be (a generator, say)."""
    body = request.body
    if body is None or isinstance(body, (bytes, str)):
        return True
    try:
        rewind_body(request)
    except UnrewindableBodyError:
        return False
    return True


def _authorized(request: httpx.Request, token: str) -> httpx.Request:
    request.headers["Authorization"] = _BEARER + token
    return request


def _replay(request: httpx.Request, response: httpx.Response, token: str) -> httpx.Request:
    """The request again, with a new token and any cookies the 401 set (as httpx's DigestAuth)."""
    if response.cookies:
        httpx.Cookies(response.cookies).set_cookie_header(request)
    return _authorized(request, token)


def _replayable(request: httpx.Request, response: httpx.Response, sent: str) -> bool:
    """A 401 to our token, on a request whose body httpx still holds in memory."""
    if _sent_token(response.status_code, response.request.headers.get("Authorization")) != sent:
        return False
    try:
        request.content  # noqa: B018  (streamed bodies raise: they cannot be sent twice)
    except httpx.RequestNotRead:
        return False
    return True
