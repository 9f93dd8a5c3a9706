"""Ed25519 keys, the one place they are read and compared: the bundle's signing key
(render/signing.py) and a person's sign-off key (kernel/attestations.py) load, fingerprint
and verify the same way; only what they are called in errors and their password variable
differ."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from soxtrail.kernel.errors import ConfigError


def load_private(path: Path, *, what: str, password_env: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (its password from `$password_env`); errors
    name it as `what` (e.g. "signing key") and its path."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read it ({exc.strerror})") from exc
    password = os.environ.get(password_env)
    try:
        key = serialization.load_pem_private_key(
            data, password=password.encode() if password else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{what} {path}: not a usable PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what} {path}: expected an Ed25519 key "
                          f"(create one with `soxtrail keygen`), got {type(key).__name__}")
    return key


def load_public(data: bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes; `where` names it in errors."""
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{where}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where}: expected an Ed25519 public key, got {type(key).__name__}")
    return key


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    """The public key as PEM (SubjectPublicKeyInfo), the form `openssl pkeyutl -pubin` reads."""
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the raw 32-byte public key (what `soxtrail keygen` prints)."""
    return hashlib.sha256(raw_public_key(key)).hexdigest()


def verify(key: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    """Whether `signature` is a valid Ed25519 signature of `data` under `key`."""
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
