"""The identity sources of the demo estate: the HR terminations export and CloudTrail files
(one trail, one region, with its hourly digest files signed by a demo key)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from extract.demo.inventory import PEOPLE
from extract.demo.model import IamEvent
from extract.demo.writers.catalogs import csv_text

if TYPE_CHECKING:
    from extract.demo.plan import Plan

ACCOUNT = "123456789012"
REGION = "us-east-1"  # the demo's one trail logs one region
TRAIL = "management-events"
BUCKET = "acme-cloudtrail"
# the demo key's size: AWS signs with 2048-bit keys; the demo signs ~2,200 digests a
# quarter with a smaller one to keep the estate's generation fast (verification is the same)
DEMO_KEY_BITS = 1024
PUBLIC_KEYS_FILE = "public-keys.json"


def write_hr(plan: Plan, folder: Path) -> None:
    """`terminations.csv`, each time in the HR system's own UTC offset."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for h in sorted(plan.hr, key=lambda h: h.at):
        local = h.at.astimezone(timezone(timedelta(hours=h.offset_hours)))
        stamp = local.isoformat(timespec="seconds").replace("+00:00", "Z")
        rows.append((h.employee_id, h.username, stamp, h.reason))
    (folder / "terminations.csv").write_text(csv_text(
        ["employee_id", "username", "terminated_at", "reason"], rows))


# ---------------------------------------------------------------------------
# CloudTrail


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ident(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "scim":
        return {"type": "AssumedRole", "principalId": "AROA3EXAMPLEPROV0001:okta-scim",
                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/IdentityProvisioning/okta-scim",
                "accountId": ACCOUNT, "accessKeyId": f"ASIA3EXAMPLE{rng.getrandbits(32):08X}",
                "sessionContext": {
                    "sessionIssuer": {"type": "Role", "principalId": "AROA3EXAMPLEPROV0001",
                                      "arn": f"arn:aws:iam::{ACCOUNT}:role/IdentityProvisioning",
                                      "accountId": ACCOUNT, "userName": "IdentityProvisioning"},
                    "webIdFederationData": {},
                    "attributes": {"creationDate": "", "mfaAuthenticated": "false"}}}
    if kind == "admin":
        return {"type": "IAMUser", "principalId": "AIDA3EXAMPLEADMIN001",
                "arn": f"arn:aws:iam::{ACCOUNT}:user/iam-admin", "accountId": ACCOUNT,
                "accessKeyId": "AKIA3EXAMPLEADMIN001", "userName": "iam-admin"}
    return {"type": "AssumedRole", "principalId": "AROA3EXAMPLEAPPS0001:i-0a1b2c3d4e5f",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/app-runtime/i-0a1b2c3d4e5f",
            "accountId": ACCOUNT, "accessKeyId": f"ASIA3EXAMPLE{rng.getrandbits(32):08X}",
            "sessionContext": {
                "sessionIssuer": {"type": "Role", "principalId": "AROA3EXAMPLEAPPS0001",
                                  "arn": f"arn:aws:iam::{ACCOUNT}:role/app-runtime",
                                  "accountId": ACCOUNT, "userName": "app-runtime"},
                "webIdFederationData": {},
                "attributes": {"creationDate": "", "mfaAuthenticated": "false"}}}


def _trail_record(rng: random.Random, when: datetime, source: str, name: str, region: str,
                  params: dict[str, Any] | None, response: dict[str, Any] | None, *,
                  read_only: bool, who: str, agent: str) -> dict[str, Any]:
    ident = _ident(rng, who)
    if "sessionContext" in ident:
        ident["sessionContext"]["attributes"]["creationDate"] = (
            (when - timedelta(minutes=rng.randint(1, 50))).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return {"eventVersion": "1.09", "userIdentity": ident,
            "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "eventSource": source,
            "eventName": name, "awsRegion": region,
            "sourceIPAddress": f"203.0.113.{rng.randint(2, 250)}" if who != "app"
            else f"10.20.{rng.randint(0, 15)}.{rng.randint(2, 250)}",
            "userAgent": agent, "requestParameters": params, "responseElements": response,
            "requestID": _uuid(rng), "eventID": _uuid(rng), "readOnly": read_only,
            "eventType": "AwsApiCall", "managementEvent": True,
            "recipientAccountId": ACCOUNT, "eventCategory": "Management",
            "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                           "clientProvidedHostHeader": source.replace(
                               ".amazonaws.com", f".{region}.amazonaws.com")
                           if source != "iam.amazonaws.com" else "iam.amazonaws.com"}}


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_CLI = "aws-cli/2.17.20 md/awscrt#0.20.11 ua/2.0 os/linux#5.15 md/arch#x86_64 lang/python#3.11.9"
_SDK = "Boto3/1.34.144 md/Botocore#1.34.144 ua/2.0 os/linux#6.1 md/arch#x86_64 lang/python#3.11.9"
_SCIM = "okta-scim/1.0 aws-sdk-java/2.25.60"


