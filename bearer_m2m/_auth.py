"""``ClientCredentialsAuth``: one object that authenticates the calls of every client.

The facade keeps the options and hands each request to the adapter of its client
(``bearer_m2m.adapters``), built the first time a request of that client comes;
every decision about tokens belongs to :class:`~bearer_m2m._source.TokenSource`,
every decision after a response to :class:`~bearer_m2m._exchange.Exchange`.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from requests.auth import AuthBase

from ._client_auth import Cert, PrivateKeySource
from ._config import Verify, build_config
from ._policy import RefreshPolicy, RetryPolicy
from ._transport import require_secure_url
from ._wiring import scheme_for, token_source
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._dpop import Option as DPoPOption
    from .adapters.aiohttp import AiohttpMiddleware
    from .adapters.httpx import HttpxAuth
    from .adapters.niquests import NiquestsAsyncAuth
    from .caches._shared import TokenCache

if sys.version_info >= (3, 11):
    from typing import Self
else:  # pragma: no cover
    from typing_extensions import Self

_SHOWN_FIELDS = ("audience", "organization", "scope", "resource")
#: The packages whose ``Auth`` class the object is an instance of, once imported.
_AUTH_PACKAGES = ("httpx", "httpx2")
_modules = sys.modules


class ClientCredentialsAuth(AuthBase):
    """OAuth2 client-credentials tokens, Bearer or DPoP-bound, for every common HTTP client.

    Pass the same object as ``auth=`` to requests, ``niquests.Session``,
    ``httpx.Client``/``AsyncClient`` and ``httpx2.Client``/``AsyncClient``; use
    :attr:`niquests_async` for ``niquests.AsyncSession`` and
    :attr:`aiohttp_middleware` for ``aiohttp.ClientSession``. All of them share
    one cached token. See the README for what each argument does and how
    refreshes, 401s and failures are handled.

    httpx and httpx2 accept as auth only an instance of their own ``Auth`` class
    (anything else they call as a plain function), yet neither may be imported
    for an application that does not use it, and after ``httpx2.alias_httpx()``
    ``httpx.Auth`` *is* ``httpx2.Auth``, so no class can list both as bases. The
    object therefore answers ``__class__`` (which :func:`isinstance` consults when
    the real type does not match) with a subclass of its own class and of the
    ``Auth`` class of each of those packages imported *at the time of the check*.
    Choosing the bases once, at construction, would fail an application that
    imports httpx after building its auth; asking at each check cannot. ``type()``
    still gives the real class; only negative ``isinstance`` checks pay for the
    lookup (two dictionary reads).
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
        dpop: DPoPOption = None,
        dpop_algorithm: str | None = None,
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
            dpop=dpop,
            dpop_algorithm=dpop_algorithm,
        )
        policy = RefreshPolicy(
            refresh_ahead=refresh_ahead,
            expiry_leeway=expiry_leeway,
            default_lifetime=default_lifetime,
            rejection_backoff=rejection_backoff,
            max_rejection_backoff=max_rejection_backoff,
        )
        self._source = token_source(self._config, policy, retry or RetryPolicy(), cache)
        self._scheme = scheme_for(self._config)
        # What adapters call for a URL that is not https (a plain function: adapters hold
        # no reference back to this object, which is then freed as soon as it is dropped).
        self._check_url = _allow_any_url if allow_insecure_http else _refuse_plain_http
        # Adapters, by the type of request they serve, built on first use; the last one
        # used is kept with its type for the next request, which is nearly always alike.
        self._hooks: dict[type, Callable[[Any], Any]] = {}
        self._flows: dict[type, HttpxAuth] = {}
        self._last_hook: tuple[type | None, Callable[[Any], Any]] = (None, _unreachable)
        self._last_flows: tuple[type | None, HttpxAuth | None] = (None, None)
        self._niquests_async: NiquestsAsyncAuth | None = None
        self._aiohttp_middleware: AiohttpMiddleware | None = None
        self._building = threading.Lock()

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
        endpoint alias when it has one. With ``dpop``, the key's algorithm must be
        one the server lists in ``dpop_signing_alg_values_supported`` (when it
        lists any); ``dpop=True`` picks one of those.
        """
        from ._discovery import (
            check_dpop_algorithm,
            choose_method,
            discover,
            preferred_dpop_algorithm,
            token_endpoint,
        )

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
        if options.get("dpop") is True and options.get("dpop_algorithm") is None:
            options["dpop_algorithm"] = preferred_dpop_algorithm(document)
        auth = cls(
            token_endpoint(document, auth_method),
            auth_method=auth_method,
            verify=verify,
            timeout=timeout,
            allow_insecure_http=allow_insecure_http,
            **options,
        )
        key = auth._config.dpop_key
        if key is not None:
            check_dpop_algorithm(document, key.algorithm)
        return auth

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
        scheme, separator, rest = domain.partition("://")
        if separator and scheme.lower() != "https":
            # "http://tenant" would otherwise become https://http:/oauth/token, silently.
            raise ConfigurationError("the Auth0 domain is served over https only; give the domain")
        host = (rest if separator else domain).split("/")[0]
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
        ``{prefix}ORGANIZATION``, ``{prefix}SCOPE``, ``{prefix}AUTH_METHOD``, and for DPoP
        ``{prefix}DPOP=true`` or ``{prefix}DPOP_KEY_FILE`` and ``{prefix}DPOP_ALGORITHM``.

        Keyword arguments override the environment. What is missing or
        contradictory is reported in one :class:`ConfigurationError`.
        """
        from ._env import settings_from_env

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

    @property
    def dpop_thumbprint(self) -> str | None:
        """The RFC 7638 thumbprint of the DPoP key (a bound token's ``cnf.jkt``), safe to
        log or to register with the server; ``None`` without DPoP."""
        key = self._config.dpop_key
        return None if key is None else key.thumbprint

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

    # -- requests, niquests.Session ------------------------------------------------

    def __call__(self, request: Any) -> Any:
        """requests and niquests call the object itself, so the cached fast path of their
        adapter is here, inline (set the header, register the adapter's hook): one call
        frame less is a fifth of its cost."""
        # One read of one attribute: the type and its hook always belong together.
        request_type, hook = self._last_hook
        if type(request) is not request_type:
            hook = self._hook_for(type(request))
        url = request.url or ""
        if not url.startswith("https://"):
            self._check_url(url)
        self._scheme.authorize(request.headers, request.method, url, self._source.token())
        request.hooks["response"].append(hook)
        return request

    # -- httpx, httpx2 ------------------------------------------------------------

    def sync_auth_flow(self, request: Any) -> Generator[Any, Any, None]:
        request_type, flows = self._last_flows
        if type(request) is not request_type or flows is None:
            flows = self._flows_for(type(request))
        return flows.sync_auth_flow(request)

    def async_auth_flow(self, request: Any) -> AsyncGenerator[Any, Any]:
        request_type, flows = self._last_flows
        if type(request) is not request_type or flows is None:
            flows = self._flows_for(type(request))
        return flows.async_auth_flow(request)

    @property  # type: ignore[misc]
    def __class__(self) -> type[Self]:
        """What :func:`isinstance` sees (see the class docstring); ``type()`` is unchanged."""
        key = (type(self), _modules.get("httpx"), _modules.get("httpx2"))
        try:
            seen = _SEEN_AS[key]
        except KeyError:
            seen = _seen_as(key)
        return cast("type[Self]", seen)

    # -- the clients whose protocols cannot take the object itself --------------

    @property
    def niquests_async(self) -> NiquestsAsyncAuth:
        """For ``niquests.AsyncSession(auth=auth.niquests_async)``: niquests awaits only
        an auth whose ``__call__`` is a coroutine function (it would call this object
        in place and block the event loop for a whole token fetch)."""
        if self._niquests_async is None:
            from .adapters.niquests import NiquestsAsyncAuth

            with self._building:
                if self._niquests_async is None:
                    self._niquests_async = NiquestsAsyncAuth(
                        self._source, self._scheme, self._check_url
                    )
        return self._niquests_async

    @property
    def aiohttp_middleware(self) -> AiohttpMiddleware:
        """For ``aiohttp.ClientSession(middlewares=(auth.aiohttp_middleware,))``
        (aiohttp 3.12 and later): aiohttp's auth takes no tokens, its middlewares
        take ``(request, handler)``."""
        if self._aiohttp_middleware is None:
            from .adapters.aiohttp import AiohttpMiddleware

            with self._building:
                if self._aiohttp_middleware is None:
                    self._aiohttp_middleware = AiohttpMiddleware(
                        self._source, self._scheme, self._check_url
                    )
        return self._aiohttp_middleware

    # -- shared -----------------------------------------------------------------

    def _hook_for(self, request_type: type) -> Callable[[Any], Any]:
        from .adapters.requests import RequestsHooks, requests_kit

        package = _package_of(request_type, ("requests", "niquests"))
        if package == "niquests":
            from .adapters.niquests import niquests_kit

            kit = niquests_kit()
        else:
            kit = requests_kit()
        with self._building:
            hook = self._hooks.get(request_type)
            if hook is None:
                adapter = RequestsHooks(self._source, self._scheme, kit)
                hook = self._hooks[request_type] = adapter.on_response
        self._last_hook = (request_type, hook)
        return hook

    def _flows_for(self, request_type: type) -> HttpxAuth:
        from .adapters.httpx import HttpxAuth

        package = _modules[_package_of(request_type, _AUTH_PACKAGES)]
        with self._building:
            flows = self._flows.get(request_type)
            if flows is None:
                flows = self._flows[request_type] = HttpxAuth(
                    self._source, self._scheme, self._check_url, package
                )
        self._last_flows = (request_type, flows)
        return flows


