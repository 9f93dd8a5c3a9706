"""The bundle's anchor under S3 Object Lock, against a real S3 endpoint over HTTP (moto server):
written in COMPLIANCE mode before the run is completed, undeletable, checked by verify."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError

from extract.demo import generate
from render import signing
from render.bundle import ANCHOR, LOCKED, MANIFEST, SIGNATURE, generate_signing_key
from soxtrail.audit import verify
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import StoreError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.store import DEFAULT_LOCK_DAYS, S3Store
from tests.support.cli import soxtrail

pytestmark = pytest.mark.integration

QUARTER = "2024Q3"
SCOPE = "pg-fin-01"  # one cluster keeps the run small
PREFIX = "sox"


def _bucket(endpoint: str, *, lock: bool, rule: dict[str, Any] | None = None) -> str:
    name = f"anchor-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=lock)
    if rule is not None:
        client.put_object_lock_configuration(Bucket=name, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": rule}})
    return name


@dataclass
class LockedRun:
    run_id: str
    bucket: str
    endpoint: str
    home: Path
    public_key: Path
    db: Database
    started: datetime
    finished: datetime

    @property
    def bundle(self) -> str:
        return f"{PREFIX}/{QUARTER}/{self.run_id}/bundle"

    def env(self) -> dict[str, str]:
        return {"SOXTRAIL_S3_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        return boto3.client("s3", endpoint_url=self.endpoint)

    def verify(self, *args: str) -> dict[str, Any]:
        result = soxtrail("verify", self.run_id, "--public-key", str(self.public_key), "--json",
                          *args, home=self.home, database_url=self.db.dsn, env=self.env())
        assert result.code in (0, 1), result.stderr
        return result.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def locked_run(pg_database: Database, s3_endpoint: str,
               tmp_path_factory: pytest.TempPathFactory) -> LockedRun:
    """A signed one-cluster demo run into a bucket with Object Lock enabled and nothing else
    configured: no default retention rule, no SOXTRAIL_S3_OBJECT_LOCK, no retention days."""
    root = tmp_path_factory.mktemp("anchor-lock")
    generate(root / "demo", Quarter.parse(QUARTER))
    config = yaml.safe_load((root / "demo" / "soxtrail.yml").read_text())
    # its 496 CloudTrail files would only make the run slower: this is about the bundle
    config["sources"] = [s for s in config["sources"] if s["connector"] != "aws_cloudtrail"]
    (root / "demo" / "soxtrail-s3.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    key = root / "signing.pem"
    generate_signing_key(key)
    public = root / "signing.pub"
    public.write_bytes(signing.public_key_pem(signing.load_private_key(key).public_key()))
    bucket = _bucket(s3_endpoint, lock=True)
    started = datetime.now(UTC)
    result = soxtrail("run", "--quarter", QUARTER, "--config",
                      str(root / "demo" / "soxtrail-s3.yml"), "--clusters", SCOPE,
                      "--json", "--quiet", home=root / "home", database_url=pg_database.dsn,
                      env={"SOXTRAIL_STORE": f"s3://{bucket}/{PREFIX}",
                           "SOXTRAIL_S3_ENDPOINT_URL": s3_endpoint,
                           "SOXTRAIL_SIGNING_KEY": str(key)})
    assert result.code == 0, result.stderr
    return LockedRun(result.json()["run_id"], bucket, s3_endpoint, root / "home", public,
                     pg_database, started, datetime.now(UTC))


def _checks(doc: dict[str, Any], status: str | None = None) -> dict[str, dict[str, str]]:
    """The lock lines of a verify --json, by subject."""
    return {c["subject"]: c for c in doc["checks"]
            if c["kind"] == "bundle" and c["subject"].endswith(" lock")
            and (status is None or c["status"] == status)}


def test_the_anchor_manifest_and_signature_are_locked_in_compliance_mode(
        locked_run: LockedRun) -> None:
    client = locked_run.client()
    for name in LOCKED:
        head = client.head_object(Bucket=locked_run.bucket, Key=f"{locked_run.bundle}/{name}")
        assert head["ObjectLockMode"] == "COMPLIANCE", name
        until = head["ObjectLockRetainUntilDate"]
        # nothing configured: the default, seven years; set while the bundle was written
        assert (locked_run.started + timedelta(days=DEFAULT_LOCK_DAYS) - timedelta(seconds=1)
                <= until <= locked_run.finished + timedelta(days=DEFAULT_LOCK_DAYS)), name
    # the other objects follow the store-wide setting: none here
    other = client.head_object(Bucket=locked_run.bucket, Key=f"{locked_run.bundle}/run.json")
    assert "ObjectLockMode" not in other


def test_nobody_can_delete_the_locked_anchor_and_soxtrail_never_overwrites_it(
        locked_run: LockedRun) -> None:
    client = locked_run.client()
    key = f"{locked_run.bundle}/{ANCHOR}"
    version = client.head_object(Bucket=locked_run.bucket, Key=key)["VersionId"]
    for bypass in (False, True):  # COMPLIANCE: not even with the governance bypass
        with pytest.raises(ClientError, match="AccessDenied"):
            client.delete_object(Bucket=locked_run.bucket, Key=key, VersionId=version,
                                 BypassGovernanceRetention=bypass)
    store = S3Store(f"s3://{locked_run.bucket}/{PREFIX}", endpoint_url=locked_run.endpoint)
    anchor_key = f"{QUARTER}/{locked_run.run_id}/bundle/{ANCHOR}"
    with pytest.raises(StoreError, match="refusing to overwrite"):
        store.put_bytes(anchor_key, b'{"forged": true}\n', lock=True)
    with store.open(anchor_key) as handle:
        original = handle.read()
    store.put_bytes(anchor_key, original, lock=True)  # the same bytes again: a no-op
    listed = client.list_object_versions(Bucket=locked_run.bucket, Prefix=key)
    assert [v["VersionId"] for v in listed["Versions"]] == [version]
    assert client.head_object(Bucket=locked_run.bucket, Key=key)["ObjectLockMode"] == "COMPLIANCE"


def test_verify_passes_and_reports_the_lock(locked_run: LockedRun) -> None:
    doc = locked_run.verify()
    assert doc["passed"], [c for c in doc["checks"] if c["status"] not in ("OK", "NOTE")]
    locks = _checks(doc)
    assert set(locks) == {f"{name} lock" for name in LOCKED}
    for check in locks.values():
        assert check["status"] == "OK", check
        assert check["detail"].startswith("Object Lock COMPLIANCE until ")
        assert "nobody, the bucket owner included, can delete or overwrite it" in check["detail"]


def test_an_anchor_deleted_and_written_again_fails_verify_and_the_locked_one_survives(
        locked_run: LockedRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """A delete marker and a forged anchor on top: S3 allows it, the locked version stays
    underneath; verify fails on the key's versions. Undone afterwards (the forgery and the
    marker are not locked), so the other tests see the run as written."""
    monkeypatch.setenv("SOXTRAIL_S3_ENDPOINT_URL", locked_run.endpoint)
    client = locked_run.client()
    key = f"{locked_run.bundle}/{ANCHOR}"
    original = client.get_object(Bucket=locked_run.bucket, Key=key)
    body, version = original["Body"].read(), original["VersionId"]
    marker = client.delete_object(Bucket=locked_run.bucket, Key=key)["VersionId"]
    forged = client.put_object(Bucket=locked_run.bucket, Key=key,
                               Body=body.replace(b'"quarter"', b'"quarter" ', 1))["VersionId"]
    try:
        with verify.connect_read_only(locked_run.db) as conn:
            report = verify.verify_run(conn, locked_run.run_id, public_key=locked_run.public_key,
                                       kinds=("bundle",))
        failures = {(v.status, v.subject): v.detail for v in report.failures()}
        detail = failures[("FAIL", f"{ANCHOR} lock")]
        assert "has 3 versions (delete markers included)" in detail
        assert f"version {forged} a reader gets is not locked" in detail
        assert ("MISMATCH", ANCHOR) in failures  # and the manifest no longer matches it
        kept = client.head_object(Bucket=locked_run.bucket, Key=key, VersionId=version)
        assert kept["ObjectLockMode"] == "COMPLIANCE"
    finally:
        for undo in (forged, marker):
            client.delete_object(Bucket=locked_run.bucket, Key=key, VersionId=undo)
    assert client.get_object(Bucket=locked_run.bucket, Key=key)["Body"].read() == body


def test_a_bucket_without_object_lock_gets_a_note(locked_run: LockedRun,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The run's bundle copied to a bucket without Object Lock and verified there."""
    monkeypatch.setenv("SOXTRAIL_S3_ENDPOINT_URL", locked_run.endpoint)
    client = locked_run.client()
    plain = _bucket(locked_run.endpoint, lock=False)
    listed = client.list_objects_v2(Bucket=locked_run.bucket, Prefix=f"{locked_run.bundle}/")
    for item in listed["Contents"]:
        client.copy_object(Bucket=plain, Key=f"copy/{item['Key'][len(locked_run.bundle) + 1:]}",
                           CopySource={"Bucket": locked_run.bucket, "Key": item["Key"]})
    with verify.connect_read_only(locked_run.db) as conn:
        report = verify.verify_run(conn, locked_run.run_id, public_key=locked_run.public_key,
                                   bundle=f"s3://{plain}/copy", kinds=("bundle",))
    assert report.passed, [v.line() for v in report.failures()]
    [note] = [v for v in report.verdicts if v.subject.endswith(" lock")]
    assert (note.status, note.subject) == ("NOTE", f"{ANCHOR} lock")
    assert note.detail.startswith(f"s3://{plain}/copy has no Object Lock: the anchor is not "
                                  "write-protected by the store")
    assert "signature checked with your pinned key (--public-key)" in note.detail


