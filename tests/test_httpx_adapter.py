"""What only the httpx line has: two packages (httpx, httpx2) behind one object.

Every behaviour httpx and httpx2 share with the other clients is proved once for all
of them in test_end_to_end.py. Here: their module-level functions, and the object
working in a process where only one package is importable, or where
``httpx2.alias_httpx()`` made ``httpx`` and ``httpx2`` one package (then no class
could list ``httpx.Auth`` and ``httpx2.Auth`` as two bases).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from types import ModuleType

import pytest

from bearer_m2m import ClientCredentialsAuth
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI
from tests.clients import PATIENCE


@pytest.fixture(params=["httpx", "httpx2"])
def package(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = pytest.importorskip(request.param)
    return module


def test_the_module_level_functions_take_the_object(
    package: ModuleType,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    statuses = [package.get(m2m_api.url + "things", auth=m2m_auth).status_code for _ in range(3)]

    assert statuses == [200] * 3
    assert m2m_server.token_requests == 1  # a client per call, one token for all


@dataclass(frozen=True)
class Setup:
    """A process's httpx line: what it runs before importing bearer_m2m, the package
    it then calls with, and the one that must be installed."""

    prelude: str
    package: str
    installed: str


SETUPS = {
    "httpx2 aliased as httpx": Setup("import httpx2; httpx2.alias_httpx()", "httpx", "httpx2"),
    "httpx2 without httpx": Setup("import sys; sys.modules['httpx'] = None", "httpx2", "httpx2"),
    "httpx without httpx2": Setup("import sys; sys.modules['httpx2'] = None", "httpx", "httpx"),
}

CHILD = """
{setup}
import asyncio, os, {package}
from bearer_m2m import ClientCredentialsAuth

auth = ClientCredentialsAuth(
    os.environ["TOKEN_URL"],
    client_id=os.environ["CLIENT_ID"],
    client_secret=os.environ["CLIENT_SECRET"],
    audience=os.environ["AUDIENCE"],
)
assert isinstance(auth, {package}.Auth)
with {package}.Client(auth=auth) as client:
    print(client.get(os.environ["URL"]).status_code)

async def main():
    async with {package}.AsyncClient(auth=auth) as client:
        return (await client.get(os.environ["URL"])).status_code

print(asyncio.run(main()))
"""


@pytest.mark.parametrize("name", list(SETUPS))
def test_the_object_serves_the_httpx_line_however_it_is_installed(
    name: str, m2m_server: AuthorizationServer, m2m_api: ProtectedAPI
) -> None:
    setup = SETUPS[name]
    pytest.importorskip(setup.installed)
    environment = {
        **os.environ,
        "TOKEN_URL": m2m_server.token_url,
        "CLIENT_ID": m2m_server.client.client_id,
        "CLIENT_SECRET": m2m_server.client.client_secret,
        "AUDIENCE": m2m_api.audience,
        "URL": m2m_api.url + "things",
    }
    child = textwrap.dedent(CHILD).format(setup=setup.prelude, package=setup.package)

    result = subprocess.run(
        [sys.executable, "-c", child],
        env=environment,
        capture_output=True,
        text=True,
        timeout=PATIENCE * 12,  # a bound for a very busy machine, not a measurement
        check=False,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["200", "200"]
    assert m2m_server.token_requests == 1
