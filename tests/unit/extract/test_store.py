from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from soxtrail.kernel.errors import StoreError
from soxtrail.kernel.store import LocalStore, check_key, spool


@pytest.mark.parametrize("key", ["../x", "a/../../b", "/abs", "a\\b", "a//b", "", "a/./b"])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(StoreError):
        check_key(key)


def test_local_store_cannot_be_escaped(local_store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError):
        local_store.put_bytes("2024Q3/../../outside.txt", b"x")
    assert not (tmp_path / "outside.txt").exists()


def test_a_symlink_in_the_store_cannot_lead_outside_it(local_store: LocalStore,
                                                       tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    local_store.put_bytes("2024Q3/inside/a.txt", b"a")
    (local_store.root / "2024Q3" / "link").symlink_to(outside, target_is_directory=True)
    (local_store.root / "2024Q3" / "inside" / "leaf.txt").symlink_to(outside / "leaf.txt")
    for key in ("2024Q3/link/x.txt", "2024Q3/inside/leaf.txt"):
        with pytest.raises(StoreError, match="outside the store"):
            local_store.put_bytes(key, b"x")
    assert list(outside.iterdir()) == []
    local_store.put_bytes("2024Q3/inside/b.txt", b"b")  # the folder itself is still fine
    assert local_store.open("2024Q3/inside/b.txt").read() == b"b"


def test_spool_hashes_while_streaming(tmp_path: Path) -> None:
    chunks = [b"a" * 1000, b"b" * 5, b""]
    path, digest, size = spool(iter(chunks), tmp_path)
    assert digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert size == 1005
    assert path.read_bytes() == b"".join(chunks)


def test_local_store_round_trip_and_listing(local_store: LocalStore, tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"raw bytes")
    local_store.put_file("2024Q3/run/raw/x/f.bin", source)
    local_store.put_bytes("2024Q3/run/report/r.txt", b"report")
    assert local_store.exists("2024Q3/run/raw/x/f.bin")
    with local_store.open("2024Q3/run/raw/x/f.bin") as handle:
        assert handle.read() == b"raw bytes"
    assert list(local_store.list("2024Q3/run")) == ["2024Q3/run/raw/x/f.bin",
                                                    "2024Q3/run/report/r.txt"]
    with pytest.raises(StoreError, match="not found"):
        local_store.open("2024Q3/run/missing")
