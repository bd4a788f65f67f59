"""What happened: the library's news, named once, for logs and OpenTelemetry alike.

The token source, the fetcher, the shared cache and the exchange say what
happened by emitting one of the events below; they never write a log line or
a metric themselves. Subscribers turn events into whatever an operator reads:
:func:`write_log` writes the library's log lines (logger ``bearer_m2m``), and,
when ``opentelemetry-api`` is importable, :mod:`bearer_m2m._otel` records
metrics and spans. Both are loaded at the first event, so importing the library
imports neither, and an application without OpenTelemetry imports nothing of it.

Events happen only off the cached path: a request served with the cached token
emits none. An event names no secret, token, proof, key or assertion; a token
appears only as its :func:`~bearer_m2m._tokens.fingerprint`, and an error only
as one of the library's own exceptions, whose texts are masked where they are made.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ._ratelimit import RateLimit

logger = logging.getLogger("bearer_m2m")


class Event:
    """Something that happened; :meth:`log` writes its log line, if it has one."""

    __slots__ = ()

    def log(self, log: logging.Logger) -> None:
        """Most events have no line of their own: their news is for metrics and traces."""


class _Failure(Event):
    """An event about an exception, which the library's errors make fit to show."""

    __slots__ = ()
    error: BaseException

    @property
    def error_type(self) -> str:
        """What went wrong, in few enough words to group by: the exception's class name."""
        return type(self.error).__name__

    @property
    def status(self) -> int | None:
        """The HTTP status the error came with, if any."""
        status = getattr(self.error, "status_code", None)
        return status if isinstance(status, int) else None


# -- the token endpoint (bearer_m2m._fetcher) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchStarted(Event):
    """A fetch began: the first of its token requests is about to be sent to ``server``
    (``host:port``). It ends with :class:`TokenFetched` or :class:`FetchFailed`, in the
    same thread."""

    server: str


@dataclass(frozen=True, slots=True)
class TokenFetched(Event):
    """The token endpoint granted a token after ``attempts`` requests in ``duration`` s."""

    server: str
    duration: float
    attempts: int
    fingerprint: str
    expires_in: float | None

    def log(self, log: logging.Logger) -> None:
        log.debug(
            "fetched token %s from %s (expires_in=%s)",
            self.fingerprint,
            self.server,
            self.expires_in,
        )


@dataclass(frozen=True, slots=True)
class FetchFailed(_Failure):
    """A fetch ended without a token; ``error`` is what the caller gets."""

    server: str
    duration: float
    attempts: int
    error: BaseException


class TokenRetry(Event):
    """Another token request follows within the same fetch, for :attr:`reason`."""

    __slots__ = ()
    reason: ClassVar[str]
    server: str


@dataclass(frozen=True, slots=True)
class TransientFailure(TokenRetry, _Failure):
    """A token request failed in a way that may pass (429, 5xx, no connection); the next
    one is sent in ``delay`` s."""

    reason: ClassVar[str] = "transient"
    server: str
    error: BaseException
    delay: float

    def log(self, log: logging.Logger) -> None:
        log.warning("token request failed (%s); retrying in %.2f s", self.error, self.delay)


@dataclass(frozen=True, slots=True)
class DPoPNonceRequested(TokenRetry):
    """The token endpoint answered ``use_dpop_nonce`` with a new nonce; the next request
    carries a proof with it (RFC 9449 section 8)."""

    reason: ClassVar[str] = "dpop_nonce"
    server: str

    def log(self, log: logging.Logger) -> None:
        log.info("token endpoint %s asked for a DPoP nonce; sending it", self.server)


@dataclass(frozen=True, slots=True)
class BasicEncodingSwitched(TokenRetry):
    """The token endpoint refused ``client_secret_basic`` credentials (``status``); the next
    request encodes them the other way (``raw``, or form-encoded as RFC 6749 says)."""

    reason: ClassVar[str] = "basic_encoding"
    server: str
    status: int | None
    raw: bool

    def log(self, log: logging.Logger) -> None:
        log.info(
            "token endpoint refused client_secret_basic (HTTP %s); trying the %s "
            "encoding of the credentials",
            self.status,
            "raw" if self.raw else "form-encoded (RFC 6749)",
        )


@dataclass(frozen=True, slots=True)
class QuotaLow(Event):
    """The token endpoint's answer says the client's token quota is nearly spent."""

    rate_limit: RateLimit

    def log(self, log: logging.Logger) -> None:
        log.warning("the M2M token quota runs low: %s", self.rate_limit)


# -- the token source (bearer_m2m._source) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TokenRejected(Event):
    """An API answered 401 to the current token, which is dropped and replaced."""

    fingerprint: str

    def log(self, log: logging.Logger) -> None:
        log.info("token %s was rejected with 401; replacing it", self.fingerprint)


