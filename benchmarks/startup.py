"""Start-up cost: what importing and using bearer_m2m adds to a process, and what its
pytest plugin adds to a test run that uses none of its fixtures.

Every figure comes from fresh interpreters, run in turns so that a busy machine
slows them all alike, and is compared with a floor measured in the same run:

* imports: the time of the statement inside the child (``perf_counter`` around it),
  median over ``--runs`` children. The floor imports what the core needs anyway:
  requests, ``authlib.integrations.requests_client`` and joserfc. Each row also
  names the extras (httpx, httpx2, aiohttp, niquests, redis) the process ended up
  with: a requests user must have none, even with all of them installed.
* pytest: the wall time of ``python -m pytest`` on a one-test project, with the
  plugin (as pytest loads it from the ``pytest11`` entry point) and without it
  (``-p no:bearer_m2m``).

Byte code is compiled once, by a warm-up run, into a temporary cache that every
child shares (``PYTHONPYCACHEPREFIX``), so no row pays for compiling.

Targets (issue 9): the requests rows at most 15 ms over the floor; the plugin at
most 10 ms over a run without it. Nothing is asserted.

Run from the repository root::

    python benchmarks/startup.py                      # this interpreter, 21 runs each
    python benchmarks/startup.py --python /tmp/core/bin/python   # a venv with the core only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXTRAS = ("httpx", "httpx2", "aiohttp", "niquests", "redis")
TARGET_IMPORT_MS = 15.0
TARGET_PLUGIN_MS = 10.0

#: Run in the child around the statement under test; prints one JSON line.
_CHILD = """
import sys, time
started = time.perf_counter()
{statement}
elapsed = time.perf_counter() - started
import json
print(json.dumps({{"ms": elapsed * 1000, "modules": len(sys.modules),
                  "extras": [m for m in {extras!r} if m in sys.modules]}}))
"""

FLOOR = "import requests, authlib.integrations.requests_client, joserfc"
_BUILD = (
    "from bearer_m2m import ClientCredentialsAuth\n"
    "auth = ClientCredentialsAuth('https://tenant.example/oauth/token',"
    " client_id='c', client_secret='s', audience='https://api.example')"
)
#: The auth step of one requests call, with a token put in the cache as a fetch would
#: (no network: the figure is start-up, not a token request).
_USE = (
    _BUILD + "\nimport requests\n"
    "from bearer_m2m._policy import RefreshPolicy\n"
    "from bearer_m2m._tokens import GrantedToken\n"
    "auth._source._cached = RefreshPolicy().schedule("
    "GrantedToken('tok', 3600.0), time.monotonic())\n"
    "prepared = auth(requests.Request('GET', 'https://api.example/x').prepare())\n"
    "assert prepared.headers['Authorization'] == 'Bearer tok'"
)
IMPORT_ROWS = (
    ("floor: requests + authlib requests_client + joserfc", FLOOR),
    ("import bearer_m2m", "import bearer_m2m"),
    ("import + ClientCredentialsAuth(...)", _BUILD),
    ("import + build + a requests call's auth step", _USE),
)
#: The rows the import target applies to.
TARGET_ROWS = frozenset({IMPORT_ROWS[2][0], IMPORT_ROWS[3][0]})


@dataclass
class Row:
    name: str
    samples: list[float] = field(default_factory=list)
    modules: int | None = None  # sys.modules at the end (import rows only)
    extras: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


#: Byte code for every child, compiled by the warm-up run: without it the checkout's
#: modules would be compiled in every child (PYTHONDONTWRITEBYTECODE, a read-only tree)
#: while installed packages come with theirs.
PYCACHE = tempfile.mkdtemp(prefix="bearer-m2m-startup-pycache-")


def child_env() -> dict[str, str]:
    """The checkout first on the path, so the figures are for this tree."""
    path = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path, PYTHONPYCACHEPREFIX=PYCACHE)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_import(python: str, statement: str, row: Row) -> None:
    code = _CHILD.format(statement=statement, extras=EXTRAS)
    done = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=child_env(), check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    row.samples.append(result["ms"])
    row.modules, row.extras = result["modules"], result["extras"]


def time_pytest(python: str, project: str, row: Row, *options: str) -> None:
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, project]
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, env=child_env(), check=True, cwd=project)
    row.samples.append((time.perf_counter() - started) * 1000)


def plugin_is_registered(python: str) -> bool:
    code = (
        "import importlib.metadata as m; "
        "print(any(e.name == 'bearer_m2m' for e in m.entry_points(group='pytest11')))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def measure_imports(python: str, runs: int) -> list[Row]:
    rows = [Row(name) for name, _ in IMPORT_ROWS]
    for _, statement in IMPORT_ROWS:  # warm-up: byte code, disk cache
        time_import(python, statement, Row("warm-up"))
    for _ in range(runs):
        for row, (_, statement) in zip(rows, IMPORT_ROWS, strict=True):
            time_import(python, statement, row)
    return rows


def measure_pytest(python: str, runs: int) -> tuple[Row, Row]:
    without, with_plugin = Row("pytest -p no:bearer_m2m (floor)"), Row("pytest with the plugin")
    with tempfile.TemporaryDirectory() as project:
        with open(os.path.join(project, "test_unrelated.py"), "w") as test:
            test.write("def test_nothing_to_do_with_tokens():\n    assert 1 + 1 == 2\n")
        time_pytest(python, project, Row("warm-up"))
        for _ in range(runs):
            time_pytest(python, project, without, "-p", "no:bearer_m2m")
            time_pytest(python, project, with_plugin)
    return without, with_plugin


def report(title: str, rows: list[Row], target_ms: float, target_rows: set[str]) -> None:
    floor = rows[0]
    width = max(len(row.name) for row in rows) + 2
    print(f"\n{title}")
    print(f"  {'':<{width}}{'median ms':>10}{'+ms':>9}{'x floor':>9}{'modules':>9}  extras")
    for row in rows:
        extra = row.median - floor.median
        line = (
            f"  {row.name:<{width}}{row.median:>10.1f}"
            f"{'—' if row is floor else f'{extra:+.1f}':>9}"
            f"{row.median / floor.median:>8.2f}x{'—' if row.modules is None else row.modules:>9}"
            f"  {', '.join(row.extras) or '—'}"
        )
        if row.name in target_rows:
            verdict = "met" if extra <= target_ms else "MISSED"
            line += f"   target ≤ +{target_ms:.0f} ms: {verdict}"
        print(line)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    version = subprocess.run(
        [args.python, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    installed = subprocess.run(
        [
            args.python,
            "-c",
            "import importlib.util as u; "
            f"print(', '.join(m for m in {EXTRAS!r} if u.find_spec(m)) or 'none')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"bearer_m2m start-up — Python {version} ({args.python}); extras installed: "
        f"{installed}; median of {args.runs} fresh interpreters per row, rows in turns"
    )
    started = time.perf_counter()
    rows = measure_imports(args.python, args.runs)
    report("imports (time of the statement inside the child)", rows, TARGET_IMPORT_MS, TARGET_ROWS)
    if plugin_is_registered(args.python):
        without, with_plugin = measure_pytest(args.python, args.runs)
        report(
            "pytest on a one-test project (wall time of the run)",
            [without, with_plugin],
            TARGET_PLUGIN_MS,
            {with_plugin.name},
        )
    else:
        print("\npytest: skipped (the plugin is not registered: install the package)")
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s")
    shutil.rmtree(PYCACHE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
