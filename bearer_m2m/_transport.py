"""Which URLs may receive a client secret or an access token."""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from .errors import InsecureTransportError


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
    """HTTPS anywhere, or plain HTTP to a loopback address.

    Cached: an API on plain-http loopback (tests, local development) would
    otherwise parse every request's URL again.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "https":
        return True
    return scheme == "http" and is_loopback_host(parts.hostname or "")


def require_secure_url(url: str, what: str) -> None:
    """Raise :class:`InsecureTransportError` unless ``url`` may carry credentials.

    The message names the host only: the URL's query could hold anything.
    """
    if not is_secure_url(url):
        parts = urlsplit(url)
        raise InsecureTransportError(
            f"refusing to send {what} to {parts.scheme}://{parts.hostname}: "
            "use https (plain http is allowed for loopback hosts only), "
            "or pass allow_insecure_http=True if you accept the risk"
        )