@dataclass(frozen=True, slots=True)
class QuotaGuardTripped(Event):
    """An API rejected a token that never worked, after ``strikes`` such tokens in a row: the
    quota guard hands the 401 to the caller without fetching a new token, for up to
    ``wait`` s. ``first``: the first time for this token (it is told once, not per request)."""

    fingerprint: str
    strikes: int
    wait: float
    first: bool

    def log(self, log: logging.Logger) -> None:
        if self.first:
            log.warning(
                "token %s was rejected before any request succeeded with it (%d such tokens "
                "in a row); returning 401s without fetching a new token for up to %.0f s "
                "(quota guard)",
                self.fingerprint,
                self.strikes,
                self.wait,
            )


@dataclass(frozen=True, slots=True)
class ReplacementFailed(_Failure):
    """No new token could be had after a 401: the caller gets the API's 401."""

    error: BaseException

    def log(self, log: logging.Logger) -> None:
        log.warning("no new token after a 401; returning the 401: %s", self.error)


@dataclass(frozen=True, slots=True)
class RefreshFailed(_Failure):
    """Refreshing ahead of expiry failed; the current token stays in use while it is valid."""

    error: BaseException

    def log(self, log: logging.Logger) -> None:
        log.warning("refreshing the token failed; still using the current one: %s", self.error)


# -- the exchange (bearer_m2m._exchange) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replayed(Event):
    """A request that drew a 401 is sent once more: with a ``new_token``, or with the same
    token and a ``new_proof`` (a DPoP nonce challenge, or a proof the API refused)."""

    reason: str


# -- the shared cache (bearer_m2m.caches._shared) --------------------------------------------


@dataclass(frozen=True, slots=True)
class CacheAdopted(Event):
    """A token another process stored was found in the shared cache and is used."""

    fingerprint: str

    def log(self, log: logging.Logger) -> None:
        log.debug("adopted token %s from the shared cache", self.fingerprint)


@dataclass(frozen=True, slots=True)
class CacheMissed(Event):
    """The shared cache held no usable token: this process fetches one and stores it."""


@dataclass(frozen=True, slots=True)
class CacheFailed(_Failure):
    """The shared cache failed at ``operation`` (``lock``, ``load``, ``store``, ``unlock``);
    tokens are fetched without it. ``first``: its first failure (told once)."""

    cache: object
    operation: str
    error: BaseException
    first: bool

    def log(self, log: logging.Logger) -> None:
        if self.first:
            log.warning(
                "the shared token cache %r failed (%s); fetching tokens without it",
                self.cache,
                self.error_type,
            )


# -- delivery ---------------------------------------------------------------------------------

Subscriber = Callable[[Event], None]


def write_log(event: Event) -> None:
    """The default subscriber: the library's log lines, on logger ``bearer_m2m``."""
    event.log(logger)


_lock = threading.Lock()
_subscribers: tuple[Subscriber, ...] | None = None  # None until the first event


def emit(event: Event) -> None:
    """Tell every subscriber. A subscriber that fails is skipped, never the caller's
    fetch or request: observing must not change what it observes."""
    for subscriber in _subscribers if _subscribers is not None else _defaults():
        try:
            subscriber(event)
        except Exception as exc:
            logger.debug(
                "an event subscriber failed on %s (%s)", type(event).__name__, type(exc).__name__
            )


def _defaults() -> tuple[Subscriber, ...]:
    """The log subscriber, and OpenTelemetry's when it can be imported (then, not sooner)."""
    global _subscribers
    with _lock:
        if _subscribers is None:
            found: list[Subscriber] = [write_log]
            try:
                from ._otel import OpenTelemetry

                found.append(OpenTelemetry())
            except ImportError as exc:
                if not (exc.name or "").startswith("opentelemetry"):
                    _otel_unusable(exc)
            except Exception as exc:  # a broken install must not break fetching
                _otel_unusable(exc)
            _subscribers = tuple(found)
        return _subscribers


def _otel_unusable(error: Exception) -> None:
    logger.warning(
        "OpenTelemetry is installed but cannot be used (%s); no metrics or spans",
        type(error).__name__,
    )


@contextlib.contextmanager
def subscribed(*subscribers: Subscriber) -> Iterator[None]:
    """Exactly ``subscribers`` hear the events emitted while the block runs (in every
    thread): how tests read events, or OpenTelemetry with providers of their own."""
    global _subscribers
    with _lock:
        before, _subscribers = _subscribers, subscribers
    try:
        yield
    finally:
        with _lock:
            _subscribers = before