def _noise_record(rng: random.Random, when: datetime, n: int) -> dict[str, Any]:
    pick = n % 10
    region = REGION
    if pick in (0, 1):
        return _trail_record(rng, when, "s3.amazonaws.com", "GetBucketLocation", region,
                             {"bucketName": "acme-evidence", "location": "",
                              "Host": "acme-evidence.s3.eu-west-1.amazonaws.com"}, None,
                             read_only=True, who="app", agent=_SDK)
    if pick in (2, 3):
        return _trail_record(rng, when, "ec2.amazonaws.com", "DescribeInstances", region,
                             {"instancesSet": {}, "filterSet": {}}, None, read_only=True,
                             who="app", agent=_SDK)
    if pick == 4:
        return _trail_record(rng, when, "kms.amazonaws.com", "Decrypt", region,
                             {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}, None, read_only=True,
                             who="app", agent=_SDK)
    if pick == 5:
        return _trail_record(rng, when, "ec2.amazonaws.com", "CreateTags", region,
                             {"resourcesSet": {"items": [{"resourceId": "i-0a1b2c3d4e5f"}]},
                              "tagSet": {"items": [{"key": "backup", "value": "daily"}]}},
                             {"_return": True}, read_only=False, who="app", agent=_SDK)
    if pick in (6, 7):
        return _trail_record(rng, when, "sts.amazonaws.com", "AssumeRole", region,
                             {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/app-runtime",
                              "roleSessionName": "i-0a1b2c3d4e5f", "durationSeconds": 3600},
                             {"credentials": {"accessKeyId":
                                              f"ASIA3EXAMPLE{rng.getrandbits(32):08X}",
                                              "expiration": "Jan 1, 2030, 12:00:00 AM",
                                              "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLE"},
                              "assumedRoleUser": {"assumedRoleId": "AROA3EXAMPLEAPPS0001:i-0a1b",
                                                  "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/"
                                                         "app-runtime/i-0a1b"}},
                             read_only=True, who="app", agent=_SDK)
    if pick == 8:
        return _trail_record(rng, when, "iam.amazonaws.com", "GetUser", "us-east-1",
                             {"userName": rng.choice(sorted(PEOPLE))}, None, read_only=True,
                             who="admin", agent=_CLI)
    return _trail_record(rng, when, "s3.amazonaws.com", "ListBuckets", region,
                         {"Host": "s3.amazonaws.com"}, None, read_only=True, who="admin",
                         agent=_CLI)


def _iam_record(rng: random.Random, ev: IamEvent) -> dict[str, Any]:
    params: dict[str, Any] = {"userName": ev.user}
    response: dict[str, Any] | None = None
    if ev.name in ("AddUserToGroup", "RemoveUserFromGroup"):
        params["groupName"] = "db-users"
    elif ev.name == "CreateUser":
        params["path"] = "/people/"
        response = {"user": {"path": "/people/", "userName": ev.user,
                             "userId": f"AIDA3EXAMPLE{rng.getrandbits(32):08X}",
                             "arn": f"arn:aws:iam::{ACCOUNT}:user/people/{ev.user}",
                             "createDate": ev.at.strftime("%b %-d, %Y, %-I:%M:%S %p")}}
    elif ev.name == "AttachUserPolicy":
        params["policyArn"] = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    elif ev.name == "DeleteAccessKey":
        params["accessKeyId"] = f"AKIA3EXAMPLE{rng.getrandbits(32):08X}"
    return _trail_record(rng, ev.at, "iam.amazonaws.com", ev.name, "us-east-1", params,
                         response, read_only=False, who="scim", agent=_SCIM)


@dataclass
class TrailWritten:
    """What `write_cloudtrail` wrote, and the completeness findings it planted."""

    files: int = 0
    records: int = 0
    digests: int = 0
    # (code, log file name): one file altered after its digest, one listed but deleted
    planted: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _LogFile:
    key: str  # AWSLogs/… as CloudTrail names it in a digest
    delivered: datetime
    body: bytes  # uncompressed
    records: int
    has_iam: bool


