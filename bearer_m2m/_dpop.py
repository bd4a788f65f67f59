"""DPoP (RFC 9449), the client's side: its key, its proofs, the servers' nonces. Sans-I/O.

Nothing here sends a request. :class:`DPoPKey` holds a private key and signs
proofs with it; :class:`NonceStore` remembers the latest ``DPoP-Nonce`` each
origin gave; the ``is_*`` helpers read the answers that ask for a nonce. The
token source, the fetcher and the adapters decide when to use them.

A proof is made for every request, so its cost is kept down to what varies:
the protected header (``typ``, ``alg``, the public ``jwk``), the thumbprint and
the signing algorithm are worked out once, when the key is loaded; a proof
then costs two small JSON objects, one hash when a token is bound, and one
signature (done by joserfc, on ``cryptography``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, NoReturn

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey, import_key
from joserfc.jws import JWSRegistry

from .errors import ConfigurationError

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "Challenge",
    "DPoPKey",
    "NonceStore",
    "Origin",
    "ath",
    "dpop_challenge",
    "dpop_key",
    "htu",
    "is_nonce_challenge",
    "is_nonce_error",
    "is_valid_nonce",
    "origin",
    "parse_www_authenticate",
]

#: The signing algorithms a DPoP key may use (``dpop_algorithm=``), the default first.
ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
DEFAULT_ALGORITHM = "ES256"
PROOF_TYPE = "dpop+jwt"
#: RSA keys shorter than this are refused (RFC 7518 section 3.3).
MIN_RSA_BITS = 2048

#: What a key of each algorithm must be: (joserfc key type, the curves allowed).
_KEY_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "PS256": ("RSA", ()),
    "RS256": ("RSA", ()),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}
#: The algorithm a key implies when none is named; RSA keys sign RS256, the RSA
#: algorithm that most DPoP servers list (PS256 is not everywhere).
_IMPLIED = {
    "P-256": "ES256",
    "P-384": "ES384",
    "RSA": "RS256",
    "Ed25519": "EdDSA",
    "Ed448": "EdDSA",
}
_DEFAULT_PORTS = {"http": 80, "https": 443}

#: ``dpop=`` of the auth object: ``True`` (a key made in memory), a PEM text or
#: bytes, the path of a PEM file, or a private JWK.
KeySource = str | bytes | os.PathLike[str] | Mapping[str, Any]
Option = bool | KeySource | None
Clock = Callable[[], float]
#: (scheme, host, port) of a URL, lower-cased, the port always filled in.
Origin = tuple[str, str, int]


class DPoPKey:
    """A private key for DPoP proofs, with what every proof reuses worked out once.

    Make one with :meth:`generate` (in memory, for the life of the object) or
    :meth:`load` (a key the user gave, checked here: private, asymmetric, fit
    for the algorithm). ``clock`` gives the ``iat`` of proofs (seconds since
    the epoch); tests and clock-skew correction may pass their own.

    The key never leaves the object: not in ``repr``, not in errors, and the
    object refuses to be pickled, so it cannot end up in a cache. Copies are
    the object itself (it never changes).
    """

    __slots__ = (
        "_algorithm",
        "_clock",
        "_header_segment",
        "_key",
        "_public_jwk",
        "_signer",
        "_thumbprint",
    )

    def __init__(self, key: Key, algorithm: str, *, clock: Clock = time.time) -> None:
        """Use :meth:`generate` or :meth:`load`; this takes a joserfc key already checked."""
        self._key = key
        self._algorithm = algorithm
        self._clock = clock
        self._signer = JWSRegistry.algorithms[algorithm]
        self._public_jwk = _public_members(key)
        header = {"typ": PROOF_TYPE, "alg": algorithm, "jwk": self._public_jwk}
        self._header_segment = _b64(_compact_json(header))
        self._thumbprint = key.thumbprint()

    @classmethod
    def generate(cls, algorithm: str = DEFAULT_ALGORITHM, *, clock: Clock = time.time) -> DPoPKey:
        """A new key for ``algorithm``: P-256 or P-384 for ES256 and ES384, RSA 2048
        for PS256 and RS256, Ed25519 for EdDSA."""
        kind, curves = _KEY_KINDS[_checked_algorithm(algorithm)]
        key: Key
        if kind == "EC":
            key = ECKey.generate_key(curves[0])
        elif kind == "RSA":
            key = RSAKey.generate_key(MIN_RSA_BITS)
        else:
            key = OKPKey.generate_key("Ed25519")
        return cls(key, algorithm, clock=clock)

    @classmethod
    def load(
        cls, source: KeySource, algorithm: str | None = None, *, clock: Clock = time.time
    ) -> DPoPKey:
        """The key in ``source`` (PEM text or bytes, a PEM or JWK file's path, a JWK),
        for ``algorithm``, or for the one the key implies when ``None`` (a JWK's
        ``alg``; else ES256 or ES384 by curve, RS256 for RSA, EdDSA for Ed25519).

        Raises :class:`~bearer_m2m.ConfigurationError` naming the file (or "the
        PEM given as dpop"), never the key.
        """
        if algorithm is not None:
            _checked_algorithm(algorithm)
        material, where = _key_material(source)
        key = _import_private_key(material, where)
        chosen = _implied_algorithm(key, where) if algorithm is None else algorithm
        _check_key_fits(key, chosen, where)
        return cls(key, chosen, clock=clock)

    # -- what may be shown ----------------------------------------------------------

    @property
    def algorithm(self) -> str:
        return self._algorithm

    @property
    def thumbprint(self) -> str:
        """The RFC 7638 JWK thumbprint (base64url SHA-256): a token's ``cnf.jkt``,
        safe to log and to use in cache keys."""
        return self._thumbprint

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public key as the proofs carry it (the RFC 7638 members only)."""
        return dict(self._public_jwk)

    def __repr__(self) -> str:
        return f"<DPoPKey {self._algorithm} thumbprint={self._thumbprint}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a DPoPKey holds a private key and is never serialised")

    def __copy__(self) -> DPoPKey:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> DPoPKey:
        return self

    # -- proofs -------------------------------------------------------------------------

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        nonce: str | None = None,
    ) -> str:
        """A DPoP proof (compact JWS) for one request: the ``DPoP`` header's value.

        Claims: a random ``jti``, ``htm`` (``method`` as given), ``htu`` (see
        :func:`htu`), ``iat``, ``ath`` when ``access_token`` is given (API
        requests) and ``nonce`` when the server gave one. Raises ``ValueError``
        for a method that is not an HTTP token, a URL that is not absolute
        http(s), or a nonce outside RFC 9449's syntax; the message quotes none
        of them.
        """
        if not _TOKEN.fullmatch(method):
            raise ValueError("the request method is not an HTTP method name")
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": htu(url),
            "iat": int(self._clock()),
        }
        if access_token is not None:
            claims["ath"] = ath(access_token)
        if nonce is not None:
            if not is_valid_nonce(nonce):
                raise ValueError("the nonce is not a valid DPoP-Nonce value")
            claims["nonce"] = nonce
        signing_input = self._header_segment + b"." + _b64(_compact_json(claims))
        signature = self._signer.sign(signing_input, self._key)
        return (signing_input + b"." + _b64(signature)).decode("ascii")


