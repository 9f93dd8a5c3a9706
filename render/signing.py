"""Ed25519 signing of the bundle manifest: key generation, loading, signing, verifying."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from soxtrail.kernel.errors import ConfigError

KEY_ENV = "SOXTRAIL_SIGNING_KEY"
PASSWORD_ENV = "SOXTRAIL_SIGNING_KEY_PASSWORD"


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


def signing_key_path(path: Path | None) -> Path | None:
    """The private key to sign with: the argument, else `$SOXTRAIL_SIGNING_KEY`, else None."""
    if path is not None:
        return path
    value = os.environ.get(KEY_ENV, "").strip()
    return Path(value).expanduser() if value else None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from PEM (password from $SOXTRAIL_SIGNING_KEY_PASSWORD)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"signing key {path}: cannot read it ({exc.strerror})") from exc
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(
            data, password=password.encode() if password else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"signing key {path}: not a usable PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path}: expected an Ed25519 key "
                          f"(create one with `soxtrail keygen`), got {type(key).__name__}")
    return key


def load_public_key(data: bytes, where: str) -> Ed25519PublicKey:
    """Load an Ed25519 public key from PEM bytes; `where` names it in errors."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"public key {where}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"public key {where}: expected an Ed25519 key, got {type(key).__name__}")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo), the form `openssl pkeyutl -pubin` reads."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key."""
    return hashlib.sha256(raw_public_key(key)).hexdigest()


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    """The 64-byte detached Ed25519 signature of `data` (deterministic)."""
    return key.sign(data)


def verify(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether `signature` is a valid Ed25519 signature of `data` under `key`."""
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def signing_record(path: Path | None = None) -> dict[str, Any]:
    """How a run's bundle will be signed, for the run's config (`_signing`) when the run
    starts: `{"signed": True, "fingerprint": <hex>}` with a key (the argument, else
    $SOXTRAIL_SIGNING_KEY), else `{"signed": False, "fingerprint": None}`. The workbook
    (rendered before the bundle) states it, and a re-render reads it from the database."""
    key_path = signing_key_path(path)
    if key_path is None:
        return {"signed": False, "fingerprint": None}
    return {"signed": True,
            "fingerprint": fingerprint(load_private_key(key_path).public_key())}
