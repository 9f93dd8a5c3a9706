"""Ed25519 signing keys: generation, loading, fingerprints, signatures."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from render import signing
from soxtrail.kernel.errors import ConfigError


def test_generated_key_is_private_pkcs8_pem_and_fingerprint_is_raw_key_sha256(
        tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    fp = signing.generate_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    key = signing.load_private_key(path)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    assert fp == hashlib.sha256(raw).hexdigest() == signing.fingerprint(key.public_key())


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "signing.pem"
    path.write_text("keep me")
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        signing.generate_signing_key(path)
    assert path.read_text() == "keep me"


def test_signatures_verify_only_under_the_right_key_and_data(tmp_path: Path) -> None:
    signing.generate_signing_key(tmp_path / "a.pem")
    signing.generate_signing_key(tmp_path / "b.pem")
    a = signing.load_private_key(tmp_path / "a.pem")
    b = signing.load_private_key(tmp_path / "b.pem")
    signature = signing.sign(a, b"manifest")
    assert len(signature) == 64
    assert signing.verify(a.public_key(), b"manifest", signature)
    assert not signing.verify(b.public_key(), b"manifest", signature)
    assert not signing.verify(a.public_key(), b"manifest!", signature)
    pem = signing.public_key_pem(a.public_key())
    assert signing.raw_public_key(signing.load_public_key(pem, "a.pub")) == \
        signing.raw_public_key(a.public_key())


def test_a_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ec.pem"
    path.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="expected an Ed25519 key"):
        signing.load_private_key(path)
    with pytest.raises(ConfigError, match="cannot read"):
        signing.load_private_key(tmp_path / "missing.pem")


def test_the_key_path_is_the_argument_else_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOXTRAIL_SIGNING_KEY", raising=False)
    assert signing.signing_key_path(None) is None
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(tmp_path / "env.pem"))
    assert signing.signing_key_path(None) == tmp_path / "env.pem"
    assert signing.signing_key_path(tmp_path / "arg.pem") == tmp_path / "arg.pem"


@pytest.fixture()
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A machine with no SOXTRAIL_SIGNING_KEY, not in CI, SOXTRAIL_HOME in a temp folder."""
    monkeypatch.setenv("SOXTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOXTRAIL_SIGNING_KEY", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return tmp_path / "home"


def test_the_first_run_creates_the_machine_key_0600_and_later_runs_reuse_it(
        machine: Path) -> None:
    told: list[str] = []
    assert signing.signing_key_path(None, local=True) is None  # nothing yet
    first = signing.signing_record(announce=told.append)
    key = machine / "keys" / "signing-key.pem"
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    public = signing.load_public_key((machine / "keys" / "signing-key.pub").read_bytes(), "pub")
    assert first == {"signed": True, "key": "local", "fingerprint": signing.fingerprint(public)}
    assert len(told) == 1 and str(key) in told[0] and first["fingerprint"] in told[0]
    assert str(machine / "keys" / "signing-key.pub") in told[0]
    pem = key.read_bytes()
    assert signing.signing_record(announce=told.append) == first  # reused, not announced
    assert len(told) == 1 and key.read_bytes() == pem
    assert signing.signing_key_path(None, local=True) == key
    assert signing.signing_key_path(None) is None  # write_bundle's own lookup: argument or env


def test_the_environment_key_wins_over_the_machine_key(
        machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signing.ensure_local_key()
    team = tmp_path / "team.pem"
    fingerprint = signing.generate_signing_key(team)
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(team))
    assert signing.signing_key_path(None, local=True) == team
    assert signing.signing_record() == {"signed": True, "key": "SOXTRAIL_SIGNING_KEY",
                                        "fingerprint": fingerprint}


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_under_ci_without_a_key_nothing_is_created_and_the_error_names_the_ways_out(
        machine: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(ConfigError, match="SOXTRAIL_SIGNING_KEY is not set") as caught:
        signing.signing_record()
    assert "--no-sign" in str(caught.value) and caught.value.exit_code == 2
    with pytest.raises(ConfigError):
        signing.check_ci(no_sign=False)
    assert not (machine / "keys").exists()
    signing.check_ci(no_sign=True)
    assert signing.signing_record(no_sign=True) == {"signed": False, "fingerprint": None,
                                                    "key": "--no-sign"}
    assert not (machine / "keys").exists()


def test_ci_false_or_a_key_in_the_environment_is_not_refused(
        machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    signing.check_ci(no_sign=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(tmp_path / "team.pem"))
    signing.check_ci(no_sign=False)
