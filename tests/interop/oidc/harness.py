"""node oidc-provider on loopback, and a Python API that trusts its tokens.

* :func:`install_provider` runs ``npm ci`` into ``tests/interop/oidc_provider``
  when its ``node_modules`` is missing or was installed from another lockfile
  (a stamp file holds the lockfile's SHA-256), under a file lock so that
  concurrent test runs install once.
* :class:`NodeProvider` starts ``server.mjs`` (oidc-provider with client
  credentials, RFC 8707 resource indicators giving RFC 9068 JWT access tokens,
  and DPoP) on a free loopback port, waits for its ready line and reads its
  test-only endpoints: clients registered at run time, and a record of every
  token request it answered.
* :class:`OrdersApi` is a protected API on ``http.server``: it checks each
  token against oidc-provider's JWKS with joserfc (signature, ``typ: at+jwt``,
  issuer, audience, and ``exp`` strictly, with no leeway), answers 401
  ``Bearer error="invalid_token"`` otherwise, and 403 ``insufficient_scope``
  where a scope is missing. A DPoP-bound token (``cnf.jkt``) must come as
  ``Authorization: DPoP`` with a proof for the request by the token's key,
  checked by bearer_m2m.testing's ProofVerifier (written apart from the
  client's proof code), and, on demand, with the API's own nonce.

Nothing here needs pytest: a missing Node.js or a failed install raises
:class:`HarnessError`, which the fixtures turn into a test failure.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from filelock import FileLock
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from bearer_m2m.testing._dpop import Nonces, ProofError, ProofVerifier

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "oidc_provider"
LOCKFILE = PACKAGE_DIR / "package-lock.json"
STAMP = PACKAGE_DIR / "node_modules" / ".bearer-m2m-lockfile-sha256"
#: oidc-provider 9 runs on Node.js 20.19 and later (it warns below 22, and works).
MIN_NODE = (20, 19)
NPM_CI = ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"]
NPM_TIMEOUT = 300.0
READY_TIMEOUT = 30.0
#: What .ci/run must provide when this machine has no Node.js.
NODE_NEEDED = (
    "the oidc-provider interop tests need Node.js >= 20.19 and npm on PATH: "
    ".ci/run must install them (the Node.js 20 or 22 packages with npm) before pytest"
)


class HarnessError(RuntimeError):
    """The harness could not be set up: a missing tool, a failed install or start."""


# -- installing oidc-provider ---------------------------------------------------------


def node_tools() -> tuple[str, str]:
    """The paths of ``node`` and ``npm``, checked to be recent enough."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise HarnessError(NODE_NEEDED)
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    if _version_tuple(version) < MIN_NODE:
        raise HarnessError(f"{NODE_NEEDED} (found node {version or 'of unknown version'})")
    return node, npm


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.lstrip("v").split(".")[:2])
    except ValueError:
        return (0,)


def lockfile_digest() -> str:
    return hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()


def install_provider(npm: str) -> bool:
    """``npm ci`` unless ``node_modules`` was installed from this very lockfile.

    Returns whether it installed. ``--prefer-offline`` takes packages from npm's
    cache when they are there and from the registry otherwise, so a warm machine
    installs without the network and a fresh CI machine from the registry;
    ``--ignore-scripts`` keeps install scripts (and any download they would
    make) from running.
    """
    digest = lockfile_digest()
    lock_path = Path(tempfile.gettempdir()) / (
        "bearer-m2m-oidc-provider-"
        + hashlib.sha256(str(PACKAGE_DIR).encode()).hexdigest()[:12]
        + ".lock"
    )
    with FileLock(str(lock_path), timeout=NPM_TIMEOUT):
        if _installed_digest() == digest:
            return False
        try:
            done = subprocess.run(
                [npm, *NPM_CI],
                cwd=PACKAGE_DIR,
                capture_output=True,
                text=True,
                check=False,
                timeout=NPM_TIMEOUT,
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"npm ci in {PACKAGE_DIR} took over {NPM_TIMEOUT:.0f} s") from exc
        if done.returncode != 0:
            raise HarnessError(
                f"npm ci in {PACKAGE_DIR} failed (exit {done.returncode}):\n"
                + _tail(done.stderr or done.stdout)
            )
        STAMP.write_text(digest + "\n")
        return True


