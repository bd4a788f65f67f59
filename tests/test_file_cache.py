"""FileCache: one token for the processes of a host, over real sockets and real processes.

The local authorization server counts token requests; the protected API tells
whose token it was given. Other processes are real ones (``subprocess`` running
small scripts), released together so that their race for the token is real.
The helpers that run them are used by the Redis tests too.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from filelock import FileLock, Timeout

import bearer_m2m.caches._shared
from bearer_m2m import (
    ClientCredentialsAuth,
    ConfigurationError,
    FileCache,
    TokenCache,
    TokenRequestRejected,
)
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, RegisteredClient
from bearer_m2m.testing.pytest_plugin import TEST_RETRY

ROOT = Path(__file__).resolve().parents[1]
#: Upper bound on any wait for a process or a state (never a measurement).
PATIENCE = 60.0
#: How long the first token request of a race is held, so that everybody piles up behind it.
HOLD = 0.5
#: The message SharedTokens logs, once, when a cache fails.
CACHE_FAILED = "shared token cache"


# -- helpers shared with test_redis_cache --------------------------------------------------


def make_auth(
    server: AuthorizationServer,
    api: ProtectedAPI,
    cache: TokenCache | None,
    *,
    client: RegisteredClient | None = None,
    **options: Any,
) -> ClientCredentialsAuth:
    """An auth object for ``client`` (default: the server's) and the API's audience."""
    client = client or server.client
    options.setdefault("audience", api.audience)
    options.setdefault("client_secret", client.client_secret)
    return ClientCredentialsAuth(
        server.token_url, client_id=client.client_id, cache=cache, retry=TEST_RETRY, **options
    )


def call(auth: ClientCredentialsAuth, url: str) -> tuple[int, str]:
    """One API call: its status and the token it finally carried."""
    with requests.Session() as session:
        response = session.get(url, auth=auth, timeout=PATIENCE)
    return response.status_code, sent_token(response)


def sent_token(response: requests.Response) -> str:
    header = response.request.headers.get("Authorization") or ""
    assert header.startswith("Bearer "), header
    return header[len("Bearer ") :]


def call_together(auths: list[ClientCredentialsAuth], url: str, threads: int) -> list[str]:
    """``threads`` API calls per auth object, released at once; the tokens they carried,
    every call having been answered 200."""
    callers = [auth for auth in auths for _ in range(threads)]
    start = threading.Barrier(len(callers))

    def one(auth: ClientCredentialsAuth) -> tuple[int, str]:
        start.wait(timeout=PATIENCE)
        return call(auth, url)

    with ThreadPoolExecutor(max_workers=len(callers)) as pool:
        outcomes = list(pool.map(one, callers))
    assert [status for status, _ in outcomes] == [200] * len(callers)
    return [token for _, token in outcomes]


def claims(token: str) -> dict[str, Any]:
    """A JWT's claims, unverified: the API verified them."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "bearer_m2m" and CACHE_FAILED in record.getMessage()
    ]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.02)


#: A process of the fleet: it builds its auth object, says "ready", waits for "go", then
#: makes ``threads`` API calls at once and prints their statuses and token digests.
WORKER = """
import hashlib, json, sys, threading
import requests
from bearer_m2m import ClientCredentialsAuth, FileCache, RedisCache

spec = json.loads(sys.stdin.readline())
cache = FileCache(spec["file"]) if "file" in spec else RedisCache(spec["redis"])
auth = ClientCredentialsAuth(
    spec["token_url"],
    client_id=spec["client_id"],
    client_secret=spec["client_secret"],
    audience=spec["audience"],
    cache=cache,
)
print("ready", flush=True)
sys.stdin.readline()
start = threading.Barrier(spec["threads"])
outcomes = []

def one():
    start.wait(timeout=60)
    with requests.Session() as session:
        response = session.get(spec["api_url"], auth=auth, timeout=60)
    sent = response.request.headers["Authorization"]
    outcomes.append([response.status_code, hashlib.sha256(sent[7:].encode()).hexdigest()])

threads = [threading.Thread(target=one) for _ in range(spec["threads"])]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps(outcomes), flush=True)
"""


