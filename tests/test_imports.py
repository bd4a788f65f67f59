"""What ``import bearer_m2m`` and its uses import, each checked in a fresh interpreter.

An application that uses requests only must not import (nor need) httpx, httpx2,
aiohttp, niquests or redis, even when all of them are installed; each of those
is imported only by the code path that uses it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.isolated import run_isolated
from tests.servers import ApiServer, TokenServer

#: The extras: libraries the core never imports on its own account.
EXTRAS = ("httpx", "httpx2", "aiohttp", "niquests", "redis", "httpcore", "httpcore2")

_IMPORTED_EXTRAS = f"""
def imported_extras():
    return sorted(name for name in {EXTRAS!r} if name in _sys.modules)
"""


def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture
def api() -> Iterator[tuple[str, str]]:
    """A token endpoint and an API over loopback: (token_url, api_url)."""
    tokens = TokenServer()
    api = ApiServer(accepts=lambda token: token in tokens.issued)
    yield tokens.token_url, f"{api.origin}/things"
    api.close()
    tokens.close()


def test_the_package_alone_imports_only_its_errors_and_the_lazy_exports() -> None:
    imported = run_isolated(
        """
        before = set(_sys.modules)
        import bearer_m2m
        report(sorted(name for name in set(_sys.modules) - before
                      if name.partition(".")[0] not in _sys.stdlib_module_names))
        """
    )
    assert imported == ["bearer_m2m", "bearer_m2m._lazy", "bearer_m2m.errors"]


def test_a_requests_user_imports_no_other_client_nor_redis(api: tuple[str, str]) -> None:
    """Even with every extra installed (the test environment has them all)."""
    found = run_isolated(
        """
        import requests
        from bearer_m2m import ClientCredentialsAuth
        token_url, api_url = _sys.argv[1:]
        auth = ClientCredentialsAuth(token_url, client_id="c", client_secret="s")
        status = requests.get(api_url, auth=auth, timeout=10).status_code
        auth.invalidate()
        with requests.Session() as session:
            session.auth = auth
            status2 = session.get(api_url, timeout=10).status_code
        report({"status": [status, status2], "extras": imported_extras()})
        """,
        *api,
        helpers=_IMPORTED_EXTRAS,
    )
    assert found == {"status": [200, 200], "extras": []}


def test_a_file_cache_imports_filelock_and_no_redis(api: tuple[str, str], tmp_path: Path) -> None:
    found = run_isolated(
        """
        import requests
        from bearer_m2m import ClientCredentialsAuth, FileCache
        token_url, api_url, path = _sys.argv[1:]
        auth = ClientCredentialsAuth(
            token_url, client_id="c", client_secret="s", cache=FileCache(path)
        )
        status = requests.get(api_url, auth=auth, timeout=10).status_code
        report({"status": status, "extras": imported_extras(),
                "filelock": "filelock" in _sys.modules})
        """,
        *api,
        str(tmp_path / "token.cache"),
        helpers=_IMPORTED_EXTRAS,
    )
    assert found == {"status": 200, "extras": [], "filelock": True}


def test_the_caches_are_imported_when_first_named() -> None:
    if not installed("redis"):
        pytest.skip("redis is not installed")
    found = run_isolated(
        """
        import bearer_m2m
        steps = {"package": "filelock" in _sys.modules or "redis" in _sys.modules}
        bearer_m2m.FileCache
        steps["FileCache"] = ("filelock" in _sys.modules, "redis" in _sys.modules)
        from bearer_m2m import RedisCache, TieredCache, TokenCache
        steps["RedisCache"] = "redis" in _sys.modules
        steps["same"] = RedisCache is bearer_m2m.RedisCache
        steps["dir"] = {"FileCache", "RedisCache", "TieredCache", "TokenCache"} <= set(dir(bearer_m2m))
        report(steps)
        """
    )
    assert found == {
        "package": False,
        "FileCache": [False, False],  # filelock waits for the first refresh lock
        "RedisCache": True,
        "same": True,
        "dir": True,
    }


def test_an_unknown_name_is_an_attribute_error() -> None:
    import bearer_m2m

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        bearer_m2m.Nope


@pytest.mark.parametrize(
    ("client", "line"),
    [
        ("httpx", "__import__('httpx').get(api_url, auth=auth).status_code"),
        ("httpx2", "__import__('httpx2').get(api_url, auth=auth).status_code"),
        ("niquests", "__import__('niquests').Session().get(api_url, auth=auth).status_code"),
    ],
)
def test_each_client_imports_only_itself(client: str, line: str, api: tuple[str, str]) -> None:
    if not installed(client):
        pytest.skip(f"{client} is not installed")
    found = run_isolated(
        f"""
        from bearer_m2m import ClientCredentialsAuth
        token_url, api_url = _sys.argv[1:]
        auth = ClientCredentialsAuth(token_url, client_id="c", client_secret="s")
        status = {line}
        report({{"status": status, "extras": imported_extras()}})
        """,
        *api,
        helpers=_IMPORTED_EXTRAS,
    )
    own = {"httpx": ["httpcore", "httpx"], "httpx2": ["httpcore2", "httpx2"]}
    assert found == {"status": 200, "extras": own.get(client, [client])}


def test_the_pytest_plugin_adds_no_import_of_its_own() -> None:
    """pytest loads the plugin in every run: beyond its package, it imports nothing
    until a fixture is used."""
    found = run_isolated(
        """
        import pytest
        import bearer_m2m.testing
        before = set(_sys.modules)
        import bearer_m2m.testing.pytest_plugin as plugin
        added = sorted(set(_sys.modules) - before)
        retry = plugin.TEST_RETRY
        report({"added": added, "retry": type(retry).__name__,
                "same": retry is plugin.TEST_RETRY})
        """
    )
    assert found == {
        "added": ["bearer_m2m.testing.pytest_plugin"],
        "retry": "RetryPolicy",
        "same": True,
    }


def test_loading_the_pytest_plugin_imports_neither_authlib_nor_requests() -> None:
    found = run_isolated(
        """
        import pytest
        before = set(_sys.modules)
        import bearer_m2m.testing.pytest_plugin
        report(sorted({name.partition(".")[0] for name in set(_sys.modules) - before}))
        """
    )
    assert found == ["bearer_m2m"]
