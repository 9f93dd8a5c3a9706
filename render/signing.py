"""Ed25519 signing of the bundle manifest: key generation, loading, signing, verifying, and
which key a run signs with (SOXTRAIL_SIGNING_KEY, else the machine's own key, created on the
first run; never a fresh key under CI; `--no-sign` opts out)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from soxtrail.kernel import keys
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.keys import fingerprint, public_key_pem, raw_public_key, verify  # noqa: F401

KEY_ENV = "SOXTRAIL_SIGNING_KEY"
PASSWORD_ENV = "SOXTRAIL_SIGNING_KEY_PASSWORD"
CI_ENV = "CI"
# the machine's own key, under $SOXTRAIL_HOME (soxtrail.kernel.database.home)
KEYS_DIR = "keys"
LOCAL_KEY = "signing-key.pem"
LOCAL_PUBLIC_KEY = "signing-key.pub"
# how a run's `_signing` record names where its key came from
FROM_ENV = KEY_ENV
FROM_LOCAL = "local"
FROM_ARGUMENT = "argument"
OPTED_OUT = "--no-sign"


def generate_signing_key(path: Path) -> str:
    """Write a new Ed25519 private key (PEM, PKCS8, mode 0600) to `path`; return its fingerprint.

    Refuses to overwrite an existing file.
    """
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} exists; refusing to overwrite a signing key") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(path, 0o600)  # the umask cannot widen it, but be explicit
    return fingerprint(key.public_key())


def signing_key_path(path: Path | None, *, local: bool = False) -> Path | None:
    """The private key to sign with: the argument, else `$SOXTRAIL_SIGNING_KEY`, else (with
    `local`) the machine's own key if it exists (local_key_path), else None."""
    if path is not None:
        return path
    value = os.environ.get(KEY_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    if local and local_key_path().is_file():
        return local_key_path()
    return None


def local_key_path() -> Path:
    """The machine's own signing key: `$SOXTRAIL_HOME/keys/signing-key.pem`."""
    from soxtrail.kernel.database import home

    return home() / KEYS_DIR / LOCAL_KEY


def under_ci() -> bool:
    """Whether this process runs in CI (`CI` set to true or 1, as CI services set it)."""
    return os.environ.get(CI_ENV, "").strip().lower() in ("true", "1")


def check_ci(*, no_sign: bool) -> None:
    """Refuse a run under CI with no SOXTRAIL_SIGNING_KEY (unless `no_sign`): a key created
    on a throwaway CI machine would be a new key every run, which nobody can pin."""
    if no_sign or not under_ci() or signing_key_path(None) is not None:
        return
    raise ConfigError(
        f"{CI_ENV}={os.environ.get(CI_ENV)}: {KEY_ENV} is not set. Under CI a run signs its "
        f"bundle with the team's key from the CI secret store (set {KEY_ENV} to the private "
        "key's file); a key created on this machine would be new every run and could not be "
        "pinned by the auditors. Pass --no-sign to write an unsigned bundle on purpose")


def ensure_local_key(announce: Callable[[str], None] | None = None) -> Path:
    """The machine's own key, created on first use (private key 0600 in a 0700 folder, its
    public key beside it); `announce` is told once, when it is created. Never under CI."""
    path = local_key_path()
    public = path.with_name(LOCAL_PUBLIC_KEY)
    if path.is_file():
        if not public.is_file():  # a first run stopped between the two files
            public.write_bytes(public_key_pem(load_private_key(path).public_key()))
        return path
    check_ci(no_sign=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        created = generate_signing_key(path)
    except ConfigError:  # another process created it first
        return path
    public.write_bytes(public_key_pem(load_private_key(path).public_key()))
    if announce is not None:
        announce(f"created this machine's signing key {path} (fingerprint {created}); its "
                 f"public key is {public}: give it to the auditors, or set {KEY_ENV} to the "
                 "team's key instead")
    return path


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from PEM (password from $SOXTRAIL_SIGNING_KEY_PASSWORD)."""
    return keys.load_private(path, what="signing key", password_env=PASSWORD_ENV)


def load_public_key(data: bytes, where: str) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM bytes; `where` names it in errors."""
    return keys.load_public(data, f"public key {where}")


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte detached Ed25519 signature of `data` (deterministic)."""
    return key.sign(data)


def signing_record(path: Path | None = None, *, no_sign: bool = False,
                   announce: Callable[[str], None] | None = None) -> dict[str, Any]:
    """How a run's bundle will be signed, for the run's config (`_signing`) when the run
    starts: `{"signed": True, "fingerprint": <hex>, "key": <where from>}` with a key (the
    argument, else $SOXTRAIL_SIGNING_KEY, else the machine's own key, created now if
    missing: ensure_local_key), or `{"signed": False, "fingerprint": None, "key":
    "--no-sign"}` with `no_sign`. Under CI without SOXTRAIL_SIGNING_KEY (and without
    `no_sign`) it raises ConfigError. The workbook (rendered before the bundle) states it,
    a re-render reads it from the database, and the bundle phase refuses another key."""
    if no_sign:
        return {"signed": False, "fingerprint": None, "key": OPTED_OUT}
    key_path = signing_key_path(path)
    source = FROM_ARGUMENT if path is not None else FROM_ENV
    if key_path is None:
        key_path, source = ensure_local_key(announce), FROM_LOCAL
    return {"signed": True, "key": source,
            "fingerprint": fingerprint(load_private_key(key_path).public_key())}