def worker_spec(
    server: AuthorizationServer, api: ProtectedAPI, threads: int, **cache: str
) -> dict[str, Any]:
    """What a WORKER needs; ``cache`` is ``file=PATH`` or ``redis=URL``."""
    return {
        "token_url": server.token_url,
        "client_id": server.client.client_id,
        "client_secret": server.client.client_secret,
        "audience": api.audience,
        "api_url": api.url,
        "threads": threads,
        **cache,
    }


def run_workers(
    specs: list[dict[str, Any]], before_go: Callable[[], None] = lambda: None
) -> list[tuple[int, str]]:
    """Start one WORKER process per spec, wait until all are ready, run ``before_go``,
    release them together; every call's (status, token digest)."""
    with contextlib.ExitStack() as stack:
        processes = []
        for spec in specs:
            process = stack.enter_context(
                subprocess.Popen(
                    [sys.executable, "-c", WORKER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
            )
            stack.callback(_reap, process)
            processes.append(process)
            assert process.stdin is not None
            process.stdin.write(json.dumps(spec) + "\n")
            process.stdin.flush()
        for process in processes:
            assert process.stdout is not None
            ready = process.stdout.readline()
            assert ready == "ready\n", _failure(process)
        before_go()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes: list[tuple[int, str]] = []
        for process in processes:
            out, err = process.communicate(timeout=PATIENCE)
            assert process.returncode == 0, err
            outcomes += [(status, token) for status, token in json.loads(out)]
        return outcomes


def _reap(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=PATIENCE)


def _failure(process: subprocess.Popen[str]) -> str:
    _reap(process)
    return process.stderr.read() if process.stderr else ""


# -- fixtures and local helpers ----------------------------------------------------------


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "token.cache"


def entries(path: Path) -> dict[str, Any]:
    """The cache file's token entries (the file must be well-formed)."""
    document = json.loads(path.read_bytes())
    tokens: dict[str, Any] = document["tokens"]
    return tokens


def blobs(path: Path) -> list[bytes]:
    return [base64.b64decode(entry["blob"]) for entry in entries(path).values()]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class CountingFileCache(FileCache):
    """A FileCache that counts how often the token source reaches it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls = {"refresh_lock": 0, "load": 0, "store": 0}

    def refresh_lock(self, key: str) -> contextlib.AbstractContextManager[object]:
        self.calls["refresh_lock"] += 1
        return super().refresh_lock(key)

    def load(self, key: str) -> bytes | None:
        self.calls["load"] += 1
        return super().load(key)

    def store(self, key: str, blob: bytes, ttl: float) -> None:
        self.calls["store"] += 1
        super().store(key, blob, ttl)


# -- one token for the whole host --------------------------------------------------------


@pytest.mark.parametrize("shared_instance", [True, False], ids=["one-FileCache", "two-FileCaches"])
def test_two_auth_objects_sharing_a_file_make_one_token_request(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path, shared_instance: bool
) -> None:
    first_cache = FileCache(path)
    second_cache = first_cache if shared_instance else FileCache(path)
    first = make_auth(m2m_server, m2m_api, first_cache)
    second = make_auth(m2m_server, m2m_api, second_cache)
    m2m_server.delay_next(HOLD)  # whoever fetches holds the lock while the other waits

    tokens = call_together([first, second], m2m_api.url, threads=8)

    assert len(set(tokens)) == 1
    assert m2m_server.token_requests == 1
    assert m2m_api.requests == 16


def test_processes_one_after_another_share_the_token_in_the_file(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    spec = worker_spec(m2m_server, m2m_api, threads=1, file=str(path))

    [(first_status, first_token)] = run_workers([spec])
    assert m2m_server.token_requests == 1
    [(second_status, second_token)] = run_workers([spec])  # a later process, same host

    assert (first_status, second_status) == (200, 200)
    assert second_token == first_token
    assert m2m_server.token_requests == 1
    # ...and this process too.
    assert digest(make_auth(m2m_server, m2m_api, FileCache(path)).token()) == first_token
    assert m2m_server.token_requests == 1


def test_cold_start_of_processes_and_threads_makes_one_token_request(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    processes, threads = 4, 8
    spec = worker_spec(m2m_server, m2m_api, threads=threads, file=str(path))

    outcomes = run_workers([spec] * processes, before_go=lambda: m2m_server.delay_next(HOLD))

    assert [status for status, _ in outcomes] == [200] * processes * threads
    assert len({token for _, token in outcomes}) == 1
    assert m2m_server.token_requests == 1
    assert m2m_api.requests == processes * threads


#: gunicorn --preload, Celery prefork, multiprocessing's fork: the auth object and its
#: FileCache are made in the parent, and the forked workers use them.
FORKING = """
import hashlib, json, logging, os, sys, traceback
from bearer_m2m import ClientCredentialsAuth, FileCache, RedisCache

logging.basicConfig(level=logging.WARNING)
spec = json.loads(sys.stdin.readline())
auth = ClientCredentialsAuth(
    spec["token_url"],
    client_id=spec["client_id"],
    client_secret=spec["client_secret"],
    audience=spec["audience"],
    cache=FileCache(spec["file"]) if "file" in spec else RedisCache(spec["redis"]),
)
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.write(1, (hashlib.sha256(auth.token().encode()).hexdigest() + "\\n").encode())
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    children.append(pid)
sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children))
"""


def run_forked(spec: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """Run FORKING: an auth object made in a parent, used by three forked children."""
    return subprocess.run(
        [sys.executable, "-c", FORKING],
        input=json.dumps(spec) + "\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=PATIENCE,
        check=False,
    )


def test_forked_workers_share_the_file_cache_made_before_the_fork(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    m2m_server.delay_next(HOLD)

    forked = run_forked(worker_spec(m2m_server, m2m_api, threads=1, file=str(path)))

    assert forked.returncode == 0, forked.stderr
    assert CACHE_FAILED not in forked.stderr, forked.stderr  # the workers used the cache...
    assert m2m_server.token_requests == 1  # ...so only one of them fetched
    assert len(set(forked.stdout.split())) == 1


# -- the file itself ---------------------------------------------------------------------


def test_the_file_is_private_and_replaced_atomically(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    path.write_text('{"someone": "else"}')
    path.chmod(0o644)
    other_client = m2m_server.register_client()
    m2m_server.add_audience("https://other.example")  # another API of the tenant
    auths = [
        make_auth(m2m_server, m2m_api, FileCache(path)),
        make_auth(m2m_server, m2m_api, FileCache(path), client=other_client),
        make_auth(m2m_server, m2m_api, FileCache(path), audience="https://other.example"),
        make_auth(m2m_server, m2m_api, FileCache(path), organization="org_one"),
    ]

    for auth in auths:
        auth.token()

    assert m2m_server.token_requests == 4
    assert len(entries(path)) == 4  # each write kept the others' tokens
    assert mode_of(path) == 0o600
    assert mode_of(path.with_name("token.cache.lock")) == 0o600
    assert sorted(os.listdir(path.parent)) == ["token.cache", "token.cache.lock"]  # no temp files


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = FileCache(path)
    cache.store("bearer_m2m:one", b"first blob", 60)
    before = path.read_bytes()

    def full_disk(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        cache.store("bearer_m2m:two", b"second blob", 60)

    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["token.cache"]
    assert cache.load("bearer_m2m:one") == b"first blob"


def test_readers_never_see_a_partial_file(path: Path) -> None:
    writer_cache, reader_cache = FileCache(path), FileCache(path)
    writer_cache.store("bearer_m2m:small", b"x", 60)
    stop = threading.Event()
    seen: list[bytes | None] = []
    broken: list[bytes] = []

    def read() -> None:
        while not stop.is_set():
            raw = path.read_bytes()
            try:
                json.loads(raw)
            except ValueError:
                broken.append(raw)
            seen.append(reader_cache.load("bearer_m2m:small"))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for round_ in range(80):  # the file grows and shrinks by tens of kilobytes
            big = os.urandom(20_000) if round_ % 2 else b"y"
            writer_cache.store("bearer_m2m:big", big, 60)
    finally:
        stop.set()
        reader.join(timeout=PATIENCE)

    assert seen, "the reader never ran"
    assert broken == []
    assert set(seen) == {b"x"}
    assert sorted(os.listdir(path.parent)) == ["token.cache"]


#: Ways a cache file goes bad; each gets the good file and our entry's key.
DAMAGES: dict[str, Callable[[bytes, str], bytes]] = {
    "empty": lambda good, key: b"",
    "truncated": lambda good, key: good[: len(good) // 2],
    "one-byte-short": lambda good, key: good[:-1],
    "binary": lambda good, key: bytes(range(256)) * 8,
    "foreign-json": lambda good, key: b'{"tokens": "mine", "hello": [1, 2, 3]}',
    "json-list": lambda good, key: b"[1, 2, 3]",
    "entry-not-an-object": lambda good, key: _file_with(key, "x"),
    "blob-not-base64": lambda good, key: _file_with(
        key, {"blob": "%%%", "until": time.time() + 3600}
    ),
    "until-not-a-number": lambda good, key: _file_with(key, {"blob": "YmxvYg==", "until": "later"}),
    "random-blob": lambda good, key: _file_with(
        key,
        {"blob": base64.b64encode(b"bm1" + os.urandom(64)).decode(), "until": time.time() + 3600},
    ),
    "blob-cut-short": lambda good, key: _file_with(
        key,
        {"blob": base64.b64encode(_blob_of(good, key)[:-5]).decode(), "until": time.time() + 3600},
    ),
    "deeply-nested-json": lambda good, key: b"[" * 100_000,
}


def _file_with(key: str, entry: object) -> bytes:
    return json.dumps({"bearer_m2m": 1, "tokens": {key: entry}}).encode()


def _blob_of(good: bytes, key: str) -> bytes:
    return base64.b64decode(json.loads(good)["tokens"][key]["blob"])


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_a_damaged_or_foreign_file_is_ignored_and_rewritten(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    path: Path,
    damage: Callable[[bytes, str], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    first = make_auth(m2m_server, m2m_api, FileCache(path))
    old_token = first.token()
    [key] = entries(path)
    path.write_bytes(damage(path.read_bytes(), key))

    status, token = call(make_auth(m2m_server, m2m_api, FileCache(path)), m2m_api.url)

    assert status == 200
    assert token != old_token  # nothing was made of the damaged file...
    assert m2m_server.token_requests == 2
    assert list(entries(path)) == [key]  # ...which was rewritten...
    assert mode_of(path) == 0o600
    assert make_auth(m2m_server, m2m_api, FileCache(path)).token() == token  # ...and serves
    assert m2m_server.token_requests == 2
    assert cache_warnings(caplog) == []  # a bad file is a miss, not a failure


def test_an_unusable_path_falls_back_to_fetching_with_one_warning(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    (tmp_path / "not-a-directory").write_text("")
    auth = make_auth(m2m_server, m2m_api, FileCache(tmp_path / "not-a-directory" / "token.cache"))

    assert call(auth, m2m_api.url)[0] == 200
    auth.invalidate()
    assert call(auth, m2m_api.url)[0] == 200

    assert m2m_server.token_requests == 2
    [warning] = cache_warnings(caplog)
    assert "failed" in warning
    assert "not-a-directory" in warning  # which cache: its repr


# -- locks -------------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from filelock import FileLock
lock = FileLock(sys.argv[1])
lock.acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_lock_held_by_a_killed_process_blocks_nobody(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    lock_path = str(path) + ".lock"
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, lock_path], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "locked\n"
            with pytest.raises(Timeout):  # the lock really is held
                FileLock(lock_path).acquire(timeout=0.05)
            holder.send_signal(signal.SIGKILL)
        finally:
            _reap(holder)
    assert holder.returncode == -signal.SIGKILL
    # Were the lock still held, waiting for it would give up after 3 s with a warning,
    # and the token would not be stored.
    auth = make_auth(m2m_server, m2m_api, FileCache(path, lock_timeout=3.0))

    assert call(auth, m2m_api.url)[0] == 200

    assert cache_warnings(caplog) == []
    assert len(entries(path)) == 1


# -- encrypted and bound to the client -----------------------------------------------------


def test_the_token_on_disk_is_sealed(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    secret = m2m_server.client.client_secret
    token = make_auth(m2m_server, m2m_api, FileCache(path)).token()

    raw = path.read_bytes()
    [blob] = blobs(path)
    for readable in (raw, blob):
        for part in (token, *token.split("."), secret, m2m_server.client.client_id):
            assert part.encode() not in readable
    # AES-GCM under a key derived (HKDF) from the secret, bound to the entry's name:
    # it opens with the secret, and with nothing else.
    [name] = entries(path)
    nonce, sealed = blob[3:15], blob[15:]
    assert blob.startswith(b"bm1")
    assert token.encode() in AESGCM(_hkdf(secret.encode())).decrypt(nonce, sealed, name.encode())
    with pytest.raises(InvalidTag):
        AESGCM(_hkdf(b"not the secret")).decrypt(nonce, sealed, name.encode())
    with pytest.raises(InvalidTag):
        AESGCM(_hkdf(secret.encode())).decrypt(nonce, sealed, b"bearer_m2m:another-entry")


def _hkdf(material: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bearer_m2m token cache v1"
    ).derive(material)


def test_the_wrong_secret_never_gets_the_cached_token(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    good = make_auth(m2m_server, m2m_api, FileCache(path)).token()
    impostor = make_auth(m2m_server, m2m_api, FileCache(path), client_secret="guessed")

    with pytest.raises(TokenRequestRejected):  # it had to ask the server, which said no
        impostor.token()

    assert m2m_server.token_requests == 2
    assert make_auth(m2m_server, m2m_api, FileCache(path)).token() == good
    assert m2m_server.token_requests == 2


def test_other_clients_audiences_and_organizations_get_their_own_tokens(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    other_client = m2m_server.register_client()
    m2m_server.add_audience("https://other.example")  # another API of the tenant
    kinds: dict[str, Callable[[], ClientCredentialsAuth]] = {
        "main": lambda: make_auth(m2m_server, m2m_api, FileCache(path)),
        "other client": lambda: make_auth(
            m2m_server, m2m_api, FileCache(path), client=other_client
        ),
        "other audience": lambda: make_auth(
            m2m_server, m2m_api, FileCache(path), audience="https://other.example"
        ),
        "organization": lambda: make_auth(
            m2m_server, m2m_api, FileCache(path), organization="org_blue"
        ),
    }

    tokens = {kind: make().token() for kind, make in kinds.items()}

    assert len(set(tokens.values())) == 4
    assert m2m_server.token_requests == 4
    assert claims(tokens["main"])["client_id"] == m2m_server.client.client_id
    assert "org_id" not in claims(tokens["main"])
    assert claims(tokens["other client"])["client_id"] == other_client.client_id
    assert claims(tokens["other audience"])["aud"] in (
        "https://other.example",
        ["https://other.example"],
    )
    assert claims(tokens["organization"])["org_id"] == "org_blue"
    # Each kind's next process finds its own token, and only its own.
    assert {kind: make().token() for kind, make in kinds.items()} == tokens
    assert m2m_server.token_requests == 4


def test_a_blob_copied_under_another_clients_key_does_not_open(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    shared_key = os.urandom(32)  # both clients' caches use it: only the binding keeps them apart
    other_client = m2m_server.register_client()
    mine = make_auth(m2m_server, m2m_api, FileCache(path, encryption_key=shared_key)).token()
    [my_key] = entries(path)
    make_auth(
        m2m_server, m2m_api, FileCache(path, encryption_key=shared_key), client=other_client
    ).token()
    document = json.loads(path.read_bytes())
    [their_key] = set(document["tokens"]) - {my_key}
    document["tokens"][their_key] = document["tokens"][my_key]
    path.write_text(json.dumps(document))

    theirs = make_auth(
        m2m_server, m2m_api, FileCache(path, encryption_key=shared_key), client=other_client
    ).token()

    assert theirs != mine
    assert claims(theirs)["client_id"] == other_client.client_id
    assert m2m_server.token_requests == 3


def test_an_explicit_encryption_key_is_shared_and_a_wrong_one_misses(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bearer_m2m")
    key, wrong = os.urandom(32), os.urandom(32)

    first = make_auth(m2m_server, m2m_api, FileCache(path, encryption_key=key)).token()
    same = make_auth(m2m_server, m2m_api, FileCache(path, encryption_key=key)).token()
    assert same == first
    assert m2m_server.token_requests == 1

    other = make_auth(m2m_server, m2m_api, FileCache(path, encryption_key=wrong)).token()
    assert other != first
    assert m2m_server.token_requests == 2
    derived = make_auth(m2m_server, m2m_api, FileCache(path)).token()  # the secret's key
    assert derived not in (first, other)
    assert m2m_server.token_requests == 3
    assert cache_warnings(caplog) == []  # a key that does not fit is a miss, not a failure


# -- time ----------------------------------------------------------------------------------


def test_expired_entries_are_neither_served_nor_kept(path: Path) -> None:
    cache = FileCache(path)
    cache.store("bearer_m2m:old", b"old blob", -1.0)  # its time is up
    assert list(entries(path)) == ["bearer_m2m:old"]

    assert cache.load("bearer_m2m:old") is None
    cache.store("bearer_m2m:new", b"new blob", 3600.0)
    assert cache.load("bearer_m2m:new") == b"new blob"
    assert list(entries(path)) == ["bearer_m2m:new"]  # the next write dropped it


class _Clock:
    """``time`` as bearer_m2m.caches._shared sees it: the real one, moved ``ahead`` seconds."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead


