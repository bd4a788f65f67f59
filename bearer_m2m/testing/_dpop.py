"""DPoP (RFC 9449) on the servers' side: proofs checked, nonces handed out, replays caught.

:class:`ProofVerifier` makes the checks of RFC 9449 section 4.3 that concern
the proof alone (one ``DPoP`` header, a compact JWS of type ``dpop+jwt``, an
allowed asymmetric ``alg``, a public ``jwk`` that verifies the signature,
``htm``, ``htu``, ``iat`` in its window, the nonce when one is demanded, the
``ath`` of the token it comes with, and a ``jti`` not seen before). The token
endpoint and the API add what concerns the token (binding, ``cnf.jkt``).

It is written apart from the client's :mod:`bearer_m2m._dpop` on purpose: the
client's ``htu`` is the URL as sent, and this side compares URLs after RFC
3986 normalisation, so the two agree only if both follow the RFCs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

from ._clients import printable

PROOF_TYPE = "dpop+jwt"
#: The algorithms proofs may be signed with, listed as ``dpop_signing_alg_values_supported``.
ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "PS256",
    "PS384",
    "PS512",
    "RS256",
    "RS384",
    "RS512",
    "EdDSA",
    "Ed25519",
)
#: Seconds a proof's ``iat`` may lie in the past, and in the future (clock skew).
PROOF_MAX_AGE = 60
CLOCK_SKEW = 5
#: Seconds a nonce stays current before the next one replaces it.
NONCE_LIFETIME = 300.0
#: Proofs longer than this are refused unread: a 4096-bit RSA key's fits easily.
MAX_PROOF_LENGTH = 8192

Clock = Callable[[], float]


class ProofError(Exception):
    """A proof refused; ``error`` is the RFC 9449 error code, the message its description."""

    error = "invalid_dpop_proof"


class NonceRequired(ProofError):
    """The proof lacks the server's current nonce (RFC 9449 sections 8 and 9)."""

    error = "use_dpop_nonce"


class ReplayedProof(ProofError):
    """The proof's ``jti`` was used before with the same key."""


class KeyMismatch(ProofError):
    """The proof is signed with another key than the token is bound to (RFC 9449 7.1)."""

    error = "invalid_token"


@dataclass(frozen=True)
class Proof:
    """A proof that passed: its header and claims, and its key's RFC 7638 thumbprint."""

    header: dict[str, Any]
    claims: dict[str, Any]
    thumbprint: str


def normalise_url(url: str) -> str:
    """``url`` without query and fragment, after RFC 3986 section 6.2.2 and 6.2.3
    normalisation: scheme and host in lower case, percent-escapes in upper case
    and unreserved characters unescaped, dot segments removed, the default port
    dropped and an empty path made ``/``. User information is dropped too.

    Raises ``ValueError`` for what is not an absolute http(s) URL.
    """
    match = _URL.fullmatch(url)
    if match is None:
        raise ValueError("not an absolute http(s) URL")
    scheme = match["scheme"].lower()
    authority = match["authority"].rpartition("@")[2]
    host, _, port = authority.rpartition(":") if _has_port(authority) else (authority, "", "")
    if not host or (port and not port.isdigit()):
        raise ValueError("not an absolute http(s) URL")
    default = _DEFAULT_PORTS[scheme]
    shown_port = "" if not port or int(port) == default else f":{int(port)}"
    path = _remove_dot_segments(_normalise_escapes(match["path"])) or "/"
    return f"{scheme}://{_normalise_escapes(host).lower()}{shown_port}{path}"


def _has_port(authority: str) -> bool:
    return ":" in authority.rpartition("]")[2]


def _normalise_escapes(text: str) -> str:
    return _ESCAPE.sub(_normal_escape, text)


def _normal_escape(match: re.Match[str]) -> str:
    character = chr(int(match.group(1), 16))
    return character if character in _UNRESERVED else match.group().upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    output: list[str] = []
    while path:
        if path.startswith(("../", "./")):
            path = path[path.index("/") + 1 :]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            if output:
                output.pop()
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            segment, path = (path, "") if end == -1 else (path[:end], path[end:])
            output.append(segment)
    return "".join(output)