def _installed_digest() -> str | None:
    if not (PACKAGE_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return None
    try:
        return STAMP.read_text().strip()
    except OSError:
        return None


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# -- the provider process ---------------------------------------------------------------


@dataclass(frozen=True)
class OidcClient:
    """A client registered with the provider: what a ``ClientCredentialsAuth`` needs."""

    client_id: str
    client_secret: str | None
    auth_method: str
    scope: str


class NodeProvider:
    """``server.mjs`` in a subprocess, from its ready line until :meth:`close`.

    ``config`` is the server's OIDC_PROVIDER_CONFIG (scopes, resources with their
    token lifetimes, DPoP defaults); stderr goes to ``log_path``, stdout is read
    by a thread so that the pipe never fills.
    """

    def __init__(self, node: str, config: Mapping[str, Any], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        env = {**os.environ, "OIDC_PROVIDER_CONFIG": json.dumps(config)}
        env.pop("DEBUG", None)  # oidc-provider's debug output would go to stderr
        self._process = subprocess.Popen(
            [node, str(PACKAGE_DIR / "server.mjs"), "0"],
            cwd=PACKAGE_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        self._http = requests.Session()
        try:
            ready = self._wait_for_ready()
        except BaseException:
            self.close()
            raise
        self.version: str = ready["version"]
        self.issuer: str = ready["issuer"]
        self.port: int = ready["port"]
        self.token_url: str = ready["token_endpoint"]
        self.jwks_uri: str = ready["jwks_uri"]

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_ready(self) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise HarnessError(
                    self._failure(f"no ready line in {READY_TIMEOUT:.0f} s")
                ) from None
            if line is None:
                raise HarnessError(self._failure(f"exited with {self._process.wait()}"))
            ready = _ready_line(line)
            if ready is not None:
                return ready

    def _failure(self, what: str) -> str:
        self._log.flush()
        return f"oidc-provider ({PACKAGE_DIR / 'server.mjs'}) {what}:\n" + _tail(
            self.log_path.read_text(errors="replace") + "\n" + "\n".join(self.output)
        )

    def close(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and release every handle."""
        self._http.close()
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._log.close()

    # -- the test-only endpoints -------------------------------------------------

    def register_client(
        self,
        auth_method: str = "client_secret_basic",
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str = "orders:read orders:write",
        jwks: Mapping[str, Any] | None = None,
        dpop_bound: bool = False,
        require_dpop_nonce: bool = False,
    ) -> OidcClient:
        """A new client of the provider, with a fresh id and secret unless given."""
        client_id = client_id or "client-" + secrets.token_hex(6)
        metadata: dict[str, Any] = {
            "client_id": client_id,
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": [],
            "token_endpoint_auth_method": auth_method,
            "scope": scope,
        }
        if jwks is not None:
            metadata["jwks"] = dict(jwks)
        else:
            client_secret = client_secret or secrets.token_urlsafe(32)
            metadata["client_secret"] = client_secret
        if dpop_bound:
            metadata["dpop_bound_access_tokens"] = True
        answer = self._http.post(
            f"{self.issuer}/_harness/clients",
            json={"metadata": metadata, "require_dpop_nonce": require_dpop_nonce},
            timeout=10,
        )
        if answer.status_code != 201:
            raise HarnessError(f"registering a client failed: {answer.status_code} {answer.text}")
        return OidcClient(client_id, client_secret, auth_method, scope)

    def mark(self) -> int:
        """A position in the token-request record: pass it to :meth:`token_requests`."""
        return int(self._get("/_harness/token-requests", since=10**9)["next"])

    def token_requests(
        self, since: int = 0, *, client_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The token requests answered since ``mark``, optionally of one client only."""
        records = self._get("/_harness/token-requests", since=since)["requests"]
        return [r for r in records if client_id is None or r["client_id"] == client_id]

    def require_dpop_nonce(self, required: bool) -> None:
        """Make every DPoP token request need a nonce (or stop doing so)."""
        self._http.post(
            f"{self.issuer}/_harness/dpop", json={"requireNonce": required}, timeout=10
        ).raise_for_status()

    def _get(self, path: str, **params: int) -> dict[str, Any]:
        answer = self._http.get(f"{self.issuer}{path}", params=params, timeout=10)
        answer.raise_for_status()
        result: dict[str, Any] = answer.json()
        return result


def _ready_line(line: str) -> dict[str, Any] | None:
    """The ready line's fields, or ``None`` for anything else oidc-provider prints."""
    try:
        fields = json.loads(line)
    except ValueError:
        return None
    if isinstance(fields, dict) and fields.get("ready") == "oidc-provider":
        return fields
    return None


# -- the protected API --------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    challenge: str | None = None
    #: The ``DPoP-Nonce`` header of the answer, if any.
    nonce: str | None = None


@dataclass(frozen=True)
class DPoPRequest:
    """One request the API received with ``Authorization: DPoP``, and its fate.

    ``proof`` holds the proof's claims as sent (decoded without verification, so that
    a refused proof can be looked at too); ``error`` is the RFC 9449 / RFC 6750 code
    of a refusal (``use_dpop_nonce``, ``invalid_dpop_proof``, ``invalid_token``).
    """

    method: str
    path: str
    status: int
    error: str | None
    token_jti: str | None
    proof: dict[str, Any]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True


class OrdersApi:
    """An API that accepts oidc-provider's JWT access tokens for ``audiences``.

    Paths under ``/write`` need the ``orders:write`` scope. ``deny(jti)`` makes
    the API refuse one token as if it were revoked. ``traffic`` counts answers
    as ``"METHOD /path STATUS"``; ``expired`` counts the 401s given to tokens
    past their ``exp``.

    DPoP (RFC 9449 section 7): a token bound to a key (``cnf.jkt``) is taken only
    as ``Authorization: DPoP <token>`` with one ``DPoP`` proof that
    :class:`bearer_m2m.testing._dpop.ProofVerifier` accepts for this request:
    signed by its header's public ``jwk`` with an asymmetric ``alg``, ``typ:
    dpop+jwt``, ``htm`` the method, ``htu`` the URL without query, ``iat`` within
    60 s (5 s ahead), ``ath`` the token's base64url SHA-256, a ``jti`` never seen
    before, and the key's RFC 7638 thumbprint equal to the token's ``cnf.jkt``.
    The token is checked first (as for Bearer), then the proof. Refusals are 401
    ``WWW-Authenticate: DPoP error="..."``. A bound token sent as ``Bearer`` is
    refused; so is an unbound one sent as ``DPoP``. With ``require_dpop_nonce``
    every proof must also carry the API's current nonce: without it the answer is
    401 ``DPoP error="use_dpop_nonce"``, and every answer to a DPoP request brings
    the current nonce in ``DPoP-Nonce``; it changes when :meth:`rotate_dpop_nonce`
    says so. ``dpop_requests`` records each DPoP
    request; a 200 answer to one names the ``token_type`` and the proof's claims.
    """

    def __init__(
        self,
        provider: NodeProvider,
        audiences: Iterable[str],
        *,
        require_dpop_nonce: bool = False,
    ) -> None:
        self.issuer = provider.issuer
        self.audiences = frozenset(audiences)
        with requests.get(provider.jwks_uri, timeout=10) as response:
            response.raise_for_status()
            self.keys = KeySet.import_key_set(response.json())
        self._lock = threading.Lock()
        self._traffic: Counter[str] = Counter()
        self._denied: set[str] = set()
        self.expired = 0
        # A nonce that changes only when a test rotates it, however long the session runs.
        self._nonces = Nonces(lifetime=24 * 3600.0) if require_dpop_nonce else None
        self._proofs = ProofVerifier(nonces=self._nonces)
        self._dpop_requests: list[DPoPRequest] = []
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def traffic(self) -> Counter[str]:
        with self._lock:
            return Counter(self._traffic)

    def deny(self, jti: str) -> None:
        with self._lock:
            self._denied.add(jti)

    # -- DPoP: what a test reads and changes ------------------------------------------

    @property
    def dpop_nonce(self) -> str | None:
        """The nonce proofs must carry now (``None``: none demanded)."""
        return None if self._nonces is None else self._nonces.current()

    def rotate_dpop_nonce(self) -> str:
        """A new nonce, refusing every one handed out before; returns it."""
        if self._nonces is None:
            raise HarnessError("this API demands no DPoP nonce")
        return self._nonces.rotate()

    def dpop_mark(self) -> int:
        """A position in the DPoP request record: pass it to :meth:`dpop_requests`."""
        with self._lock:
            return len(self._dpop_requests)

    def dpop_requests(self, since: int = 0) -> list[DPoPRequest]:
        with self._lock:
            return self._dpop_requests[since:]

    # -- judging requests -----------------------------------------------------------

    def answer(
        self,
        method: str,
        path: str,
        authorization: str | None,
        body: bytes,
        dpop: Sequence[str] = (),
    ) -> Answer:
        """Judge one request: the whole protocol, with no HTTP in it. ``dpop`` holds
        the request's ``DPoP`` header fields."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() == "dpop" and token:
            return self._dpop_answer(method, path, token, body, dpop)
        if scheme.lower() != "bearer" or not token:
            return Answer(401, {"error": "no token"}, 'Bearer realm="orders"')
        claims, problem = self._verify(token)
        if problem is None and _bound_key(claims) is not None:
            problem = "DPoP-bound token sent as Bearer"
        if problem is not None:
            return self._refused(claims, problem)
        return self._granted(method, path, claims, body)

    def _refused(
        self, claims: dict[str, Any], problem: str, scheme: str = "Bearer", error: str = ""
    ) -> Answer:
        error = error or "invalid_token"
        return Answer(
            401,
            # exp, jti and the API's clock: for diagnosing a refusal (no secret).
            {
                "error": error,
                "error_description": problem,
                "exp": claims.get("exp"),
                "jti": claims.get("jti"),
                "at": round(time.time(), 3),
            },
            f'{scheme} realm="orders", error="{error}", error_description="{problem}"',
        )

    def _granted(
        self, method: str, path: str, claims: dict[str, Any], body: bytes, **extra: Any
    ) -> Answer:
        scopes = set(str(claims.get("scope", "")).split())
        if path.startswith("/write") and "orders:write" not in scopes:
            return Answer(
                403,
                {"error": "insufficient_scope"},
                'Bearer realm="orders", error="insufficient_scope", scope="orders:write"',
            )
        echo = json.loads(body) if body else None
        return Answer(
            200, {"path": path, "method": method, "claims": claims, "echo": echo, **extra}
        )

    def _dpop_answer(
        self, method: str, path: str, token: str, body: bytes, values: Sequence[str]
    ) -> Answer:
        """RFC 9449 section 7.1: the token first (an expired one is told as such), then
        the proof, which must be by the token's key and for this very request."""
        claims, problem = self._verify(token)
        error = "invalid_token"
        bound_key = _bound_key(claims)
        if problem is None and bound_key is None:
            problem = "the token is not DPoP-bound"
        if problem is None:
            try:
                self._proofs.verify(
                    values,
                    method=method,
                    url=self.url + path,
                    access_token=token,
                    bound_to=bound_key,
                )
            except ProofError as refusal:
                problem, error = str(refusal), refusal.error
        proof = _unverified_claims(values[0]) if len(values) == 1 else {}
        answer = (
            self._granted(method, path, claims, body, token_type="DPoP", proof=proof)
            if problem is None
            else self._refused(claims, problem, "DPoP", error)
        )
        record = DPoPRequest(
            method,
            path,
            answer.status,
            None if problem is None else error,
            claims.get("jti"),
            proof,
        )
        with self._lock:
            self._dpop_requests.append(record)
        return replace(answer, nonce=self.dpop_nonce)

    def _verify(self, token: str) -> tuple[dict[str, Any], str | None]:
        try:
            decoded = jwt.decode(token, self.keys, algorithms=["RS256"])
        except (JoseError, ValueError):
            return {}, "bad signature or not a JWT"
        claims = dict(decoded.claims)
        if decoded.header.get("typ") != "at+jwt":
            return claims, "not an RFC 9068 access token"
        if claims.get("iss") != self.issuer:
            return claims, "wrong issuer"
        if claims.get("aud") not in self.audiences:
            return claims, "wrong audience"
        # RFC 7519 section 4.1.4: not accepted on or after exp. No leeway: the
        # provider's whole-second iat is what the client has to cope with.
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
            with self._lock:
                self.expired += 1
            return claims, "expired"
        with self._lock:
            if claims.get("jti") in self._denied:
                return claims, "revoked"
        return claims, None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10  # an idle keep-alive connection ends its thread

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the traffic counter is the log."""

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("?", 1)[0]
                answer = api.answer(
                    self.command,
                    path,
                    self.headers.get("Authorization"),
                    body,
                    self.headers.get_all("DPoP") or [],
                )
                with api._lock:
                    api._traffic[f"{self.command} {path} {answer.status}"] += 1
                payload = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if answer.challenge is not None:
                    self.send_header("WWW-Authenticate", answer.challenge)
                if answer.nonce is not None:
                    self.send_header("DPoP-Nonce", answer.nonce)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


# -- DPoP proofs, made by hand ------------------------------------------------------


def dpop_proof(
    key: ECKey,
    method: str,
    url: str,
    *,
    nonce: str | None = None,
    access_token: str | None = None,
    jti: str | None = None,
) -> str:
    """An RFC 9449 proof for ``method url`` by a P-256 key (ES256), made here
    without bearer_m2m: it shows that the provider's DPoP configuration and the
    API's checks work, whatever the library does. ``access_token`` adds its
    ``ath``; ``jti`` reuses one (for replays)."""
    claims: dict[str, Any] = {
        "jti": jti or secrets.token_urlsafe(16),
        "htm": method,
        "htu": url,
        "iat": int(time.time()),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if access_token is not None:
        digest = hashlib.sha256(access_token.encode("ascii")).digest()
        claims["ath"] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    return jwt.encode(header, claims, key, algorithms=["ES256"])


def jwt_claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: for looking, not trusting."""
    return _unverified_claims(token)


def _unverified_claims(compact: str) -> dict[str, Any]:
    try:
        segment = compact.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def _bound_key(claims: Mapping[str, Any]) -> str | None:
    """The thumbprint a token is bound to (RFC 9449 section 6, ``cnf.jkt``), if any."""
    confirmation = claims.get("cnf")
    jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
    return jkt if isinstance(jkt, str) else None
