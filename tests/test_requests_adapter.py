"""What only requests-style sessions have: requests' and niquests' ``Session``.

Every behaviour they share with the other clients (reuse, single flight, refresh
ahead, replay after a 401, bodies, redirects, the quota guard...) is proved once
for all of them in test_end_to_end.py. Here: bodies that requests rewinds, and the
history a replay leaves for the caller to inspect.
"""

from __future__ import annotations

import io
from types import ModuleType

import pytest

from bearer_m2m import ClientCredentialsAuth
from bearer_m2m.testing import AuthorizationServer, ProtectedAPI


@pytest.fixture(params=["requests", "niquests"])
def client_module(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = pytest.importorskip(request.param)
    return module


def test_a_file_body_is_rewound_for_the_replay(
    client_module: ModuleType,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    m2m_auth.token()
    m2m_server.revoke_all()
    body = io.BytesIO(b"header-line\nrest of the file")
    body.readline()  # the upload starts mid-file: the replay must start there too

    with client_module.Session() as session:
        response = session.put(m2m_api.url + "upload", data=body, auth=m2m_auth)

    assert response.status_code == 200
    assert response.json()["body_length"] == len(b"rest of the file")
    assert (m2m_api.requests, m2m_api.unauthorized) == (2, 1)


def test_the_refused_attempt_stays_in_the_history_with_the_token_it_carried(
    client_module: ModuleType,
    m2m_server: AuthorizationServer,
    m2m_api: ProtectedAPI,
    m2m_auth: ClientCredentialsAuth,
) -> None:
    url = m2m_api.url + "things"
    with client_module.Session() as session:
        first = session.get(url, auth=m2m_auth)
        m2m_server.revoke_all()
        response = session.get(url, auth=m2m_auth)

    assert response.status_code == 200
    [refused] = response.history
    assert refused.status_code == 401
    # Each response names the request it answers: the 401 the old token, the 200 the new.
    assert refused.request.headers["Authorization"] == first.request.headers["Authorization"]
    assert response.request.headers["Authorization"] not in (
        None,
        refused.request.headers["Authorization"],
    )
    assert response.request.headers["Authorization"] == m2m_api.last_authorization
