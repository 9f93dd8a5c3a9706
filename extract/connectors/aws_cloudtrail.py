"""Connector `aws_cloudtrail`: CloudTrail log files (folder or S3 prefix), IAM events loaded."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from extract.connectors.formats import (
    READ_ERRORS,
    json_needs_check,
    jsonb_problem,
    parse_json,
    raw_json_items,
    raw_json_text,
)
from extract.connectors.s3 import s3_chunks, s3_client, split_s3_uri
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.sources import (
    DOC_TABLE,
    ConnectorSpec,
    LoadItem,
    RawRow,
    Reject,
    Skipped,
    Source,
    iter_file,
)
from soxtrail.kernel.store import safe_name

SPEC = ConnectorSpec(
    name="aws_cloudtrail",
    systems=frozenset({"iam"}),
    required=frozenset({"path"}),
    optional=frozenset({"region", "account"}),
    raw_tables={"raw.iam_events": DOC_TABLE},
)

IAM_SOURCE = "iam.amazonaws.com"
RAW_TABLE = "raw.iam_events"
SUFFIX = ".json.gz"


@dataclass(frozen=True)
class TrailFile:
    """One CloudTrail log file found for a day of the quarter."""

    location: str  # full path or s3:// URI
    name: str
    day: date
    account: str
    region: str
    folder: str  # the day folder searched (the file filter)
    local: Path | None = None
    bucket: str = ""
    key: str = ""


def _days(ctx: Any) -> list[date]:
    """Every day of the quarter plus the day after its end.

    CloudTrail delivers a file some minutes after its events, in the folder of the delivery
    day: events of the quarter's last minutes sit in the next day's folder. Staging keeps
    only events whose eventTime falls inside the quarter.
    """
    # CloudTrail's folders are UTC days; the quarter is bounded in the reporting zone
    first: date = ctx.quarter.start_utc.date()
    # the UTC day of the quarter's last moment, then the late-delivery day after it
    last: date = (ctx.quarter.end_utc - timedelta(microseconds=1)).date() + timedelta(days=1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _wanted(value: Any, key: str, source: Source) -> set[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str | int):
        return {str(value)}
    if isinstance(value, list) and value:
        return {str(v) for v in value}
    raise ConfigError(f"source {source.name}: {key}: expected a name or a list of names")


def _roots_local(base: Path) -> Path:
    if base.name == "AWSLogs":
        return base
    if (base / "AWSLogs").is_dir():
        return base / "AWSLogs"
    return base


def _accounts_local(awslogs: Path) -> Iterator[tuple[str, Path]]:
    """(account, its CloudTrail folder), organisation trails (`o-…/<account>/`) included."""
    if awslogs.name == "CloudTrail":
        yield awslogs.parent.name, awslogs
        return
    if (awslogs / "CloudTrail").is_dir():
        yield awslogs.name, awslogs / "CloudTrail"
        return
    for child in sorted(p for p in awslogs.iterdir() if p.is_dir()):
        if (child / "CloudTrail").is_dir():
            yield child.name, child / "CloudTrail"
        elif child.name.startswith("o-"):
            for account in sorted(p for p in child.iterdir() if (p / "CloudTrail").is_dir()):
                yield account.name, account / "CloudTrail"


def _find_local(source: Source, days: list[date], accounts: set[str] | None,
                regions: set[str] | None) -> list[TrailFile]:
    base = source.path("path")
    if not base.is_dir():
        raise SourceError(f"source {source.name}: folder not found: {base}")
    found = []
    for account, trail in _accounts_local(_roots_local(base)):
        if accounts is not None and account not in accounts:
            continue
        for region_dir in sorted(p for p in trail.iterdir() if p.is_dir()):
            if regions is not None and region_dir.name not in regions:
                continue
            for day in days:
                folder = region_dir / f"{day:%Y/%m/%d}"
                if not folder.is_dir():
                    continue
                for path in sorted(folder.glob(f"*{SUFFIX}")):
                    found.append(TrailFile(str(path), path.name, day, account, region_dir.name,
                                           f"{folder}/*{SUFFIX}", local=path))
    return found


def _common_prefixes(client: Any, bucket: str, prefix: str) -> list[str]:
    names = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix,
                                                                 Delimiter="/"):
        for item in page.get("CommonPrefixes", []):
            names.append(item["Prefix"][len(prefix):].rstrip("/"))
    return sorted(names)


def _find_s3(source: Source, days: list[date], accounts: set[str] | None,
             regions: set[str] | None) -> list[TrailFile]:
    from botocore.exceptions import BotoCoreError, ClientError

    uri = str(source.get("path")).rstrip("/")
    bucket, prefix = split_s3_uri(uri, source.name)
    prefix = f"{prefix}/" if prefix else ""
    if not prefix.endswith("AWSLogs/"):
        prefix += "AWSLogs/"
    client = s3_client()
    found = []
    try:
        trails: list[tuple[str, str]] = []
        for name in _common_prefixes(client, bucket, prefix):
            if name.startswith("o-"):
                for account in _common_prefixes(client, bucket, f"{prefix}{name}/"):
                    trails.append((account, f"{prefix}{name}/{account}/CloudTrail/"))
            else:
                trails.append((name, f"{prefix}{name}/CloudTrail/"))
        for account, trail in trails:
            if accounts is not None and account not in accounts:
                continue
            for region in _common_prefixes(client, bucket, trail):
                if regions is not None and region not in regions:
                    continue
                for day in days:
                    folder = f"{trail}{region}/{day:%Y/%m/%d}/"
                    keys = []
                    for page in client.get_paginator("list_objects_v2").paginate(
                            Bucket=bucket, Prefix=folder):
                        keys += [o["Key"] for o in page.get("Contents", [])
                                 if o["Key"].endswith(SUFFIX)]
                    for key in sorted(keys):
                        found.append(TrailFile(f"s3://{bucket}/{key}", key.rsplit("/", 1)[-1],
                                               day, account, region,
                                               f"s3://{bucket}/{folder}*{SUFFIX}",
                                               bucket=bucket, key=key))
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"source {source.name}: cannot list {uri}: {exc}") from exc
    return found


def snapshot(source: Source, ctx: Any) -> None:
    """Capture every CloudTrail file of the quarter's days (gzip bytes as-is), one per file."""
    accounts = _wanted(source.get("account"), "account", source)
    regions = _wanted(source.get("region"), "region", source)
    days = _days(ctx)
    if str(source.get("path")).startswith("s3://"):
        files = _find_s3(source, days, accounts, regions)
    else:
        files = _find_local(source, days, accounts, regions)
    used: set[str] = set()
    for item in files:
        object_name = safe_name(item.name)
        if object_name in used:  # same name in two accounts/regions: keep both
            object_name = safe_name(f"{item.account}_{item.region}_{item.name}")
        used.add(object_name)
        params = {"path": str(source.get("path")), "account": item.account,
                  "region": item.region, "day": item.day.isoformat(), "file": item.name,
                  "days": f"{days[0].isoformat()}..{days[-1].isoformat()} (last: late delivery)"}
        chunks = (iter_file(item.local) if item.local is not None
                  else s3_chunks(item.bucket, item.key, source.name))
        ctx.capture(
            source,
            query_name=f"{source.name}/{object_name}",
            query_text=f"{item.folder} -> {item.location}",
            params=params,
            ext="json.gz",
            raw_table=RAW_TABLE,
            chunks=chunks,
            count_rows=partial(count_rows, params),
        )


