"""The identity sources of the demo estate: the HR terminations export and CloudTrail files."""

from __future__ import annotations

import gzip
import json
import random
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from extract.demo.inventory import PEOPLE
from extract.demo.model import IamEvent
from extract.demo.writers.catalogs import csv_text

if TYPE_CHECKING:
    from extract.demo.plan import Plan

ACCOUNT = "123456789012"


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
    region = "eu-west-1" if pick < 6 else "us-east-1"
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


def write_cloudtrail(plan: Plan, folder: Path) -> tuple[int, int]:
    """CloudTrail files (gzip JSON, 8-hour blocks); returns files and records."""
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
    files = records = 0
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
            sub = folder / "AWSLogs" / ACCOUNT / "CloudTrail" / region / day.strftime("%Y/%m/%d")
            sub.mkdir(parents=True, exist_ok=True)
            ident = "".join(rng.choice(_ALNUM) for _ in range(16))
            name = (f"{ACCOUNT}_CloudTrail_{region}_{delivered.strftime('%Y%m%dT%H%MZ')}"
                    f"_{ident}.json.gz")
            body = json.dumps({"Records": recs}, separators=(",", ":")).encode()
            with (sub / name).open("wb") as raw, gzip.GzipFile(filename="", mode="wb",
                                                               fileobj=raw, mtime=0) as gz:
                gz.write(body)
            files += 1
            records += len(recs)
    return files, records
