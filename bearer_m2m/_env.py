"""Settings from environment variables and mounted secret files, as operators configure services."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from typing import Any

from .errors import ConfigurationError

logger = logging.getLogger("bearer_m2m")

#: Variable name (after the prefix) -> keyword argument of ClientCredentialsAuth.
PLAIN_SETTINGS = {
    "CLIENT_ID": "client_id",
    "CLIENT_SECRET": "client_secret",
    "AUDIENCE": "audience",
    "RESOURCE": "resource",
    "ORGANIZATION": "organization",
    "SCOPE": "scope",
    "AUTH_METHOD": "auth_method",
    "DPOP_ALGORITHM": "dpop_algorithm",
}
FILE_SETTINGS = (
    "CLIENT_SECRET_FILE",
    "PRIVATE_KEY_FILE",
    "CERT_FILE",
    "KEY_FILE",
    "CA_BUNDLE",
    "DPOP_KEY_FILE",
)
ENDPOINT_SETTINGS = ("TOKEN_URL", "ISSUER")
#: ``{prefix}DPOP``: a yes or a no, as operators write them.
DPOP_SWITCH = {"true": True, "1": True, "yes": True, "on": True}
DPOP_SWITCH.update({"false": False, "0": False, "no": False, "off": False})
CREDENTIAL_SETTINGS = (
    "CLIENT_SECRET",
    "CLIENT_SECRET_FILE",
    "PRIVATE_KEY_FILE",
    "CERT_FILE",
    "KEY_FILE",
)
KNOWN = {*PLAIN_SETTINGS, *FILE_SETTINGS, *ENDPOINT_SETTINGS, "DPOP"}

#: A client secret file larger than this (64 KiB) is the wrong file (a log, a
#: device such as /dev/zero): it is refused before it is read into memory.
MAX_SECRET_FILE_BYTES = 64 * 1024

#: Keyword argument -> the settings it replaces: a keyword endpoint or credential
#: hides every alternative from the environment, so overriding never contradicts.
REPLACES = {
    **{keyword: (name,) for name, keyword in PLAIN_SETTINGS.items()},
    "token_url": ENDPOINT_SETTINGS,
    "issuer": ENDPOINT_SETTINGS,
    "client_secret": CREDENTIAL_SETTINGS,
    "private_key": CREDENTIAL_SETTINGS,
    "cert": CREDENTIAL_SETTINGS,
    "verify": ("CA_BUNDLE",),
    "dpop": ("DPOP", "DPOP_KEY_FILE"),
}


def settings_from_env(
    prefix: str, environ: Mapping[str, str], overridden: Collection[str] = ()
) -> dict[str, Any]:
    """Keyword arguments for ``ClientCredentialsAuth`` (``token_url`` or ``issuer``
    included), or one :class:`ConfigurationError` naming every problem.

    ``overridden`` names the keyword arguments the caller passes: the settings
    they replace are neither read nor missed.
    """
    values = {
        name[len(prefix) :]: value
        for name, value in environ.items()
        if name.startswith(prefix) and value != ""
    }
    unknown = sorted(set(values) - KNOWN)
    if unknown:
        logger.warning(
            "ignoring unknown settings: %s", ", ".join(prefix + name for name in unknown)
        )
    replaced = {name for keyword in overridden for name in REPLACES.get(keyword, ())}
    values = {name: value for name, value in values.items() if name not in replaced}

    # No real environment holds a NUL (the OS cannot pass one); a mapping or a config
    # file can, and a path with one makes open() raise ValueError instead of OSError.
    problems = [
        f"{prefix}{name} contains a NUL character"
        for name, value in sorted(values.items())
        if name in KNOWN and "\0" in value
    ]

    def exactly_one(*names: str, required: bool = True) -> str | None:
        given = [name for name in names if name in values]
        if len(given) > 1:
            problems.append(f"set only one of {' and '.join(prefix + n for n in given)}")
        elif not given and required:
            problems.append(f"set {' or '.join(prefix + n for n in names)}")
        return given[0] if len(given) == 1 else None

    settings: dict[str, Any] = {
        keyword: values[name] for name, keyword in PLAIN_SETTINGS.items() if name in values
    }
    endpoint = exactly_one(*ENDPOINT_SETTINGS, required="TOKEN_URL" not in replaced)
    if endpoint is not None:
        settings["token_url" if endpoint == "TOKEN_URL" else "issuer"] = values[endpoint]
    if "CLIENT_ID" not in values and "CLIENT_ID" not in replaced:
        problems.append(f"set {prefix}CLIENT_ID")
    if exactly_one("CLIENT_SECRET", "CLIENT_SECRET_FILE", required=False) == "CLIENT_SECRET_FILE":
        variable = prefix + "CLIENT_SECRET_FILE"
        settings["client_secret"] = _read_secret(values["CLIENT_SECRET_FILE"], variable, problems)
    if "PRIVATE_KEY_FILE" in values:
        settings["private_key"] = values["PRIVATE_KEY_FILE"]
    if "CA_BUNDLE" in values:  # a private CA for the token endpoint and discovery
        settings["verify"] = values["CA_BUNDLE"]
    if "KEY_FILE" in values and "CERT_FILE" not in values:
        problems.append(f"{prefix}KEY_FILE needs {prefix}CERT_FILE")
    elif "CERT_FILE" in values:
        key_file = values.get("KEY_FILE")
        settings["cert"] = (values["CERT_FILE"], key_file) if key_file else values["CERT_FILE"]
    _dpop_from(values, prefix, settings, problems)
    credentials = set(CREDENTIAL_SETTINGS) - {"KEY_FILE"}  # a key file alone is no credential
    if not credentials & (set(values) | replaced):
        problems.append(
            f"set a credential: {prefix}CLIENT_SECRET, {prefix}CLIENT_SECRET_FILE, "
            f"{prefix}PRIVATE_KEY_FILE or {prefix}CERT_FILE"
        )
    if problems:
        raise ConfigurationError("incomplete configuration: " + "; ".join(problems))
    return settings


def _dpop_from(
    values: Mapping[str, str], prefix: str, settings: dict[str, Any], problems: list[str]
) -> None:
    """``dpop=``: the key file's path, or ``True`` for a key made in memory. A key file
    with ``{prefix}DPOP`` saying no is a contradiction, not a choice."""
    switch = values.get("DPOP")
    enabled = DPOP_SWITCH.get(switch.strip().lower()) if switch is not None else None
    if switch is not None and enabled is None:
        problems.append(f"{prefix}DPOP must be true or false")
    if "DPOP_KEY_FILE" in values:
        if enabled is False:
            problems.append(f"{prefix}DPOP is false but {prefix}DPOP_KEY_FILE is set")
        settings["dpop"] = values["DPOP_KEY_FILE"]
    elif enabled:
        settings["dpop"] = True


def _read_secret(path: str, variable: str, problems: list[str]) -> str | None:
    """A mounted secret (Kubernetes, Docker): the file's text without its final newline.

    Whatever the file is (missing, a directory, empty, huge, binary, not UTF-8),
    the outcome is a secret or one entry in ``problems``; no entry quotes what
    the file holds.
    """
    if "\0" in path:
        return None  # reported with the other NUL characters
    what = f"client secret file {path!r}" if _shown_path(path) else f"the file {variable} names"
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        problems.append(f"cannot read {what} ({exc.strerror or type(exc).__name__})")
        return None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        problems.append(f"{what} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB: not a secret")
        return None
    try:
        secret = raw.decode("utf-8-sig").rstrip("\r\n")  # a BOM is an editor's, not the secret's
    except UnicodeDecodeError:  # its message would quote a byte of the secret
        problems.append(f"{what} is not UTF-8 text")
        return None
    if not secret:
        problems.append(f"{what} is empty")
    elif "\0" in secret:
        problems.append(f"{what} contains a NUL character: not a text secret")
    return secret


def _shown_path(path: str) -> bool:
    """Whether an error may quote this value as a path.

    A secret pasted where its file's path was expected must not reach a log. Mounted
    secrets live at absolute paths (``/run/secrets/...``), which no real client secret
    looks like (Auth0's, Okta's, Keycloak's and Entra ID's secrets never start with a
    slash); anything else is named by its variable only.
    """
    return (
        len(path) <= 255
        and path.startswith(os.sep)
        and path.isprintable()
        and not any(character.isspace() for character in path)
    )
