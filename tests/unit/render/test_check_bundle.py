"""check_bundle on hand-made bundle folders: hashes, missing and extra files, signatures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from render import signing
from render.bundle import bundle_ok, check_bundle, parse_manifest


def _bundle(root: Path, key: Path | None) -> Path:
    files = {"run.json": b'{"run": 1}\n', "report/AC-01.csv": b"Item\r\na\r\n",
             "evidence.jsonl": b"{}\n"}
    if key is None:
        files["UNSIGNED"] = b"THIS BUNDLE IS NOT SIGNED.\n"
    else:
        private = signing.load_private_key(key)
        files["signing-key.pub"] = signing.public_key_pem(private.public_key())
        files["signing-key.fingerprint"] = (signing.fingerprint(private.public_key())
                                            + "\n").encode()
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    manifest = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    (root / "MANIFEST.sha256").write_text(manifest)
    if key is not None:
        (root / "MANIFEST.sha256.sig").write_bytes(
            signing.sign(signing.load_private_key(key), manifest.encode()))
    return root


@pytest.fixture()
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    signing.generate_signing_key(path)
    return path


def _statuses(root: Path, **kwargs: Path) -> set[tuple[str, str]]:
    return {(c.status, c.path) for c in check_bundle(root, "", **kwargs)}


def test_a_good_signed_bundle_passes(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    checks = check_bundle(root)
    assert bundle_ok(checks, require_signature=True)
    assert {c.status for c in checks} == {"OK"}


def test_a_store_prefix_is_honoured(tmp_path: Path, key: Path) -> None:
    _bundle(tmp_path / "store" / "2024Q3" / "r1" / "bundle", key)
    assert bundle_ok(check_bundle(tmp_path / "store", "2024Q3/r1/bundle"),
                     require_signature=True)


def test_a_changed_file_is_a_mismatch(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    (root / "report/AC-01.csv").write_bytes(b"Item\r\nb\r\n")
    assert ("MISMATCH", "report/AC-01.csv") in _statuses(root)


def test_a_missing_file_and_an_extra_file_are_reported(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    (root / "evidence.jsonl").unlink()
    (root / "notes.txt").write_text("added later")
    statuses = _statuses(root)
    assert ("MISSING", "evidence.jsonl") in statuses
    assert ("EXTRA", "notes.txt") in statuses


def test_a_bundle_without_manifest_fails(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    (root / "MANIFEST.sha256").unlink()
    checks = check_bundle(root)
    assert [c.status for c in checks] == ["FAIL"] and not bundle_ok(checks)


def test_a_replaced_key_and_signature_fail_against_the_auditors_key(
        tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    given = tmp_path / "given.pub"
    given.write_bytes((root / "signing-key.pub").read_bytes())
    forger = tmp_path / "forger.pem"
    signing.generate_signing_key(forger)
    (root / "run.json").write_text('{"forged": 1}\n')
    _bundle(root, forger)  # a consistent bundle under another key
    assert bundle_ok(check_bundle(root))  # consistent on its own...
    checks = check_bundle(root, public_key=given)  # ...but not under the key the auditor holds
    assert ("FAIL", "signing-key.pub") in {(c.status, c.path) for c in checks}
    assert ("FAIL", "MANIFEST.sha256.sig") in {(c.status, c.path) for c in checks}


def test_a_wrong_fingerprint_file_fails(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    (root / "signing-key.fingerprint").write_text("0" * 64 + "\n")
    statuses = _statuses(root)
    assert ("FAIL", "signing-key.fingerprint") in statuses
    assert ("MISMATCH", "signing-key.fingerprint") in statuses


def test_unsigned_is_reported_not_hidden(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", None)
    checks = check_bundle(root)
    assert ("UNSIGNED", "MANIFEST.sha256.sig") in {(c.status, c.path) for c in checks}
    assert bundle_ok(checks) and not bundle_ok(checks, require_signature=True)
    given = tmp_path / "k.pub"
    given.write_bytes(signing.public_key_pem(signing.load_private_key(key).public_key()))
    assert not bundle_ok(check_bundle(root, public_key=given))


def test_no_signature_and_no_unsigned_marker_fails(tmp_path: Path, key: Path) -> None:
    root = _bundle(tmp_path / "b", key)
    (root / "MANIFEST.sha256.sig").unlink()
    assert ("FAIL", "MANIFEST.sha256.sig") in _statuses(root)


def test_manifest_lines_are_parsed_like_sha256sum() -> None:
    entries, bad = parse_manifest(f"{'a' * 64}  run.json\n{'b' * 64} *bin.xlsx\nnot a line\n"
                                  f"{'c' * 64}  run.json\n")
    assert entries == {"run.json": "a" * 64, "bin.xlsx": "b" * 64}
    assert len(bad) == 2
