"""Shared caches never trust what they read back (issue 8, E4 and the same class).

Whatever a store holds under our key (any JSON sealed with the right key, a file
entry with a 400-digit expiry, garbage, a FIFO or a directory where the file
should be, foreign values in Redis), a token is obtained, the entry is a miss
(not a cache failure) and the next store rewrites it, so the cache serves again.
A store that cannot be used at all (a read-only directory, a lock file that
cannot be created) is one logged failure with a local fetch, never an exception.

Real files, a real ``redis-server`` (tests/redis_server.py) and a real loopback
token endpoint (tests/servers.py). Payloads are sealed the way ``SharedTokens``
seals them, with the key it derives from the client secret, using the module's
own functions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from bearer_m2m import (
    ClientCredentialsAuth,
    FileCache,
    RedisCache,
    RetryPolicy,
    TieredCache,
    TokenCache,
)
from bearer_m2m.caches._shared import _FORMAT, _derive_key, cache_key
from tests.conftest import SECRET
from tests.redis_server import RedisServer
from tests.servers import TokenServer

#: The message SharedTokens logs, once per auth object, when a cache fails.
CACHE_FAILED = "shared token cache"
#: Upper bound on a call that must not hang (never a measurement).
PATIENCE = 30.0
#: The endpoint never fails; a busy machine must not turn a slow answer into an error.
RETRY = RetryPolicy(deadline=PATIENCE, initial_backoff=0.01, max_backoff=0.05)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenServer]:
    """One token endpoint for the module (hypothesis runs many examples against it)."""
    server = TokenServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


_clients = iter(range(10**9))


def make_auth(
    endpoint: TokenServer, cache: TokenCache, client_id: str = ""
) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        endpoint.token_url,
        client_id=client_id or f"client-{next(_clients)}",  # a key of its own in shared stores
        client_secret=SECRET,
        audience="https://api.example",
        retry=RETRY,
        cache=cache,
    )


def key_of(auth: ClientCredentialsAuth) -> str:
    return cache_key(auth._config)


def seal(auth: ClientCredentialsAuth, plain: bytes) -> bytes:
    """``plain`` sealed as SharedTokens seals an entry: the key it derives from the
    client secret, the cache key as associated data, the blob format it reads."""
    nonce = os.urandom(12)
    sealed = AESGCM(_derive_key(SECRET.encode())).encrypt(nonce, plain, key_of(auth).encode())
    return _FORMAT + nonce + sealed


def entry_text(token: str, expires_at: str, lifetime: str) -> bytes:
    """A decrypted entry from JSON literals (so that ``1e400`` stays ``1e400``)."""
    return f'{{"t": {token}, "e": {expires_at}, "l": {lifetime}}}'.encode()


def good_entry(token: str, lifetime: float = 3600.0) -> bytes:
    return entry_text(json.dumps(token), repr(time.time() + lifetime), repr(lifetime))


@contextlib.contextmanager
def bearer_m2m_log() -> Iterator[list[str]]:
    """The library's log messages while the block runs (caplog is per test, and
    hypothesis runs many examples in one test)."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("bearer_m2m")
    handler, level = Collect(logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def failures(messages: list[str]) -> list[str]:
    return [message for message in messages if CACHE_FAILED in message]


def assert_nothing_secret(messages: list[str], *tokens: str) -> None:
    for message in messages:
        assert SECRET not in message
        for token in tokens:
            assert token not in message


def assert_a_miss_that_is_rewritten(
    endpoint: TokenServer,
    cache: Callable[[], TokenCache],
    client_id: str,
    damage: Callable[[], None],
) -> None:
    """The entry ``damage`` left is a miss: a token is fetched, no failure is logged,
    and the rewritten entry serves the next process without a fetch."""
    damage()
    before = endpoint.count
    with bearer_m2m_log() as messages:
        token = make_auth(endpoint, cache(), client_id).token()
        assert token in endpoint.issued and endpoint.count == before + 1
        assert make_auth(endpoint, cache(), client_id).token() == token  # rewritten: it serves
    assert endpoint.count == before + 1
    assert failures(messages) == []
    assert_nothing_secret(messages, token)


# -- what an entry can hold after decryption --------------------------------------------------

#: JSON literals that are no finite number (some no number at all).
NOT_FINITE = st.sampled_from(
    ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" + "0" * 400, "-1" + "0" * 400]
)
NOT_A_NUMBER = st.sampled_from(
    ['"3600"', "null", "true", "false", "[]", "[3600]", '{"n": 1}', '""']
)
NUMBERS = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    NOT_FINITE,
)
BAD_EXPIRY = st.one_of(NOT_FINITE, NOT_A_NUMBER, st.integers(max_value=0).map(str))
BAD_LIFETIME = st.one_of(
    NOT_FINITE,
    NOT_A_NUMBER,
    st.integers(max_value=0).map(str),
    st.floats(max_value=0, allow_nan=False, allow_infinity=False).map(repr),
)
BAD_TOKEN = st.one_of(
    NUMBERS,
    NOT_A_NUMBER.filter(lambda literal: not literal.startswith('"')),  # not text
    st.just('""'),  # empty: nothing to send
    st.sampled_from(['"a\\r\\nX-Injected: 1"', '"nul\\u0000byte"', '"with space"', '"caf\\u00e9"']),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=12,
)


