"""The command and the configuration sources under hostile or broken input (issue 8).

``bearer-m2m inspect`` shows any JWT (whatever its ``exp``, ``iat`` and ``nbf``
hold) and never the raw token; ``bearer-m2m token`` ends every failure with a
documented exit code and a message, never a traceback and never the secret;
``from_env`` and ``--config`` turn every broken file or value into one
``ConfigurationError`` that quotes none of it.

In-process runs go through ``main([...])`` with the standard streams swapped
(hypothesis runs many examples in one test, so pytest's per-test capture does
not fit); shell-like runs are real ``python -m bearer_m2m`` processes.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

import bearer_m2m
from bearer_m2m import ClientCredentialsAuth, ConfigurationError, RetryPolicy, TokenError
from bearer_m2m._cli import (
    EXIT_BAD_RESPONSE,
    EXIT_REJECTED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    _exit_code,
    main,
)
from tests.conftest import SECRET
from tests.servers import Reply, TokenServer, json_reply

ROOT = Path(__file__).resolve().parents[1]
#: An env prefix no test machine sets: in-process runs see no stray BEARER_M2M_* variable.
PREFIX = "BEARER_M2M_HARDENING_TEST_"
#: A signature segment: if it shows up anywhere, the raw token was printed.
SIGNATURE = "c2lnbmF0dXJlLXRoYXQtbXVzdC1uZXZlci1iZS1wcmludGVkLWFueXdoZXJl"


def documented_exit_codes() -> set[int]:
    """The exit codes the README's command section lists ("Exit codes: 0 success, 2 ...")."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## The `bearer-m2m` command") :]
    sentence = section[section.index("Exit codes:") :].split(".")[0]
    return {int(code) for code in re.findall(r"\b(\d)\b", sentence)}


DOCUMENTED = documented_exit_codes()


