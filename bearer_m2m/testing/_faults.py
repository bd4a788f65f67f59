"""Scripted misbehaviour of the token endpoint: the failures a client must survive.

Each fault is a plain value describing one answer; :class:`FaultScript` hands
them out in the order they were added, one per token request.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._http import Response

#: The ``x-ratelimit-limit`` a rate-limited answer reports.
RATE_LIMIT = 30

_HTML_PAGE = b"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in</title></head>
<body><h1>Sign in</h1><form method="post"><input name="username"></form></body>
</html>
"""


@dataclass(frozen=True)
class Fault:
    """One token request's fate: wait ``delay`` seconds, then drop the connection
    (``drop``), answer what ``respond`` makes instead of a token, or (neither)
    answer normally.

    ``respond`` is called when the answer is due, so that time-dependent headers
    (``x-ratelimit-reset``) are right however long the fault waited in line.
    """

    delay: float = 0.0
    respond: Callable[[], Response] | None = None
    drop: bool = False


class FaultScript:
    """A thread-safe queue of faults for the next token requests."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    def add(self, fault: Fault, times: int) -> None:
        if not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        with self._lock:
            self._faults.extend([fault] * times)

    def next(self) -> Fault | None:
        """The fault for the request at hand, or ``None`` to answer normally."""
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


def failure(
    status: int,
    *,
    json: object = None,
    body: bytes | str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Fault:
    """An error answer: ``json`` or ``body`` if given, else an RFC 6749 error object."""
    if not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status code")
    if json is not None and body is not None:
        raise ValueError("pass json or body, not both")
    extra = list((headers or {}).items())
    if body is not None:
        raw = body.encode() if isinstance(body, str) else body
        return _answering(Response(status, raw, extra))
    if json is None:
        json = {
            "error": "server_error" if status >= 500 else "invalid_request",
            "error_description": f"scripted failure (HTTP {status})",
        }
    return _answering(Response.json(json, status, extra))


def delayed(seconds: float) -> Fault:
    if not seconds >= 0:
        raise ValueError("seconds must be a non-negative number")
    return Fault(delay=float(seconds))


def dropped() -> Fault:
    return Fault(drop=True)


def malformed_json() -> Fault:
    """A 200 whose JSON body breaks off, as when a proxy cuts a response short."""
    body = b'{"access_token": "eyJhbGciOiJSUzI1NiJ9.eyJpc3Mi'
    return _answering(Response(200, body, [("Content-Type", "application/json")]))


def html_page(status: int = 200) -> Fault:
    """A login page or a proxy's error page where JSON was expected."""
    return _answering(Response(status, _HTML_PAGE, [("Content-Type", "text/html")]))


def rate_limited(retry_after: int = 1) -> Fault:
    """Auth0's 429: ``Retry-After`` in seconds and the ``x-ratelimit-*`` headers,
    ``x-ratelimit-reset`` being the Unix time the limit resets."""
    if not isinstance(retry_after, int) or retry_after < 0:
        raise ValueError("retry_after must be a non-negative whole number of seconds")

    def respond() -> Response:
        headers = [
            ("Retry-After", str(retry_after)),
            ("x-ratelimit-limit", str(RATE_LIMIT)),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", str(int(time.time()) + retry_after)),
        ]
        payload = {
            "error": "too_many_requests",
            "error_description": "Global limit has been reached",
        }
        return Response.json(payload, 429, headers)

    return Fault(respond=respond)


def _answering(response: Response) -> Fault:
    return Fault(respond=lambda: response)