def test_a_token_due_for_refresh_is_not_adopted(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(bearer_m2m.caches._shared, "time", clock)
    old = make_auth(m2m_server, m2m_api, FileCache(path)).token()  # lives an hour
    # 59 minutes on, the file still holds it (its entry ends 10 s before the token
    # does), but its last minute is when it should be refreshed, not adopted.
    clock.ahead = 3600 - 59

    new = make_auth(m2m_server, m2m_api, FileCache(path)).token()

    assert new != old
    assert m2m_server.token_requests == 2


def test_an_expired_token_in_the_file_is_not_adopted(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    short = m2m_server.register_client(token_lifetime=1)
    first = make_auth(m2m_server, m2m_api, FileCache(path), client=short)
    old = first.token()
    time.sleep(1.1)  # the token, and its entry, expire

    status, new = call(make_auth(m2m_server, m2m_api, FileCache(path), client=short), m2m_api.url)

    assert status == 200
    assert new != old
    assert m2m_server.token_requests == 2
    assert call(first, m2m_api.url) == (200, new)  # the first one's next fetch adopts it
    assert m2m_server.token_requests == 2


def test_a_refresh_by_one_process_is_adopted_by_another(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    short = m2m_server.register_client(token_lifetime=2)
    first = make_auth(m2m_server, m2m_api, FileCache(path), client=short)
    second = make_auth(m2m_server, m2m_api, FileCache(path), client=short)
    old = first.token()
    assert second.token() == old
    assert m2m_server.token_requests == 1

    # The first refreshes ahead of expiry, in the background, while still handing out `old`.
    wait_for(lambda: first.token() != old, "the first auth object's refresh")
    new = first.token()
    assert m2m_server.token_requests == 2
    # The second one's refresh adopts what the first one stored.
    wait_for(lambda: second.token() != old, "the second auth object's refresh")

    assert second.token() == new
    assert m2m_server.token_requests == 2
    assert call(second, m2m_api.url) == (200, new)


# -- the cached path and rejected tokens ---------------------------------------------------


def test_the_cached_path_does_not_touch_the_file(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    cache = CountingFileCache(path)
    auth = make_auth(m2m_server, m2m_api, cache)
    first = call(auth, m2m_api.url)
    assert cache.calls == {"refresh_lock": 1, "load": 1, "store": 1}

    path.unlink()
    later = [call(auth, m2m_api.url) for _ in range(30)]

    assert later == [first] * 30
    assert cache.calls == {"refresh_lock": 1, "load": 1, "store": 1}
    assert not path.exists()
    assert m2m_server.token_requests == 1


def test_a_rejected_token_is_not_adopted_again(
    m2m_server: AuthorizationServer, m2m_api: ProtectedAPI, path: Path
) -> None:
    first = make_auth(m2m_server, m2m_api, FileCache(path))
    second = make_auth(m2m_server, m2m_api, FileCache(path))
    old = first.token()
    assert second.token() == old
    m2m_server.revoke_all()

    with requests.Session() as session:
        response = session.get(m2m_api.url, auth=first, timeout=PATIENCE)
    new = sent_token(response)

    assert response.status_code == 200
    assert [earlier.status_code for earlier in response.history] == [401]
    assert new != old
    assert m2m_server.token_requests == 2
    # The file holds the new token: a new process adopts it...
    assert make_auth(m2m_server, m2m_api, FileCache(path)).token() == new
    # ...and so does the second one when the API refuses its old token.
    assert call(second, m2m_api.url) == (200, new)
    assert m2m_server.token_requests == 2


# -- nothing leaks -------------------------------------------------------------------------


def test_no_secret_or_token_in_reprs_or_logs(
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    path: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = m2m_server.client.client_secret
    cache = FileCache(path)
    auth = make_auth(m2m_server, m2m_api, cache)
    tokens = {call(auth, m2m_api.url)[1], make_auth(m2m_server, m2m_api, FileCache(path)).token()}
    m2m_server.revoke_all()
    tokens.add(call(auth, m2m_api.url)[1])  # a 401 and a replay
    (tmp_path / "blocked").write_text("")
    broken = make_auth(m2m_server, m2m_api, FileCache(tmp_path / "blocked" / "token.cache"))
    tokens.add(broken.token())  # the cache fails: a warning
    assert len(tokens) == 3
    assert caplog.records

    shown = [
        repr(cache),
        repr(auth),
        str(auth),
        repr(broken),
        *(r.getMessage() for r in caplog.records),
    ]
    for text in [*shown, caplog.text]:
        for forbidden in (secret, *tokens):
            assert forbidden not in text


@pytest.mark.parametrize("key", ["a text key", b"short"])
def test_an_unusable_encryption_key_is_a_configuration_error(key: object, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="at least 16 bytes"):
        ClientCredentialsAuth(
            "https://t.example/token",
            client_id="c",
            client_secret="s",
            cache=FileCache(tmp_path / "t.cache", encryption_key=key),  # type: ignore[arg-type]
        )