def dpop_key(option: Option, algorithm: str | None = None) -> DPoPKey | None:
    """The key that ``dpop=option, dpop_algorithm=algorithm`` ask for, or ``None``.

    ``None`` or ``False``: no DPoP (``algorithm`` must then be ``None`` too).
    ``True``: a key made now for ``algorithm`` (default ES256). Anything else
    is a key to load (:meth:`DPoPKey.load`).
    """
    if option is None or option is False:
        if algorithm is not None:
            raise ConfigurationError("dpop_algorithm is set but dpop is not; set dpop=True")
        return None
    if option is True:
        return DPoPKey.generate(DEFAULT_ALGORITHM if algorithm is None else algorithm)
    if not isinstance(option, (str, bytes, os.PathLike, Mapping)):
        raise ConfigurationError(
            "dpop must be True, a PEM string or bytes, a key file's path or a JWK, "
            f"not {type(option).__name__}"
        )
    return DPoPKey.load(option, algorithm)


def ath(access_token: str) -> str:
    """``ath``: base64url SHA-256 of the token's ASCII bytes (RFC 9449 section 4.2)."""
    return _b64(hashlib.sha256(access_token.encode()).digest()).decode("ascii")


# -- URLs -------------------------------------------------------------------------------


def htu(url: str) -> str:
    """The ``htu`` of a request to ``url``: without query and fragment (RFC 9449 4.2).

    Scheme and host are lower-cased, a default port (80, 443) and any user
    information are dropped, and an empty path becomes ``/`` (RFC 3986 6.2.2.1
    and 6.2.3). The path is otherwise kept exactly as it goes on the wire: a
    server that compares without normalising then agrees, and one that
    normalises does so on both sides alike.
    """
    scheme, host, port, path = _parts(url)
    shown_port = "" if port == _DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{shown_port}{path}"