def write_cloudtrail(plan: Plan, folder: Path) -> TrailWritten:
    """CloudTrail files (gzip JSON, 8-hour blocks) and the trail's hourly digests, with one
    log file altered after its digest was written and one deleted (both without IAM
    events: the controls are unchanged, only the trail's completeness is not)."""
    rng = random.Random(plan.seed * 1_000_003 + 11)
    iam = list(plan.iam)
    # look-alikes that are not deactivations
    for i, (name, user) in enumerate([("CreateUser", "newhire01"), ("AddUserToGroup", "newhire01"),
                                      ("CreateUser", "newhire02"), ("RemoveUserFromGroup", "marco"),
                                      ("AttachUserPolicy", "newhire02"),
                                      ("DeleteAccessKey", "alice"),
                                      ("RemoveUserFromGroup", "bruno")]):
        iam.append(IamEvent(plan.at(1 + i % 3, 3 + 3 * i, f"09:{10 + i:02d}:17.000"), name,
                            user))
    by_day: dict[date, list[IamEvent]] = {}
    for ev in iam:
        by_day.setdefault(ev.at.date(), []).append(ev)
    days = plan.days
    noise_total = max(plan.scale.cloudtrail_records - len(iam), 0)
    logs: list[_LogFile] = []
    n = 0
    for index, day in enumerate(days):
        quota = noise_total * (index + 1) // len(days) - noise_total * index // len(days)
        day_records: list[dict[str, Any]] = [_iam_record(rng, ev) for ev in by_day.get(day, [])]
        base = datetime.combine(day, time(0), tzinfo=UTC)
        for _ in range(quota):
            n += 1
            day_records.append(_noise_record(rng, base + timedelta(
                seconds=rng.randrange(86400)), n))
        blocks: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for rec in day_records:
            hour = int(rec["eventTime"][11:13])
            blocks.setdefault((rec["awsRegion"], hour // 8), []).append(rec)
        for (region, block), recs in sorted(blocks.items()):
            recs.sort(key=lambda r: (r["eventTime"], r["eventID"]))
            delivered = base + timedelta(hours=block * 8 + 7, minutes=rng.randrange(5, 55))
            ident = "".join(rng.choice(_ALNUM) for _ in range(16))
            name = (f"{ACCOUNT}_CloudTrail_{region}_{delivered.strftime('%Y%m%dT%H%MZ')}"
                    f"_{ident}.json.gz")
            body = json.dumps({"Records": recs}, separators=(",", ":")).encode()
            key = f"AWSLogs/{ACCOUNT}/CloudTrail/{region}/{day:%Y/%m/%d}/{name}"
            logs.append(_LogFile(key, delivered, body, len(recs), any(
                r["eventSource"] == "iam.amazonaws.com" for r in recs)))
    written = TrailWritten()
    altered, deleted = _planted(plan, logs)
    written.digests = _write_digests(plan, folder, logs)
    for log in logs:
        if log is deleted:
            written.planted.append(("MISSING_LOG_FILE", log.key.rsplit("/", 1)[-1]))
            continue
        body = log.body
        if log is altered:  # edited after CloudTrail hashed it: one source IP changed
            body = body.replace(b'"sourceIPAddress":"', b'"sourceIPAddress":"198.51.100.7,', 1)
            written.planted.append(("DIGEST_MISMATCH", log.key.rsplit("/", 1)[-1]))
        path = folder / log.key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                   mtime=0) as gz:
            gz.write(body)
        written.files += 1
        written.records += log.records
    return written


def _planted(plan: Plan, logs: list[_LogFile]) -> tuple[_LogFile, _LogFile]:
    """The log file to alter: the first from day 10 of the quarter's second month that
    carries no IAM event (at scales where every file carries one, an extra file of a few
    noise records delivered that day); the one to delete: an extra file of a few noise
    records delivered on day 10 of its third month. Extra files are added to `logs`; the
    other files, and the records the scale asks for, stay as they are."""
    since = plan.at(2, 10)
    rng = random.Random(plan.seed * 1_000_003 + 31)
    altered = next((log for log in logs if log.delivered >= since and not log.has_iam), None)
    if altered is None:
        altered = _noise_file(rng, plan.at(2, 10, "12:20:00.000"))
        logs.append(altered)
    deleted = _noise_file(rng, plan.at(3, 10, "12:20:00.000"))
    logs.append(deleted)
    return altered, deleted


def _noise_file(rng: random.Random, delivered: datetime) -> _LogFile:
    """A log file of three noise records (no IAM event) delivered at `delivered`."""
    recs = [_noise_record(rng, delivered - timedelta(minutes=15 - i), i) for i in range(3)]
    ident = "".join(rng.choice(_ALNUM) for _ in range(16))
    name = f"{ACCOUNT}_CloudTrail_{REGION}_{delivered:%Y%m%dT%H%M}Z_{ident}.json.gz"
    return _LogFile(f"AWSLogs/{ACCOUNT}/CloudTrail/{REGION}/{delivered:%Y/%m/%d}/{name}",
                    delivered, json.dumps({"Records": recs}, separators=(",", ":")).encode(),
                    len(recs), False)


def _write_digests(plan: Plan, folder: Path, logs: list[_LogFile]) -> int:
    """One digest an hour from the quarter's start to the end of the day after it (the
    late-delivery day), each listing the log files delivered in its hour, chained and
    signed as CloudTrail does; the signature in a `.metadata.json` sidecar (what a copy
    keeps of the S3 metadata); the demo key's public key in `public-keys.json`."""
    key = demo_key(plan.seed)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.PKCS1)
    fingerprint = hashlib.md5(der, usedforsecurity=False).hexdigest()
    (folder / PUBLIC_KEYS_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / PUBLIC_KEYS_FILE).write_text(json.dumps({"PublicKeyList": [{
        "Value": base64.b64encode(der).decode("ascii"),
        "ValidityStartTime": plan.quarter.start_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ValidityEndTime": (plan.quarter.end_utc + timedelta(days=30)).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "Fingerprint": fingerprint}]}, indent=2) + "\n", encoding="utf-8")
    offset = timedelta(minutes=31, seconds=12)  # CloudTrail's hours are the trail's own
    start = plan.quarter.start_utc - timedelta(hours=1) + offset
    stop = datetime.combine((plan.quarter.end_utc - timedelta(microseconds=1)).date()
                            + timedelta(days=2), time(0), tzinfo=UTC)
    ordered = sorted(logs, key=lambda log: log.delivered)
    at = 0
    previous: tuple[str, str, str] | None = None  # object, sha256, signature
    count = 0
    while start + timedelta(hours=1) <= stop:
        end = start + timedelta(hours=1)
        listed = []
        while at < len(ordered) and ordered[at].delivered < end:
            if ordered[at].delivered >= start:
                listed.append(ordered[at])
            at += 1
        name = (f"{ACCOUNT}_CloudTrail-Digest_{REGION}_{TRAIL}_{REGION}_"
                f"{end:%Y%m%dT%H%M%S}Z.json.gz")
        obj = f"AWSLogs/{ACCOUNT}/CloudTrail-Digest/{REGION}/{end:%Y/%m/%d}/{name}"
        doc = {
            "awsAccountId": ACCOUNT, "digestStartTime": _z(start), "digestEndTime": _z(end),
            "digestS3Bucket": BUCKET, "digestS3Object": obj,
            "digestPublicKeyFingerprint": fingerprint,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": None, "oldestEventTime": None,
            "previousDigestS3Bucket": BUCKET if previous else None,
            "previousDigestS3Object": previous[0] if previous else None,
            "previousDigestHashValue": previous[1] if previous else None,
            "previousDigestHashAlgorithm": "SHA-256" if previous else None,
            "previousDigestSignature": previous[2] if previous else None,
            "logFiles": [{"s3Bucket": BUCKET, "s3Object": log.key,
                          "hashValue": hashlib.sha256(log.body).hexdigest(),
                          "hashAlgorithm": "SHA-256",
                          "newestEventTime": _z(log.delivered - timedelta(minutes=5)),
                          "oldestEventTime": _z(log.delivered - timedelta(hours=7))}
                         for log in listed]}
        content = json.dumps(doc, separators=(",", ":")).encode()
        sha = hashlib.sha256(content).hexdigest()
        signed = (f"{_z(end)}\n{BUCKET}/{obj}\n{sha}\n"
                  f"{previous[2] if previous else 'null'}").encode()
        signature = key.sign(signed, padding.PKCS1v15(), hashes.SHA256()).hex()
        path = folder / obj
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(content, mtime=0))
        path.with_name(name + ".metadata.json").write_text(json.dumps(
            {"signature": signature, "signature-algorithm": "SHA256withRSA"}) + "\n",
            encoding="utf-8")
        previous = (obj, sha, signature)
        start = end
        count += 1
    return count


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def _probably_prime(n: int, rng: random.Random, rounds: int = 24) -> bool:
    """Miller-Rabin with `rounds` random bases."""
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def demo_key(seed: int, bits: int = DEMO_KEY_BITS) -> rsa.RSAPrivateKey:
    """The demo trail's signing key, derived from the seed (the same estate bytes every
    time): a test key, published with the demo; never a real trail's."""
    rng = random.Random(seed * 1_000_003 + 29)
    e = 65537

    def prime() -> int:
        while True:
            candidate = rng.getrandbits(bits // 2) | (3 << (bits // 2 - 2)) | 1
            if candidate % e == 1 or any(candidate % p == 0 for p in _SMALL_PRIMES):
                continue
            if _probably_prime(candidate, rng):
                return candidate

    p = prime()
    q = prime()
    while q == p:
        q = prime()
    d = pow(e, -1, (p - 1) * (q - 1))
    return rsa.RSAPrivateNumbers(p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p),
                                 rsa.RSAPublicNumbers(e, p * q)).private_key()
