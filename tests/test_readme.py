"""Every Python snippet of the README runs as pasted, against the local servers.

Each ```python block is written to a file and run in a fresh interpreter (with a timeout, so a
snippet that waits on the network fails instead of hanging CI). What a reader would change
before pasting (their tenant's URL, their credentials in the environment, their key files) is
mapped explicitly to this machine's stand-ins in ``PLACEHOLDERS`` and ``environment``; nothing
else of the snippet is touched. A block that defines ``test_`` functions is a test module and is
run with pytest, its fixtures coming from the package's plugin.

A block that cannot run on its own is marked just before its fence with
``<!-- fragment: why -->``; those are only compiled (no top-level ``await``, no syntax slip),
and there may be at most ``MAX_FRAGMENTS`` of them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import bearer_m2m
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI, make_self_signed_certificate
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The bearer_m2m the snippets import: the one these tests import, wherever it is installed.
PACKAGE_PARENT = Path(bearer_m2m.__file__).resolve().parents[1]
#: A snippet talks to loopback servers only; anything slower than this is stuck, not slow.
SNIPPET_TIMEOUT = 120
MAX_FRAGMENTS = 2
#: The API identifier of the README's examples (the intro's ``audience=``).
API_AUDIENCE = "https://api.example.com"

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
FRAGMENT = re.compile(r"<!--\s*fragment:\s*(.*?)\s*-->\s*$", re.DOTALL)


@dataclass(frozen=True)
class Snippet:
    line: int  # of the opening fence, 1-based
    code: str
    fragment_reason: str | None  # None: it must run

    @property
    def is_test_module(self) -> bool:
        return re.search(r"^def test_", self.code, re.MULTILINE) is not None


def readme_snippets(text: str) -> list[Snippet]:
    """The ```python blocks of ``text``, each with the fragment mark just before it, if any."""
    snippets = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marked = FRAGMENT.search(before)
        snippets.append(
            Snippet(
                line=text.count("\n", 0, match.start()) + 1,
                code=match.group(1),
                fragment_reason=marked.group(1) if marked else None,
            )
        )
    return snippets


SNIPPETS = readme_snippets(README.read_text())
RUNNABLE = [s for s in SNIPPETS if s.fragment_reason is None]
FRAGMENTS = [s for s in SNIPPETS if s.fragment_reason is not None]


@dataclass(frozen=True)
class Machine:
    """The local stand-ins for what the README's reader has: a tenant, an API, Redis."""

    server: AuthorizationServer
    api: ProtectedAPI
    redis_url: str


@pytest.fixture(scope="module")
def machine() -> Iterator[Machine]:
    with (
        AuthorizationServer() as server,
        ProtectedAPI(server, API_AUDIENCE) as api,
        RedisServer() as redis_server,
    ):
        yield Machine(server, api, redis_server.url)


def placeholders(machine: Machine, directory: Path) -> dict[str, str]:
    """README text -> this machine's value; the reader's own URLs, hosts and file paths."""
    return {
        "https://YOUR_TENANT.eu.auth0.com/oauth/token": machine.server.token_url,
        "https://my-tenant.us.auth0.com/oauth/token": machine.server.token_url,
        "https://api.example.com/things": machine.api.url + "things",
        "https://login.example.com/": machine.server.issuer,
        "/run/secrets/m2m-key.pem": str(directory / "m2m-key.pem"),
        "/run/app/token.cache": str(directory / "token.cache"),
        "redis://cache:6379/0": machine.redis_url,
    }


def environment(machine: Machine) -> dict[str, str]:
    """The variables the snippets read: the server's client, under every name they use."""
    client = machine.server.client
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("BEARER_M2M_", "PYTEST_", "COVERAGE_"))
    }
    return {
        **inherited,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PACKAGE_PARENT), inherited.get("PYTHONPATH")])
        ),
        "M2M_CLIENT_ID": client.client_id,
        "M2M_CLIENT_SECRET": client.client_secret,
        "AUTH0_CLIENT_ID": client.client_id,
        "AUTH0_CLIENT_SECRET": client.client_secret,
        "BEARER_M2M_TOKEN_URL": machine.server.token_url,
        "BEARER_M2M_CLIENT_ID": client.client_id,
        "BEARER_M2M_CLIENT_SECRET": client.client_secret,
        "BEARER_M2M_AUDIENCE": API_AUDIENCE,
    }


def write_key_files(directory: Path) -> None:
    """The key and certificate files the snippets name, made fresh: the constructors read
    and check them, so they must be real."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for name in ("m2m-key.pem", "key.pem"):
        (directory / name).write_bytes(pem)
    certificate = make_self_signed_certificate(directory, "readme-client")
    (directory / "client.crt").write_bytes(Path(certificate.cert_path).read_bytes())
    (directory / "client.key").write_bytes(Path(certificate.key_path).read_bytes())


def localised(code: str, mapping: dict[str, str]) -> str:
    for placeholder in sorted(mapping, key=len, reverse=True):
        code = code.replace(placeholder, mapping[placeholder])
    return code


def run_snippet(
    snippet: Snippet, machine: Machine, directory: Path
) -> subprocess.CompletedProcess[str]:
    write_key_files(directory)
    script = directory / "snippet.py"
    if snippet.is_test_module:
        script = directory / "test_snippet.py"
    script.write_text(localised(snippet.code, placeholders(machine, directory)))
    command = [sys.executable, str(script)]
    if snippet.is_test_module:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", script.name]
    return subprocess.run(
        command,
        cwd=directory,
        env=environment(machine),
        capture_output=True,
        text=True,
        timeout=SNIPPET_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("snippet", RUNNABLE, ids=lambda s: f"README.md:{s.line}")
def test_the_snippet_runs_as_pasted(snippet: Snippet, machine: Machine, tmp_path: Path) -> None:
    machine.server.reset()
    machine.api.reset()
    done = run_snippet(snippet, machine, tmp_path)
    assert done.returncode == 0, (
        f"README.md:{snippet.line}\n{done.stdout[-2000:]}{done.stderr[-3000:]}"
    )
    if snippet.is_test_module:
        tests = len(re.findall(r"^def test_", snippet.code, re.MULTILINE))
        assert f"{tests} passed" in done.stdout
    # Whatever a snippet sent to the API was accepted: its token was for the API.
    assert machine.api.unauthorized == 0


@pytest.mark.parametrize("snippet", SNIPPETS, ids=lambda s: f"README.md:{s.line}")
def test_every_snippet_compiles(snippet: Snippet) -> None:
    """Fragments too: a top-level ``await`` or a slip of syntax is caught even where the
    snippet cannot run."""
    compile(snippet.code, f"README.md:{snippet.line}", "exec")


def test_few_snippets_are_fragments_and_each_says_why() -> None:
    assert len(FRAGMENTS) <= MAX_FRAGMENTS, [f"README.md:{s.line}" for s in FRAGMENTS]
    assert all(s.fragment_reason for s in FRAGMENTS)
    assert len(RUNNABLE) >= 6  # the README was read: its examples are here


def test_every_placeholder_mapped_is_in_the_readme(machine: Machine, tmp_path: Path) -> None:
    """A mapping no snippet uses any more means the README changed under this test."""
    code = "".join(s.code for s in RUNNABLE)
    unused = [p for p in placeholders(machine, tmp_path) if p not in code]
    assert unused == []


def test_the_fragment_mark_is_read_only_right_before_a_fence() -> None:
    text = (
        "<!-- fragment: needs a Redis server -->\n```python\nx = 1\n```\n"
        "<!-- fragment: too far -->\n\nSome prose.\n```python\ny = 2\n```\n"
    )
    first, second = readme_snippets(text)
    assert (first.fragment_reason, first.code, first.line) == ("needs a Redis server", "x = 1\n", 2)
    assert second.fragment_reason is None


def test_ci_runs_the_readme_test_command_verbatim_then_the_coverage_gate() -> None:
    command = 'python -m pip install -e ".[test]" && python -m pytest'
    readme = README.read_text()
    assert f"```sh\n{command}\n```" in readme
    assert "redis-server" in readme and "Node.js 20.19+" in readme
    ci = (ROOT / ".ci/run").read_text().splitlines()
    assert command in ci
    assert ci.index("python -m coverage report --fail-under=90") > ci.index(command)
