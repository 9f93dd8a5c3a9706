"""CloudTrail digest validation: each rule of `aws cloudtrail validate-logs`, and what a
trail without digests says (extract/connectors/cloudtrail_digest.py)."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from extract.connectors import cloudtrail_digest as cd
from extract.connectors.cloudtrail_digest import Digest, LogFile

ACCOUNT = "123456789012"
REGION = "us-east-1"
BUCKET = "trail-bucket"
START = datetime(2024, 7, 1, tzinfo=UTC)
HOURS = 6
PERIOD = (START, START + timedelta(hours=HOURS))
KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
FINGERPRINT = "0123456789abcdef0123456789abcdef"
DER = KEY.public_key().public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.PKCS1)
KEYS = {FINGERPRINT: DER}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def log_content(n: int) -> bytes:
    return json.dumps({"Records": [{"eventID": f"e{n}"}]}).encode()


def log_name(moment: datetime, n: int) -> str:
    return f"{ACCOUNT}_CloudTrail_{REGION}_{moment:%Y%m%dT%H%M}Z_file{n:04d}.json.gz"


def log_key(moment: datetime, n: int) -> str:
    return f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{moment:%Y/%m/%d}/{log_name(moment, n)}"


def sign(text: bytes) -> str:
    return KEY.sign(text, padding.PKCS1v15(), hashes.SHA256()).hex()


def trail(hours: int = HOURS) -> tuple[list[Digest], list[LogFile]]:
    """A whole signed chain: one digest an hour, each listing one log file delivered in it."""
    digests: list[Digest] = []
    logs: list[LogFile] = []
    for hour in range(hours):
        start = START + timedelta(hours=hour)
        end = start + timedelta(hours=1)
        delivered = start + timedelta(minutes=20)
        content = log_content(hour)
        logs.append(LogFile(log_name(delivered, hour), ACCOUNT, REGION, delivered.date(),
                            hashlib.sha256(content).hexdigest()))
        name = f"{ACCOUNT}_CloudTrail-Digest_{REGION}_main_{REGION}_{end:%Y%m%dT%H%M%S}Z.json.gz"
        prev = digests[-1] if digests else None
        doc: dict[str, Any] = {
            "awsAccountId": ACCOUNT, "digestStartTime": stamp(start),
            "digestEndTime": stamp(end), "digestS3Bucket": BUCKET,
            "digestS3Object": f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/"
                              f"{end:%Y/%m/%d}/{name}",
            "digestPublicKeyFingerprint": FINGERPRINT, "digestSignatureAlgorithm": "SHA256withRSA",
            "previousDigestS3Bucket": BUCKET if prev else None,
            "previousDigestS3Object": prev.doc["digestS3Object"] if prev else None,
            "previousDigestHashValue": prev.sha256 if prev else None,
            "previousDigestHashAlgorithm": "SHA-256" if prev else None,
            "previousDigestSignature": prev.signature if prev else None,
            "logFiles": [{"s3Bucket": BUCKET, "s3Object": log_key(delivered, hour),
                          "hashValue": hashlib.sha256(content).hexdigest(),
                          "hashAlgorithm": "SHA-256"}]}
        digests.append(signed(cd.make_digest(name, f"/copy/{name}", ACCOUNT, REGION,
                                             json.dumps(doc).encode())))
    return digests, logs


def signed(digest: Digest) -> Digest:
    return replace(digest, signature=sign(cd.string_to_sign(digest)),
                   signature_algorithm="SHA256withRSA")


def run(digests: list[Digest], logs: list[LogFile], **kwargs: Any) -> Any:
    kwargs.setdefault("keys", KEYS)
    kwargs.setdefault("key_source", "file keys.json")
    return cd.validate(digests, logs, period=PERIOD, **kwargs)


def codes(statement: Any) -> list[str]:
    return [f.code for f in statement.findings]


def test_a_whole_signed_chain_passes() -> None:
    digests, logs = trail()
    statement = run(digests, logs)
    assert statement.findings == []
    assert statement.basis == "digest_chain"
    assert (statement.claimed, statement.captured) == (HOURS, HOURS)
    assert statement.covered == [(stamp(START), stamp(PERIOD[1]))]
    assert statement.facts["signatures_verified"] == HOURS
    assert statement.facts["log_files_checked"] == HOURS
    assert statement.facts["public_key_fingerprints"] == [FINGERPRINT]


def test_the_first_digest_signs_the_text_null_as_previous_signature() -> None:
    digests, _logs = trail(1)
    assert cd.string_to_sign(digests[0]).endswith(b"\nnull")


def test_an_altered_log_file_is_a_digest_mismatch_naming_the_file() -> None:
    digests, logs = trail()
    logs[2] = replace(logs[2], sha256=hashlib.sha256(b"tampered").hexdigest())
    statement = run(digests, logs)
    assert codes(statement) == ["DIGEST_MISMATCH"]
    assert logs[2].name in statement.findings[0].detail
    assert statement.findings[0].exception


def test_a_missing_log_file_is_missing_log_file() -> None:
    digests, logs = trail()
    gone = logs.pop(3)
    statement = run(digests, logs)
    assert codes(statement) == ["MISSING_LOG_FILE"]
    assert gone.name in statement.findings[0].detail
    assert digests[3].name in statement.findings[0].detail


def test_a_listed_log_file_of_a_day_not_captured_is_not_expected() -> None:
    digests, logs = trail()
    statement = run(digests, logs[:-1], log_days={date(2024, 6, 30)})
    assert "MISSING_LOG_FILE" not in codes(statement)


def test_a_log_file_no_digest_lists_is_a_digest_mismatch() -> None:
    digests, logs = trail()
    extra = LogFile(log_name(START + timedelta(minutes=30), 99), ACCOUNT, REGION,
                    START.date(), hashlib.sha256(b"x").hexdigest())
    statement = run(digests, [*logs, extra])
    assert codes(statement) == ["DIGEST_MISMATCH"]
    assert extra.name in statement.findings[0].detail


def test_a_missing_digest_hour_is_missing_digest_with_its_period() -> None:
    digests, logs = trail()
    del digests[2]
    del logs[2]
    statement = run(digests, logs)
    assert codes(statement) == ["MISSING_DIGEST"]
    detail = statement.findings[0].detail
    assert "2024-07-01T02:00:00Z to 2024-07-01T03:00:00Z" in detail
    assert "names previous digest" in detail
    assert statement.covered == [(stamp(START), "2024-07-01T02:00:00Z"),
                                 ("2024-07-01T03:00:00Z", stamp(PERIOD[1]))]


def test_log_files_of_a_missing_digest_hour_are_reported_with_the_gap() -> None:
    digests, logs = trail()
    del digests[2]
    statement = run(digests, logs)
    assert codes(statement) == ["MISSING_DIGEST", "MISSING_DIGEST"]
    assert any(logs[2].name in f.detail for f in statement.findings)


def test_digests_that_stop_before_the_period_ends_leave_a_missing_digest() -> None:
    digests, logs = trail()
    statement = run(digests[:-1], logs[:-1])
    assert codes(statement) == ["MISSING_DIGEST"]
    assert "2024-07-01T05:00:00Z to 2024-07-01T06:00:00Z" in statement.findings[0].detail


def test_a_broken_previous_hash_link_is_a_digest_mismatch() -> None:
    digests, logs = trail()
    # digest 1 replaced by another (validly signed) digest: digest 2 still names the old one
    doc = json.loads(digests[1].content)
    doc["newestEventTime"] = "2024-07-01T01:59:00Z"
    digests[1] = signed(cd.make_digest(digests[1].name, digests[1].location, ACCOUNT, REGION,
                                       json.dumps(doc).encode()))
    statement = run(digests, logs)
    assert "DIGEST_MISMATCH" in codes(statement)
    details = " ".join(f.detail for f in statement.findings)
    assert f"digest {digests[1].name} is not the one its successor {digests[2].name}" in details


def test_a_bad_signature_is_a_digest_mismatch() -> None:
    digests, logs = trail()
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    forged = other.sign(cd.string_to_sign(digests[4]), padding.PKCS1v15(), hashes.SHA256())
    digests[4] = replace(digests[4], signature=forged.hex())
    statement = run(digests, logs)
    mismatches = [f.detail for f in statement.findings if f.code == "DIGEST_MISMATCH"]
    assert any(f"digest {digests[4].name}: its signature does not verify" in d
               for d in mismatches)


def test_a_key_not_among_the_public_keys_is_a_digest_mismatch() -> None:
    digests, logs = trail()
    statement = run(digests, logs, keys={"ffff": DER})
    assert set(codes(statement)) == {"DIGEST_MISMATCH"}
    assert "not among the trail's public keys (file keys.json)" in statement.findings[0].detail


def test_without_keys_the_chain_is_checked_and_signatures_are_unverified() -> None:
    digests, logs = trail()
    statement = run(digests, logs, keys=None)
    assert codes(statement) == ["UNVERIFIED"]
    assert not statement.findings[0].exception
    assert statement.facts["signatures_unchecked"] == HOURS
    logs[0] = replace(logs[0], sha256="0" * 64)
    assert "DIGEST_MISMATCH" in codes(run(digests, logs, keys=None))


def test_a_copy_without_signature_metadata_is_unverified_not_an_exception() -> None:
    digests, logs = trail()
    unsigned = [replace(d, signature=None) for d in digests]
    statement = run(unsigned, logs)
    assert codes(statement) == ["UNVERIFIED"]
    assert "no signature metadata" in statement.findings[0].detail


def test_no_digests_is_unverified_not_an_exception() -> None:
    _digests, logs = trail()
    statement = run([], logs)
    assert statement.basis == "no_total"
    assert codes(statement) == ["UNVERIFIED"]
    assert not statement.findings[0].exception
    assert statement.captured == HOURS


def test_a_region_without_digests_is_unverified() -> None:
    digests, logs = trail()
    other = LogFile(log_name(START, 7).replace(REGION, "eu-west-1"), ACCOUNT, "eu-west-1",
                    START.date(), "0" * 64)
    statement = run(digests, [*logs, other])
    assert codes(statement) == ["UNVERIFIED"]
    assert f"{ACCOUNT}/eu-west-1" in statement.findings[0].detail


def test_an_unreadable_digest_is_a_digest_mismatch_not_a_crash() -> None:
    digests, logs = trail()
    broken = cd.make_digest(digests[0].name, "x", ACCOUNT, REGION, b"x")
    statement = run([broken, *digests[1:]], logs)
    assert "DIGEST_MISMATCH" in codes(statement)
    assert any("unreadable" in f.detail for f in statement.findings)


def test_a_moved_digest_is_a_digest_mismatch() -> None:
    digests, logs = trail()
    digests[1] = replace(digests[1], name="renamed.json.gz")
    assert "moved from its original location" in " ".join(
        f.detail for f in run(digests, logs).findings)


def test_the_statement_is_deterministic_whatever_the_input_order() -> None:
    digests, logs = trail()
    del digests[2]
    first = run(digests, logs).document()
    again = run(list(reversed(digests)), list(reversed(logs))).document()
    assert first == again


def test_public_keys_read_from_a_saved_list_public_keys_output(tmp_path: Any) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"PublicKeyList": [
        {"Value": base64.b64encode(DER).decode(), "Fingerprint": FINGERPRINT,
         "ValidityStartTime": "2024-01-01T00:00:00Z"}]}))
    assert cd.read_public_keys(path) == KEYS
    path.write_text("{}")
    with pytest.raises(cd.SourceError, match="ListPublicKeys"):
        cd.read_public_keys(path)


def test_signature_metadata_from_s3_or_a_head_object_sidecar() -> None:
    assert cd.metadata_signature({"signature": "ab", "signature-algorithm": "SHA256withRSA"}
                                 ) == ("ab", "SHA256withRSA")
    assert cd.metadata_signature({"ContentLength": 1, "Metadata": {"signature": "cd"}}
                                 ) == ("cd", None)
    assert cd.metadata_signature(None) == (None, None)


@pytest.mark.parametrize("members", [1, 3])
def test_the_streamed_content_hash_equals_the_file_hash_whatever_the_chunking(
        tmp_path: Path, members: int) -> None:
    import gzip as gzip_module

    content = [f'{{"Records": [{{"n": {i}}}]}}'.encode() * 500 for i in range(members)]
    data = b"".join(gzip_module.compress(part, mtime=0) for part in content)
    path = tmp_path / "log.json.gz"
    path.write_bytes(data)
    for size in (1, 7, 4096, len(data)):
        hasher = cd.ContentHasher()
        passed = b"".join(hasher.tee(data[i:i + size] for i in range(0, len(data), size)))
        assert passed == data
        assert hasher.hexdigest() == cd.content_sha256(path) \
            == hashlib.sha256(b"".join(content)).hexdigest()
    truncated = cd.ContentHasher()
    list(truncated.tee([data[:-10]]))
    assert truncated.hexdigest() is None
