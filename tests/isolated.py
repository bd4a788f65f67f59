"""Run a snippet in a fresh interpreter: what a process imports, and in which order,
can only be seen from one that has imported nothing yet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Prepended to every snippet: ``report(value)`` hands a JSON value back to the test.
_PRELUDE = """
import json as _json, sys as _sys
def report(value):
    print("REPORT " + _json.dumps(value), flush=True)
"""


def run_isolated(code: str, *args: str, helpers: str = "", timeout: float = 120.0) -> Any:
    """Run ``helpers`` then ``code`` (``sys.argv[1:]`` is ``args``) in a new interpreter of
    this venv, with the checkout first on the path; what it ``report()``-ed, or an
    AssertionError with its output if it failed."""
    source = _PRELUDE + textwrap.dedent(helpers) + textwrap.dedent(code)
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="error")
    done = subprocess.run(
        [sys.executable, "-c", source, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    reports = [
        line.removeprefix("REPORT ") for line in done.stdout.splitlines() if line.startswith("REPORT ")
    ]
    assert done.returncode == 0 and reports, (
        f"the snippet failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    )
    return json.loads(reports[-1])
