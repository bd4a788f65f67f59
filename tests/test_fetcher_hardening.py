"""The token request against hostile or unlucky servers, over real loopback sockets.

Bounded retries, answers Authlib would trip over, echoed credentials in every
spelling, refusals without a body, the two Basic encodings, and answers that never
end or arrive a byte at a time (bare-socket servers below, for what http.server
cannot send).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus

import pytest
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from bearer_m2m import (
    ClientCredentialsAuth,
    ConfigurationError,
    InvalidTokenResponse,
    RetryPolicy,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)
from bearer_m2m._client_auth import load_signing_key
from bearer_m2m._fetcher import MAX_ANSWER_BYTES, _read_body
from tests.conftest import FAST_RETRY, SECRET
from tests.servers import Reply, TokenServer, json_reply, serving

CLIENT_ID = "client-1"
#: Retries without waits, for suites that make many fetches.
QUICK_RETRY = RetryPolicy(deadline=30.0, initial_backoff=0.001, max_backoff=0.002, max_attempts=2)
DEEP_JSON = b"[" * 10_000 + b"]" * 10_000


def make(token_url: str, **overrides: object) -> ClientCredentialsAuth:
    options: dict[str, object] = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "audience": "https://api.example",
        "retry": FAST_RETRY,
    }
    options.update(overrides)
    return ClientCredentialsAuth(token_url, **options)  # type: ignore[arg-type]


def error_texts(exc: BaseException) -> str:
    """Everything a caller could print about an exception, with what it was raised from."""
    texts = [str(exc), repr(exc), repr(vars(exc))]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            texts += [str(linked), repr(linked)]
    return "\n".join(texts)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


@contextmanager
def logged() -> Iterator[list[str]]:
    """Every message the library logs meanwhile (usable inside hypothesis tests)."""
    logger = logging.getLogger("bearer_m2m")
    handler, level = _Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.texts
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def token_reply(token: str = "tok-good", **extra: object) -> Reply:
    return json_reply({"access_token": token, "token_type": "Bearer", "expires_in": 3600, **extra})


# -- B. retries are bounded by attempts as well as by the deadline ------------------------


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_a_502_storm_costs_at_most_max_attempts_requests(
    token_server: TokenServer, max_attempts: int
) -> None:
    html = Reply(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})
    token_server.script = [html] * 20
    policy = RetryPolicy(
        deadline=30.0, initial_backoff=0.001, max_backoff=0.002, max_attempts=max_attempts
    )
    with pytest.raises(TokenEndpointUnavailable) as caught:
        make(token_server.token_url, retry=policy).token()
    assert token_server.count == max_attempts
    assert f"gave up after {max_attempts} attempt(s)" in str(caught.value)
    assert caught.value.status_code == 502


def test_the_default_policy_stops_after_four_attempts(token_server: TokenServer) -> None:
    token_server.script = [Reply(503, b"")] * 50
    # the deadline alone would allow dozens of requests
    policy = RetryPolicy(deadline=2.0, initial_backoff=0.01, max_backoff=0.05)
    with pytest.raises(TokenEndpointUnavailable, match=r"after 4 attempt\(s\)"):
        make(token_server.token_url, retry=policy).token()
    assert token_server.count == policy.max_attempts == 4


# -- C2. Authlib is never the one to raise -------------------------------------------------


@pytest.mark.parametrize("error", [None, ""])
def test_an_empty_error_field_beside_a_token_is_no_error(
    token_server: TokenServer, error: str | None
) -> None:
    token_server.script = [token_reply(error=error, error_description=f"echo {SECRET}")]
    assert make(token_server.token_url).token() == "tok-good"


@pytest.mark.parametrize("error", [None, ""])
def test_an_empty_error_field_without_a_token_is_a_typed_error_without_the_secret(
    token_server: TokenServer, error: str | None
) -> None:
    token_server.script = [json_reply({"error": error, "error_description": SECRET})]
    with pytest.raises(InvalidTokenResponse, match="no access_token") as caught:
        make(token_server.token_url).token()
    assert SECRET not in error_texts(caught.value)


@pytest.mark.parametrize("expires_at", [{}, [1], "soon", 1e999, 10**400])
def test_fields_authlib_would_parse_cannot_break_a_good_answer(
    token_server: TokenServer, expires_at: object
) -> None:
    token_server.script = [token_reply(expires_at=expires_at)]
    assert make(token_server.token_url).token() == "tok-good"


def test_whatever_authlib_still_raises_is_a_token_error_without_its_text(
    token_server: TokenServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: an Authlib release that raises after our checks, quoting the secret.
    def parse_response_token(self: OAuth2Session, resp: Any) -> Any:
        raise OAuthError(error="oops", description=f"client_secret={SECRET}")

    monkeypatch.setattr(OAuth2Session, "parse_response_token", parse_response_token)
    with pytest.raises(InvalidTokenResponse, match=r"inside Authlib \(OAuthError\)") as caught:
        make(token_server.token_url).token()
    assert SECRET not in error_texts(caught.value)


# -- C3. every spelling of every credential is masked --------------------------------------


def _sent_form_value(body: bytes, name: str) -> str:
    """A form field exactly as the client encoded it."""
    for pair in body.decode("ascii").split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return ""


def _authorization(headers: dict[str, str]) -> str:
    return headers.get("Authorization", "")


def _decoded_basic(headers: dict[str, str]) -> str:
    credentials = _authorization(headers).removeprefix("Basic ")
    return base64.b64decode(credentials).decode("utf-8") if credentials else ""


def _secret_of(body: bytes, headers: dict[str, str]) -> str:
    """The secret as the server read it, from the form or the Basic header."""
    form = dict(parse_qsl(body.decode("ascii")))
    if "client_secret" in form:
        return form["client_secret"]
    return unquote_plus(_decoded_basic(headers).partition(":")[2])


ECHOES: dict[str, Callable[[bytes, dict[str, str]], str]] = {
    "form value as sent": lambda body, headers: _sent_form_value(body, "client_secret"),
    "form value decoded": _secret_of,
    "percent-encoded (quote)": lambda body, headers: quote(_secret_of(body, headers), safe=""),
    "form-encoded, lower-case hex": lambda body, headers: re.sub(
        "%[0-9A-F]{2}", lambda m: m.group().lower(), quote_plus(_secret_of(body, headers))
    ),
    "JSON-escaped": lambda body, headers: json.dumps(_secret_of(body, headers))[1:-1],
    "Authorization header": lambda body, headers: _authorization(headers),
    "Basic header decoded": lambda body, headers: _decoded_basic(headers),
    "client assertion": lambda body, headers: _sent_form_value(body, "client_assertion"),
}


class EchoServer(TokenServer):
    """A token endpoint that refuses every request, quoting a credential back
    (``echo`` picks which spelling) in ``error_description``."""

    def __init__(self) -> None:
        super().__init__()
        self.echo = "form value decoded"
        self.status = 401
        self.echoed: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        echoed = ECHOES[self.echo](body, headers)
        self.echoed.append(echoed)
        payload = {"error": "invalid_client", "error_description": f"got {echoed} from you"}
        return json_reply(payload, self.status)


@pytest.fixture(scope="module")
def echo_server() -> Iterator[EchoServer]:
    with serving(EchoServer()) as server:
        assert isinstance(server, EchoServer)
        yield server


def assert_masked(server: EchoServer, caught: TokenError, logs: list[str]) -> None:
    assert server.echoed and all(server.echoed)
    texts = error_texts(caught) + "\n".join(logs)
    for echoed in server.echoed:
        assert echoed not in texts
    assert "***" in (caught.error_description or "")


@given(
    tail=st.text(st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=30),
    method=st.sampled_from(["client_secret_post", "client_secret_basic"]),
    echo=st.sampled_from([name for name in ECHOES if name != "client assertion"]),
    status=st.sampled_from([401, 503]),
)
def test_an_echoed_secret_is_masked_in_every_spelling(
    echo_server: EchoServer, tail: str, method: str, echo: str, status: int
) -> None:
    header_echo = echo in ("Authorization header", "Basic header decoded")
    if method == "client_secret_post" and header_echo:
        echo = "form value as sent"  # no header to quote
    if method == "client_secret_basic" and echo == "form value as sent":
        echo = "Basic header decoded"  # no secret in the form
    echo_server.echo, echo_server.status, echo_server.echoed = echo, status, []
    auth = make(
        echo_server.token_url, client_secret="s3-" + tail, auth_method=method, retry=QUICK_RETRY
    )
    with logged() as logs, pytest.raises(TokenError) as caught:
        auth.token()
    assert_masked(echo_server, caught.value, logs)


def _rsa_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.mark.parametrize("status", [401, 503])
@pytest.mark.parametrize(
    "credentials",
    [
        {"auth_method": "client_secret_jwt", "client_secret": "k" * 40},
        {"private_key": _rsa_pem()},
    ],
    ids=["client_secret_jwt", "private_key_jwt"],
)
def test_an_echoed_client_assertion_is_masked(
    echo_server: EchoServer, credentials: dict[str, str], status: int
) -> None:
    echo_server.echo, echo_server.status, echo_server.echoed = "client assertion", status, []
    overrides: dict[str, object] = {"client_secret": None, **credentials, "retry": QUICK_RETRY}
    with logged() as logs, pytest.raises(TokenError) as caught:
        make(echo_server.token_url, **overrides).token()
    assert_masked(echo_server, caught.value, logs)
    assert all(echoed.count(".") == 2 for echoed in echo_server.echoed)  # JWTs were echoed


def test_server_texts_cannot_forge_log_lines(token_server: TokenServer) -> None:
    forged = "nope\nWARNING bearer_m2m all is well"
    token_server.script = [json_reply({"error": "x", "error_description": forged}, 503)] * 2
    with logged() as logs, pytest.raises(TokenEndpointUnavailable):
        make(token_server.token_url, retry=QUICK_RETRY).token()
    assert logs and not any("\n" in text for text in logs)


# -- D(a). answers nested too deep for the JSON parser -------------------------------------


def test_a_deeply_nested_200_is_an_invalid_token_response(token_server: TokenServer) -> None:
    token_server.script = [Reply(200, DEEP_JSON, {"Content-Type": "application/json"})]
    with pytest.raises(InvalidTokenResponse, match="not a JSON object"):
        make(token_server.token_url).token()
    assert token_server.count == 1


def test_a_deeply_nested_503_is_retried(token_server: TokenServer) -> None:
    token_server.script = [Reply(503, DEEP_JSON, {"Content-Type": "application/json"})]
    assert make(token_server.token_url).token() == "tok-1"
    assert token_server.count == 2


# -- D(b). refusals with no body, and other 4xx --------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403])
@pytest.mark.parametrize(
    "reply_body, content_type",
    [(b"", None), (b"<html>Forbidden</html>", "text/html"), (b"denied", "text/plain")],
)
def test_a_refusal_without_an_oauth_error_is_a_rejection_that_names_the_credentials(
    token_server: TokenServer, status: int, reply_body: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    token_server.script = [Reply(status, reply_body, headers)]
    with pytest.raises(TokenRequestRejected) as caught:
        make(token_server.token_url).token()
    message = str(caught.value)
    assert token_server.count == 1
    assert caught.value.status_code == status and str(status) in message
    assert "client id" in message and "scope" in message and "audience" in message
    assert "token_url" not in message


@pytest.mark.parametrize(
    "reply, expected",
    [
        (Reply(404, b"<html>Not Found</html>", {"Content-Type": "text/html"}), InvalidTokenResponse),
        (Reply(405, b""), InvalidTokenResponse),
        (json_reply({"message": "no route"}, 404), InvalidTokenResponse),
        (json_reply({"error": "unsupported_grant_type"}, 404), TokenRequestRejected),
    ],
)
def test_other_4xx_point_at_the_url_unless_the_server_speaks_oauth(
    token_server: TokenServer, reply: Reply, expected: type[TokenError]
) -> None:
    token_server.script = [reply]
    with pytest.raises(expected) as caught:
        make(token_server.token_url).token()
    assert type(caught.value) is expected
    assert ("token_url" in str(caught.value)) == (expected is InvalidTokenResponse)


# -- D(c). client_secret_basic with servers that do or do not decode -----------------------


class BasicServer(TokenServer):
    """A token endpoint checking ``client_secret_basic``. One that ``decodes`` reads
    the credentials as RFC 6749 2.3.1 says (form-encoded, as django-oauth-toolkit)
    and refuses with 401 ``invalid_client``; one that does not compares them raw
    and refuses with a bare 403 (as Glewlwyd and the C server in production do)."""

    def __init__(self, secret: str, *, decodes: bool) -> None:
        super().__init__()
        self.secret, self.decodes = secret, decodes
        self.seen: list[str] = []

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        decoded = _decoded_basic(headers)
        self.seen.append(decoded)
        client_id, _, secret = decoded.partition(":")
        if self.decodes:
            client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if (client_id, secret) != (CLIENT_ID, self.secret):
            if self.decodes:
                return json_reply({"error": "invalid_client"}, 401)
            return Reply(403)
        return super().handle(method, path, headers, body)


RESERVED_SECRET = "p@ss:wo+rd%/ é"
FORM = f"{CLIENT_ID}:{quote_plus(RESERVED_SECRET)}"
RAW = f"{CLIENT_ID}:{RESERVED_SECRET}"


@contextmanager
def basic_server(secret: str = RESERVED_SECRET, *, decodes: bool) -> Iterator[BasicServer]:
    with serving(BasicServer(secret, decodes=decodes)) as server:
        assert isinstance(server, BasicServer)
        yield server


def basic_auth(server: BasicServer, secret: str = RESERVED_SECRET) -> ClientCredentialsAuth:
    return make(server.token_url, client_secret=secret, auth_method="client_secret_basic")


def test_basic_to_a_server_that_decodes_stays_form_encoded() -> None:
    with basic_server(decodes=True) as server:
        auth = basic_auth(server)
        assert auth.token() == "tok-1"
        auth.invalidate()
        assert auth.token() == "tok-2"
    assert server.seen == [FORM, FORM]


def test_basic_to_a_server_that_does_not_decode_falls_back_to_raw_and_remembers() -> None:
    with basic_server(decodes=False) as server:
        auth = basic_auth(server)
        assert auth.token() == "tok-1"
        auth.invalidate()
        assert auth.token() == "tok-2"
    assert server.seen == [FORM, RAW, RAW]


@pytest.mark.parametrize("decodes", [True, False])
def test_a_wrong_secret_is_refused_after_both_encodings(decodes: bool) -> None:
    with (
        basic_server("the-right-one", decodes=decodes) as server,
        pytest.raises(TokenRequestRejected) as caught,
    ):
        basic_auth(server).token()
    assert server.seen == [FORM, RAW]
    assert RESERVED_SECRET not in error_texts(caught.value)


def test_no_second_encoding_when_both_are_the_same() -> None:
    with (
        basic_server("the-right-one", decodes=False) as server,
        pytest.raises(TokenRequestRejected),
    ):
        basic_auth(server, "plain-Secret_1.0~").token()
    assert len(server.seen) == 1


def test_an_accepted_encoding_is_not_second_guessed() -> None:
    with basic_server(decodes=True) as server:
        auth = basic_auth(server)
        assert auth.token() == "tok-1"
        server.secret = "rotated"  # the client's secret is revoked on the server
        auth.invalidate()
        with pytest.raises(TokenRequestRejected):
            auth.token()
    assert server.seen == [FORM, FORM]


def test_a_refusal_that_is_not_about_the_client_tries_no_other_encoding(
    token_server: TokenServer,
) -> None:
    token_server.script = [json_reply({"error": "invalid_scope"}, 400)]
    auth = make(
        token_server.token_url, client_secret=RESERVED_SECRET, auth_method="client_secret_basic"
    )
    with pytest.raises(TokenRequestRejected, match="invalid_scope"):
        auth.token()
    assert token_server.count == 1


# -- E1. answers bounded in size and in time -----------------------------------------------


class RawServer:
    """A token endpoint on a bare socket: reads a request, then ``answer`` writes
    whatever it likes. Notes when the client hangs up on it before it is done."""

    def __init__(self, answer: Callable[[RawServer, socket.socket], None]) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.token_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/oauth/token"
        self.requests = 0
        self.sent = 0
        self.hung_up = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def send(self, connection: socket.socket, data: bytes) -> None:
        connection.sendall(data)
        self.sent += len(data)

    def close(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                self._read_request(connection)
                self.requests += 1
                try:
                    self._answer(self, connection)
                except OSError:  # broken pipe, reset: the client closed the socket
                    self.hung_up.set()

    @staticmethod
    def _read_request(connection: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += connection.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length:\s*(\d+)", head)
        while length and len(body) < int(length.group(1)):
            body += connection.recv(65536)


@contextmanager
def raw_server(answer: Callable[[RawServer, socket.socket], None]) -> Iterator[RawServer]:
    server = RawServer(answer)
    try:
        yield server
    finally:
        server.close()


TOKEN_JSON = b'{"access_token": "tok-late", "token_type": "Bearer", "expires_in": 60}'
ENDLESS = 32 * MAX_ANSWER_BYTES  # "endless": far beyond the limit and any socket buffer


def endless_chunked(server: RawServer, connection: socket.socket) -> None:
    """A 200 whose chunked body goes on (whitespace, which JSON allows) and only then
    ends with a valid token: a client without a limit reads it all and accepts it."""
    server.send(
        connection,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    )
    chunk = b" " * 65536
    while server.sent < ENDLESS:
        server.send(connection, b"%x\r\n%s\r\n" % (len(chunk), chunk))
    server.send(connection, b"%x\r\n%s\r\n0\r\n\r\n" % (len(TOKEN_JSON), TOKEN_JSON))


def dripping(server: RawServer, connection: socket.socket) -> None:
    """A 200 with a valid token, one byte every 20 ms (about 7 s in all)."""
    body = b" " * 300 + TOKEN_JSON
    server.send(
        connection,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body),
    )
    for byte in body:
        server.send(connection, bytes([byte]))
        time.sleep(0.02)


def test_an_endless_answer_is_cut_off_at_the_size_limit() -> None:
    with raw_server(endless_chunked) as server:
        with pytest.raises(InvalidTokenResponse, match="larger than 1 MiB"):
            make(server.token_url).token()
        assert server.hung_up.wait(30)  # the client closed the socket on it
    assert server.requests == 1
    assert server.sent < ENDLESS


def test_a_dripping_answer_is_given_up_at_the_deadline_and_its_socket_closed() -> None:
    policy = RetryPolicy(deadline=0.3, initial_backoff=0.01, max_backoff=0.02)
    with raw_server(dripping) as server:
        with pytest.raises(TokenEndpointUnavailable, match="still sending"):
            make(server.token_url, retry=policy, timeout=5).token()
        assert server.hung_up.wait(30)
    assert server.requests == 1
    assert server.sent < 300


def test_an_answer_received_whole_is_read_even_past_the_deadline(
    token_server: TokenServer,
) -> None:
    # The deadline stops reads that would wait on the network, not a buffered answer.
    response = requests.post(token_server.token_url, stream=True, timeout=5)
    with contextlib.closing(response):
        body = _read_body(response, deadline=time.monotonic() - 1, host="test")
    assert body is not None and json.loads(body)["access_token"] == "tok-1"


def test_an_oversized_token_answer_is_refused(token_server: TokenServer) -> None:
    token_server.script = [token_reply("t" * (MAX_ANSWER_BYTES + 1))]
    with pytest.raises(InvalidTokenResponse, match="larger than 1 MiB"):
        make(token_server.token_url).token()


def test_an_oversized_503_is_still_retried(token_server: TokenServer) -> None:
    token_server.script = [Reply(503, b"x" * (2 * MAX_ANSWER_BYTES))]
    assert make(token_server.token_url).token() == "tok-1"
    assert token_server.count == 2


# -- the same class of defect: a JWK nested too deep ---------------------------------------


def test_a_deeply_nested_jwk_string_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_signing_key('{"keys": ' + "[" * 100_000, "RS256", None)
