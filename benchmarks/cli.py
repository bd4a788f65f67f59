"""What one ``bearer-m2m token`` costs a shell script when the token is cached (issue 11).

Wall time of whole processes, run in turns so that a busy machine slows them all
alike, median over ``--runs``:

* floor: ``python -c "import bearer_m2m"``, the interpreter's start plus the
  package's (lazy) import, which no invocation can beat;
* the floor plus what any cached path must import (argparse, json, hashlib and
  cryptography's AES-GCM and HKDF, which open the sealed file): the best a
  cached invocation could do, whatever else it avoids;
* the floor plus the modules ``token``'s fast path imports (the command, the
  settings, the configuration, the sealed cache): what is import, not work;
* ``python -m bearer_m2m --version``: the command's own start-up;
* ``python -m bearer_m2m token`` (and ``token --json``), with the token already in
  the cache: what each call of a script costs once the first one fetched; it reads
  the cache file without building a client (no requests, Authlib or filelock);
* ``python -m bearer_m2m token --no-cache``: a token request per call, for scale.

The token endpoint is the package's local authorization server on 127.0.0.1 in
this process. Byte code is compiled once, by a warm-up run, into a temporary
cache every child shares (``PYTHONPYCACHEPREFIX``), and ``XDG_CACHE_HOME`` is a
temporary directory. Target: the cached invocation at most 30 ms over the floor.
Nothing is asserted.

Run from the repository root::

    python benchmarks/cli.py            # 15 runs of each
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bearer_m2m.testing import AuthorizationServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MS = 30.0
PYCACHE = tempfile.mkdtemp(prefix="bearer-m2m-cli-pycache-")
CACHE_HOME = tempfile.mkdtemp(prefix="bearer-m2m-cli-cache-")
#: What reading a sealed token file needs at the least: no HTTP client, no JOSE, no lock.
CACHED_PATH_IMPORTS = (
    "import bearer_m2m, argparse, base64, hashlib, json\n"
    "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n"
    "from cryptography.hazmat.primitives.kdf.hkdf import HKDF"
)
#: The modules ``token``'s fast path imports: the command and its cache (the settings,
#: the configuration and the sealed cache come with it).
FAST_PATH_IMPORTS = "import bearer_m2m._cli, bearer_m2m._cli_cache"
CACHED_ROW = "bearer-m2m token (cached)"


def child_env(server: AuthorizationServer) -> dict[str, str]:
    """The checkout first on the path; the server's client as the command's settings."""
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEARER_M2M_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return {
        **env,
        "PYTHONPATH": path,
        "PYTHONPYCACHEPREFIX": PYCACHE,
        "XDG_CACHE_HOME": CACHE_HOME,
        "BEARER_M2M_TOKEN_URL": server.token_url,
        "BEARER_M2M_CLIENT_ID": server.client.client_id,
        "BEARER_M2M_CLIENT_SECRET": server.client.client_secret,
    }


def rows(python: str) -> dict[str, list[str]]:
    command = [python, "-m", "bearer_m2m"]
    return {
        "floor: python -c 'import bearer_m2m'": [python, "-c", "import bearer_m2m"],
        "floor + a cached path's own imports": [python, "-c", CACHED_PATH_IMPORTS],
        "floor + the fast path's modules": [python, "-c", FAST_PATH_IMPORTS],
        "bearer-m2m --version": [*command, "--version"],
        CACHED_ROW: [*command, "token"],
        "bearer-m2m token --json (cached)": [*command, "token", "--json"],
        "bearer-m2m token --no-cache": [*command, "token", "--no-cache"],
    }


def wall_ms(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return (time.perf_counter() - started) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with AuthorizationServer() as server:
        env = child_env(server)
        commands = rows(args.python)
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm-up: byte code, disk cache, the cached token
            wall_ms(argv, env)
        requests_before = server.token_requests
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(wall_ms(argv, env))
        token_requests = server.token_requests - requests_before
    floor = statistics.median(samples[next(iter(samples))])
    print(f"bearer-m2m command start-up — Python {sys.version.split()[0]}, {args.runs} runs each")
    print(f"  {'':<40}{'median ms':>10}{'min ms':>9}{'+ms':>9}")
    for name, values in samples.items():
        extra = statistics.median(values) - floor
        line = f"  {name:<40}{statistics.median(values):>10.1f}{min(values):>9.1f}{extra:>+9.1f}"
        if name == CACHED_ROW:
            verdict = "met" if extra <= TARGET_MS else "MISSED"
            line += f"   target ≤ +{TARGET_MS:.0f} ms: {verdict}"
        print(line)
    print(
        f"  token requests during the timed runs: {token_requests} "
        f"(the --no-cache row's {args.runs}; the cached rows add none)"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for directory in (PYCACHE, CACHE_HOME):
            shutil.rmtree(directory, ignore_errors=True)