# ---------------------------------------------------------------- the store, without a run


def test_lock_true_is_compliance_whatever_the_store_wide_mode(s3_endpoint: str) -> None:
    bucket = _bucket(s3_endpoint, lock=True)
    store = S3Store(f"s3://{bucket}/p", endpoint_url=s3_endpoint, object_lock="GOVERNANCE",
                    retention_days=3)
    before = datetime.now(UTC)
    store.put_bytes("q/r/bundle/anchor.json", b"{}\n", lock=True)
    store.put_bytes("q/r/bundle/run.json", b"{}\n")
    anchor = store.retention("q/r/bundle/anchor.json")
    other = store.retention("q/r/bundle/run.json")
    assert anchor is not None and other is not None
    assert (anchor.mode, other.mode, anchor.versions) == ("COMPLIANCE", "GOVERNANCE", 1)
    assert anchor.retain_until is not None
    assert before + timedelta(days=3) - timedelta(seconds=1) <= anchor.retain_until \
        <= datetime.now(UTC) + timedelta(days=3)


def test_without_retention_days_the_buckets_default_period_is_used(s3_endpoint: str) -> None:
    bucket = _bucket(s3_endpoint, lock=True, rule={"Mode": "GOVERNANCE", "Days": 5})
    store = S3Store(f"s3://{bucket}/p", endpoint_url=s3_endpoint)
    assert store.lock_retention()[1] == "the bucket's default retention, 5 days"
    store.put_bytes("q/r/bundle/anchor.json", b"{}\n", lock=True)
    store.put_bytes("q/r/bundle/run.json", b"{}\n")  # the bucket's default applies
    anchor = store.retention("q/r/bundle/anchor.json")
    other = store.retention("q/r/bundle/run.json")
    assert anchor is not None and other is not None
    assert (anchor.mode, other.mode) == ("COMPLIANCE", "GOVERNANCE")
    assert anchor.retain_until is not None
    assert abs(anchor.retain_until - (datetime.now(UTC) + timedelta(days=5))) < timedelta(minutes=1)


