"""How a token is obtained: Authlib's client-credentials session, retries, error mapping.

Every fetch passes every parameter to :meth:`OAuth2Session.fetch_token`; Authlib's
own automatic re-fetch is never used (it drops ``audience``, authlib#783).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.integrations.requests_client import OAuth2Session

from ._client_auth import register_client_auth
from ._config import ClientConfig
from ._policy import RetryPolicy, parse_retry_after
from ._ratelimit import parse_rate_limit
from ._tokens import GrantedToken, granted_token
from .errors import (
    InvalidTokenResponse,
    TokenEndpointUnavailable,
    TokenError,
    TokenRequestRejected,
)

logger = logging.getLogger("bearer_m2m")

#: Statuses that say "try again later" rather than "this request is wrong".
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_DESCRIPTION = 300


class TokenFetcher:
    """Fetches client-credentials tokens, retrying transient failures until a deadline.

    One instance is used by one fetch at a time (the token source runs a single
    flight), so the Authlib session needs no lock. A child process after
    ``fork`` gets a session of its own rather than the parent's sockets.
    """

    def __init__(self, config: ClientConfig, retry: RetryPolicy) -> None:
        self._config = config
        self._retry = retry
        self._rng = random.Random()  # noqa: S311  (jitter, not cryptography)
        self._session: OAuth2Session | None = None
        self._session_pid = 0

    def __repr__(self) -> str:
        return f"<TokenFetcher {self._config.token_url!r} client_id={self._config.client_id!r}>"

    def fetch(self, rejected: str | None = None) -> GrantedToken:
        """A new token from the server (which never hands out ``rejected`` again)."""
        started = time.monotonic()
        deadline = started + self._retry.deadline
        for attempt in itertools.count():
            remaining = deadline - time.monotonic()
            try:
                granted = self._fetch_once(timeout=min(self._config.timeout, max(remaining, 0.1)))
            except TokenEndpointUnavailable as exc:
                delay = self._retry.delay(attempt, exc.retry_after, self._rng)
                if time.monotonic() + delay >= deadline:
                    raise _gave_up(exc, attempt + 1, time.monotonic() - started) from exc
                logger.warning("token request failed (%s); retrying in %.2f s", exc, delay)
                time.sleep(delay)
            else:
                logger.debug(
                    "fetched token %s from %s (expires_in=%s)",
                    granted.fingerprint,
                    self._host,
                    granted.expires_in,
                )
                return granted
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _host(self) -> str:
        return urlsplit(self._config.token_url).netloc

    def _fetch_once(self, timeout: float) -> GrantedToken:
        config = self._config
        try:
            payload = self._session_for_this_process().fetch_token(
                config.token_url,
                # Our fields go in the body, never as keywords, so that no field
                # name can steer Authlib (``method``, ``timeout``, ``headers``...).
                body=urlencode(config.form),
                grant_type="client_credentials",
                timeout=timeout,
                verify=config.verify,
                cert=config.cert,
                # A redirect would carry the secret somewhere the user did not name.
                allow_redirects=False,
            )
        except TokenError:
            raise
        except requests.exceptions.SSLError as exc:
            # Retrying cannot fix a certificate that fails verification.
            raise TokenError(tls_failure(self._host)) from exc
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise TokenEndpointUnavailable(
                f"token endpoint {self._host} unreachable ({type(exc).__name__})"
            ) from exc
        except (requests.RequestException, OSError) as exc:
            raise TokenError(
                f"token request to {self._host} failed ({type(exc).__name__})"
            ) from exc
        except ValueError as exc:
            raise InvalidTokenResponse(
                f"token endpoint {self._host} answered a token response that cannot be read"
            ) from exc
        return granted_token(payload)

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
            session.register_compliance_hook("access_token_response", self._check_response)
            self._session, self._session_pid = session, os.getpid()
        return self._session

    def _server_text(self, payload: dict[str, Any] | None, name: str) -> str | None:
        """A field of the server's error answer, fit for a message: a server that
        echoes the client secret gets it masked, and long texts are cut after that."""
        value = payload.get(name) if payload else None
        if value is None:
            return None
        text = str(value)
        if self._config.client_secret:
            text = text.replace(self._config.client_secret, "***")
        return text[:_MAX_DESCRIPTION]

    def _check_response(self, response: requests.Response) -> requests.Response:
        """Turn anything but a successful JSON answer into a typed error.

        Runs inside Authlib's ``fetch_token`` before it parses the body, so the
        status code and headers are still at hand.
        """
        status = response.status_code
        payload = _json_object(response)
        error = self._server_text(payload, "error")
        description = self._server_text(payload, "error_description")
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
        if payload is None:
            content_type = response.headers.get("Content-Type", "no content type")
            shape = (
                "an empty body" if not response.content else f"a {content_type.split(';')[0]} body"
            )
            raise InvalidTokenResponse(
                f"token endpoint answered HTTP {status} with {shape}, not a JSON object; "
                "check token_url",
                **details,
            )
        if status >= 400 or error:
            raise TokenRequestRejected(
                f"token endpoint refused the request: HTTP {status}{said}", **details
            )
        if rate_limit is not None and any(bucket.is_low for bucket in rate_limit.quotas):
            logger.warning("the M2M token quota runs low: %s", rate_limit)
        return response


def tls_failure(host: str) -> str:
    return (
        f"TLS with {host} failed: its certificate is not trusted or the client certificate "
        "was refused; check verify= (BEARER_M2M_CA_BUNDLE, --ca-bundle) and cert="
    )


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


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
