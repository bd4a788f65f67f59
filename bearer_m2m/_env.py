"""Settings from environment variables and mounted secret files, as operators configure services."""

from __future__ import annotations

import logging
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
}
FILE_SETTINGS = ("CLIENT_SECRET_FILE", "PRIVATE_KEY_FILE", "CERT_FILE", "KEY_FILE", "CA_BUNDLE")
ENDPOINT_SETTINGS = ("TOKEN_URL", "ISSUER")
CREDENTIAL_SETTINGS = (
    "CLIENT_SECRET",
    "CLIENT_SECRET_FILE",
    "PRIVATE_KEY_FILE",
    "CERT_FILE",
    "KEY_FILE",
)
KNOWN = {*PLAIN_SETTINGS, *FILE_SETTINGS, *ENDPOINT_SETTINGS}

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

    problems: list[str] = []

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
        settings["client_secret"] = _read_secret(values["CLIENT_SECRET_FILE"], problems)
    if "PRIVATE_KEY_FILE" in values:
        settings["private_key"] = values["PRIVATE_KEY_FILE"]
    if "CA_BUNDLE" in values:  # a private CA for the token endpoint and discovery
        settings["verify"] = values["CA_BUNDLE"]
    if "KEY_FILE" in values and "CERT_FILE" not in values:
        problems.append(f"{prefix}KEY_FILE needs {prefix}CERT_FILE")
    elif "CERT_FILE" in values:
        key_file = values.get("KEY_FILE")
        settings["cert"] = (values["CERT_FILE"], key_file) if key_file else values["CERT_FILE"]
    credentials = set(CREDENTIAL_SETTINGS) - {"KEY_FILE"}  # a key file alone is no credential
    if not credentials & (set(values) | replaced):
        problems.append(
            f"set a credential: {prefix}CLIENT_SECRET, {prefix}CLIENT_SECRET_FILE, "
            f"{prefix}PRIVATE_KEY_FILE or {prefix}CERT_FILE"
        )
    if problems:
        raise ConfigurationError("incomplete configuration: " + "; ".join(problems))
    return settings


def _read_secret(path: str, problems: list[str]) -> str | None:
    """A mounted secret (Kubernetes, Docker): the file's text without its final newline."""
    try:
        with open(path, encoding="utf-8") as file:
            secret = file.read().rstrip("\r\n")
    except OSError as exc:
        problems.append(
            f"cannot read client secret file {path!r} ({exc.strerror or type(exc).__name__})"
        )
        return None
    if not secret:
        problems.append(f"client secret file {path!r} is empty")
    return secret