def _bytes(path: Path) -> tuple[bytes | None, str | None]:
    """The JSON bytes of one CloudTrail file (gzip JSON, or plain JSON), or the problem."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as handle:
            return handle.read(), None
    except READ_ERRORS as exc:
        return None, f"unreadable gzip: {exc}"


class _Event(msgspec.Struct):
    """The one field a record is filtered on (the others are skipped, not decoded)."""

    eventSource: Any = None


_EVENT = msgspec.json.Decoder(_Event)


def _read(path: Path) -> tuple[list[Any] | None, str | None, str]:
    """(Records, problem, text) of one CloudTrail file, decoded with the json module."""
    data, problem = _bytes(path)
    if data is None:
        return None, problem, ""
    return _parse(data)


def _parse(data: bytes) -> tuple[list[Any] | None, str | None, str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"invalid UTF-8 at offset {exc.start}", ""
    try:
        doc = parse_json(text)
    except ValueError as exc:
        return None, f"invalid JSON: {exc}", text
    if not isinstance(doc, dict) or not isinstance(doc.get("Records"), list):
        return None, 'not a CloudTrail log file (expected {"Records": [...]})', text
    return doc["Records"], None, text


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of Records in the file (an unreadable file counts as one, its Reject)."""
    data, _problem = _bytes(path)
    if data is None:
        return 1
    items = raw_json_items(data, "Records")
    if items is not None:
        return len(items)
    records, _problem, _text = _parse(data)
    return 1 if records is None else len(records)


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow(record) per IAM event; other services → Skipped; broken file → one Reject.

    The file is split with msgspec (`raw_json_items`): a record is decoded only as far as
    its eventSource, and an IAM event's doc is its own text where jsonb reads it as it
    would the decoded record; a file msgspec cannot vouch for is decoded with json.
    """
    name = str(params.get("file") or path.name)
    data, problem = _bytes(path)
    if data is None:
        yield Reject(f"{name}#0", f"{name}: {problem}", None)
        return
    items = raw_json_items(data, "Records")
    if items is not None:
        yield from _iam_rows(name, _split_events(items))
        return
    records, problem, text = _parse(data)
    if records is None:
        yield Reject(f"{name}#0", f"{name}: {problem}", text[:10_000] or None)
        return
    check = json_needs_check(text)
    yield from _iam_rows(name, ((record.get("eventSource") if isinstance(record, dict)
                                 else _NOT_AN_OBJECT, record, check) for record in records))


_NOT_AN_OBJECT = object()


def _split_events(items: list[msgspec.Raw]) -> Iterator[tuple[Any, Any, bool]]:
    """(eventSource, record, whether to check it for jsonb) of each record msgspec split
    out: an object is decoded only as far as its eventSource (its doc is its own text
    where `raw_json_text` allows); anything else is decoded whole, to be rejected."""
    for item in items:
        try:
            event_source = _EVENT.decode(item).eventSource
        except msgspec.ValidationError:  # not an object
            yield _NOT_AN_OBJECT, json.loads(bytes(item)), False
            continue
        if event_source != IAM_SOURCE:
            yield event_source, None, False
            continue
        text = raw_json_text(item)
        if text is not None:
            yield event_source, text, False
        else:
            yield event_source, json.loads(bytes(item)), json_needs_check(bytes(item))


def _iam_rows(name: str, events: Iterator[tuple[Any, Any, bool]]) -> Iterator[LoadItem]:
    """One RawRow per IAM event (its doc: the decoded record or its own JSON text), Skipped
    for other services, a Reject for a record that is not an object or jsonb refuses."""
    skipped = 0
    for index, (event_source, record, check) in enumerate(events):
        if event_source is not _NOT_AN_OBJECT and event_source != IAM_SOURCE:
            skipped += 1
            continue
        if skipped:
            yield Skipped(skipped)
            skipped = 0
        locator = f"{name}#{index}"
        if event_source is _NOT_AN_OBJECT:
            yield Reject(locator, "record is not a JSON object", json.dumps(record)[:10_000])
            continue
        bad = jsonb_problem(record) if check else None
        if bad:
            yield Reject(locator, bad, None)
        else:
            yield RawRow(locator, (record,))
    if skipped:
        yield Skipped(skipped)
