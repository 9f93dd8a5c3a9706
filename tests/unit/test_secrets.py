from __future__ import annotations

import pytest

from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError


def test_env_references_resolve_and_are_redacted_everywhere(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARY_TOKEN", "canary-7f3a9c1e")
    value = secrets.resolve({"auth": {"token": "${CANARY_TOKEN}"}}, "sources[0]")
    assert value == {"auth": {"token": "canary-7f3a9c1e"}}
    text = "GET https://jira.example.com/?token=x Authorization: canary-7f3a9c1e"
    assert "canary-7f3a9c1e" not in secrets.redact(text)


def test_a_missing_env_variable_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError,
                       match=r"sources\[2\]\.token: environment variable NOPE_NOT_SET"):
        secrets.resolve({"token": "${NOPE_NOT_SET}"}, "sources[2]")


@pytest.mark.parametrize("text,hidden", [
    ("postgresql://app:s3cretpw@db:5432/x", "s3cretpw"),
    ("host=db password=s3cretpw dbname=x", "s3cretpw"),
    ("https://h/api?access_token=abc123xyz&x=1", "abc123xyz"),
])
def test_dsn_passwords_and_url_tokens_are_redacted(text: str, hidden: str) -> None:
    assert hidden not in secrets.redact(text)
    assert secrets.REDACTED in secrets.redact(text)
