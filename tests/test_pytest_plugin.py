"""The pytest plugin (the ``pytest11`` entry point), used the way a user would: in an inner
pytest session that pytester runs, with its own ini file."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

#: The inner session's own ini file: strict, and none of the outer one's options (--cov...).
INNER_INI = """
[pytest]
filterwarnings = error
"""
#: Every inner run: no .pytest_cache left in the test's directory.
NO_CACHE = ("-p", "no:cacheprovider")

#: A user's code, as in the README.
USER_CODE = """
import requests

def fetch_orders(base_url, auth):                 # your code
    return requests.get(base_url + "orders", auth=auth, timeout=5).json()
"""

#: The README's example tests, verbatim, and a look at what the fixtures hold.
USER_TESTS = """
from bearer_m2m import ClientCredentialsAuth
from orders import fetch_orders

def test_orders_use_one_token(m2m_server, m2m_api, m2m_auth):
    fetch_orders(m2m_api.url, m2m_auth)
    fetch_orders(m2m_api.url, m2m_auth)
    assert m2m_server.token_requests == 1

def test_orders_survive_a_flaky_token_endpoint(m2m_server, m2m_api, m2m_auth):
    m2m_server.fail_next(2, status=503)           # then a good answer
    assert fetch_orders(m2m_api.url, m2m_auth)["path"] == "/orders"

def test_the_fixtures_hold_what_the_readme_says(m2m_server, m2m_api, m2m_auth):
    assert isinstance(m2m_auth, ClientCredentialsAuth)
    assert m2m_api.url.endswith("/") and m2m_api.audience == "https://api.example"
    assert m2m_server.token_url.startswith(m2m_server.issuer)
    orders = fetch_orders(m2m_api.url, m2m_auth)
    assert orders["client_id"] == m2m_server.client.client_id
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (1, 1)
    assert (m2m_api.requests, m2m_api.unauthorized) == (1, 0)

def test_a_users_own_auth_object_works_too(m2m_server, m2m_api):
    auth = ClientCredentialsAuth(
        m2m_server.token_url,
        client_id=m2m_server.client.client_id,
        client_secret=m2m_server.client.client_secret,
        audience=m2m_api.audience,
    )
    assert fetch_orders(m2m_api.url, auth)["path"] == "/orders"
    assert m2m_server.token_requests == 1
"""

#: Two tests in a row: the first leaves faults, counts and a flag behind; the second
#: must find none of them. Both see the same servers (one per session).
RESET_TESTS = """
import requests

SERVERS = []

def fetch(m2m_api, m2m_auth):
    return requests.get(m2m_api.url + "orders", auth=m2m_auth, timeout=5)

def test_first_leaves_a_mess(m2m_server, m2m_api, m2m_auth):
    SERVERS.append((m2m_server.token_url, m2m_api.url))
    assert fetch(m2m_api, m2m_auth).status_code == 200
    assert m2m_server.token_requests == 1
    m2m_server.reject_all_tokens = True
    m2m_server.html_next(3)
    # Both are live here: the API refuses the token and its replacement is an HTML page.
    assert fetch(m2m_api, m2m_auth).status_code == 401
    assert m2m_server.token_requests == 2  # two HTML pages are left for whoever comes next
    assert (m2m_api.requests, m2m_api.unauthorized) == (2, 1)

def test_second_starts_clean(m2m_server, m2m_api, m2m_auth):
    assert SERVERS == [(m2m_server.token_url, m2m_api.url)]  # the same servers
    assert (m2m_server.token_requests, m2m_server.tokens_issued) == (0, 0)
    assert (m2m_api.requests, m2m_api.unauthorized) == (0, 0)
    assert m2m_api.last_authorization is None
    assert not m2m_server.reject_all_tokens
    assert fetch(m2m_api, m2m_auth).status_code == 200
    assert m2m_server.token_requests == 1
    assert (m2m_api.requests, m2m_api.unauthorized) == (1, 0)
"""


@pytest.fixture
def inner(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini(INNER_INI)
    return pytester


def test_a_users_tests_run_on_the_fixtures(inner: pytest.Pytester) -> None:
    inner.makepyfile(orders=USER_CODE, test_orders=USER_TESTS)

    result = inner.runpytest_inprocess(*NO_CACHE, "-v")

    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_orders_use_one_token PASSED*"])


def test_each_test_gets_the_servers_back_reset(inner: pytest.Pytester) -> None:
    inner.makepyfile(test_reset=RESET_TESTS)

    result = inner.runpytest_inprocess(*NO_CACHE, "-v")

    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        ["*test_first_leaves_a_mess PASSED*", "*test_second_starts_clean PASSED*"]
    )


def test_a_failing_users_test_is_reported_as_failing(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_counts="""
        import requests

        def test_counts_one_token_request_too_many(m2m_server, m2m_api, m2m_auth):
            requests.get(m2m_api.url, auth=m2m_auth, timeout=5)
            assert m2m_server.token_requests == 2
        """
    )

    result = inner.runpytest_inprocess(*NO_CACHE)

    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 1 == 2*"])


def test_the_fixtures_are_listed_with_their_documentation(inner: pytest.Pytester) -> None:
    result = inner.runpytest_inprocess(*NO_CACHE, "--fixtures")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines_random(
        [
            "m2m_server -- *pytest_plugin.py:*",
            "*The local authorization server*",
            "m2m_api -- *pytest_plugin.py:*",
            "m2m_auth -- *pytest_plugin.py:*",
        ]
    )
    result.stdout.no_fnmatch_line("_bearer_m2m_servers*")
