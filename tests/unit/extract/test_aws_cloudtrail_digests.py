"""aws_cloudtrail with digest files: captured as one bundle per region, loaded one row per
digest, and the chain's completeness statement — on the demo trail (files, key file) and on
S3 with the public keys from a CloudTrail ListPublicKeys endpoint over HTTP."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from extract import demo
from extract.connectors import aws_cloudtrail
from extract.connectors.registry import object_module
from extract.demo.writers.iam import demo_key
from extract.snapshot import SnapshotRun
from soxtrail.kernel.errors import SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Source
from soxtrail.kernel.store import LocalStore

Q3 = Quarter.parse("2024Q3")
ACCOUNT = "123456789012"
REGION = "us-east-1"


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Q3, executed_by="ci",
                       store=LocalStore(tmp_path / "store"), spool_dir=tmp_path / "spool")


def statement(run: SnapshotRun) -> dict[str, Any]:
    last = run.records[-1]
    assert last.query_params["raw_table"] == "raw.source_completeness"
    return json.loads(Path(run.store.location(last.raw_output_s3_key)).read_text())


def snapshot(base: Path, tmp_path: Path, **values: Any) -> SnapshotRun:
    run = make_run(tmp_path)
    aws_cloudtrail.snapshot(Source(name="cloudtrail", system="iam", connector="aws_cloudtrail",
                                   values={"path": "cloudtrail", **values}, base_dir=base), run)
    return run


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "estate"
    demo.generate(out, Q3)
    return out


def test_the_demo_trail_reproduces_expected_completeness(estate: Path, tmp_path: Path) -> None:
    run = snapshot(estate, tmp_path, public_keys="cloudtrail/public-keys.json")
    doc = statement(run)
    expected = json.loads((estate / "expected.json").read_text())["completeness"]
    assert sorted({f["code"] for f in doc["findings"]}) == expected["cloudtrail"]
    assert sorted(f["code"] for f in doc["findings"]) == ["DIGEST_MISMATCH", "MISSING_LOG_FILE"]
    assert doc["basis"] == "digest_chain"
    assert doc["facts"]["signatures_verified"] == doc["facts"]["digests"] > 2_200
    assert doc["claimed"] == doc["captured"] + 1  # the deleted file
    assert doc["covered"] == [{"from": "2024-06-30T23:31:12Z", "to": "2024-10-01T23:31:12Z"}]
    # one evidence object for ~2,200 digests, loaded one row per digest
    (bundle,) = [r for r in run.records if r.query_params["raw_table"] == "raw.cloudtrail_digests"]
    assert bundle.result_row_count == doc["facts"]["digests"]
    path = Path(run.store.location(bundle.raw_output_s3_key))
    rows = list(object_module(bundle.query_params).load(bundle.query_params, path))
    assert len(rows) == bundle.result_row_count and all(isinstance(r, RawRow) for r in rows)
    first = rows[0]
    assert isinstance(first, RawRow)
    assert first.locator == f"digests-{ACCOUNT}-{REGION}.jsonl:1"
    row = first.values[0]
    assert row["digest"]["previousDigestSignature"] is None and row["signature"]
    second = rows[1]
    assert isinstance(second, RawRow)
    assert second.values[0]["digest"]["previousDigestHashValue"] == row["sha256"]


def test_a_copy_without_signature_sidecars_checks_the_chain_only(estate: Path,
                                                                 tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(estate / "cloudtrail", copy / "cloudtrail")
    for sidecar in copy.rglob("*.metadata.json"):
        sidecar.unlink()
    doc = statement(snapshot(copy, tmp_path, public_keys="cloudtrail/public-keys.json"))
    codes = sorted(f["code"] for f in doc["findings"])
    assert codes == ["DIGEST_MISMATCH", "MISSING_LOG_FILE", "UNVERIFIED"]
    assert [f["exception"] for f in doc["findings"] if f["code"] == "UNVERIFIED"] == [False]


def test_a_deleted_digest_is_missing_digest(estate: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(estate / "cloudtrail", copy / "cloudtrail")
    (gone,) = copy.rglob("*CloudTrail-Digest_*_20240805T123112Z.json.gz")
    gone.unlink()
    doc = statement(snapshot(copy, tmp_path, public_keys="cloudtrail/public-keys.json"))
    missing = [f["detail"] for f in doc["findings"] if f["code"] == "MISSING_DIGEST"]
    assert len(missing) == 1 and "2024-08-05T11:31:12Z to 2024-08-05T12:31:12Z" in missing[0]


def test_a_bad_key_file_is_a_source_error_naming_the_source(estate: Path,
                                                            tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("[]")
    with pytest.raises(SourceError, match="source cloudtrail: public keys"):
        snapshot(estate, tmp_path, public_keys=str(tmp_path / "keys.json"))


# ---------------------------------------------------------------- S3 and ListPublicKeys


class _ListPublicKeys(BaseHTTPRequestHandler):
    """CloudTrail's JSON 1.1 protocol, ListPublicKeys only."""

    keys: list[dict[str, Any]] = []
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        target = self.headers.get("X-Amz-Target", "")
        self.seen.append({"target": target, "body": body,
                          "signed": self.headers.get("Authorization", "").startswith("AWS4")})
        if not target.endswith(".ListPublicKeys"):
            self.send_response(400)
            self.end_headers()
            return
        data = json.dumps({"PublicKeyList": self.keys}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cloudtrail_api() -> Iterator[tuple[str, type[_ListPublicKeys]]]:
    handler = type("Handler", (_ListPublicKeys,), {"keys": [], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_an_s3_trail_is_verified_with_keys_from_list_public_keys(
        tmp_path: Path, s3_endpoint: str, cloudtrail_api: tuple[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    api, handler = cloudtrail_api
    monkeypatch.setenv("SOXTRAIL_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv(aws_cloudtrail.ENDPOINT_ENV, api)
    key = demo_key(11)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.PKCS1)
    handler.keys.append({"Value": base64.b64encode(der).decode(), "Fingerprint": "fp-1",
                         "ValidityStartTime": 1719792000, "ValidityEndTime": 1735689600})
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    start = datetime(2024, 7, 1, tzinfo=UTC) - timedelta(minutes=29)
    previous: tuple[str, str, str] | None = None
    for hour in range(3):
        low, high = start + timedelta(hours=hour), start + timedelta(hours=hour + 1)
        log = json.dumps({"Records": []}).encode()
        log_key = (f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/2024/07/01/"
                   f"{ACCOUNT}_CloudTrail_{REGION}_{high:%Y%m%dT%H%M}Z_x{hour}.json.gz")
        s3.put_object(Bucket=bucket, Key=log_key, Body=gzip.compress(log, mtime=0))
        name = f"{ACCOUNT}_CloudTrail-Digest_{REGION}_t_{REGION}_{high:%Y%m%dT%H%M%S}Z.json.gz"
        obj = f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/{high:%Y/%m/%d}/{name}"
        doc: dict[str, Any] = {
            "awsAccountId": ACCOUNT, "digestStartTime": f"{low:%Y-%m-%dT%H:%M:%SZ}",
               "digestEndTime": f"{high:%Y-%m-%dT%H:%M:%SZ}", "digestS3Bucket": bucket,
               "digestS3Object": obj, "digestPublicKeyFingerprint": "fp-1",
               "digestSignatureAlgorithm": "SHA256withRSA",
               "previousDigestS3Bucket": bucket if previous else None,
               "previousDigestS3Object": previous[0] if previous else None,
               "previousDigestHashValue": previous[1] if previous else None,
               "previousDigestHashAlgorithm": "SHA-256",
               "previousDigestSignature": previous[2] if previous else None,
               "logFiles": [{"s3Bucket": bucket, "s3Object": log_key,
                             "hashValue": hashlib.sha256(log).hexdigest(),
                             "hashAlgorithm": "SHA-256"}]}
        content = json.dumps(doc).encode()
        sha = hashlib.sha256(content).hexdigest()
        to_sign = (f"{doc['digestEndTime']}\n{bucket}/{obj}\n{sha}\n"
                   f"{previous[2] if previous else 'null'}").encode()
        signature = key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256()).hex()
        s3.put_object(Bucket=bucket, Key=obj, Body=gzip.compress(content, mtime=0),
                      Metadata={"signature": signature, "signature-algorithm": "SHA256withRSA"})
        previous = (obj, sha, signature)
    run = make_run(tmp_path)
    aws_cloudtrail.snapshot(Source(name="cloudtrail", system="iam", connector="aws_cloudtrail",
                                   values={"path": f"s3://{bucket}"}), run)
    doc = statement(run)
    assert doc["facts"]["signatures_verified"] == 3
    assert doc["facts"]["public_key_fingerprints"] == ["fp-1"]
    assert doc["facts"]["public_keys"] == f"cloudtrail:ListPublicKeys ({REGION})"
    assert doc["facts"]["log_files_checked"] == 3
    # the three hours are whole; the rest of the quarter has no digest
    assert [f["code"] for f in doc["findings"]] == ["MISSING_DIGEST"]
    assert "2024-07-01T02:31:00Z to 2024-10-01T00:00:00Z" in doc["findings"][0]["detail"]
    (call,) = handler.seen
    assert call["signed"] and call["body"]["StartTime"] and call["body"]["EndTime"]