def _insane_entries() -> st.SearchStrategy[bytes]:
    """Decrypted entries that break at least one rule of what SharedTokens writes."""
    now_plus_hour = repr(time.time() + 3600)
    one_field_broken = st.one_of(
        BAD_TOKEN.map(lambda t: entry_text(t, now_plus_hour, "3600")),
        BAD_EXPIRY.map(lambda e: entry_text('"tok-x"', e, "3600")),
        st.integers(min_value=3, max_value=300).map(  # finite, but beyond what 3600 s reach
            lambda digits: entry_text('"tok-x"', repr(time.time() + 3600 + 10.0**digits), "3600")
        ),
        BAD_LIFETIME.map(lambda lifetime: entry_text('"tok-x"', now_plus_hour, lifetime)),
        st.sampled_from(["t", "e", "l"]).map(
            lambda gone: json.dumps(
                {k: v for k, v in {"t": "tok-x", "e": 9e9, "l": 3600}.items() if k != gone}
            ).encode()
        ),
    )
    return st.one_of(
        one_field_broken,
        JSON_VALUES.filter(lambda value: not isinstance(value, dict)).map(
            lambda value: json.dumps(value).encode()
        ),
        st.integers(min_value=1_000, max_value=200_000).map(
            lambda depth: b"[" * depth + b"]" * depth
        ),
        st.integers(min_value=1_000, max_value=100_000).map(
            lambda depth: b'{"t": ' + b"[" * depth + b"]" * depth + b', "e": 9e9, "l": 3600}'
        ),
        st.binary(max_size=64).map(lambda junk: b"\xff" + junk),  # not UTF-8, not JSON
        st.just(b'{"t": "tok-x", "e": ' + b"9" * 5000 + b', "l": 3600}'),  # beyond int digits
    )


INSANE_ENTRIES = _insane_entries()


def test_a_sane_sealed_entry_is_adopted(endpoint: TokenServer, tmp_path: Path) -> None:
    """The sealing helper of this module is right: the cases below prove something."""
    auth = make_auth(endpoint, FileCache(tmp_path / "token.cache"))
    FileCache(tmp_path / "token.cache").store(
        key_of(auth), seal(auth, good_entry("tok-crafted")), 60
    )
    before = endpoint.count
    assert auth.token() == "tok-crafted" and endpoint.count == before


