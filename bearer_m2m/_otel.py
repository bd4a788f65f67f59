"""OpenTelemetry metrics and spans from the library's events (the ``[otel]`` extra).

:mod:`bearer_m2m._events` loads this at the first event when ``opentelemetry-api``
can be imported; nothing else imports it. It needs the API only: the application
picks and configures the SDK, before or after importing bearer_m2m, since the meter
and tracer are looked up at use time (through the global providers unless given).

Each token fetch is a span, ``bearer_m2m.fetch_token``, made current while the fetch
runs, so an instrumented HTTP stack's token request becomes its child; the fetch runs
in the caller's context (see :meth:`TokenSource._take_off`), so the span's parent is
the request that needed the token. Retries are span events. Attributes are names,
counts, statuses and error class names: never a token, secret, proof, key or assertion.
"""

from __future__ import annotations

import functools
import threading
from typing import TYPE_CHECKING

from opentelemetry import context, metrics, trace

from . import __version__
from . import _events as ev

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.util.types import AttributeValue

    Attributes = dict[str, AttributeValue]
    #: A fetch in progress: its span, and what restores the context it was made current in.
    OpenFetch = tuple[trace.Span, Token[context.Context]]

#: The instrumentation scope: the library's name (its version goes with it).
SCOPE = "bearer_m2m"
FETCH_SPAN = "bearer_m2m.fetch_token"
#: Seconds, as OpenTelemetry's HTTP semantic conventions advise for request durations.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)


class OpenTelemetry:
    """An event subscriber that records the library's metrics and fetch spans.

    ``meter_provider`` and ``tracer_provider`` default to the global ones, read
    at each use, so that an SDK configured later is the one that records.
    """

    def __init__(
        self,
        *,
        meter_provider: metrics.MeterProvider | None = None,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> None:
        self._meter_provider = meter_provider
        self._tracer_provider = tracer_provider
        self._lock = threading.Lock()
        self._made: tuple[metrics.MeterProvider, _Instruments] | None = None
        self._fetches = threading.local()  # the spans of this thread's fetches in progress

    def __repr__(self) -> str:
        return "<bearer_m2m OpenTelemetry subscriber>"

    def __call__(self, event: ev.Event) -> None:
        match event:
            case ev.FetchStarted():
                self._fetch_started(event)
            case ev.TokenFetched() | ev.FetchFailed():
                self._fetch_ended(event)
            case ev.TokenRetry():
                self._retried(event)
            case ev.QuotaLow():
                trace.get_current_span().add_event("bearer_m2m.quota_low")
            case ev.TokenRejected():
                self._instruments().rejections.add(1)
                trace.get_current_span().add_event("bearer_m2m.token_rejected")
            case ev.Replayed(reason=reason):
                self._instruments().replays.add(1, {"reason": reason})
                trace.get_current_span().add_event("bearer_m2m.replay", {"reason": reason})
            case ev.QuotaGuardTripped():
                self._instruments().guard_trips.add(1)
                trace.get_current_span().add_event("bearer_m2m.quota_guard_tripped")
            case ev.RefreshFailed():
                self._instruments().refresh_failures.add(1, {"error.type": event.error_type})
            case ev.ReplacementFailed():
                self._instruments().replacement_failures.add(1, {"error.type": event.error_type})
            case ev.CacheAdopted():
                self._instruments().cache_lookups.add(1, {"result": "hit"})
            case ev.CacheMissed():
                self._instruments().cache_lookups.add(1, {"result": "miss"})
            case ev.CacheFailed(operation=operation):
                attributes = {"operation": operation, "error.type": event.error_type}
                self._instruments().cache_errors.add(1, attributes)

    def _fetch_started(self, event: ev.FetchStarted) -> None:
        tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=self._tracer_provider)
        span = tracer.start_span(FETCH_SPAN, attributes=_server(event.server))
        token = context.attach(trace.set_span_in_context(span))
        self._open_fetches().append((span, token))

    def _fetch_ended(self, event: ev.TokenFetched | ev.FetchFailed) -> None:
        attributes = _server(event.server)
        failed = isinstance(event, ev.FetchFailed)
        attributes["outcome"] = "failure" if failed else "success"
        if isinstance(event, ev.FetchFailed):
            attributes["error.type"] = event.error_type
        instruments = self._instruments()
        instruments.token_requests.add(1, attributes)
        instruments.token_duration.record(event.duration, attributes)
        fetches = self._open_fetches()
        if not fetches:
            return  # begun before this subscriber was
        span, token = fetches.pop()
        context.detach(token)
        span.set_attribute("bearer_m2m.attempts", event.attempts)
        if isinstance(event, ev.TokenFetched):
            if event.expires_in is not None:
                span.set_attribute("bearer_m2m.token.expires_in", event.expires_in)
        else:
            span.set_attribute("error.type", event.error_type)
            if event.status is not None:
                span.set_attribute("http.response.status_code", event.status)
            span.set_status(trace.StatusCode.ERROR, event.error_type)
        span.end()

    def _retried(self, event: ev.TokenRetry) -> None:
        self._instruments().retries.add(1, {**_server(event.server), "reason": event.reason})
        attributes: Attributes = {"reason": event.reason}
        if isinstance(event, ev.TransientFailure):
            attributes["error.type"] = event.error_type
            attributes["bearer_m2m.retry.delay"] = event.delay
            if event.status is not None:
                attributes["http.response.status_code"] = event.status
        elif isinstance(event, ev.BasicEncodingSwitched) and event.status is not None:
            attributes["http.response.status_code"] = event.status
        trace.get_current_span().add_event("bearer_m2m.retry", attributes)

    def _open_fetches(self) -> list[OpenFetch]:
        fetches: list[OpenFetch] | None = getattr(self._fetches, "open", None)
        if fetches is None:
            fetches = self._fetches.open = []
        return fetches

    def _instruments(self) -> _Instruments:
        """The instruments of the meter provider in force now."""
        provider = self._meter_provider or metrics.get_meter_provider()
        with self._lock:
            if self._made is None or self._made[0] is not provider:
                meter = metrics.get_meter(SCOPE, __version__, meter_provider=provider)
                self._made = (provider, _Instruments(meter))
            return self._made[1]


