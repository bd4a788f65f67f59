"""Which URLs may receive a client secret or an access token.

A URL is only as safe as the host the HTTP client connects to, and parsers do not
all read a URL alike: for ``http://evil.example:80\\@127.0.0.1/``, ``urlsplit``
and httpx see 127.0.0.1 while requests (urllib3) connects to evil.example. So a
URL is judged by a strict grammar, a subset of RFC 3986 on which ``urlsplit``,
urllib3 (requests) and httpx agree about scheme, host and port (a hypothesis
suite checks that they do), and anything outside it is refused, never guessed at.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

from .errors import ConfigurationError, InsecureTransportError

#: scheme "://" authority rest. No "." in the scheme: urllib3 does not take one there.
#: The authority ends at the first "/", "?" or "#", where urlsplit, urllib3 and httpx
#: end it (WHATWG parsers end it at a backslash too: one there is refused).
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+-]*)://(?P<authority>[^/?#]*)(?P<rest>.*)", re.S)
#: RFC 3986 userinfo without "@"; a bracketed IPv6 literal, or labels of letters, digits,
#: "-" and "_" (no %-escapes, which some parsers decode and others keep); 1-5 port digits.
_AUTHORITY = re.compile(
    r"""
    (?:(?P<userinfo>(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*)@)?
    (?P<host>\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9_-]+\.)*[A-Za-z0-9_-]+\.?)
    (?::(?P<port>[0-9]{1,5}))?
    """,
    re.X,
)
_DOTTED_QUAD = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")
#: ASCII control characters and the space: the common case, found without a loop.
_ASCII_CONTROL = re.compile(r"[\x00-\x20\x7f]")
#: Unicode categories of control, format (zero-width), surrogate and separator characters.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zs", "Zl", "Zp"})


class UnsafeURL(Exception):
    """Why a URL is outside the strict grammar; the reason never quotes the URL."""


@dataclass(frozen=True)
class Target:
    """Where a client connects for a URL: the same for every parser, by construction."""

    scheme: str
    #: Lower case; an IPv6 address without its brackets.
    host: str
    port: int | None
    has_userinfo: bool
    #: As written, without the query and fragment: for messages only.
    path: str

    @property
    def origin(self) -> str:
        """``scheme://host[:port]``, for messages: what a URL may show of itself."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port is None else f":{self.port}"
        return f"{self.scheme}://{host}{port}"


def connection_target(url: str) -> Target:
    """Scheme, host and port of ``url``, or :class:`UnsafeURL` if parsers could differ."""
    if _ASCII_CONTROL.search(url) or (not url.isascii() and _has_invisible(url)):
        raise UnsafeURL("contains whitespace or a control character")
    match = _URL.fullmatch(url)
    if match is None:
        raise UnsafeURL("is not an absolute URL of the form scheme://host/path")
    authority = match["authority"]
    if "\\" in authority:
        raise UnsafeURL("has a backslash before its path, which HTTP clients read differently")
    if not authority.isascii():
        raise UnsafeURL("has a host name that is not ASCII: write it in its xn-- (IDNA) form")
    parts = _AUTHORITY.fullmatch(authority)
    if parts is None:
        raise UnsafeURL("has a malformed host, port or user name")
    return Target(
        scheme=match["scheme"].lower(),
        host=_host(parts["host"]),
        port=_port(parts["port"]),
        has_userinfo=parts["userinfo"] is not None,
        path=re.split("[?#]", match["rest"], maxsplit=1)[0],
    )


def _has_invisible(url: str) -> bool:
    return any(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in url)


def _host(host: str) -> str:
    if host.startswith("["):
        try:
            # A zone ("%eth0") or an IPvFuture literal cannot get here: the grammar refuses them.
            return str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise UnsafeURL("has a malformed IPv6 address") from None
    if _DOTTED_QUAD.fullmatch(host):
        try:
            # httpx refuses 999.1.1.1, urllib3 passes it on: not a host anyone means.
            return str(ipaddress.IPv4Address(host))
        except ValueError:
            raise UnsafeURL("has a malformed IPv4 address") from None
    return host.lower()


def _port(port: str | None) -> int | None:
    if port is None:
        return None
    if not 0 < int(port) <= 65535:
        raise UnsafeURL("has a port outside 1-65535")
    return int(port)


def check_endpoint_url(url: object, name: str) -> Target:
    """Refuse, with a :class:`ConfigurationError` naming ``name``, a URL that cannot
    be a server's endpoint: not http(s), outside the strict grammar, or with userinfo.

    Userinfo is refused because a URL is shown in ``repr``, errors and logs, where
    a password in it would be shown too; the message does not quote the URL.
    """
    if not isinstance(url, str):
        raise ConfigurationError(f"{name} must be an http(s) URL, not {type(url).__name__}")
    try:
        target = connection_target(url)
    except UnsafeURL as exc:
        raise ConfigurationError(f"{name} {exc}") from None
    if target.scheme not in ("http", "https"):
        raise ConfigurationError(f"{name} must be an http(s) URL")
    if target.has_userinfo:
        raise ConfigurationError(
            f"{name} must not carry a user name or password (user:password@host): "
            "pass the credentials as client_id and client_secret"
        )
    return target


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ``::1``: traffic that never leaves the machine.

    (Plain http to these still goes through a proxy named in ``HTTP_PROXY``
    unless ``NO_PROXY`` lists them: the usual setting, but worth knowing.)
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.lru_cache(maxsize=1024)
def is_secure_url(url: str) -> bool:
    """HTTPS anywhere, or plain HTTP to a loopback address, as every client reads the URL.

    Cached: an API on plain-http loopback (tests, local development) would
    otherwise parse every request's URL again.
    """
    try:
        target = connection_target(url)
    except UnsafeURL:
        return False
    return _is_secure(target)


def _is_secure(target: Target) -> bool:
    return target.scheme == "https" or (target.scheme == "http" and is_loopback_host(target.host))


def require_secure_url(url: str, what: str) -> None:
    """Raise :class:`InsecureTransportError` unless ``url`` may carry credentials.

    The message names the scheme and host only: the URL's userinfo or query
    could hold anything.
    """
    if is_secure_url(url):
        return
    try:
        target = connection_target(url)
    except UnsafeURL as exc:
        raise InsecureTransportError(f"refusing to send {what} to a URL that {exc}") from None
    raise InsecureTransportError(
        f"refusing to send {what} to {target.origin}: "
        "use https (plain http is allowed for loopback hosts only), "
        "or pass allow_insecure_http=True if you accept the risk"
    )


#: How much of a path :func:`describe_url` shows: enough to tell tenants apart.
_SHOWN_PATH = 100


def describe_url(url: object) -> str:
    """``scheme://host[:port]/path`` of ``url`` for a message (a long path cut short),
    or what it is when it is no URL: never its userinfo, query or fragment, which
    may hold anything."""
    if not isinstance(url, str):
        return f"a {type(url).__name__}, not a URL"
    try:
        target = connection_target(url)
    except UnsafeURL:
        return "a malformed URL"
    path = target.path
    if len(path) > _SHOWN_PATH:
        path = path[:_SHOWN_PATH] + "..."
    return target.origin + path