@given(plain=INSANE_ENTRIES)
def test_file_cache_any_decrypted_entry_is_a_miss_then_rewritten(
    endpoint: TokenServer, plain: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token.cache"
        client_id = f"client-{next(_clients)}"
        key = key_of(make_auth(endpoint, FileCache(path), client_id))
        blob = seal(make_auth(endpoint, FileCache(path), client_id), plain)
        assert_a_miss_that_is_rewritten(
            endpoint,
            lambda: FileCache(path),
            client_id,
            lambda: FileCache(path).store(key, blob, 3600),
        )


@given(plain=INSANE_ENTRIES)
def test_redis_cache_any_decrypted_entry_is_a_miss_then_rewritten(
    endpoint: TokenServer, redis_url: str, plain: bytes
) -> None:
    client_id = f"client-{next(_clients)}"
    auth = make_auth(endpoint, RedisCache(redis_url), client_id)
    blob = seal(auth, plain)
    assert_a_miss_that_is_rewritten(
        endpoint,
        lambda: RedisCache(redis_url),
        client_id,
        lambda: RedisCache(redis_url).store(key_of(auth), blob, 3600),
    )


@given(plain=INSANE_ENTRIES)
def test_tiered_cache_a_bad_near_entry_does_not_hide_a_good_far_one(
    endpoint: TokenServer, redis_url: str, plain: bytes
) -> None:
    """A host's file holds nonsense, the fleet's Redis a good token: that token is
    adopted (no fetch), and copied into the file for the host's other processes."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token.cache"
        client_id = f"client-{next(_clients)}"
        fleet_token = make_auth(endpoint, RedisCache(redis_url), client_id).token()  # another host
        auth = make_auth(endpoint, FileCache(path), client_id)
        FileCache(path).store(key_of(auth), seal(auth, plain), 3600)
        before = endpoint.count
        with bearer_m2m_log() as messages:
            tiered = TieredCache(FileCache(path), RedisCache(redis_url))
            assert make_auth(endpoint, tiered, client_id).token() == fleet_token
            assert make_auth(endpoint, FileCache(path), client_id).token() == fleet_token
        assert endpoint.count == before
        assert failures(messages) == []


@given(plain=INSANE_ENTRIES)
def test_tiered_cache_bad_entries_in_every_layer_are_rewritten(
    endpoint: TokenServer, redis_url: str, plain: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token.cache"
        client_id = f"client-{next(_clients)}"
        auth = make_auth(endpoint, FileCache(path), client_id)
        blob = seal(auth, plain)

        def damage() -> None:
            FileCache(path).store(key_of(auth), blob, 3600)
            RedisCache(redis_url).store(key_of(auth), blob, 3600)

        def tiered() -> TieredCache:
            return TieredCache(FileCache(path), RedisCache(redis_url))

        assert_a_miss_that_is_rewritten(endpoint, tiered, client_id, damage)
        # both layers were rewritten: each serves on its own
        before = endpoint.count
        token = make_auth(endpoint, FileCache(path), client_id).token()
        assert make_auth(endpoint, RedisCache(redis_url), client_id).token() == token
        assert endpoint.count == before


def test_tiered_cache_a_host_file_due_for_refresh_does_not_cost_a_fetch(
    endpoint: TokenServer, redis_url: str, tmp_path: Path
) -> None:
    """Host B's file still holds the token it fetched a lifetime ago, now due for refresh,
    while host A has already put the next one in Redis: B adopts A's, as one host of the
    fleet fetching per lifetime requires."""
    client_id = f"client-{next(_clients)}"
    path = tmp_path / "host-b.cache"
    auth = make_auth(endpoint, FileCache(path), client_id)
    stale = entry_text('"tok-old"', repr(time.time() + 30), "3600")  # 30 s left: refresh due
    FileCache(path).store(key_of(auth), seal(auth, stale), 20)
    fleet_token = make_auth(endpoint, RedisCache(redis_url), client_id).token()  # host A
    before = endpoint.count

    host_b = make_auth(endpoint, TieredCache(FileCache(path), RedisCache(redis_url)), client_id)

    assert host_b.token() == fleet_token
    assert endpoint.count == before


# -- what a token file can hold -------------------------------------------------------------

#: JSON literals for a file entry's ``until``: none of them a usable instant.
BAD_UNTIL = st.one_of(NOT_FINITE, NOT_A_NUMBER, st.integers(max_value=0).map(str))
#: JSON literals for a file entry's ``blob``: none of them base64 text.
BAD_BLOB = st.one_of(
    NUMBERS,
    NOT_A_NUMBER.filter(lambda literal: literal != '""'),
    st.just('"%%%"'),
    st.just('"\\u00e9t\\u00e9"'),
)


def file_with(entries: dict[str, tuple[str, str]]) -> bytes:
    """A token file whose entries are given as (blob, until) JSON literals."""
    body = ", ".join(
        f'{json.dumps(key)}: {{"blob": {blob}, "until": {until}}}'
        for key, (blob, until) in entries.items()
    )
    return f'{{"bearer_m2m": 1, "tokens": {{{body}}}}}'.encode()


def test_e4_a_400_digit_expiry_does_not_disable_the_file_cache(
    endpoint: TokenServer, tmp_path: Path
) -> None:
    """Issue 8, E4, as reported: one entry whose expiry is a 400-digit number."""
    path = tmp_path / "token.cache"
    first = make_auth(endpoint, FileCache(path))
    first.token()
    document = json.loads(path.read_bytes())
    [entry] = document["tokens"].values()
    path.write_bytes(path.read_bytes().replace(repr(entry["until"]).encode(), b"9" * 400))
    assert b"9" * 400 in path.read_bytes()

    assert_a_miss_that_is_rewritten(
        endpoint, lambda: FileCache(path), first._config.client_id, lambda: None
    )
    assert b"9" * 400 not in path.read_bytes()


@given(until=BAD_UNTIL, other_until=BAD_UNTIL, other_blob=BAD_BLOB)
def test_file_entries_with_unusable_expiries_are_misses_and_dropped(
    endpoint: TokenServer, until: str, other_until: str, other_blob: str
) -> None:
    """Our entry's ``until`` is unusable, and another client's entry is nonsense too:
    a miss, a fetch, and a file that holds our good entry and nothing else."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token.cache"
        client_id = f"client-{next(_clients)}"
        auth = make_auth(endpoint, FileCache(path), client_id)
        blob = json.dumps(base64.b64encode(seal(auth, good_entry("tok-would-be-adopted"))).decode())
        content = file_with(
            {key_of(auth): (blob, until), "bearer_m2m:other": (other_blob, other_until)}
        )
        assert_a_miss_that_is_rewritten(
            endpoint, lambda: FileCache(path), client_id, lambda: path.write_bytes(content)
        )
        assert list(json.loads(path.read_bytes())["tokens"]) == [key_of(auth)]


@given(blob=BAD_BLOB)
def test_file_entries_with_unusable_blobs_are_misses(endpoint: TokenServer, blob: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token.cache"
        client_id = f"client-{next(_clients)}"
        key = key_of(make_auth(endpoint, FileCache(path), client_id))
        content = file_with({key: (blob, repr(time.time() + 3600))})
        assert_a_miss_that_is_rewritten(
            endpoint, lambda: FileCache(path), client_id, lambda: path.write_bytes(content)
        )


@given(junk=st.binary(max_size=2048))
def test_any_bytes_in_the_file_are_a_miss_then_rewritten(
    endpoint: TokenServer, junk: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "token.cache"
        assert_a_miss_that_is_rewritten(
            endpoint,
            lambda: FileCache(path),
            f"client-{next(_clients)}",
            lambda: path.write_bytes(junk),
        )


def test_an_oversized_file_is_a_miss_then_rewritten(endpoint: TokenServer, tmp_path: Path) -> None:
    """More than 16 MiB is no token file of ours; it is replaced, never parsed."""
    path = tmp_path / "token.cache"
    client_id = f"client-{next(_clients)}"
    auth = make_auth(endpoint, FileCache(path), client_id)
    auth.token()
    good = path.read_bytes()
    huge = good[:-1] + b" " * (17 * 1024 * 1024) + b"}"  # still valid JSON, holding the token
    assert json.loads(huge) == json.loads(good)
    assert_a_miss_that_is_rewritten(
        endpoint, lambda: FileCache(path), client_id, lambda: path.write_bytes(huge)
    )
    assert path.stat().st_size < 1024 * 1024


def test_a_fifo_where_the_file_should_be_neither_blocks_nor_stays(
    endpoint: TokenServer, tmp_path: Path
) -> None:
    path = tmp_path / "token.cache"
    os.mkfifo(path)
    outcome: list[object] = []

    def obtain() -> None:
        try:
            outcome.append(make_auth(endpoint, FileCache(path)).token())
        except BaseException as exc:  # reported below
            outcome.append(exc)

    worker = threading.Thread(target=obtain, daemon=True)
    worker.start()
    worker.join(timeout=PATIENCE)
    if worker.is_alive():  # unblock the reader so the thread can end, then fail
        with open(os.open(path, os.O_WRONLY | os.O_NONBLOCK), "w") as writer:
            writer.write("x")
        pytest.fail("opening the cache blocked on a FIFO")
    [token] = outcome
    assert isinstance(token, str) and token in endpoint.issued
    assert stat.S_ISREG(path.stat().st_mode)  # replaced by a real token file


def test_a_directory_where_the_file_should_be_is_one_logged_failure(
    endpoint: TokenServer, tmp_path: Path
) -> None:
    """It cannot be rewritten (removing a directory is not a cache's business): tokens are
    fetched locally with one warning; once it is gone, the cache works again."""
    path = tmp_path / "token.cache"
    path.mkdir()
    with bearer_m2m_log() as messages:
        auth = make_auth(endpoint, FileCache(path))
        first = auth.token()
        auth.invalidate()
        second = auth.token()
    assert {first, second} <= set(endpoint.issued) and first != second
    assert len(failures(messages)) == 1 and "IsADirectoryError" in failures(messages)[0]
    assert_nothing_secret(messages, first, second)
    path.rmdir()
    assert_a_miss_that_is_rewritten(
        endpoint, lambda: FileCache(path), "after-the-directory", lambda: None
    )


def test_a_lock_file_that_cannot_be_created_is_one_logged_failure(
    endpoint: TokenServer, tmp_path: Path
) -> None:
    path = tmp_path / "token.cache"
    (tmp_path / "token.cache.lock").mkdir()  # where the lock file would go
    with bearer_m2m_log() as messages:
        auth = make_auth(endpoint, FileCache(path, lock_timeout=PATIENCE))
        first = auth.token()
        auth.invalidate()
        second = auth.token()
    assert {first, second} <= set(endpoint.issued)
    assert len(failures(messages)) == 1
    assert_nothing_secret(messages, first, second)


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may create files in. As root, permissions do not stop
    anyone, so sysfs stands in (the kernel refuses new files there, even to root)."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    directory.chmod(0o555)
    try:
        candidate = directory if not _can_create_in(directory) else Path("/sys")
        assert not _can_create_in(candidate), "no read-only directory on this machine"
        yield candidate
    finally:
        directory.chmod(0o755)


def _can_create_in(directory: Path) -> bool:
    probe = directory / f".probe-{os.getpid()}"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


def test_a_read_only_directory_is_one_logged_failure(
    endpoint: TokenServer, read_only_directory: Path
) -> None:
    with bearer_m2m_log() as messages:
        auth = make_auth(
            endpoint, FileCache(read_only_directory / "token.cache", lock_timeout=PATIENCE)
        )
        first = auth.token()
        auth.invalidate()
        second = auth.token()
    assert {first, second} <= set(endpoint.issued)
    assert len(failures(messages)) == 1
    assert_nothing_secret(messages, first, second)


# -- what Redis can hold under our key --------------------------------------------------------


@given(
    value=st.one_of(
        st.binary(max_size=256),
        st.text(max_size=64).map(str.encode),
        st.sampled_from([b"\xff\xfe\xfd", "été".encode(), b"bm1", b"YmxvYg==" * 3, b"%%%"]),
    ),
    decode_responses=st.booleans(),
)
def test_any_redis_value_under_our_key_is_a_miss_then_rewritten(
    endpoint: TokenServer, redis_url: str, value: bytes, decode_responses: bool
) -> None:
    """Raw values, including bytes a ``decode_responses=True`` client cannot decode and
    text that is not ASCII: misses, never cache failures."""
    client_id = f"client-{next(_clients)}"
    key = key_of(make_auth(endpoint, RedisCache(redis_url), client_id))
    look = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    shared = redis.Redis.from_url(redis_url, socket_timeout=5.0, decode_responses=decode_responses)
    try:
        assert_a_miss_that_is_rewritten(
            endpoint, lambda: RedisCache(shared), client_id, lambda: look.set(key, value)
        )
    finally:
        look.close()
        shared.close()


@pytest.mark.parametrize("kind", ["list", "hash", "set"])
def test_another_redis_type_under_our_key_is_a_miss(
    endpoint: TokenServer, redis_url: str, kind: str
) -> None:
    """WRONGTYPE is a miss; the store replaces the key (SET overwrites any type)."""
    client_id = f"client-{next(_clients)}"
    key = key_of(make_auth(endpoint, RedisCache(redis_url), client_id))
    look = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    writers: dict[str, Callable[[], Any]] = {
        "list": lambda: look.rpush(key, "a", "b"),
        "hash": lambda: look.hset(key, "a", "b"),
        "set": lambda: look.sadd(key, "a"),
    }
    try:
        assert_a_miss_that_is_rewritten(
            endpoint, lambda: RedisCache(redis_url), client_id, writers[kind]
        )
    finally:
        look.close()


def test_a_ttl_too_long_for_any_store_is_bounded(redis_url: str, tmp_path: Path) -> None:
    """A token said to live for ages (a user's default_lifetime, a server's expires_in) is
    kept at most MAX_CACHE_TTL, a span every store can represent."""
    endpoint = TokenServer(expires_in=None)  # no expires_in: the default lifetime applies
    try:
        for cache in (FileCache(tmp_path / "token.cache"), RedisCache(redis_url)):
            with bearer_m2m_log() as messages:
                auth = ClientCredentialsAuth(
                    endpoint.token_url,
                    client_id=f"client-{next(_clients)}",
                    client_secret=SECRET,
                    default_lifetime=1e300,
                    retry=RETRY,
                    cache=cache,
                )
                token = auth.token()
                before = endpoint.count
                assert (
                    ClientCredentialsAuth(
                        endpoint.token_url,
                        client_id=auth._config.client_id,
                        client_secret=SECRET,
                        default_lifetime=1e300,
                        retry=RETRY,
                        cache=cache,
                    ).token()
                    == token
                )
                assert endpoint.count == before  # stored, and read back
            assert failures(messages) == []
    finally:
        endpoint.close()