def origin(url: str) -> Origin:
    """``(scheme, host, port)`` of ``url``, lower-cased, with the default port filled in:
    two URLs are the same origin exactly when these are equal."""
    scheme, host, port, _ = _parts(url)
    return scheme, host, port


def _parts(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and path (the part before ``?`` or ``#``) of an absolute
    http(s) URL; ``ValueError`` (which quotes nothing of it) otherwise."""
    match = _URL.fullmatch(url)
    if match is None:
        raise ValueError("a DPoP proof needs an absolute http or https URL")
    scheme, authority, path = match["scheme"].lower(), match["authority"], match["path"]
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("a DPoP proof needs an absolute http or https URL")
    hostport = authority.rpartition("@")[2]  # user information never goes in a proof
    host_match = _HOST_PORT.fullmatch(hostport)
    if host_match is None or not host_match["host"]:
        raise ValueError("the URL's host or port is not valid")
    port_text = host_match["port"]
    port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
    if port > 65535:
        raise ValueError("the URL's host or port is not valid")
    return scheme, host_match["host"].lower(), port, path or "/"


_URL = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<authority>[^/?#]*)(?P<path>[^?#]*)(?:[?#].*)?",
    re.DOTALL,
)
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Za-z:.%\-_~]+\]|[^:\[\]]*)(?::(?P<port>[0-9]*))?")


# -- nonces -----------------------------------------------------------------------------


class NonceStore:
    """The latest ``DPoP-Nonce`` each origin gave, for the next proof sent there.

    Keyed by origin (scheme, host, port), so a nonce goes back only to the
    server that issued it: the token endpoint's never reaches an API, nor one
    API's another. The newest nonce remembered for an origin replaces the one
    before. At most ``max_origins`` origins are kept (the least recently
    updated go first). Safe to share between threads.
    """

    def __init__(self, max_origins: int = 256) -> None:
        if max_origins < 1:
            raise ValueError("max_origins must be at least 1")
        self._max_origins = max_origins
        self._nonces: OrderedDict[Origin, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> str | None:
        """The nonce to put in a proof for ``url``, if its origin gave one."""
        key = origin(url)
        with self._lock:
            return self._nonces.get(key)

    def remember(self, url: str, nonce: str | None) -> bool:
        """Keep ``nonce`` (a response's ``DPoP-Nonce``) for ``url``'s origin.

        ``None`` and values outside RFC 9449's nonce syntax are ignored;
        returns whether the nonce was kept.
        """
        if nonce is None or not is_valid_nonce(nonce):
            return False
        key = origin(url)
        with self._lock:
            self._nonces[key] = nonce
            self._nonces.move_to_end(key)
            while len(self._nonces) > self._max_origins:
                self._nonces.popitem(last=False)
        return True

    def forget(self, url: str) -> None:
        """Drop the nonce of ``url``'s origin."""
        key = origin(url)
        with self._lock:
            self._nonces.pop(key, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._nonces)

    def __repr__(self) -> str:
        return f"<NonceStore origins={len(self)}>"


#: RFC 9449 section 8.1: ``nonce = 1*NQCHAR``, printable ASCII but ``"`` and ``\``.
_NONCE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: Longer nonces are ignored: no server needs more, and a proof carries it per request.
MAX_NONCE_LENGTH = 1024


def is_valid_nonce(value: object) -> bool:
    """Whether ``value`` is a ``DPoP-Nonce`` value RFC 9449 allows (and not absurdly long)."""
    return (
        isinstance(value, str)
        and len(value) <= MAX_NONCE_LENGTH
        and _NONCE.fullmatch(value) is not None
    )


# -- answers that ask for a nonce -------------------------------------------------------


#: The most of a ``WWW-Authenticate`` header that is parsed: real challenges are a few
#: hundred bytes, and parsing is linear, so a hostile header costs at most this much.
MAX_CHALLENGE_TEXT = 16 * 1024


class Challenge(NamedTuple):
    """One challenge of a ``WWW-Authenticate`` header: the scheme (lower case),
    its parameters (names lower case, values unquoted) or its token68."""

    scheme: str
    params: Mapping[str, str]
    token68: str | None = None


def parse_www_authenticate(value: str | Iterable[str] | None) -> list[Challenge]:
    """The challenges of ``WWW-Authenticate`` (RFC 9110 section 11.6.1).

    ``value`` is the header's value, or its values when it came more than once
    (clients that join them with ``", "`` give the same result). Several
    challenges, quoted strings with escapes and any case of scheme and
    parameter names are understood; a parameter given twice keeps its first
    value. Parsing stops at text that is no challenge: what came before it
    is returned, never an error.
    """
    if value is None:
        return []
    text = value if isinstance(value, str) else ", ".join(value)
    text = text[:MAX_CHALLENGE_TEXT]  # clients cap headers at 8-64 KiB; junk costs no more
    challenges: list[Challenge] = []
    position = 0
    while True:
        position = _LIST_GAP.match(text, position).end()  # type: ignore[union-attr]
        scheme = _TOKEN.match(text, position)
        if scheme is None:
            return challenges
        challenge, position = _challenge_after(text, scheme.group().lower(), scheme.end())
        challenges.append(challenge)


def _challenge_after(text: str, scheme: str, position: int) -> tuple[Challenge, int]:
    """The challenge whose scheme ends at ``position``, and where it ends."""
    space = _SPACES.match(text, position)
    if space is None:
        return Challenge(scheme, {}), position
    token68 = _TOKEN68.match(text, space.end())
    if token68 is not None:
        return Challenge(scheme, {}, token68.group(1)), token68.end()
    params: dict[str, str] = {}
    position = space.end()
    while (param := _PARAM.match(text, position)) is not None:
        raw = param["value"]
        value = _unquote(raw) if raw.startswith('"') else raw
        params.setdefault(param["name"].lower(), value)
        position = param.end()
        separator = _LIST_GAP.match(text, position)
        after = separator.end() if separator is not None else position
        if "," not in text[position:after] or _PARAM.match(text, after) is None:
            break  # the end, or the next challenge's scheme
        position = after
    return Challenge(scheme, params), position


def _unquote(quoted: str) -> str:
    return _ESCAPE.sub(r"\1", quoted[1:-1])


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SPACES = re.compile(r"[ \t]+")
_LIST_GAP = re.compile(r"[ \t,]*")
_TOKEN68 = re.compile(r"([A-Za-z0-9\-._~+/]+=*)(?=[ \t]*(?:,|$))")
_PARAM = re.compile(
    r"[ \t]*(?P<name>[!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|[!#$%&\'*+\-.^_`|~0-9A-Za-z]+)',
    re.DOTALL,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def dpop_challenge(www_authenticate: str | Iterable[str] | None) -> Challenge | None:
    """The first ``DPoP`` challenge among ``www_authenticate``'s, if any."""
    for challenge in parse_www_authenticate(www_authenticate):
        if challenge.scheme == "dpop":
            return challenge
    return None


def is_nonce_challenge(status: int, www_authenticate: str | Iterable[str] | None) -> bool:
    """Whether an API's answer asks for a proof with its nonce: a 401 with
    ``WWW-Authenticate: DPoP error="use_dpop_nonce"`` (RFC 9449 section 9)."""
    if status != 401:
        return False
    challenge = dpop_challenge(www_authenticate)
    return challenge is not None and challenge.params.get("error") == "use_dpop_nonce"


def is_nonce_error(status: int, body: Mapping[str, Any] | bytes | str | None) -> bool:
    """Whether a token endpoint's answer asks for a proof with its nonce: a 400
    whose JSON body has ``"error": "use_dpop_nonce"`` (RFC 9449 section 8).

    ``body`` is the parsed JSON object or the raw body; a body that is not
    JSON is no such answer.
    """
    if status != 400 or body is None:
        return False
    document: object = body
    if isinstance(body, (bytes, str)):
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return False
    return isinstance(document, Mapping) and document.get("error") == "use_dpop_nonce"


# -- loading keys -----------------------------------------------------------------------


def _checked_algorithm(algorithm: object) -> str:
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise ConfigurationError(f"dpop_algorithm must be one of {', '.join(ALGORITHMS)}")
    return algorithm


def _key_material(source: KeySource) -> tuple[bytes | dict[str, Any], str]:
    """The key's bytes or JWK, and how to name where it came from in errors."""
    if isinstance(source, Mapping):
        return dict(source), "the JWK given as dpop"
    if isinstance(source, bytes):
        return source, "the PEM given as dpop"
    if isinstance(source, str) and "-----BEGIN" in source:
        return source.encode("utf-8", "replace"), "the PEM given as dpop"
    if isinstance(source, str) and source.lstrip().startswith("{"):
        where = "the JWK given as dpop"
        return _jwk_from_json(source.encode("utf-8", "replace"), where), where
    path = os.fspath(source)
    where = f"DPoP key file {path!r}" if _looks_like_a_path(path) else "the dpop key file"
    try:
        with open(path, "rb") as file:
            content = file.read()
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not a file"
        raise ConfigurationError(
            f"cannot read {where} ({reason}); give dpop a PEM file's path, a PEM or a JWK"
        ) from None
    if content.lstrip().startswith(b"{"):
        return _jwk_from_json(content, where), where
    return content, where


def _jwk_from_json(text: bytes, where: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ConfigurationError(f"{where} looks like a JWK but is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{where} is not a JWK (a JSON object)")
    return document


def _looks_like_a_path(text: str) -> bool:
    """Whether ``text`` may be named in an error: a key pasted where a path was
    expected (base64 from a secret store, say) must never reach a log. Base64
    has no dots, so a file name with a suffix is safe to show, as is a path
    into a directory that exists."""
    if len(text) > 255 or not text.isprintable():
        return False
    if "." in os.path.basename(text):
        return True
    return "/" in text and os.path.isdir(os.path.dirname(os.path.abspath(text)))


_SIGNING_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


def _import_private_key(material: bytes | dict[str, Any], where: str) -> Key:
    """A joserfc key from a PEM or a JWK, refused unless private and asymmetric.

    Parsers may quote what they parsed, so their messages are dropped."""
    if isinstance(material, dict):
        return _import_jwk(material, where)
    try:
        raw = serialization.load_pem_private_key(material, password=None)
    except TypeError:
        raise ConfigurationError(f"{where} is encrypted; DPoP needs an unencrypted key") from None
    except (ValueError, UnsupportedAlgorithm):
        _refuse_public_or_unreadable(material, where)
    if not isinstance(raw, _SIGNING_KEYS):
        raise ConfigurationError(f"{where} is not a signing key (EC, RSA, Ed25519 or Ed448)")
    if isinstance(raw, rsa.RSAPrivateKey):
        _check_rsa_size(raw.key_size, where)
    try:
        return JWKRegistry.import_key(material, _joserfc_type(raw))
    except (JoseError, ValueError, TypeError):
        raise ConfigurationError(f"{where} is not a usable private key") from None


def _refuse_public_or_unreadable(material: bytes, where: str) -> NoReturn:
    try:
        serialization.load_pem_public_key(material)
    except (ValueError, UnsupportedAlgorithm):
        pass
    else:
        raise ConfigurationError(f"{where} holds a public key; DPoP needs the private key")
    raise ConfigurationError(f"{where} is not a PEM private key")


def _joserfc_type(raw: object) -> str:
    if isinstance(raw, rsa.RSAPrivateKey):
        return "RSA"
    return "EC" if isinstance(raw, ec.EllipticCurvePrivateKey) else "OKP"


def _import_jwk(jwk: dict[str, Any], where: str) -> Key:
    if jwk.get("kty") not in ("EC", "RSA", "OKP"):
        raise ConfigurationError(f"{where} is not an EC, RSA or OKP key (DPoP keys are asymmetric)")
    if jwk["kty"] == "RSA":
        _check_rsa_size(_modulus_bits(jwk.get("n"), where), where)
    try:
        key = import_key(jwk)
    except (JoseError, ValueError, TypeError, KeyError):
        raise ConfigurationError(f"{where} is not a usable JWK") from None
    if not key.is_private:
        raise ConfigurationError(f"{where} holds a public key; DPoP needs the private key")
    return key


def _modulus_bits(n: object, where: str) -> int:
    """The size of an RSA JWK's modulus (``n``, base64url)."""
    try:
        if not isinstance(n, str):
            raise ValueError("no modulus")
        modulus = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        raise ConfigurationError(f"{where} is not a usable JWK") from None
    return int.from_bytes(modulus, "big").bit_length()


def _check_rsa_size(bits: int, where: str) -> None:
    """Checked before joserfc sees the key, which would only warn."""
    if bits < MIN_RSA_BITS:
        raise ConfigurationError(f"{where} is an RSA key under {MIN_RSA_BITS} bits")


def _curve(key: Key) -> str:
    """The curve of an EC or OKP key; ``"RSA"`` for an RSA key."""
    return "RSA" if isinstance(key, RSAKey) else str(key.as_dict()["crv"])


def _implied_algorithm(key: Key, where: str) -> str:
    named = key.as_dict().get("alg")
    if named is not None:
        return _checked_algorithm_of(named, where)
    implied = _IMPLIED.get(_curve(key))
    if implied is None:
        raise ConfigurationError(
            f"{where} is a {_curve(key)} key; DPoP signs with P-256, P-384, RSA or Ed25519 keys"
        )
    return implied


def _checked_algorithm_of(named: object, where: str) -> str:
    if named not in ALGORITHMS:
        raise ConfigurationError(
            f"{where} is for alg {str(named)[:20]!r}; DPoP here signs {', '.join(ALGORITHMS)}"
        )
    return str(named)


def _check_key_fits(key: Key, algorithm: str, where: str) -> None:
    """The key's type, curve and size suit ``algorithm``, and a JWK's own ``alg``
    and ``use`` (if any) agree."""
    kind, curves = _KEY_KINDS[algorithm]
    if key.key_type != kind or (curves and _curve(key) not in curves):
        raise ConfigurationError(f"{where} is a {_curve(key)} key, which cannot sign {algorithm}")
    try:
        JWSRegistry.algorithms[algorithm].check_key(key)
        key.get_op_key("sign")  # a JWK's key_ops may rule signing out
    except (JoseError, ValueError):
        raise ConfigurationError(
            f"{where} says it is not for signing {algorithm} (its use, key_ops or alg)"
        ) from None


def _public_members(key: Key) -> dict[str, Any]:
    """The RFC 7638 required members of the public key: what the ``jwk`` header
    carries, so neither private parts nor the user's ``kid`` or ``use`` travel."""
    public = key.as_dict(private=False)
    required = [name for name, spec in key.value_registry.items() if spec.required]
    return {name: public[name] for name in ("kty", *required) if name in public}


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(value).encode("ascii")


#: Made once: ``json.dumps`` with options builds an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")
