"""OpenTelemetry: the metrics and spans an operator sees, read with the SDK's in-memory exporters.

Each test makes a meter provider and a tracer provider of its own and has the library's
OpenTelemetry subscriber write to them (``_events.subscribed``), so no global provider is
set in this process; the tests of the global providers, of an SDK configured after the
library's first event and of import hygiene run in fresh interpreters.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import bearer_m2m
from bearer_m2m import (
    ClientCredentialsAuth,
    FileCache,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenRequestRejected,
)
from bearer_m2m import _events as events
from bearer_m2m._otel import FETCH_SPAN, OpenTelemetry
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from bearer_m2m.testing._http import Request, Response
from tests.isolated import run_isolated
from tests.servers import ApiServer, TokenServer

THREE_QUICK_ATTEMPTS = RetryPolicy(
    deadline=5.0, initial_backoff=0.005, max_backoff=0.01, max_attempts=3
)
CACHED_REQUESTS = 100


@dataclass
class Telemetry:
    """What the library recorded, through providers of this test's own."""

    subscriber: OpenTelemetry
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    tracer: trace.Tracer  # the application's, for the spans a caller starts

    def points(self) -> list[tuple[str, dict[str, Any], Any]]:
        data = self.reader.get_metrics_data()
        found: list[tuple[str, dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                assert (scope.scope.name, scope.scope.version) == (
                    "bearer_m2m",
                    bearer_m2m.__version__,
                )
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        found.append((metric.name, dict(point.attributes or {}), point))
        return found

    def count(self, name: str, **where: Any) -> float:
        """The sum of a counter's points whose attributes include ``where`` (dots as ``__``)."""
        wanted = {key.replace("__", "."): value for key, value in where.items()}
        return sum(
            point.value
            for metric, attributes, point in self.points()
            if metric == name and wanted.items() <= attributes.items()
        )

    def attributes_of(self, name: str) -> list[dict[str, Any]]:
        return [attributes for metric, attributes, _ in self.points() if metric == name]

    def snapshot(self) -> list[tuple[str, str, Any]]:
        """Every point's metric, attributes and value: equal snapshots, nothing recorded."""
        return sorted(
            (name, json.dumps(attributes, sort_keys=True), _reading(point))
            for name, attributes, point in self.points()
        )

    def spans(self, name: str = FETCH_SPAN) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]

    def exported(self) -> str:
        """Everything recorded, as an exporter would send it."""
        data = self.reader.get_metrics_data()
        texts = [data.to_json() if data is not None else ""]
        texts += [span.to_json() for span in self.exporter.get_finished_spans()]
        return "\n".join(texts)


def _reading(point: Any) -> Any:
    """A counter's value, or a histogram's count and sum."""
    return point.value if hasattr(point, "value") else (point.count, point.sum)


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
    meter_provider = MeterProvider(metric_readers=[reader])
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    subscriber = OpenTelemetry(meter_provider=meter_provider, tracer_provider=tracer_provider)
    with events.subscribed(events.write_log, subscriber):
        yield Telemetry(subscriber, reader, exporter, tracer_provider.get_tracer("the-application"))
    meter_provider.shutdown()
    tracer_provider.shutdown()


def auth_for(
    server: AuthorizationServer, api: ProtectedAPI, **options: Any
) -> ClientCredentialsAuth:
    options.setdefault("client_id", server.client.client_id)
    options.setdefault("client_secret", server.client.client_secret)
    options.setdefault("retry", THREE_QUICK_ATTEMPTS)
    return ClientCredentialsAuth(server.token_url, audience=api.audience, **options)


def address_of(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    return {"server.address": parts.hostname, "server.port": parts.port}


# -- a fetch -------------------------------------------------------------------------------------


def test_a_fetch_is_counted_timed_and_traced_with_its_server(
    otel: Telemetry,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    assert requests.get(m2m_api.url + "things", auth=m2m_auth, timeout=10).status_code == 200

    server = address_of(m2m_server.token_url)
    assert otel.attributes_of("bearer_m2m.token.requests") == [{**server, "outcome": "success"}]
    assert otel.count("bearer_m2m.token.requests") == 1
    ((_, attributes, histogram),) = [
        p for p in otel.points() if p[0] == "bearer_m2m.token.request.duration"
    ]
    assert attributes == {**server, "outcome": "success"}
    assert histogram.count == 1 and histogram.sum >= 0
    assert list(histogram.explicit_bounds)[:3] == [0.005, 0.01, 0.025]  # seconds, not ms

    (span,) = otel.spans()
    assert span.kind is trace.SpanKind.INTERNAL
    assert span.status.status_code is trace.StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "bearer_m2m"
    assert span.instrumentation_scope.version == bearer_m2m.__version__
    attributes = dict(span.attributes or {})
    assert attributes.pop("bearer_m2m.token.expires_in") > 3500
    assert attributes == {**server, "bearer_m2m.attempts": 1}
    assert span.parent is None  # no span was current in the caller


def test_the_callers_span_is_the_parent_of_the_fetch_span_sync_and_async(
    otel: Telemetry, m2m_api: ProtectedAPI, m2m_auth: ClientCredentialsAuth
) -> None:
    url = m2m_api.url + "things"
    with otel.tracer.start_as_current_span("GET /orders") as sync_caller:
        assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    m2m_auth.invalidate()

    async def handler() -> int:
        with otel.tracer.start_as_current_span("async GET /orders"):
            async with httpx.AsyncClient(auth=m2m_auth, timeout=10) as client:
                return (await client.get(url)).status_code

    assert asyncio.run(handler()) == 200

    callers = {span.name: span for span in otel.exporter.get_finished_spans()}
    fetches = otel.spans()
    assert len(fetches) == 2
    for fetch, caller in zip(fetches, (sync_caller, callers["async GET /orders"]), strict=True):
        assert fetch.parent is not None
        assert fetch.parent.span_id == caller.get_span_context().span_id
        assert fetch.context is not None
        assert fetch.context.trace_id == caller.get_span_context().trace_id


def test_the_fetch_span_is_current_while_the_fetch_runs_and_retries_are_its_events(
    otel: Telemetry, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    """Current, so that an instrumented HTTP client's token request would be its child."""
    current: list[int] = []

    def look(event: events.Event) -> None:
        if isinstance(event, events.TransientFailure):
            current.append(trace.get_current_span().get_span_context().span_id)

    m2m_server.fail_next(2, status=503)
    auth = auth_for(m2m_server, m2m_api)
    with otel.tracer.start_as_current_span("caller"):
        with events.subscribed(events.write_log, otel.subscriber, look):
            assert auth.token()
        assert trace.get_current_span().get_span_context().span_id != 0  # the caller's, still

    (span,) = otel.spans()
    assert span.context is not None and current == [span.context.span_id] * 2
    assert (span.attributes or {})["bearer_m2m.attempts"] == 3
    retries = [event for event in span.events if event.name == "bearer_m2m.retry"]
    assert len(retries) == 2
    for retry in retries:
        attributes = dict(retry.attributes or {})
        assert attributes.pop("bearer_m2m.retry.delay") > 0
        assert attributes == {
            "reason": "transient",
            "error.type": "TokenEndpointUnavailable",
            "http.response.status_code": 503,
        }
    server = address_of(m2m_server.token_url)
    assert (
        otel.count(
            "bearer_m2m.token.retries", reason="transient", server__address=server["server.address"]
        )
        == 2
    )
    assert otel.count("bearer_m2m.token.requests", outcome="success") == 1


def test_a_failing_endpoint_counts_failures_by_error_type_and_marks_the_span(
    otel: Telemetry, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    m2m_server.fail_next(3, status=503)
    with pytest.raises(TokenEndpointUnavailable):
        auth_for(m2m_server, m2m_api).token()
    with pytest.raises(TokenRequestRejected):
        auth_for(m2m_server, m2m_api, client_secret="not-the-secret").token()

    server = address_of(m2m_server.token_url)
    assert sorted(otel.attributes_of("bearer_m2m.token.requests"), key=str) == sorted(
        [
            {**server, "outcome": "failure", "error.type": "TokenEndpointUnavailable"},
            {**server, "outcome": "failure", "error.type": "TokenRequestRejected"},
        ],
        key=str,
    )
    assert otel.count("bearer_m2m.token.requests", outcome="success") == 0
    assert otel.count("bearer_m2m.token.retries", reason="transient") == 2
    unavailable, rejected = otel.spans()
    for span, error, status, attempts in (
        (unavailable, "TokenEndpointUnavailable", 503, 3),
        (rejected, "TokenRequestRejected", 401, 1),
    ):
        assert span.status.status_code is trace.StatusCode.ERROR
        assert span.status.description == error
        assert {
            key: (span.attributes or {})[key]
            for key in ("error.type", "http.response.status_code", "bearer_m2m.attempts")
        } == {
            "error.type": error,
            "http.response.status_code": status,
            "bearer_m2m.attempts": attempts,
        }


# -- 401s, replays, the quota guard -----------------------------------------------------------------


def test_a_401_counts_a_rejection_and_a_replay_with_a_new_token(
    otel: Telemetry,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    url = m2m_api.url + "things"
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    m2m_server.revoke_all()
    with otel.tracer.start_as_current_span("caller"):
        assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200

    assert otel.count("bearer_m2m.token.rejections") == 1
    assert otel.attributes_of("bearer_m2m.replays") == [{"reason": "new_token"}]
    assert otel.count("bearer_m2m.replays") == 1
    assert otel.count("bearer_m2m.token.requests", outcome="success") == 2
    (caller,) = otel.spans("caller")
    assert [event.name for event in caller.events] == [
        "bearer_m2m.token_rejected",
        "bearer_m2m.replay",
    ]
    assert caller.events[1].attributes == {"reason": "new_token"}


def test_the_quota_guard_counts_every_401_it_returns(
    otel: Telemetry,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    m2m_server.reject_all_tokens = True
    statuses = [
        requests.get(m2m_api.url + "things", auth=m2m_auth, timeout=10).status_code
        for _ in range(5)
    ]
    assert statuses == [401] * 5
    assert otel.count("bearer_m2m.quota_guard.trips") == 4
    assert otel.count("bearer_m2m.token.rejections") == 1
    assert otel.count("bearer_m2m.replays", reason="new_token") == 1


def test_no_new_token_after_a_401_counts_a_replacement_failure(
    otel: Telemetry,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    url = m2m_api.url + "things"
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    m2m_server.revoke_all()
    m2m_server.fail_next(1, status=401, json={"error": "invalid_client"})
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 401
    assert otel.attributes_of("bearer_m2m.token.replacement_failures") == [
        {"error.type": "TokenRequestRejected"}
    ]
    assert otel.count("bearer_m2m.replays") == 0


@pytest.fixture(scope="module")
def nonce_servers() -> Iterator[tuple[AuthorizationServer, ProtectedAPI]]:
    audience = "https://otel.nonces.example"
    with (
        AuthorizationServer(require_dpop_nonce=True, audiences=[audience]) as server,
        ProtectedAPI(server, audience, require_dpop_nonce=True) as api,
    ):
        yield server, api


def test_dpop_nonces_count_a_retry_at_the_token_endpoint_and_a_replay_with_a_new_proof(
    otel: Telemetry, nonce_servers: tuple[AuthorizationServer, ProtectedAPI]
) -> None:
    server, api = nonce_servers
    server.reset()
    api.reset()
    auth = auth_for(server, api, dpop=True)
    assert requests.get(api.url + "things", auth=auth, timeout=10).status_code == 200

    assert otel.count("bearer_m2m.token.retries", reason="dpop_nonce") == 1
    assert otel.attributes_of("bearer_m2m.replays") == [{"reason": "new_proof"}]
    (span,) = otel.spans()
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        ("bearer_m2m.retry", {"reason": "dpop_nonce"})
    ]
    assert (span.attributes or {})["bearer_m2m.attempts"] == 2


# -- the shared cache ---------------------------------------------------------------------------


def test_cache_lookups_count_misses_hits_and_errors(
    otel: Telemetry, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, tmp_path: Path
) -> None:
    path = tmp_path / "tokens"
    token = auth_for(m2m_server, m2m_api, cache=FileCache(path)).token()
    assert auth_for(m2m_server, m2m_api, cache=FileCache(path)).token() == token
    (tmp_path / "a-file").write_text("")
    auth_for(m2m_server, m2m_api, cache=FileCache(tmp_path / "a-file" / "tokens")).token()

    assert otel.count("bearer_m2m.cache.lookups", result="miss") == 1
    assert otel.count("bearer_m2m.cache.lookups", result="hit") == 1
    ((attributes),) = otel.attributes_of("bearer_m2m.cache.errors")
    assert attributes["operation"] == "lock" and attributes["error.type"]
    assert otel.count("bearer_m2m.token.requests") == 2  # the miss and the broken cache's


# -- what is never emitted ------------------------------------------------------------------


def test_the_cached_path_records_nothing(
    otel: Telemetry, m2m_api: ProtectedAPI, m2m_auth: ClientCredentialsAuth
) -> None:
    url = m2m_api.url + "things"
    assert requests.get(url, auth=m2m_auth, timeout=10).status_code == 200
    before, spans_before = otel.snapshot(), len(otel.exporter.get_finished_spans())

    with requests.Session() as session:
        session.auth = m2m_auth
        statuses = [session.get(url, timeout=10).status_code for _ in range(CACHED_REQUESTS)]
    with httpx.Client(auth=m2m_auth, timeout=10) as client:
        statuses += [client.get(url).status_code for _ in range(CACHED_REQUESTS)]

    assert statuses == [200] * 2 * CACHED_REQUESTS
    assert otel.snapshot() == before
    assert len(otel.exporter.get_finished_spans()) == spans_before


class RecordingServer(AuthorizationServer):
    """The authorization server, keeping every request it was sent (credentials and all)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: list[Request] = []

    def handle(self, request: Request) -> Response | None:
        self.seen.append(request)
        return super().handle(request)


class RecordingAPI(ProtectedAPI):
    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.seen: list[Request] = []

    def handle(self, request: Request) -> Response:
        self.seen.append(request)
        return super().handle(request)


#: Characters that form-encoding, percent-encoding and Basic spell differently.
ODD_SECRET = "s3cr3t+w/th=odd&chars and space"


def credentials_sent(*servers: RecordingServer | RecordingAPI) -> set[str]:
    """Every credential that crossed the wire: Authorization values (Basic, Bearer, DPoP),
    DPoP proofs, form secrets and assertions, and each JWT's signature alone."""
    found: set[str] = set()
    for server in servers:
        for request in server.seen:
            _, _, authorization = (request.headers.get("Authorization") or "").partition(" ")
            found |= {authorization, authorization.rstrip("="), request.headers.get("DPoP") or ""}
            form = dict(parse_qsl(request.body.decode("latin-1")))
            found |= {form.get("client_secret", ""), form.get("client_assertion", "")}
    found |= {credential.rpartition(".")[2] for credential in found if credential.count(".") == 2}
    return {credential for credential in found if len(credential) >= 8}


def secret_spellings(client_id: str, secret: str) -> set[str]:
    spellings = {secret, quote_plus(secret), quote(secret, safe=""), quote(secret)}
    for user, password in ((client_id, secret), (quote_plus(client_id), quote_plus(secret))):
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        spellings |= {basic, basic.rstrip("=")}
    return spellings


def test_no_token_secret_proof_key_or_assertion_is_ever_exported(otel: Telemetry) -> None:
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    from joserfc.jwk import ECKey

    dpop_jwk = ECKey.generate_key("P-256").as_dict(private=True)
    audience = "https://otel.leaks.example"
    with (
        RecordingServer(require_dpop_nonce=True, audiences=[audience]) as server,
        RecordingAPI(server, audience, require_dpop_nonce=True) as api,
    ):
        basic_client = server.register_client(
            client_secret=ODD_SECRET, auth_methods=["client_secret_basic"]
        )
        key_client = server.register_client(public_key=rsa_pem)
        url = api.url + "things"
        with otel.tracer.start_as_current_span("caller"):
            # DPoP with Basic credentials: a nonce retry at the token endpoint, a nonce
            # replay at the API, then a revoked token replaced and replayed.
            basic = auth_for(
                server,
                api,
                client_id=basic_client.client_id,
                client_secret=ODD_SECRET,
                auth_method="client_secret_basic",
                dpop=dpop_jwk,
            )
            assert requests.get(url, auth=basic, timeout=10).status_code == 200
            server.revoke_all()
            assert requests.get(url, auth=basic, timeout=10).status_code == 200
            # A transient failure, then a refused secret (its every spelling).
            server.fail_next(1, status=503)
            basic.invalidate()
            assert requests.get(url, auth=basic, timeout=10).status_code == 200
            wrong = auth_for(
                server,
                api,
                client_id=basic_client.client_id,
                client_secret=ODD_SECRET + "!",
                auth_method="client_secret_basic",
            )
            with pytest.raises(TokenRequestRejected):
                wrong.token()
            # private_key_jwt: an assertion per token request.
            signed = auth_for(
                server, api, client_id=key_client.client_id, client_secret=None, private_key=rsa_pem
            )
            assert requests.get(url, auth=signed, timeout=10).status_code == 200

        forbidden = credentials_sent(server, api)
        forbidden |= secret_spellings(basic_client.client_id, ODD_SECRET)
        forbidden |= secret_spellings(basic_client.client_id, ODD_SECRET + "!")
        forbidden |= {dpop_jwk["d"], *rsa_pem.splitlines()[1:-1]}

    exported = otel.exported()
    assert otel.count("bearer_m2m.token.requests") == 5  # the scenario was recorded
    assert {"new_token", "new_proof"} <= {
        a["reason"] for a in otel.attributes_of("bearer_m2m.replays")
    }
    assert any(credential.startswith("eyJ") for credential in forbidden)  # tokens and proofs
    leaked = sorted(credential for credential in forbidden if credential in exported)
    assert leaked == []
    assert not re.search(r"eyJ[\w-]+\.[\w-]+\.", exported), "something JWT-shaped was exported"


# -- global providers and imports, in fresh interpreters --------------------------------------------


@pytest.fixture
def endpoints() -> Iterator[tuple[str, str]]:
    tokens = TokenServer()
    api = ApiServer(accepts=lambda token: token in tokens.issued)
    yield tokens.token_url, f"{api.origin}/things"
    api.close()
    tokens.close()


def test_an_sdk_configured_after_the_first_event_is_the_one_that_records(
    endpoints: tuple[str, str],
) -> None:
    found = run_isolated(
        """
        import requests
        from bearer_m2m import ClientCredentialsAuth
        token_url, api_url = _sys.argv[1:]
        auth = ClientCredentialsAuth(token_url, client_id="c", client_secret="s")
        first = requests.get(api_url, auth=auth, timeout=10).status_code  # before any SDK

        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        reader, exporter = InMemoryMetricReader(), InMemorySpanExporter()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(tracer_provider)

        auth.invalidate()
        second = requests.get(api_url, auth=auth, timeout=10).status_code
        data = reader.get_metrics_data()
        counted = {
            metric.name: sum(point.value for point in metric.data.data_points)
            for resource in data.resource_metrics for scope in resource.scope_metrics
            for metric in scope.metrics if metric.name == "bearer_m2m.token.requests"
        }
        report({"status": [first, second], "counted": counted,
                "spans": [span.name for span in exporter.get_finished_spans()]})
        """,
        *endpoints,
    )
    assert found == {
        "status": [200, 200],
        "counted": {"bearer_m2m.token.requests": 1},  # the fetch after the SDK was set up
        "spans": ["bearer_m2m.fetch_token"],
    }


def test_opentelemetry_is_imported_at_the_first_event_not_before(
    endpoints: tuple[str, str],
) -> None:
    found = run_isolated(
        """
        import requests
        from bearer_m2m import ClientCredentialsAuth
        def loaded():
            return sorted(name for name in _sys.modules
                          if name.partition(".")[0] == "opentelemetry" or name == "bearer_m2m._otel")
        token_url, api_url = _sys.argv[1:]
        auth = ClientCredentialsAuth(token_url, client_id="c", client_secret="s")
        built = loaded()
        status = requests.get(api_url, auth=auth, timeout=10).status_code
        report({"built": built, "status": status,
                "fetched": [name for name in loaded() if name in
                            ("bearer_m2m._otel", "opentelemetry.metrics", "opentelemetry.trace")],
                "sdk": any(name.startswith("opentelemetry.sdk") for name in loaded())})
        """,
        *endpoints,
    )
    assert found == {
        "built": [],
        "status": 200,
        "fetched": ["bearer_m2m._otel", "opentelemetry.metrics", "opentelemetry.trace"],
        "sdk": False,  # the API only: the SDK is the application's choice
    }


def test_without_opentelemetry_nothing_of_it_is_imported_and_logs_go_on(
    endpoints: tuple[str, str],
) -> None:
    found = run_isolated(
        """
        import importlib.abc, logging
        class NoOpenTelemetry(importlib.abc.MetaPathFinder):
            # As if it were not installed.
            asked = []
            def find_spec(self, name, path=None, target=None):
                if name.partition(".")[0] == "opentelemetry":
                    self.asked.append(name)
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        _sys.meta_path.insert(0, NoOpenTelemetry())
        records = []
        handler = logging.Handler(logging.DEBUG)
        handler.emit = records.append
        logging.getLogger("bearer_m2m").addHandler(handler)
        logging.getLogger("bearer_m2m").setLevel(logging.DEBUG)

        import requests
        from bearer_m2m import ClientCredentialsAuth, _events
        token_url, api_url = _sys.argv[1:]
        auth = ClientCredentialsAuth(token_url, client_id="c", client_secret="s")
        status = requests.get(api_url, auth=auth, timeout=10).status_code
        report({
            "status": status,
            "imported": sorted(name for name in _sys.modules
                               if "opentelemetry" in name or name == "bearer_m2m._otel"),
            "asked": NoOpenTelemetry.asked[:1],
            "subscribers": [s.__name__ for s in _events._subscribers],
            "logged": [r.getMessage().split(" ")[0] for r in records],
        })
        """,
        *endpoints,
    )
    assert found == {
        "status": 200,
        "imported": [],
        "asked": ["opentelemetry"],  # once, at the first event
        "subscribers": ["write_log"],
        "logged": ["fetched"],  # the DEBUG line of the fetch, as before
    }