@pytest.fixture(scope="module", autouse=True)
def private_cache_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tokens the command caches go to a directory of this module's, never the home
    directory (module-scoped: hypothesis refuses function-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache-home")))
        yield


@contextlib.contextmanager
def streams(stdin: str = "") -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """``sys.stdin`` reading ``stdin``; what is written to stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with (
        mock.patch.object(sys, "stdin", io.StringIO(stdin)),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        yield out, err


def run_main(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    with streams(stdin) as (out, err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def run_process(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    """``bearer-m2m ARGV`` as its own process, with standard input as raw bytes."""
    done = subprocess.run(
        [sys.executable, "-m", "bearer_m2m", *argv],
        input=stdin,
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("BEARER_M2M_")},
    )
    return (
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )


def segment(json_text: str) -> str:
    return base64.urlsafe_b64encode(json_text.encode()).rstrip(b"=").decode()


def unsigned_jwt(claims_json: str, header_json: str = '{"alg": "RS256", "typ": "at+jwt"}') -> str:
    return f"{segment(header_json)}.{segment(claims_json)}.{SIGNATURE}"


# -- 1. inspect shows any JWT -----------------------------------------------------------------

#: JSON literals for a time claim: huge, negative, NaN, infinite, of every other JSON type.
TIME_VALUES = st.one_of(
    st.integers().map(str),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.floats().map(lambda number: json.dumps(number)),  # NaN, Infinity, -Infinity too
    st.sampled_from(["1e400", "-1e400", "1" + "0" * 400, "-1" + "0" * 400, "-0", "1e-400"]),
    st.sampled_from(
        ['"1700000000"', '"soon"', "null", "true", "false", "[]", "[1700000000]", "{}"]
    ),
    st.text(max_size=10).map(json.dumps),
    st.integers(min_value=1, max_value=200).map(lambda depth: "[" * depth + "]" * depth),
)


@given(
    claims=st.fixed_dictionaries(
        {}, optional={"exp": TIME_VALUES, "iat": TIME_VALUES, "nbf": TIME_VALUES}
    )
)
def test_inspect_shows_any_time_claim_without_crashing(claims: dict[str, str]) -> None:
    body = ", ".join(['"sub": "svc"', *(f'"{name}": {value}' for name, value in claims.items())])
    token = unsigned_jwt("{" + body + "}")

    code, out, err = run_main(["inspect", "--stdin", "--env-prefix", PREFIX], token + "\n")

    assert code == 0 and err == ""
    assert out.startswith("NOT VERIFIED")
    assert "claims: " in out and '"sub": "svc"' in out
    assert "expires: " in out
    labels = {"exp": "expires: ", "iat": "issued: ", "nbf": "not before: "}
    for name in claims:
        assert labels[name] in out
    assert SIGNATURE not in out and token not in out


@pytest.mark.parametrize(
    ("exp", "shown"),
    [
        ("1" + "0" * 400, "expires: not a usable time (a number too large for any date)"),
        ("1e400", "expires: not a usable time (not a finite number)"),
        ("NaN", "expires: not a usable time (not a finite number)"),
        ("-1e15", "expires: not a usable time (-1e+15 s from 1970 is outside years 1 to 9999)"),
        ('"tomorrow"', "expires: not a time (a JSON string, not a number)"),
        ("[1]", "expires: not a time (a JSON array, not a number)"),
        ("true", "expires: not a time (a JSON boolean, not a number)"),
        ("-1", "expires: 1969-12-31T23:59:59+00:00 (expired "),
        ("4102444800", "expires: 2100-01-01T00:00:00+00:00 (in "),
    ],
)
def test_inspect_says_why_an_exp_is_no_time(exp: str, shown: str) -> None:
    code, out, err = run_main(
        ["inspect", "--stdin", "--env-prefix", PREFIX], unsigned_jwt(f'{{"exp": {exp}}}')
    )
    assert (code, err) == (0, "")
    assert shown in out


def test_inspect_shows_iat_and_nbf() -> None:
    token = unsigned_jwt('{"exp": 4102444800, "iat": 1700000000, "nbf": 1700000000}')
    code, out, _ = run_main(["inspect", "--stdin", "--env-prefix", PREFIX], token)
    assert code == 0
    assert "issued: 2023-11-14T22:13:20+00:00 (" in out and " ago)" in out
    assert "not before: 2023-11-14T22:13:20+00:00 (" in out


def test_inspect_shows_a_jwt_whose_claims_cannot_be_read() -> None:
    """Claims nested beyond what a JSON decoder follows, or not base64url at all: the
    header is still shown, and the claims are said to be unreadable."""
    header = segment('{"alg": "RS256"}')
    for claims_segment in (segment("[" * 5000 + "]" * 5000), "%%%not-base64%%%"):
        token = f"{header}.{claims_segment}.{SIGNATURE}"
        code, out, err = run_main(["inspect", "--stdin", "--env-prefix", PREFIX], token)
        assert (code, err) == (0, "")
        assert '"alg": "RS256"' in out and "claims: not readable" in out
        assert "expires: not said" in out and SIGNATURE not in out


def test_inspect_shows_a_header_beyond_jose_libraries_limits() -> None:
    """An ``x5c`` chain makes a header of kilobytes: still a JWT, shown in full."""
    header = json.dumps({"alg": "RS256", "x5c": ["A" * 3000]})
    code, out, _ = run_main(
        ["inspect", "--stdin", "--env-prefix", PREFIX], unsigned_jwt('{"exp": 1}', header)
    )
    assert code == 0 and '"x5c"' in out and "opaque" not in out
    assert "expires: 1970-01-01T00:00:01+00:00 (expired " in out


@pytest.mark.parametrize(
    "claims",
    ["[1, 2]", '"just text"', "12", "null"],
)
def test_inspect_of_claims_that_are_not_an_object(claims: str) -> None:
    code, out, err = run_main(["inspect", "--stdin", "--env-prefix", PREFIX], unsigned_jwt(claims))
    assert (code, err) == (0, "")
    assert "expires: not said (the claims are not a JSON object)" in out


def test_inspect_of_stdin_that_is_not_text_is_a_usage_error() -> None:
    code, out, err = run_process(["inspect", "--stdin"], b"\xff\xfe" + SECRET.encode() + b"\n")
    assert code == EXIT_USAGE and code in DOCUMENTED
    assert "Traceback" not in err and "is not UTF-8 text" in err
    assert SECRET not in err + out


# -- 2. every failure of `token` has a documented exit code ----------------------------------


def all_token_errors() -> list[type[TokenError]]:
    """TokenError and every subclass the package defines (importing its modules first)."""
    import importlib
    import pkgutil

    for module in pkgutil.walk_packages(bearer_m2m.__path__, "bearer_m2m."):
        if module.name.endswith("__main__"):  # importing it runs the command
            continue
        with contextlib.suppress(ImportError):  # optional clients not installed
            importlib.import_module(module.name)
    found: list[type[TokenError]] = [TokenError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("error", all_token_errors(), ids=lambda cls: cls.__name__)
def test_every_token_error_has_a_documented_exit_code(error: type[TokenError]) -> None:
    code = _exit_code(error("x"))
    assert code in DOCUMENTED and code != 0
    if issubclass(error, ConfigurationError):
        assert code == EXIT_USAGE


@pytest.fixture(scope="module")
def endpoint() -> Iterator[TokenServer]:
    server = TokenServer()
    yield server
    server.close()


def run_token(endpoint: TokenServer, replies: list[Reply]) -> tuple[int, str, str]:
    """``bearer-m2m token`` against the endpoint answering ``replies`` (then tokens);
    without the cache, so that every run asks the endpoint."""
    endpoint.script[:] = replies
    # A deadline a busy machine cannot miss; max_attempts (4) bounds the retries of a 5xx.
    fast = RetryPolicy(deadline=10.0, initial_backoff=0.01, max_backoff=0.02)
    argv = ["token", "--no-cache", "--token-url", endpoint.token_url, "--client-id", "svc"]
    try:
        with mock.patch("bearer_m2m._cli._retry_policy", lambda deadline: fast):
            return run_main([*argv, "--client-secret-stdin", "--env-prefix", PREFIX], SECRET + "\n")
    finally:
        endpoint.script.clear()


def token_reply(**fields: object) -> Reply:
    return json_reply({"access_token": "tok-x", "token_type": "Bearer", **fields})


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ([json_reply({"error": "invalid_client"}, status=401)], EXIT_REJECTED),
        ([Reply(403)], EXIT_REJECTED),
        ([json_reply({"error": "server_error"}, status=503)] * 10, EXIT_UNAVAILABLE),
        ([Reply(200, b"<html>oops</html>", {"Content-Type": "text/html"})], EXIT_BAD_RESPONSE),
        ([json_reply({"token_type": "Bearer"})], EXIT_BAD_RESPONSE),
    ],
    ids=["401", "403-empty", "503s", "html", "no-token"],
)
def test_token_failures_exit_with_their_codes(
    endpoint: TokenServer, replies: list[Reply], expected: int
) -> None:
    code, out, err = run_token(endpoint, replies)
    assert (code, out) == (expected, "")
    assert err.splitlines()[-1].startswith("bearer-m2m: error: ") and "Traceback" not in err
    assert SECRET not in err


ANSWER_BODIES = st.one_of(
    st.binary(max_size=64),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["access_token", "token_type", "expires_in", "error", "x"]),
                children,
                max_size=5,
            )
        ),
        max_leaves=10,
    ).map(lambda value: json.dumps(value).encode()),
    st.fixed_dictionaries(
        {"access_token": st.just("tok-x"), "token_type": st.just("Bearer")},
        optional={
            "error": st.sampled_from([None, "", "invalid_client", 5]),
            "expires_in": st.sampled_from([1e300, -1, "soon", [1], None, "1" * 400]),
            "error_description": st.just(SECRET),  # a server echoing the secret
        },
    ).map(lambda value: json.dumps(value).encode()),
)


@given(
    status=st.sampled_from([200, 400, 401, 403, 404, 429, 500, 502, 503]),
    body=ANSWER_BODIES,
)
def test_any_answer_ends_token_with_a_documented_code_and_no_secret(
    endpoint: TokenServer, status: int, body: bytes
) -> None:
    code, out, err = run_token(
        endpoint, [Reply(status, body, {"Content-Type": "application/json"})] * 10
    )
    assert code in DOCUMENTED
    assert "Traceback" not in err
    assert SECRET not in err + out
    if code == 0:
        assert out.strip() and err == ""
    else:
        assert out == "" and err.splitlines()[-1].startswith("bearer-m2m: error: ")


def test_an_insecure_token_url_is_a_usage_error() -> None:
    code, _, err = run_main(
        ["token", "--token-url", "http://auth.example/token", "--client-id", "svc",
         "--client-secret-stdin", "--env-prefix", PREFIX],
        SECRET + "\n",
    )  # fmt: skip
    assert code == EXIT_USAGE and SECRET not in err


def test_a_secret_on_stdin_that_is_not_text_is_a_usage_error(endpoint: TokenServer) -> None:
    code, out, err = run_process(
        ["token", "--token-url", endpoint.token_url, "--client-id", "svc", "--client-secret-stdin"],
        b"\xe9" + SECRET.encode() + b"\n",
    )
    assert (code, out) == (EXIT_USAGE, "")
    assert "the client secret on standard input is not UTF-8 text" in err
    assert "Traceback" not in err and SECRET not in err and "0xe9" not in err


def test_a_secret_file_that_is_not_text_is_a_usage_error(
    endpoint: TokenServer, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET.encode() + b"\xff\xfe")
    code, out, err = run_process(
        ["token", "--token-url", endpoint.token_url, "--client-id", "svc",
         "--client-secret-file", str(secret_file)]
    )  # fmt: skip
    assert (code, out) == (EXIT_USAGE, "")
    assert f"client secret file {str(secret_file)!r} is not UTF-8 text" in err
    assert "Traceback" not in err and SECRET not in err


# -- the --config file -----------------------------------------------------------------------


def run_config(content: bytes) -> tuple[int, str, str]:
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "m2m.ini"
        config.write_bytes(content)
        return run_main(["token", "--config", str(config), "--env-prefix", PREFIX])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b"[bearer_m2m]\nclient_secret = " + SECRET.encode() + b"\nclient_secret = other\n",
            "'client_secret' is given twice in [bearer_m2m] (line 3)",
        ),
        (
            b"[bearer_m2m]\n" + SECRET.encode() + b" = 1\n" + SECRET.encode() + b" = 2\n",
            "a key is given twice in [bearer_m2m] (line 3)",
        ),
        (b"[bearer_m2m]\nclient_id = a\n[bearer_m2m]\n", "section [bearer_m2m] is given twice"),
        (SECRET.encode() + b"\n[bearer_m2m]\n", "line 1 comes before any [section] header"),
        (b"[bearer_m2m]\n" + SECRET.encode() + b"\n", "line(s) 2 are not 'key = value'"),
        (b"[bearer_m2m]\nclient_secret = " + SECRET.encode() + b"\xff\n", "is not UTF-8 text"),
        (bytes(range(256)) * 4 + SECRET.encode(), "is not UTF-8 text"),
        (
            b"[bearer_m2m]\ntoken_url = https://a.example/t\nclient_id = x\n"
            b"client_secret = " + SECRET.encode() + b"\x00\n",
            "BEARER_M2M_HARDENING_TEST_CLIENT_SECRET contains a NUL character",
        ),
        (b"[bearer_m2m]\n" + b"# padding\n" * 120_000, "is larger than 1 MiB"),
    ],
    ids=[
        "duplicate-key", "duplicate-unknown-key", "duplicate-section", "no-header",
        "not-key-value", "not-utf8", "binary", "nul", "huge",
    ],
)  # fmt: skip
def test_a_broken_config_file_is_a_usage_error_that_quotes_nothing(
    content: bytes, message: str
) -> None:
    code, out, err = run_config(content)
    assert (code, out) == (EXIT_USAGE, "")
    assert message in err, err
    assert SECRET not in err and "Traceback" not in err


@given(
    junk=st.lists(
        st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode)), max_size=8
    )
)
def test_any_config_file_is_a_usage_error_that_never_shows_its_secret(junk: list[bytes]) -> None:
    lines = [*junk, b"[bearer_m2m]", b"client_secret = " + SECRET.encode(), *junk]
    code, out, err = run_config(b"\n".join(lines))
    assert (code, out) == (EXIT_USAGE, "")
    assert err.startswith("bearer-m2m: error: ")
    assert SECRET not in err


def test_a_directory_given_as_config_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = run_main(["token", "--config", str(tmp_path), "--env-prefix", PREFIX])
    assert code == EXIT_USAGE and "cannot read config file" in err


# -- 4. from_env: values and secret files ------------------------------------------------------


def env(**settings: str) -> dict[str, str]:
    base = {"TOKEN_URL": "https://auth.example/oauth/token", "CLIENT_ID": "svc"}
    return {f"BEARER_M2M_{name}": value for name, value in {**base, **settings}.items()}


def configuration_error(environ: dict[str, str]) -> str:
    with pytest.raises(TokenError) as caught:
        ClientCredentialsAuth.from_env(environ=environ)
    assert isinstance(caught.value, ConfigurationError)
    return str(caught.value)


@given(
    name=st.sampled_from(
        ["CLIENT_SECRET", "CLIENT_SECRET_FILE", "CLIENT_ID", "AUDIENCE", "SCOPE", "CA_BUNDLE",
         "PRIVATE_KEY_FILE", "AUTH_METHOD"]
    ),
    before=st.text(max_size=5),
    after=st.text(max_size=5),
)  # fmt: skip
def test_a_nul_character_in_any_setting_is_a_configuration_error(
    name: str, before: str, after: str
) -> None:
    value = f"{before}{SECRET}\x00{after}"
    settings = {"CLIENT_SECRET": "other-secret", name: value}
    if name in ("CLIENT_SECRET_FILE", "PRIVATE_KEY_FILE"):
        del settings["CLIENT_SECRET"]
    message = configuration_error(env(**settings))
    assert f"BEARER_M2M_{name} contains a NUL character" in message
    assert SECRET not in message


@given(content=st.binary(max_size=200))
def test_any_secret_file_gives_the_secret_or_a_configuration_error(content: bytes) -> None:
    """Whatever bytes the file holds: its text is the secret, or one ConfigurationError
    that quotes none of it."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "secret"
        path.write_bytes(SECRET.encode() + content)
        environ = env(CLIENT_SECRET_FILE=str(path))
        try:
            text = (SECRET.encode() + content).decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and "\x00" not in text:
            auth = ClientCredentialsAuth.from_env(environ=environ)
            assert auth._config.client_secret == text.rstrip("\r\n")
        else:
            message = configuration_error(environ)
            assert f"client secret file {str(path)!r}" in message
            assert SECRET not in message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: path.write_bytes(b""), "is empty"),
        (lambda path: path.write_bytes(b"\r\n"), "is empty"),
        (lambda path: path.write_bytes(SECRET.encode() * 5000), "is larger than 64 KiB"),
        (lambda path: path.mkdir(), "(Is a directory)"),
        (lambda path: None, "(No such file or directory)"),
    ],
    ids=["empty", "newline-only", "huge", "directory", "missing"],
)
def test_unusable_secret_files_are_configuration_errors(
    tmp_path: Path, make: Callable[[Path], object], message: str
) -> None:
    path = tmp_path / "secret"
    make(path)
    text = configuration_error(env(CLIENT_SECRET_FILE=str(path)))
    assert message in text and SECRET not in text