def _unreachable(request: Any) -> Any:  # pragma: no cover - paired with no type
    raise AssertionError("no request type is None")


def _refuse_plain_http(url: str) -> None:
    """Refuse to send the token over plain http, loopback hosts excepted.

    Adapters rule out https first, the cheap way for their URL type, so the usual
    request never parses its URL.
    """
    require_secure_url(url, "the access token")


def _allow_any_url(url: str) -> None:
    """``allow_insecure_http=True``: the user accepted the risk."""


def _package_of(request_type: type, packages: tuple[str, ...]) -> str:
    """Which of ``packages`` defines ``request_type`` (or a class it derives from)."""
    for klass in request_type.__mro__:
        package = klass.__module__.partition(".")[0]
        if package in packages:
            return package
    raise TypeError(
        f"ClientCredentialsAuth cannot authorize a {request_type.__qualname__}: "
        "see the README for the line each HTTP client takes"
    )


#: The classes the object claims, by (its real class, httpx, httpx2 as imported).
_SEEN_AS: dict[tuple[Any, ...], type] = {}


def _seen_as(key: tuple[Any, ...]) -> type:
    """A subclass of ``key[0]`` and of each imported package's ``Auth`` class.

    A package still being imported has no ``Auth`` yet: the answer is then not
    kept, so that the next check sees the finished package.
    """
    own, *modules = key
    bases: list[type] = []
    complete = True
    for module in modules:
        if module is None:
            continue
        auth = getattr(module, "Auth", None)
        if not isinstance(auth, type):
            complete = False
        elif auth not in bases:  # after alias_httpx() both names give one class
            bases.append(auth)
    if not bases:
        seen: type = own
    else:
        namespace = {"__module__": own.__module__, "__qualname__": own.__qualname__}
        seen = type(own.__name__, (own, *bases), namespace)
    if complete:
        _SEEN_AS[key] = seen
    return seen
