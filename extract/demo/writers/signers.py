"""The demo's sign-off people: `signers.yml` and each person's key pair under `keys/`.

The keys are derived from the person's name, so the demo's bytes stay the same from run to
run; they are public by construction (anyone can derive them) and sign nothing but the demo.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# who signs the demo off, and as what (`soxtrail signoff --as NAME --role ROLE`)
DEMO_SIGNERS = {"pat.preparer": "preparer", "rita.reviewer": "reviewer"}
KEYS_DIR = "keys"


def demo_key(name: str) -> Ed25519PrivateKey:
    """The demo person's private key: its 32 bytes are SHA-256 of a fixed text and the name."""
    seed = hashlib.sha256(f"soxtrail demo signer, never a real key: {name}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def key_path(out: Path, name: str) -> Path:
    """Where the demo person's private key (PEM) is written."""
    return out / KEYS_DIR / f"{name}.pem"


def write_signers(out: Path) -> dict[str, str]:
    """Write `signers.yml` and the demo people's keys (private 0600, public beside it);
    each person → their role."""
    keys = out / KEYS_DIR
    keys.mkdir(parents=True, exist_ok=True)
    people: dict[str, dict[str, str]] = {}
    for name in DEMO_SIGNERS:
        key = demo_key(name)
        private = key_path(out, name)
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        private.chmod(0o600)
        public = keys / f"{name}.pub"
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        people[name] = {"public_key": f"{KEYS_DIR}/{public.name}"}
    text = ("# Who may sign off the demo's runs (soxtrail signoff) and their public keys.\n"
            "# DEMO ONLY: the private keys beside it are derived from the names.\n")
    (out / "signers.yml").write_text(
        text + yaml.safe_dump({"version": 1, "signers": people}, sort_keys=False),
        encoding="utf-8")
    return dict(DEMO_SIGNERS)