#: Reads BEARER_M2M_CLIENT_SECRET_FILE in a process whose memory is capped, so that an
#: unbounded read fails there (MemoryError) instead of exhausting the machine.
BOUNDED_READ = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))
from bearer_m2m import ClientCredentialsAuth, ConfigurationError
try:
    ClientCredentialsAuth.from_env(environ=dict(
        BEARER_M2M_TOKEN_URL="https://auth.example/t", BEARER_M2M_CLIENT_ID="svc",
        BEARER_M2M_CLIENT_SECRET_FILE=sys.argv[1]))
except ConfigurationError as error:
    print(error)
"""


def test_a_device_given_as_the_secret_file_is_read_within_bounds() -> None:
    """/dev/zero never ends: the read stops at the bound."""
    done = subprocess.run(
        [sys.executable, "-c", BOUNDED_READ, "/dev/zero"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "client secret file '/dev/zero' is larger than 64 KiB" in done.stdout


def test_a_byte_order_mark_is_not_part_of_the_secret(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"\xef\xbb\xbf" + SECRET.encode() + b"\n")
    auth = ClientCredentialsAuth.from_env(environ=env(CLIENT_SECRET_FILE=str(path)))
    assert auth._config.client_secret == SECRET


@pytest.mark.parametrize(
    "pasted",
    [SECRET, "aBc8Q~xYz.dEfGhIjKlMnOpQrStUvWx_yZ01234", "dGhpcyBpcyBhIHNlY3JldA/../x"],
    ids=["plain", "entra-id-style", "base64-with-slash"],
)
def test_a_secret_pasted_where_its_file_was_expected_is_not_repeated(pasted: str) -> None:
    text = configuration_error(env(CLIENT_SECRET_FILE=pasted))
    assert pasted not in text
    assert "cannot read the file BEARER_M2M_CLIENT_SECRET_FILE names" in text
