"""How a token is obtained: Authlib's client-credentials session, retries, error mapping.

Every fetch passes every parameter to :meth:`OAuth2Session.fetch_token`; Authlib's
own automatic re-fetch is never used (it drops ``audience``, authlib#783).

The answer is read and judged by a response hook of ours, before Authlib sees it:
the body is read with a size limit (:data:`MAX_ANSWER_BYTES`) and a clock check,
every failure becomes a typed error with the credentials masked, and a good answer
reaches Authlib as a minimal token document it cannot trip over. Authlib never
raises on its own account; if it still does, the error is replaced without its text.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote_plus, urlencode, urlsplit

import requests
import urllib3
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.client import DEFAULT_HEADERS

from . import _events as events
from ._client_auth import (
    basic_credentials,
    basic_encodings_differ,
    raw_basic,
    register_client_auth,
)
from ._config import ClientConfig
from ._policy import RetryPolicy, parse_retry_after
from ._ratelimit import parse_rate_limit
from ._tokens import GrantedToken, UnexpectedTokenType, granted_token
from .errors import (
    InvalidTokenResponse,
    TLSError,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)

if TYPE_CHECKING:
    from ._dpop import NonceStore

#: Statuses that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Statuses with which a token endpoint refuses the client or what it asked for,
#: with an OAuth error document or, on some servers, with no body at all.
REFUSAL_STATUSES = frozenset({400, 401, 403})
#: The most of an answer that is read. Real token responses are a few KiB (a JWT
#: with many claims stays below 16 KiB); an answer beyond this is a broken or
#: hostile server, and reading on would only grow the process.
MAX_ANSWER_BYTES = 1024 * 1024
_READ_SIZE = 64 * 1024
_MAX_DESCRIPTION = 300
_MASK = "***"
_REFUSAL_HINT = (
    "check the client id and its secret or key, and that the client may ask for this "
    "scope and audience"
)
_DPOP_REFUSAL_HINT = (
    "the server refused the DPoP proof: check dpop_algorithm against its "
    "dpop_signing_alg_values_supported (from_issuer checks it) and this host's clock"
)
_DPOP_ERRORS = frozenset({"invalid_dpop_proof", "use_dpop_nonce"})
#: How long a token of the wrong type (Bearer for a DPoP client, or the reverse) is
#: reported again without asking: the server would issue another, at a token's cost.
TOKEN_TYPE_PAUSE = 60.0


class TokenFetcher:
    """Fetches client-credentials tokens, retrying transient failures until a deadline.

    One instance is used by one fetch at a time (the token source runs a single
    flight), so the Authlib session needs no lock. A child process after
    ``fork`` gets a session of its own rather than the parent's sockets.

    With ``client_secret_basic`` and a secret that form-encoding changes, a
    refusal (400/401/403 with ``invalid_client`` or without an OAuth error) is
    followed by one request with the raw encoding, for servers that do not
    decode the credentials as RFC 6749 section 2.3.1 says (Glewlwyd); the first
    encoding the server accepts is used from then on.

    With a DPoP key, every request carries a proof (RFC 9449 section 4) with the
    token endpoint's latest nonce. A 400 ``use_dpop_nonce`` that brings a new
    nonce is answered at once by one request with it (section 8): the server's
    way of handing out the nonce, not a failure, so the retry policy does not
    count it.
    """

    def __init__(self, config: ClientConfig, retry: RetryPolicy) -> None:
        self._config = config
        self._retry = retry
        self._rng = random.Random()  # noqa: S311  (jitter, not cryptography)
        self._session: OAuth2Session | None = None
        self._session_pid = 0
        self._raw_basic = False  # the RFC's form-encoding until a server shows otherwise
        self._basic_settled = False
        # The token endpoint's DPoP nonce: its own store, so that no API's nonce is sent here.
        self._nonces: NonceStore | None = None
        if config.dpop_key is not None:
            from ._dpop import NonceStore

            self._nonces = NonceStore(max_origins=1)

    def __repr__(self) -> str:
        return f"<TokenFetcher {self._config.token_url!r} client_id={self._config.client_id!r}>"

    def fetch(self, rejected: str | None = None) -> GrantedToken:
        """A new token from the server (which never hands out ``rejected`` again)."""
        progress = _Progress(time.monotonic())
        events.emit(events.FetchStarted(self._host))
        try:
            granted = self._fetch_with_retries(progress)
        except BaseException as exc:
            events.emit(
                events.FetchFailed(self._host, progress.elapsed(), progress.sent, error=exc)
            )
            raise
        else:
            events.emit(
                events.TokenFetched(
                    self._host,
                    progress.elapsed(),
                    progress.sent,
                    granted.fingerprint,
                    granted.expires_in,
                )
            )
            return granted
        finally:
            # A token is fetched once per lifetime: a connection kept for the next
            # one would be closed by the server meanwhile, or left open when the
            # auth object goes away. Retries within one fetch still reuse it.
            if self._session is not None:
                self._session.close()

    def _fetch_with_retries(self, progress: _Progress) -> GrantedToken:
        """At most ``max_attempts`` requests fail transiently before it gives up, and
        no retry starts after the deadline; a request never outlives the deadline
        by more than one read timeout."""
        deadline = progress.started + self._retry.deadline
        raw, tried_other_basic, tried_new_nonce = self._raw_basic, False, False
        failures = 0
        while True:
            progress.sent += 1
            nonce = self._nonce()
            try:
                granted = self._fetch_once(deadline, raw=raw, nonce=nonce)
            except TokenEndpointUnavailable as exc:
                failures += 1
                delay = self._retry.delay(failures - 1, exc.retry_after, self._rng)
                if failures >= self._retry.max_attempts or time.monotonic() + delay >= deadline:
                    raise _gave_up(exc, progress.sent, progress.elapsed()) from exc
                events.emit(events.TransientFailure(self._host, exc, delay))
                time.sleep(delay)
            except TokenRequestRejected as exc:
                if not tried_new_nonce and self._asks_for_new_nonce(exc, nonce):
                    tried_new_nonce = True
                    events.emit(events.DPoPNonceRequested(self._host))
                    continue
                if tried_other_basic or not self._other_basic_may_help(exc):
                    raise
                tried_other_basic, raw = True, not raw
                events.emit(events.BasicEncodingSwitched(self._host, exc.status_code, raw))
            else:
                self._raw_basic, self._basic_settled = raw, True
                return granted

    @property
    def _host(self) -> str:
        return urlsplit(self._config.token_url).netloc

    def _nonce(self) -> str | None:
        return None if self._nonces is None else self._nonces.get(self._config.token_url)

    def _asks_for_new_nonce(self, refusal: TokenRequestRejected, sent_nonce: str | None) -> bool:
        """Whether a refusal is the server's ``use_dpop_nonce`` with a nonce other than
        the one the proof carried (with the same one, asking again would not help)."""
        return (
            refusal.status_code == 400
            and refusal.error == "use_dpop_nonce"
            and self._nonce() not in (None, sent_nonce)
        )

    def _other_basic_may_help(self, refusal: TokenRequestRejected) -> bool:
        """Whether a refusal may be the server reading the Basic credentials
        differently, and no encoding has been accepted yet."""
        config = self._config
        return (
            config.auth_method == "client_secret_basic"
            and not self._basic_settled
            and refusal.status_code in REFUSAL_STATUSES
            and refusal.error in (None, "invalid_client")
            and basic_encodings_differ(config.client_id, config.client_secret or "")
        )

    def _fetch_once(self, deadline: float, *, raw: bool, nonce: str | None) -> GrantedToken:
        """One token request; ``raw``: Basic credentials without the RFC's form-encoding;
        ``nonce``: the DPoP nonce for the proof."""
        config = self._config
        session = self._session_for_this_process()
        attempt = _Attempt(self, deadline)
        try:
            session.fetch_token(
                config.token_url,
                # Our fields go in the body, never as keywords, so that no field
                # name can steer Authlib (``method``, ``timeout``, ``headers``...).
                body=urlencode(config.form),
                grant_type="client_credentials",
                headers=self._headers(nonce),
                auth=session.client_auth(raw_basic) if raw else None,
                timeout=min(config.timeout, max(deadline - time.monotonic(), 0.1)),
                verify=config.verify,
                cert=config.cert,
                # A redirect would carry the secret somewhere the user did not name.
                allow_redirects=False,
                # The body is left on the socket for our hook to read, bounded.
                stream=True,
                hooks={"response": attempt.on_response},
            )
        except TokenError:
            raise
        except requests.exceptions.SSLError as exc:
            # Retrying cannot fix a certificate that fails verification.
            raise TLSError(tls_failure(self._host)) from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise TokenEndpointUnavailable(
                f"token endpoint {self._host} unreachable ({type(exc).__name__})"
            ) from exc
        except requests.exceptions.ContentDecodingError as exc:
            raise InvalidTokenResponse(
                f"token endpoint {self._host} answered a body that cannot be decoded "
                f"({type(exc).__name__})"
            ) from exc
        except (requests.RequestException, OSError) as exc:
            raise TokenError(
                f"token request to {self._host} failed ({type(exc).__name__})"
            ) from exc
        except Exception as exc:
            # Authlib's messages may quote the request or the answer, secret included:
            # only the name goes on, raised out here so that it is not even the context.
            failure = type(exc).__name__
        else:
            if attempt.granted is not None:
                return attempt.granted
            failure = "no answer"  # pragma: no cover  (requests always runs the hook)
        kind = InvalidTokenResponse if attempt.granted else TokenError
        raise kind(f"token request to {self._host} failed inside Authlib ({failure})")

    def _headers(self, nonce: str | None) -> dict[str, str] | None:
        """Authlib's own headers, and a fresh DPoP proof when the client has a key."""
        key = self._config.dpop_key
        if key is None:
            return None
        return {**DEFAULT_HEADERS, "DPoP": key.proof("POST", self._config.token_url, nonce=nonce)}

    def _refusal_hint(self, error: str | None) -> str:
        if error in _DPOP_ERRORS:
            return _DPOP_REFUSAL_HINT
        if error == "invalid_grant" and self._config.dpop_key is None:
            # node oidc-provider's answer to a DPoP-bound client that sent no proof.
            return _REFUSAL_HINT + ", or whether the client must use DPoP (dpop=True)"
        return _REFUSAL_HINT

    def _session_for_this_process(self) -> OAuth2Session:
        if self._session is None or self._session_pid != os.getpid():
            config = self._config
            session = OAuth2Session(
                client_id=config.client_id,
                # Authlib's assertion signers find the private key in this slot.
                client_secret=config.signing_key or config.client_secret,
                token_endpoint_auth_method=config.auth_method,
            )
            register_client_auth(
                session,
                config.auth_method,
                signing_algorithm=config.signing_algorithm,
                key_id=config.key_id,
                assertion_audience=config.assertion_audience,
            )
            self._session, self._session_pid = session, os.getpid()
        return self._session

    def take_answer(self, response: requests.Response, deadline: float) -> GrantedToken:
        """Read the answer (bounded), judge it, and leave Authlib a clean copy."""
        if self._nonces is not None:  # the newest nonce wins, whatever the answer
            self._nonces.remember(self._config.token_url, response.headers.get("DPoP-Nonce"))
        body: bytes | None = None
        try:
            body = _read_body(response, deadline, self._host)
        finally:
            if body is None:  # failed, too slow or too large: close the socket, so a
                response.close()  # server still sending does not keep it (or us) busy
            else:
                response.raw.release_conn()  # read to its end: the connection serves again
        granted = self._judge(response, body)
        # Authlib parses what it is handed (``expires_in``, ``expires_at``, ``error``)
        # and raises its own errors: it gets only what cannot go wrong.
        clean = {"access_token": granted.access_token, "token_type": "Bearer"}
        response._content = json.dumps(clean).encode()
        return granted

    def _judge(self, response: requests.Response, body: bytes | None) -> GrantedToken:
        """A typed error for anything but a usable token answer (RFC 6749 5.1/5.2)."""
        status = response.status_code
        payload = _json_object(body)
        mask = _Masker(self._config, response.request)
        error = _server_text(payload, "error", mask)
        description = _server_text(payload, "error_description", mask)
        rate_limit = parse_rate_limit(response.headers)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None and rate_limit is not None:
            retry_after = rate_limit.wait_hint()
        details: dict[str, Any] = {
            "status_code": status,
            "error": error,
            "error_description": description,
            "retry_after": retry_after,
            "rate_limit": rate_limit,
        }
        said = f": {error}" if error else ""
        said += f" ({description})" if description else ""
        if status in RETRYABLE_STATUSES or status >= 500:
            raise TokenEndpointUnavailable(
                f"token endpoint answered HTTP {status}{said}", **details
            )
        if 300 <= status < 400:
            raise InvalidTokenResponse(
                f"token endpoint answered a redirect (HTTP {status}), which is not followed "
                "because it would carry the client credentials elsewhere; check token_url",
                **details,
            )
        shape = _shape(response, body, mask)
        if status in REFUSAL_STATUSES:
            raise TokenRequestRejected(
                f"token endpoint refused the request: HTTP {status}{said or ' with ' + shape}; "
                + self._refusal_hint(error),
                **details,
            )
        if error:
            raise TokenRequestRejected(
                f"token endpoint refused the request: HTTP {status}{said}", **details
            )
        if payload is None or status >= 400:
            # Another 4xx without an OAuth error (404, 405, 415...), or a 2xx that is
            # no JSON object: most likely not a token endpoint at all.
            raise InvalidTokenResponse(
                f"token endpoint answered HTTP {status} with {shape}, not a token response; "
                "check token_url",
                **details,
            )
        if rate_limit is not None and any(bucket.is_low for bucket in rate_limit.quotas):
            events.emit(events.QuotaLow(rate_limit))
        return _granted(payload, mask, status, self._config.token_type)