def test_an_existing_unlocked_object_with_the_same_bytes_gets_locked(s3_endpoint: str) -> None:
    """A resumed bundle finds its anchor already written, but unlocked (e.g. by a release
    before this one): writing it again locks it; other bytes are still refused."""
    bucket = _bucket(s3_endpoint, lock=True)
    store = S3Store(f"s3://{bucket}/p", endpoint_url=s3_endpoint)
    store.put_bytes("q/r/bundle/anchor.json", b"{}\n")
    assert store.retention("q/r/bundle/anchor.json").mode is None  # type: ignore[union-attr]
    store.put_bytes("q/r/bundle/anchor.json", b"{}\n", lock=True)
    locked = store.retention("q/r/bundle/anchor.json")
    assert locked is not None and (locked.mode, locked.versions) == ("COMPLIANCE", 1)
    with pytest.raises(StoreError, match="refusing to overwrite"):
        store.put_bytes("q/r/bundle/anchor.json", b"[]\n", lock=True)


def test_a_bucket_without_object_lock_writes_no_lock(s3_endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket(s3_endpoint, lock=False)
    store = S3Store(f"s3://{bucket}/p", endpoint_url=s3_endpoint)
    source = tmp_path / MANIFEST
    source.write_bytes(b"abc  file\n")
    store.put_file(f"q/r/bundle/{MANIFEST}", source, lock=True)
    store.put_bytes(f"q/r/bundle/{SIGNATURE}", b"sig", lock=True)
    assert store.lock_configuration() is None
    assert store.retention(f"q/r/bundle/{MANIFEST}") is None
    head = boto3.client("s3", endpoint_url=s3_endpoint).head_object(
        Bucket=bucket, Key=f"p/q/r/bundle/{MANIFEST}")
    assert "ObjectLockMode" not in head
