"""Connector `aws_cloudtrail`: CloudTrail log files (folder or S3 prefix), IAM events loaded;
the trail's digests captured and their chain validated (cloudtrail_digest.py)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

from extract.connectors import cloudtrail_digest, completeness
from extract.connectors.cloudtrail_digest import Digest, LogFile
from extract.connectors.formats import (
    READ_ERRORS,
    json_needs_check,
    jsonb_problem,
    parse_json,
    raw_json_items,
    raw_json_text,
)
from extract.connectors.s3 import s3_chunks, s3_client, split_s3_uri
from soxtrail.kernel import secrets
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
    optional=frozenset({"region", "account", "digest_path", "public_keys", "endpoint_url"}),
    raw_tables={"raw.iam_events": DOC_TABLE, "raw.cloudtrail_digests": DOC_TABLE},
)

IAM_SOURCE = "iam.amazonaws.com"
RAW_TABLE = "raw.iam_events"
DIGEST_TABLE = "raw.cloudtrail_digests"
SUFFIX = ".json.gz"
# a digest copied off S3 keeps its signature metadata in this sidecar (docs/configuration.md)
SIDECAR = ".metadata.json"
# the CloudTrail API endpoint (ListPublicKeys) when the config gives none
ENDPOINT_ENV = "SOXTRAIL_AWS_ENDPOINT_URL"


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


def _accounts_local(awslogs: Path, kind: str = "CloudTrail") -> Iterator[tuple[str, Path]]:
    """(account, its `kind` folder: CloudTrail or CloudTrail-Digest), organisation trails
    (`o-…/<account>/`) included."""
    if awslogs.name in ("CloudTrail", "CloudTrail-Digest"):
        yield awslogs.parent.name, awslogs.parent / kind
        return
    if (awslogs / kind).is_dir():
        yield awslogs.name, awslogs / kind
        return
    for child in sorted(p for p in awslogs.iterdir() if p.is_dir()):
        if (child / kind).is_dir():
            yield child.name, child / kind
        elif child.name.startswith("o-"):
            for account in sorted(p for p in child.iterdir() if (p / kind).is_dir()):
                yield account.name, account / kind


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


def _s3_trails(client: Any, bucket: str, prefix: str, kind: str) -> list[tuple[str, str]]:
    """(account, `<…>/AWSLogs/<account>/<kind>/`) under an AWSLogs/ prefix."""
    trails: list[tuple[str, str]] = []
    for name in _common_prefixes(client, bucket, prefix):
        if name.startswith("o-"):
            for account in _common_prefixes(client, bucket, f"{prefix}{name}/"):
                trails.append((account, f"{prefix}{name}/{account}/{kind}/"))
        else:
            trails.append((name, f"{prefix}{name}/{kind}/"))
    return trails


def _awslogs_prefix(uri: str, source: Source) -> tuple[str, str]:
    bucket, prefix = split_s3_uri(uri.rstrip("/"), source.name)
    prefix = f"{prefix}/" if prefix else ""
    if not prefix.endswith("AWSLogs/"):
        prefix += "AWSLogs/"
    return bucket, prefix


def _find_s3(source: Source, days: list[date], accounts: set[str] | None,
             regions: set[str] | None) -> list[TrailFile]:
    from botocore.exceptions import BotoCoreError, ClientError

    uri = str(source.get("path")).rstrip("/")
    bucket, prefix = _awslogs_prefix(uri, source)
    client = s3_client()
    found = []
    try:
        for account, trail in _s3_trails(client, bucket, prefix, "CloudTrail"):
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


# ---------------------------------------------------------------------- digest files


def _digest(name: str, location: str, account: str, region: str, data: bytes | None,
            metadata: Any, problem: str | None = None) -> Digest:
    signature, algorithm = cloudtrail_digest.metadata_signature(metadata)
    if data is not None and problem is None:
        try:
            content = cloudtrail_digest.inflate(data)
        except READ_ERRORS as exc:
            problem = f"unreadable gzip: {exc}"
        else:
            return cloudtrail_digest.make_digest(name, location, account, region, content,
                                                 signature, algorithm)
    return Digest(name, location, account, region, data or b"", signature, algorithm,
                  problem=problem or "unreadable")


def _digest_days(days: list[date]) -> list[date]:
    """The log files' days and the day after: the digest of a day's last hour ends on it."""
    return [*days, days[-1] + timedelta(days=1)]


def _find_digests_local(source: Source, days: list[date], accounts: set[str] | None,
                        regions: set[str] | None) -> list[Digest]:
    base = source.path("digest_path" if source.get("digest_path") else "path")
    if not base.is_dir():
        raise SourceError(f"source {source.name}: folder not found: {base}")
    found = []
    for account, trail in _accounts_local(_roots_local(base), "CloudTrail-Digest"):
        if not trail.is_dir() or (accounts is not None and account not in accounts):
            continue
        for region_dir in sorted(p for p in trail.iterdir() if p.is_dir()):
            if regions is not None and region_dir.name not in regions:
                continue
            for day in _digest_days(days):
                for path in sorted((region_dir / f"{day:%Y/%m/%d}").glob(f"*{SUFFIX}")):
                    sidecar = path.with_name(path.name + SIDECAR)
                    metadata = None
                    try:
                        data: bytes | None = path.read_bytes()
                        if sidecar.is_file():
                            metadata = json.loads(sidecar.read_text(encoding="utf-8"))
                    except (OSError, ValueError) as exc:
                        found.append(_digest(path.name, str(path), account, region_dir.name,
                                             None, None, f"unreadable: {exc}"))
                        continue
                    found.append(_digest(path.name, str(path), account, region_dir.name,
                                         data, metadata))
    return found


def _find_digests_s3(source: Source, days: list[date], accounts: set[str] | None,
                     regions: set[str] | None) -> list[Digest]:
    from botocore.exceptions import BotoCoreError, ClientError

    uri = str(source.get("digest_path") or source.get("path")).rstrip("/")
    bucket, prefix = _awslogs_prefix(uri, source)
    client = s3_client()
    found = []
    try:
        for account, trail in _s3_trails(client, bucket, prefix, "CloudTrail-Digest"):
            if accounts is not None and account not in accounts:
                continue
            for region in _common_prefixes(client, bucket, trail):
                if regions is not None and region not in regions:
                    continue
                for day in _digest_days(days):
                    keys = []
                    for page in client.get_paginator("list_objects_v2").paginate(
                            Bucket=bucket, Prefix=f"{trail}{region}/{day:%Y/%m/%d}/"):
                        keys += [o["Key"] for o in page.get("Contents", [])
                                 if o["Key"].endswith(SUFFIX)]
                    for key in sorted(keys):
                        got = client.get_object(Bucket=bucket, Key=key)
                        found.append(_digest(key.rsplit("/", 1)[-1], f"s3://{bucket}/{key}",
                                             account, region, got["Body"].read(),
                                             got.get("Metadata") or {}))
    except (BotoCoreError, ClientError) as exc:
        raise SourceError(f"source {source.name}: cannot read the digests under {uri}: "
                          f"{exc}") from exc
    return found


def _public_keys(source: Source, digests: list[Digest]
                 ) -> tuple[dict[str, bytes] | None, str]:
    """(fingerprint → DER key, where they came from): the `public_keys` file, else
    ListPublicKeys of each digest region when the trail is read from S3 or an
    `endpoint_url` is set, else None (signatures not checked)."""
    if source.get("public_keys"):
        path = source.path("public_keys")
        try:
            return cloudtrail_digest.read_public_keys(path), f"file {source.get('public_keys')}"
        except SourceError as exc:
            raise SourceError(f"source {source.name}: {exc}") from exc
    endpoint = source.get("endpoint_url") or os.environ.get(ENDPOINT_ENV) or None
    signed = [d for d in digests if d.signature and not d.problem]
    if not signed or not (str(source.get("path")).startswith("s3://") or endpoint):
        return None, ""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    start = min(d.start for d in signed)
    end = max(d.end for d in signed)
    keys: dict[str, bytes] = {}
    for region in sorted({d.region for d in signed}):
        session: Any = boto3.session.Session()
        client = session.client("cloudtrail", region_name=region, endpoint_url=endpoint)
        token: str | None = None
        try:
            while True:
                extra: dict[str, str] = {"NextToken": token} if token else {}
                page = client.list_public_keys(StartTime=start, EndTime=end, **extra)
                keys.update(cloudtrail_digest.public_keys_from_listing(
                    page, f"source {source.name}: ListPublicKeys ({region})"))
                token = page.get("NextToken")
                if not token:
                    break
        except (BotoCoreError, ClientError) as exc:
            where = f" at {secrets.redact_url(endpoint)}" if endpoint else ""
            raise SourceError(f"source {source.name}: cloudtrail ListPublicKeys ({region})"
                              f"{where}: {exc}") from exc
    regions = ", ".join(sorted({d.region for d in signed}))
    return keys, f"cloudtrail:ListPublicKeys ({regions})"


def _digest_lines(digests: list[Digest]) -> Iterator[bytes]:
    """The digest bundle: one JSON line per digest, its uncompressed content as text."""
    for digest in digests:
        line: dict[str, Any] = {"file": digest.name, "location": digest.location,
                                "signature": digest.signature,
                                "signature_algorithm": digest.signature_algorithm}
        try:
            line["content"] = digest.content.decode("utf-8")
        except UnicodeDecodeError:
            line["content_base64"] = base64.b64encode(digest.content).decode("ascii")
        yield (json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _capture_digests(source: Source, ctx: Any, digests: list[Digest], days: list[date]
                     ) -> None:
    """One evidence object per account and region: every digest of the window, in order."""
    groups: dict[tuple[str, str], list[Digest]] = {}
    for digest in digests:
        groups.setdefault((digest.account, digest.region), []).append(digest)
    window = _digest_days(days)
    for (account, region), group in sorted(groups.items()):
        group.sort(key=lambda d: d.name)
        file = f"digests-{account}-{region}.jsonl"
        params = {"path": str(source.get("digest_path") or source.get("path")),
                  "account": account, "region": region, "digests": len(group),
                  "days": f"{window[0].isoformat()}..{window[-1].isoformat()}", "file": file}
        ctx.capture(
            source,
            query_name=f"{source.name}/{safe_name(file)}",
            query_text=(f"AWSLogs/{account}/CloudTrail-Digest/{region}/<day>/*{SUFFIX} "
                        f"(+ signature metadata) for each day of {params['days']}"),
            params=params, ext="jsonl", raw_table=DIGEST_TABLE,
            chunks=_digest_lines(group),
            count_rows=partial(count_rows, {**params, "raw_table": DIGEST_TABLE}))


def snapshot(source: Source, ctx: Any) -> None:
    """Capture every CloudTrail file of the quarter's days (gzip bytes as-is), one per file;
    the trail's digests of those days grouped in one object per account and region; then
    the completeness statement of the digest chain."""
    accounts = _wanted(source.get("account"), "account", source)
    regions = _wanted(source.get("region"), "region", source)
    days = _days(ctx)
    on_s3 = str(source.get("path")).startswith("s3://")
    if on_s3:
        files = _find_s3(source, days, accounts, regions)
    else:
        files = _find_local(source, days, accounts, regions)
    used: set[str] = set()
    logs: list[LogFile] = []
    for item in files:
        object_name = safe_name(item.name)
        if object_name in used:  # same name in two accounts/regions: keep both
            object_name = safe_name(f"{item.account}_{item.region}_{item.name}")
        used.add(object_name)
        params = {"path": str(source.get("path")), "account": item.account,
                  "region": item.region, "day": item.day.isoformat(), "file": item.name,
                  "days": f"{days[0].isoformat()}..{days[-1].isoformat()} (last: late delivery)",
                  # the listing that found the file: the day folder (S3: bucket and prefix)
                  "listed": item.folder, "location": item.location}
        if item.bucket:
            params["bucket"] = item.bucket
            params["prefix"] = item.key.rsplit("/", 1)[0] + "/"
        chunks = (iter_file(item.local) if item.local is not None
                  else s3_chunks(item.bucket, item.key, source.name))
        content = cloudtrail_digest.ContentHasher()  # hashed as the bytes pass to the store
        ctx.capture(
            source,
            query_name=f"{source.name}/{object_name}",
            query_text=f"{item.folder} -> {item.location}",
            params=params,
            ext="json.gz",
            raw_table=RAW_TABLE,
            chunks=content.tee(chunks),
            count_rows=partial(count_rows, params),
        )
        logs.append(LogFile(item.name, item.account, item.region, item.day,
                            content.hexdigest()))
    digest_s3 = str(source.get("digest_path") or source.get("path")).startswith("s3://")
    digests = (_find_digests_s3 if digest_s3 else _find_digests_local)(
        source, days, accounts, regions)
    _capture_digests(source, ctx, digests, days)
    keys, key_source = _public_keys(source, digests)
    statement = cloudtrail_digest.validate(
        digests, logs, period=(ctx.quarter.start_utc, ctx.quarter.end_utc),
        log_days=set(days), keys=keys, key_source=key_source)
    if keys is not None:  # public: with them the statement's signatures can be re-checked
        statement.facts["public_keys_used"] = {
            fp: base64.b64encode(keys[fp]).decode("ascii")
            for fp in statement.facts.get("public_key_fingerprints", [])}
    completeness.record(source, ctx, statement)


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
    """Number of Records in the file (an unreadable file counts as one, its Reject); of a
    digest bundle, its lines."""
    if params.get("raw_table") == DIGEST_TABLE:
        with path.open("rb") as handle:
            return sum(1 for line in handle if line.strip())
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
    A digest bundle: one RawRow per digest (`_digest_rows`).

    The file is split with msgspec (`raw_json_items`): a record is decoded only as far as
    its eventSource, and an IAM event's doc is its own text where jsonb reads it as it
    would the decoded record; a file msgspec cannot vouch for is decoded with json.
    """
    if params.get("raw_table") == DIGEST_TABLE:
        yield from _digest_rows(params, path)
        return
    name = path.name  # the object as stored (the loader keeps its store name)
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


def _digest_rows(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One row per digest of a bundle: `{file, location, signature, signature_algorithm,
    sha256 (of the uncompressed digest), digest (its parsed content, null if not JSON)}`."""
    name = path.name  # the object as stored (the loader keeps its store name)
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            locator = f"{name}:{number}"
            try:
                line = json.loads(raw)
                content = (line["content"].encode("utf-8") if "content" in line
                           else base64.b64decode(line["content_base64"]))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                yield Reject(locator, f"not a digest bundle line: {exc}",
                             raw.decode("utf-8", "replace")[:10_000])
                continue
            try:
                digest: Any = json.loads(content)
            except ValueError:
                digest = None
            doc = {"file": line.get("file"), "location": line.get("location"),
                   "signature": line.get("signature"),
                   "signature_algorithm": line.get("signature_algorithm"),
                   "sha256": hashlib.sha256(content).hexdigest(), "digest": digest}
            bad = jsonb_problem(doc)
            if bad:
                yield Reject(locator, bad, None)
            else:
                yield RawRow(locator, (doc,))


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