class _Instruments:
    """Every instrument of the library, made from one meter: the one list of names."""

    def __init__(self, meter: metrics.Meter) -> None:
        counter = meter.create_counter
        self.token_requests = counter(
            "bearer_m2m.token.requests",
            unit="{request}",
            description="Tokens asked of the token endpoint, by outcome (retries included).",
        )
        self.token_duration = _duration_histogram(meter)
        self.retries = counter(
            "bearer_m2m.token.retries",
            unit="{request}",
            description="Token requests sent again within a fetch, by reason.",
        )
        self.rejections = counter(
            "bearer_m2m.token.rejections",
            unit="{token}",
            description="Tokens an API answered with 401, dropped and replaced.",
        )
        self.replays = counter(
            "bearer_m2m.replays",
            unit="{request}",
            description="Requests sent again after a 401: with a new token or a new DPoP proof.",
        )
        self.guard_trips = counter(
            "bearer_m2m.quota_guard.trips",
            unit="{response}",
            description="401s handed to the caller without a new token, by the quota guard.",
        )
        self.refresh_failures = counter(
            "bearer_m2m.token.refresh_failures",
            unit="{fetch}",
            description="Failed refreshes ahead of expiry; the current token stays in use.",
        )
        self.replacement_failures = counter(
            "bearer_m2m.token.replacement_failures",
            unit="{response}",
            description="401s handed to the caller because no new token could be had.",
        )
        self.cache_lookups = counter(
            "bearer_m2m.cache.lookups",
            unit="{lookup}",
            description="Shared-cache lookups before a fetch, by result (hit or miss).",
        )
        self.cache_errors = counter(
            "bearer_m2m.cache.errors",
            unit="{error}",
            description="Shared-cache failures, by operation; tokens are fetched without it.",
        )


def _duration_histogram(meter: metrics.Meter) -> metrics.Histogram:
    name, unit = "bearer_m2m.token.request.duration", "s"
    description = "How long getting a token from the token endpoint took, retries included."
    try:
        return meter.create_histogram(
            name, unit, description, explicit_bucket_boundaries_advisory=DURATION_BUCKETS
        )
    except TypeError:  # opentelemetry-api before 1.23 takes no advice
        return meter.create_histogram(name, unit, description)


def _server(netloc: str) -> Attributes:
    """``server.address`` and ``server.port`` of a token endpoint's ``host:port``."""
    return dict(_server_items(netloc))


@functools.lru_cache(maxsize=64)
def _server_items(netloc: str) -> tuple[tuple[str, AttributeValue], ...]:
    from urllib.parse import urlsplit

    parts = urlsplit(f"//{netloc}")
    items: list[tuple[str, AttributeValue]] = [("server.address", parts.hostname or netloc)]
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        items.append(("server.port", port))
    return tuple(items)
