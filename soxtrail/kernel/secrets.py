"""Secrets: `${ENV}` resolution and redaction of every known secret value."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from soxtrail.kernel.errors import ConfigError

REDACTED = "***"
# a shorter secret is refused: redacting it would also mangle ordinary words and numbers
MIN_SECRET_LENGTH = 4
# keys inside a secret value (e.g. `auth`) that are not secret themselves
NOT_SECRET_INSIDE = frozenset({"type", "user", "username", "email"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_PASSWORD = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.IGNORECASE)
_KV_PASSWORD = re.compile(r"(?P<k>\bpassword\s*=\s*)(?P<v>'[^']*'|\S+)", re.IGNORECASE)
_SECRET_PARAMS = re.compile(
    r"(?P<k>[?&](?:token|access_token|api_key|apikey|key|sig|signature|password)=)"
    r"(?P<v>[^&\s]+)", re.IGNORECASE)

# every secret value seen in this process; redact() removes each of them
_known: set[str] = set()


def remember(value: str) -> None:
    """Register a secret value so that redact() removes it from any text."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        _known.add(value)


def check_length(value: str, what: str) -> None:
    """Refuse a secret too short to be redacted (it would show in logs and errors)."""
    if 0 < len(value) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{what} is shorter than {MIN_SECRET_LENGTH} characters: too short "
                          "to redact from logs and errors, refused")


def embedded_password(text: str) -> str | None:
    """The password inside a URL (`scheme://user:pw@`) or `password=pw`, if any."""
    match = _URL_PASSWORD.search(text)
    if match:
        return match.group("pw")
    match = _KV_PASSWORD.search(text)
    return match.group("v").strip("'") if match else None


def resolve(value: Any, where: str, *, secret: bool = False) -> Any:
    """Replace `${NAME}` references in a config value with the environment's value.

    Every substituted value is registered as a secret; in a `secret` value (a connector's
    secret key), one too short to redact is a ConfigError.
    """
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            found = os.environ[name]
            if secret:
                check_length(found, f"{where}: environment variable {name}")
            remember(found)
            return found

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, list):
        return [resolve(item, f"{where}[{i}]", secret=secret) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {k: resolve(v, f"{where}.{k}", secret=secret and k not in NOT_SECRET_INSIDE)
                for k, v in value.items()}
    return value


def has_env_ref(value: Any) -> bool:
    """Whether a config value (or anything inside it) references the environment."""
    if isinstance(value, str):
        return bool(_ENV_REF.search(value))
    if isinstance(value, list):
        return any(has_env_ref(v) for v in value)
    if isinstance(value, dict):
        return any(has_env_ref(v) for v in value.values())
    return False


def redact(text: str) -> str:
    """Remove known secrets, URL/DSN passwords and token query parameters from text."""
    if not text:
        return text
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    # a `${NAME}` reference is not a secret: kept, so a recorded config still resolves
    text = _URL_PASSWORD.sub(lambda m: m.group(0) if _ENV_REF.fullmatch(m.group("pw")) else
                             f"{m.group('scheme')}{m.group('user')}:{REDACTED}@", text)
    text = _KV_PASSWORD.sub(lambda m: m.group(0) if _ENV_REF.fullmatch(m.group("v")) else
                            f"{m.group('k')}{REDACTED}", text)
    return _SECRET_PARAMS.sub(lambda m: m.group(0) if _ENV_REF.fullmatch(m.group("v")) else
                              f"{m.group('k')}{REDACTED}", text)


def redact_value(value: Any) -> Any:
    """redact() applied through lists and dicts."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    return value


def redact_url(url: str) -> str:
    """A URL without its password or userinfo."""
    parts = urlsplit(url)
    if not parts.password:
        return redact(url.replace(f"{parts.username}:@", f"{parts.username}@", 1)
                      if parts.username else url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:{REDACTED}@" if parts.username else f":{REDACTED}@"
    return redact(urlunsplit((parts.scheme, user + host, parts.path, parts.query, parts.fragment)))