_URL = re.compile(
    r"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?:[?#].*)?",
    re.DOTALL,
)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def ath(access_token: str) -> str:
    """base64url SHA-256 of the token: what a proof's ``ath`` must be (RFC 9449 4.2)."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Nonces:
    """The nonces one server hands out: the current one changes every ``lifetime``
    seconds, the one before stays good until the next change (so a client that
    just learnt it is not refused), and :meth:`rotate` ends every one issued."""

    def __init__(self, lifetime: float = NONCE_LIFETIME, clock: Clock = time.monotonic) -> None:
        if not (isinstance(lifetime, (int, float)) and 0 < lifetime < float("inf")):
            raise ValueError("dpop_nonce_lifetime must be a positive, finite number of seconds")
        self._lifetime = float(lifetime)
        self._clock = clock
        self._lock = threading.Lock()
        self._current = _new_nonce()
        self._previous: str | None = None
        self._since = clock()

    def current(self) -> str:
        """The nonce to hand out now."""
        with self._lock:
            self._age()
            return self._current

    def accepts(self, nonce: object) -> bool:
        with self._lock:
            self._age()
            return isinstance(nonce, str) and nonce in (self._current, self._previous)

    def rotate(self) -> str:
        """A new nonce; every one handed out before is refused from now on."""
        with self._lock:
            self._current, self._previous, self._since = _new_nonce(), None, self._clock()
            return self._current

    def _age(self) -> None:
        now = self._clock()
        if now - self._since >= self._lifetime:
            # A nonce older than two lifetimes is no longer the previous one either.
            stale = now - self._since >= 2 * self._lifetime
            self._previous = None if stale else self._current
            self._current, self._since = _new_nonce(), now


def _new_nonce() -> str:
    return secrets.token_urlsafe(24)


class ReplayGuard:
    """Every ``(thumbprint, jti)`` accepted, until its proof is too old to pass anyway."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def first_use(self, thumbprint: str, jti: str, forget_after: float) -> bool:
        now = self._clock()
        with self._lock:
            if len(self._seen) > 1024:
                self._seen = {key: until for key, until in self._seen.items() if until >= now}
            if (thumbprint, jti) in self._seen:
                return False
            self._seen[(thumbprint, jti)] = forget_after
            return True


