"""ClientCredentialsAuth as ``requests`` auth, over real loopback sockets."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import requests_mock

from bearer_m2m import ClientCredentialsAuth, TokenRequestRejected
from tests.servers import ApiServer, TokenServer, json_reply


def test_requests_get_sends_the_bearer_token(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    response = requests.get(f"{api_server.origin}/things", auth=make_auth())
    assert response.status_code == 200
    assert api_server.seen[0][1] == f"Bearer {token_server.issued[0]}"


def test_a_session_reuses_one_token(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    with requests.Session() as session:
        session.auth = make_auth()
        statuses = {session.get(f"{api_server.origin}/things").status_code for _ in range(20)}
    assert statuses == {200} and token_server.count == 1


def test_a_revoked_token_is_replaced_and_the_request_replayed_once(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    auth = make_auth()
    with requests.Session() as session:
        session.auth = auth
        session.get(f"{api_server.origin}/things")
        token_server.issued.clear()  # the API now rejects tok-1
        response = session.post(f"{api_server.origin}/things", data=b"payload")
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert response.request.headers["Authorization"] == "Bearer tok-2"
    assert [seen[2] for seen in api_server.seen[1:]] == [b"payload", b"payload"]
    assert token_server.count == 2


def test_a_file_body_is_rewound_for_the_replay(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    auth = make_auth()
    auth.token()
    token_server.issued.clear()
    body = io.BytesIO(b"header-line\nrest of the file")
    body.readline()  # the upload starts mid-file: the replay must start there too
    response = requests.put(f"{api_server.origin}/upload", data=body, auth=auth)
    assert response.status_code == 200
    assert [seen[2] for seen in api_server.seen] == [b"rest of the file"] * 2


def test_a_generator_body_is_not_replayed(
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:  # type: ignore[no-untyped-def]
    auth = make_auth()
    auth.token()
    token_server.issued.clear()

    def chunks() -> Iterator[bytes]:
        yield b"once"

    response = requests.post(f"{api_server.origin}/stream", data=chunks(), auth=auth)
    assert response.status_code == 401
    assert len(api_server.seen) == 1 and token_server.count == 1


def test_an_api_that_rejects_every_token_cannot_burn_the_quota(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer
) -> None:
    api = ApiServer(accepts=lambda token: False)
    try:
        with requests.Session() as session:
            session.auth = make_auth()
            statuses = {session.get(f"{api.origin}/things").status_code for _ in range(1000)}
    finally:
        api.close()
    assert statuses == {401}
    assert token_server.count == 2  # the first token and one forced refresh
    assert len(api.seen) == 1001  # one replay, then every 401 is returned as it is


def test_a_401_without_our_token_is_returned_untouched() -> None:
    auth = ClientCredentialsAuth("https://t.example/token", client_id="c", client_secret="s")
    with requests_mock.Mocker() as m:
        tokens = m.post(
            "https://t.example/token", json={"access_token": "t", "token_type": "Bearer"}
        )
        m.get("https://api.example/x", status_code=401)

        def strip_authorization(request: requests.PreparedRequest) -> requests.PreparedRequest:
            del request.headers["Authorization"]
            return request

        with requests.Session() as session:
            prepared = auth(
                session.prepare_request(requests.Request("GET", "https://api.example/x"))
            )
            response = session.send(strip_authorization(prepared))
    assert response.status_code == 401 and not response.history
    assert tokens.call_count == 1


def test_64_threads_at_a_cold_start_make_one_token_request(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    token_server.delay = 0.1  # a slow endpoint makes the race real
    auth = make_auth()
    statuses: list[int] = []

    def work() -> None:
        with requests.Session() as session:
            session.auth = auth
            statuses.extend(session.get(f"{api_server.origin}/t").status_code for _ in range(10))

    threads = [threading.Thread(target=work) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [200] * 640
    assert token_server.count == 1


def test_refresh_ahead_over_sockets_does_not_make_requests_wait(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    token_server.expires_in = 2  # refreshed from 1.6 s, treated as expired from 1.9 s
    auth = make_auth()
    with requests.Session() as session:
        session.auth = auth
        assert session.get(f"{api_server.origin}/t").status_code == 200
        time.sleep(1.65)
        token_server.gate.clear()  # the refresh cannot complete until released
        try:
            # these requests run while the refresh is held: they use tok-1 without waiting
            seen = [
                session.get(f"{api_server.origin}/t").request.headers["Authorization"]
                for _ in range(5)
            ]
            assert seen == ["Bearer tok-1"] * 5
            assert token_server.count == 2  # the refresh is under way, once
        finally:
            token_server.gate.set()
        for _ in range(100):
            if auth.token() == "tok-2":
                break
            time.sleep(0.01)
        assert (
            session.get(f"{api_server.origin}/t").request.headers["Authorization"] == "Bearer tok-2"
        )
    assert token_server.count == 2


def test_when_no_new_token_can_be_had_the_401_is_returned(  # type: ignore[no-untyped-def]
    make_auth, token_server: TokenServer, api_server: ApiServer
) -> None:
    with requests.Session() as session:
        session.auth = make_auth()
        assert session.get(f"{api_server.origin}/t").status_code == 200
        token_server.issued.clear()
        for _ in range(2):
            token_server.script.append(json_reply({"error": "invalid_client"}, status=401))
        response = session.get(f"{api_server.origin}/t")
        assert response.status_code == 401 and not response.history
        with pytest.raises(TokenRequestRejected, match="invalid_client"):
            session.get(f"{api_server.origin}/t")