class _Progress:
    """How far one fetch has got: when it started and how many requests it has sent
    (per fetch, like :class:`_Attempt`, so an abandoned fetch shares nothing)."""

    __slots__ = ("sent", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.sent = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class _Attempt:
    """One token request: the hook requests calls with its response, and what it found.

    Per request rather than on the fetcher, so that a fetch abandoned by its callers
    and a newer one never share state.
    """

    def __init__(self, fetcher: TokenFetcher, deadline: float) -> None:
        self._fetcher = fetcher
        self._deadline = deadline
        self.granted: GrantedToken | None = None

    def on_response(self, response: requests.Response, **_: Any) -> requests.Response:
        self.granted = self._fetcher.take_answer(response, self._deadline)
        return response


def _read_body(response: requests.Response, deadline: float, host: str) -> bytes | None:
    """The answer's bytes, or ``None`` when it is longer than :data:`MAX_ANSWER_BYTES`.

    Read as it arrives (``read1``: one socket read, each bounded by the read
    timeout), so a server that drips its answer is given up on once the fetch's
    deadline has passed, rather than after one read timeout per byte.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = response.raw.read1(_READ_SIZE, decode_content=True)
        except urllib3.exceptions.DecodeError:
            raise InvalidTokenResponse(
                f"token endpoint {host} answered a body that cannot be decoded",
                status_code=response.status_code,
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise TokenEndpointUnavailable(
                f"token endpoint {host} broke off its answer ({type(exc).__name__})",
                status_code=response.status_code,
            ) from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        chunks.append(chunk)
        if time.monotonic() >= deadline and not _all_received(response):
            raise TokenEndpointUnavailable(
                f"token endpoint {host} was still sending its answer (HTTP "
                f"{response.status_code}) when the retry deadline ran out",
                status_code=response.status_code,
            )


def _all_received(response: requests.Response) -> bool:
    """Whether the rest of the body is already here, so reading it cannot wait: an
    answer that arrived whole just before the deadline is not thrown away."""
    raw = response.raw
    return bool(raw.closed or raw.length_remaining == 0)


def _json_object(body: bytes | None) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None
    return payload if isinstance(payload, dict) else None


def _shape(response: requests.Response, body: bytes | None, mask: _Masker) -> str:
    """What the answer was, for a message: the server's own words are masked and cut."""
    if body is None:
        return f"a body larger than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB"
    if not body:
        return "an empty body"
    content_type = response.headers.get("Content-Type", "no content type").split(";")[0]
    return f"a {_fit_for_message(content_type, mask, 60)} body that is not a JSON object"


def _server_text(payload: dict[str, Any] | None, name: str, mask: _Masker) -> str | None:
    """A field of the server's error answer, fit for a message (``None`` when
    absent, null or empty: some servers send ``"error": null`` with a token)."""
    value = payload.get(name) if payload else None
    if value is None or value == "":
        return None
    text = str(value) if isinstance(value, (str, int, float)) else f"({type(value).__name__})"
    return _fit_for_message(text, mask, _MAX_DESCRIPTION)


def _fit_for_message(text: str, mask: _Masker, limit: int) -> str:
    """Credentials masked first, then control characters (forged log lines)
    replaced, then cut: in that order, so no part of a secret survives."""
    text = "".join(c if c.isprintable() else "\N{REPLACEMENT CHARACTER}" for c in mask(text))
    return text[:limit]


def _granted(payload: dict[str, Any], mask: _Masker, status: int, token_type: str) -> GrantedToken:
    """The token, or an :class:`InvalidTokenResponse` whose text quotes no credential
    (the server's ``token_type``, say, may be an echo of the secret)."""
    pause = None
    try:
        return granted_token(payload, token_type=token_type)
    except InvalidTokenResponse as exc:
        message = _fit_for_message(str(exc), mask, 500)
        if isinstance(exc, UnexpectedTokenType):
            pause = TOKEN_TYPE_PAUSE
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        message = f"token response cannot be read ({type(exc).__name__})"
    # Raised out here: the unmasked original must not ride along as the context.
    raise InvalidTokenResponse(message, status_code=status, retry_after=pause)


class _Masker:
    """Hides every spelling of every credential a token request carried.

    Servers quote back what they got: the secret as is or as the form carried
    it, the ``Authorization`` header, a client assertion. Each credential is
    matched character by character in any spelling a server may use for it
    (itself, any percent-encoding with either case of hex digits, ``+`` for a
    space, a JSON escape), so no list of encoders has to be complete.
    """

    def __init__(self, config: ClientConfig, request: requests.PreparedRequest | None) -> None:
        credentials = set(_configured_credentials(config))
        if request is not None:
            credentials.update(_sent_credentials(request))
        # Longest first, so that a credential containing another is masked whole.
        self._credentials = sorted((c for c in credentials if c), key=len, reverse=True)
        self._pattern: re.Pattern[str] | None = None

    def __call__(self, text: str) -> str:
        if not self._credentials:
            return text
        if self._pattern is None:  # built only when there is something to mask
            self._pattern = re.compile("|".join(map(_spelling_pattern, self._credentials)))
        return self._pattern.sub(_MASK, text)


def _configured_credentials(config: ClientConfig) -> list[str]:
    """The secret, as a server that decodes it once too often reads it (a raw
    Basic header taken as form-encoded), and both Basic headers."""
    secret = config.client_secret
    if not secret:
        return []
    return [secret, unquote_plus(secret)] + [
        basic_credentials(config.client_id, secret, form_encoded=form_encoded).rstrip("=")
        for form_encoded in (True, False)
    ]


def _sent_credentials(request: requests.PreparedRequest) -> list[str]:
    """The credentials as this request carried them (an assertion is new each time)."""
    body = request.body or ""
    text = body.decode("ascii", "replace") if isinstance(body, bytes) else str(body)
    form = dict(parse_qsl(text))
    found = [form.get("client_secret", ""), form.get("client_assertion", "")]
    found.append(form.get("client_assertion", "").rpartition(".")[2])  # its signature alone
    _, _, authorization = request.headers.get("Authorization", "").partition(" ")
    found.append(authorization.strip().rstrip("="))  # unpadded: echoes may drop "="
    found.append(request.headers.get("DPoP", ""))  # a proof is not for logs either
    return found


def _spelling_pattern(credential: str) -> str:
    return "".join(_char_spellings(char) for char in credential)


def _char_spellings(char: str) -> str:
    percent = "".join(f"%{byte:02x}" for byte in char.encode("utf-8", "surrogatepass"))
    spellings = {
        re.escape(char),
        f"(?i:{re.escape(percent)})",
        re.escape(json.dumps(char)[1:-1]),
        "(?i:" + re.escape("".join(f"\\u{unit:04x}" for unit in _utf16_units(char))) + ")",
    }
    if char == " ":
        spellings.add(r"\+")
    if char == "/":
        spellings.add(r"\\/")
    return "(?:" + "|".join(sorted(spellings)) + ")"


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def tls_failure(host: str) -> str:
    return (
        f"TLS with {host} failed: its certificate is not trusted or the client certificate "
        "was refused; check verify= (BEARER_M2M_CA_BUNDLE, --ca-bundle) and cert="
    )


def _gave_up(
    last: TokenEndpointUnavailable, attempts: int, elapsed: float
) -> TokenEndpointUnavailable:
    return TokenEndpointUnavailable(
        f"{last} (gave up after {attempts} attempt(s) in {elapsed:.1f} s)",
        status_code=last.status_code,
        error=last.error,
        error_description=last.error_description,
        retry_after=last.retry_after,
        rate_limit=last.rate_limit,
    )