class DPoPCounters:
    """What happened to the proofs a server received, counted; safe between threads."""

    NAMES = ("accepted", "rejected", "nonce_challenges", "jti_replays", "bound_as_bearer")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.NAMES, 0)
        self._last: Proof | None = None

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def accepted(self, proof: Proof) -> None:
        with self._lock:
            self._counts["accepted"] += 1
            self._last = proof

    def refused(self, error: ProofError) -> None:
        """A refusal: a nonce challenge, or a rejection (replays counted apart too)."""
        with self._lock:
            if isinstance(error, NonceRequired):
                self._counts["nonce_challenges"] += 1
                return
            self._counts["rejected"] += 1
            if isinstance(error, ReplayedProof):
                self._counts["jti_replays"] += 1

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    @property
    def last(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self._lock:
            last = self._last
        return None if last is None else (dict(last.header), dict(last.claims))

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(self.NAMES, 0)
            self._last = None


class DPoPControls:
    """What a test can see and change of a server's DPoP checks: the
    ``dpop_*`` counters, the latest proof accepted, the nonce.

    The server sets ``_dpop`` (its :class:`ProofVerifier`) and
    ``_dpop_counters`` (its :class:`DPoPCounters`).
    """

    _dpop: ProofVerifier
    _dpop_counters: DPoPCounters

    @property
    def dpop_signing_algorithms(self) -> tuple[str, ...]:
        """The ``alg`` values accepted in DPoP proofs."""
        return self._dpop.algorithms

    @property
    def require_dpop_nonce(self) -> bool:
        """Whether every DPoP proof must carry the server's current nonce."""
        return self._dpop.nonces is not None

    @property
    def dpop_nonce(self) -> str | None:
        """The nonce DPoP proofs must carry now (``None``: none demanded)."""
        nonces = self._dpop.nonces
        return None if nonces is None else nonces.current()

    def rotate_dpop_nonce(self) -> str:
        """Change the nonce now, refusing every one handed out before; returns the new one."""
        if self._dpop.nonces is None:
            raise RuntimeError("nonces need require_dpop_nonce=True")
        return self._dpop.nonces.rotate()

    @property
    def dpop_proofs_accepted(self) -> int:
        """Requests whose DPoP proof passed every check."""
        return self._dpop_counters["accepted"]

    @property
    def dpop_proofs_rejected(self) -> int:
        """Requests refused for their DPoP proof: missing where one is needed, bad,
        replayed, or by another key than the token's; nonce challenges aside."""
        return self._dpop_counters["rejected"]

    @property
    def dpop_nonce_challenges(self) -> int:
        """Requests answered ``use_dpop_nonce`` (with the nonce in ``DPoP-Nonce``)."""
        return self._dpop_counters["nonce_challenges"]

    @property
    def dpop_jti_replays(self) -> int:
        """Proofs refused because their ``jti`` was used before (counted in
        ``dpop_proofs_rejected`` too)."""
        return self._dpop_counters["jti_replays"]

    @property
    def last_dpop_proof(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Header and claims of the latest DPoP proof accepted; ``None`` before any."""
        return self._dpop_counters.last


class ProofVerifier:
    """Checks DPoP proofs for one server (RFC 9449 section 4.3).

    ``algorithms`` are those accepted (a subset of :data:`ALGORITHMS`);
    ``nonces``, when given, makes a current nonce mandatory in every proof.
    """

    def __init__(
        self,
        algorithms: Iterable[str] = ALGORITHMS,
        *,
        nonces: Nonces | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.algorithms = check_algorithms(algorithms)
        self.nonces = nonces
        self._clock = clock
        self._replays = ReplayGuard(clock)
        self._registry = _Registry(algorithms=list(self.algorithms))

    def verify(
        self,
        values: Sequence[str],
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        bound_to: str | None = None,
    ) -> Proof:
        """The proof among ``values`` (the request's ``DPoP`` header fields), checked
        for a request of ``method`` to ``url`` carrying ``access_token`` (if any)
        bound to the key of thumbprint ``bound_to`` (if given).

        Raises :class:`NonceRequired` for a good proof without the current nonce,
        :class:`KeyMismatch` for a proof by another key than ``bound_to``,
        :class:`ReplayedProof` for a ``jti`` seen before, :class:`ProofError`
        for anything else wrong.
        """
        if len(values) != 1:
            raise ProofError("Send exactly one DPoP header" if values else "No DPoP proof")
        header, claims, key = self._signed(values[0])
        self._check_claims(claims, method=method, url=url, access_token=access_token)
        thumbprint = key.thumbprint()
        if bound_to is not None and thumbprint != bound_to:
            raise KeyMismatch("The DPoP proof is signed with another key than the token's")
        if not self._replays.first_use(
            thumbprint, claims["jti"], claims["iat"] + PROOF_MAX_AGE + 2 * CLOCK_SKEW
        ):
            raise ReplayedProof("The DPoP proof's jti was used before")
        return Proof(header, claims, thumbprint)

    def _signed(self, value: str) -> tuple[dict[str, Any], dict[str, Any], Key]:
        """Header, claims and key of a proof whose signature checks out."""
        if len(value) > MAX_PROOF_LENGTH:
            raise ProofError("The DPoP proof is too long")
        try:
            compact = jws.extract_compact(value.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError, UnicodeError):
            raise ProofError("The DPoP proof is not a compact JWS") from None
        header = compact.headers()
        if header.get("typ") != PROOF_TYPE:
            raise ProofError(f"The DPoP proof's typ must be {PROOF_TYPE}")
        if header.get("alg") not in self.algorithms:
            raise ProofError(f"The DPoP proof's alg must be one of {' '.join(self.algorithms)}")
        key = _public_key(header.get("jwk"))
        try:
            valid = jws.validate_compact(compact, key, registry=self._registry)
        except (JoseError, ValueError, TypeError):
            raise ProofError("The DPoP proof's jwk does not fit its alg") from None
        if not valid:
            raise ProofError("The DPoP proof's signature does not verify")
        claims = _claims(compact.payload)
        return header, claims, key

    def _check_claims(
        self, claims: dict[str, Any], *, method: str, url: str, access_token: str | None
    ) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise ProofError("The DPoP proof has no jti")
        if claims.get("htm") != method:
            raise ProofError(f"The DPoP proof's htm is not {printable(method)}")
        _check_htu(claims.get("htu"), url)
        self._check_iat(claims.get("iat"))
        if access_token is not None and claims.get("ath") != ath(access_token):
            raise ProofError("The DPoP proof's ath does not match the access token")
        if self.nonces is not None and not self.nonces.accepts(claims.get("nonce")):
            reason = "is not current" if "nonce" in claims else "is missing"
            raise NonceRequired(f"The DPoP proof's nonce {reason}: use the DPoP-Nonce given")

    def _check_iat(self, iat: object) -> None:
        if isinstance(iat, bool) or not isinstance(iat, (int, float)) or iat != iat:
            raise ProofError("The DPoP proof has no iat")
        now = self._clock()
        if iat < now - PROOF_MAX_AGE - CLOCK_SKEW:
            raise ProofError("The DPoP proof is too old (iat)")
        if iat > now + CLOCK_SKEW:
            raise ProofError("The DPoP proof is issued in the future (iat)")


class _Registry(JWSRegistry):
    """joserfc's registry, for the allowed algorithms only, without its deprecation
    warning for ``EdDSA`` (RFC 9449 servers list it), and with room for the header
    of a proof signed with an RSA key, whose modulus exceeds joserfc's default limit."""

    max_header_length = MAX_PROOF_LENGTH
    max_signature_length = MAX_PROOF_LENGTH

    def get_alg(self, name: str) -> JWSAlgModel:
        if not self.allowed or name not in self.allowed or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{printable(name)}' is not allowed")
        return self.algorithms[name]


def check_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """The algorithms a server accepts in proofs: some of :data:`ALGORITHMS`."""
    if isinstance(algorithms, str):
        raise TypeError("dpop_signing_algorithms must be a list of names, not a string")
    chosen = tuple(algorithms)
    if not chosen or any(name not in ALGORITHMS for name in chosen):
        raise ValueError(f"dpop_signing_algorithms must be some of {', '.join(ALGORITHMS)}")
    return chosen


def _public_key(jwk: object) -> Key:
    """The header's key: a public asymmetric JWK (a private one is refused, RFC 9449 4.3)."""
    if not isinstance(jwk, dict) or jwk.get("kty") not in ("EC", "RSA", "OKP"):
        raise ProofError("The DPoP proof's jwk must be a public EC, RSA or OKP key")
    try:
        key = JWKRegistry.import_key(jwk)
    except (JoseError, ValueError, TypeError, KeyError):
        raise ProofError("The DPoP proof's jwk is not a valid key") from None
    if key.is_private or "d" in jwk:
        raise ProofError("The DPoP proof's jwk holds a private key")
    return key


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise ProofError("The DPoP proof's claims are not JSON") from None
    if not isinstance(claims, dict):
        raise ProofError("The DPoP proof's claims are not a JSON object")
    return claims


def _check_htu(htu: object, url: str) -> None:
    if not isinstance(htu, str) or "?" in htu or "#" in htu:
        raise ProofError("The DPoP proof's htu must be the URL without query and fragment")
    try:
        matches = normalise_url(htu) == normalise_url(url)
    except ValueError:
        matches = False
    if not matches:
        raise ProofError(f"The DPoP proof's htu is not {printable(normalise_url(url))}")
