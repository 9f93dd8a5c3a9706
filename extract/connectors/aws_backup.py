"""Connector `aws_backup`: backup jobs from AWS Backup's ListBackupJobs (NextToken paging).

Config (`sources:` entry, system `backups`)::

    connector: aws_backup
    region: eu-central-1
    vault: pg-prod-vault                    # optional: ByBackupVaultName
    resource_cluster:                       # resource ARN → cluster
      arn:aws:rds:eu-central-1:123456789012:cluster:pg-fin-01: pg-fin-01
    endpoint_url: http://localhost:5000     # optional, else env SOXTRAIL_AWS_ENDPOINT_URL
    page_size: 1000
    retry: {attempts: 6, budget_seconds: 300}

Credentials come from boto3's usual chain (environment, profile, instance role) and
are never recorded.

Request: `ListBackupJobs(ByCreatedAfter=<quarter start>, ByCreatedBefore=<quarter
end>, [ByBackupVaultName], MaxResults, [NextToken])`, one call per page. botocore's
own retries are off: the calls go through :func:`extract.connectors.http.run_with_retries`, so
throttling, 5xx, connection errors, timeouts and unreadable bodies back off under
the same policy as the REST connectors. botocore itself accepts a body cut short of
its Content-Length or that is not JSON (it parses it as an empty response): a
`before-parse` hook refuses such bodies, so they are retried instead of captured.

Captured bytes: the SDK parses the wire response, so what is stored is the
*canonical JSON of the SDK response*: the response dict without
`ResponseMetadata`, keys sorted, separators `,` and `:`, UTF-8, datetimes as
ISO-8601 UTC strings (`2024-07-01T02:00:00+00:00`). The same response always gives
the same bytes, and `verify` recomputes hash and row count from them. Raw table
`raw.backups`; params `region`, `vault`, `created_after`, `created_before`, `page`.
Load: one row per job, `doc` = the job object, locator `<object>#<index>`.

Completeness (one `completeness` object per snapshot): ListBackupJobs states no total
(`NO_TOTAL_AVAILABLE`, not an exception; a `BackupJobId` seen twice is a
`COUNT_MISMATCH`). Its job history reaches back about 30 days: the capture covers the
quarter from the older of its oldest job returned and 30 days before the server's clock
(`Date` of the first response) up to that clock, bounded by the quarter (`COVERAGE_GAP`
for each stretch outside). Retention: a mapped resource whose oldest job listed started
after the quarter's first day, or that has none, is `RETENTION_SHORTER_THAN_QUARTER`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from extract.connectors import completeness, http, pages
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import (
    DOC_TABLE,
    Completeness,
    ConnectorSpec,
    Finding,
    LoadItem,
    SnapshotContext,
    Source,
)

RAW_TABLE = "raw.backups"
MAX_PAGES = 100_000
JOB_HISTORY_DAYS = 30  # ListBackupJobs reaches back about 30 days
ENDPOINT_ENV = "SOXTRAIL_AWS_ENDPOINT_URL"
THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
    "ServiceUnavailableException", "ServiceUnavailable", "SlowDown",
})

SPEC = ConnectorSpec(
    name="aws_backup",
    systems=frozenset({"backups"}),
    required=frozenset({"region", "resource_cluster"}),
    optional=frozenset({"vault", "endpoint_url", "page_size", "retry"}),
    raw_tables={"raw.backups": DOC_TABLE},
    forgets_after_days=JOB_HISTORY_DAYS,
)


def resource_clusters(source: Source) -> dict[str, str]:
    """The `resource_cluster` map, validated."""
    given = source.get("resource_cluster")
    if not isinstance(given, Mapping) or not given or not all(
            isinstance(k, str) and isinstance(v, str) and k and v for k, v in given.items()):
        raise ConfigError(f"source {source.name!r}: resource_cluster: expected a mapping of "
                          "resource ARN → cluster name")
    return dict(given)


def settings(source: Source) -> list[tuple[str, str, str]]:
    """`("resource_cluster", arn, cluster)` for each mapped resource."""
    return [("resource_cluster", arn, cluster)
            for arn, cluster in resource_clusters(source).items()]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def canonical_json(response: Mapping[str, Any]) -> bytes:
    """The stored form of an SDK response: no ResponseMetadata, sorted keys, ISO-8601 UTC times."""
    body = {k: v for k, v in response.items() if k != "ResponseMetadata"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default).encode("utf-8")


def _client(source: Source, policy: http.RetryPolicy, endpoint: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=policy.connect_timeout_seconds,
        read_timeout=policy.read_timeout_seconds,
    )
    # a fresh session: credentials come from the environment as it is now
    client = boto3.session.Session().client(
        "backup", region_name=str(source.get("region")), endpoint_url=endpoint, config=config)
    client.meta.events.register("before-parse.backup.ListBackupJobs", _check_body)
    return client


class TruncatedResponse(Exception):
    """A ListBackupJobs body that is short of its Content-Length or is not JSON."""


def _check_body(response_dict: dict[str, Any], **_: Any) -> None:
    """botocore silently parses a cut or garbled JSON body as `{}`: refuse it, to retry."""
    if response_dict.get("status_code", 0) >= 300:
        return
    body = response_dict.get("body") or b""
    declared = str(response_dict.get("headers", {}).get("content-length", ""))
    if declared.isdigit() and int(declared) != len(body):
        raise TruncatedResponse(f"truncated response: {len(body)} of {declared} bytes")
    try:
        json.loads(body)
    except ValueError as exc:
        raise TruncatedResponse(f"response of {len(body)} bytes is not valid JSON "
                                f"(truncated?): {exc}") from None


def _call(source: Source, client: Any, kwargs: dict[str, Any],
          policy: http.RetryPolicy) -> dict[str, Any]:
    """One ListBackupJobs call, with botocore's failures sorted into retry / give up."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        HTTPClientError,
        IncompleteReadError,
        NoCredentialsError,
        ResponseStreamingError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )
    from botocore.parsers import ResponseParserError
    from urllib3.exceptions import HTTPError as Urllib3Error

    def attempt(remaining: float) -> dict[str, Any]:
        try:
            response: dict[str, Any] = client.list_backup_jobs(**kwargs)
            return response
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            status = int(meta.get("HTTPStatusCode") or 0)
            code = str(exc.response.get("Error", {}).get("Code", ""))
            message = f"HTTP {status} {code}: {exc.response.get('Error', {}).get('Message', '')}"
            if (status == 429 or (status >= 500 and status not in http.NOT_RETRIED_5XX)
                    or code in THROTTLING_CODES):
                headers = {k.title(): v for k, v in (meta.get("HTTPHeaders") or {}).items()}
                raise http.Retryable(message, wait=http.server_wait(headers)) from None
            raise http.Permanent(message) from None
        except NoCredentialsError:
            raise http.Permanent("no AWS credentials found (environment, profile or "
                                 "instance role)") from None
        except (BotoConnectionError, HTTPClientError, ResponseStreamingError,
                IncompleteReadError, ResponseParserError, Urllib3Error,
                TruncatedResponse) as exc:
            raise http.Retryable(f"{type(exc).__name__}: {exc}") from None
        except BotoCoreError as exc:
            raise http.Permanent(f"{type(exc).__name__}: {exc}") from None

    what = f"backup.ListBackupJobs {_describe_call(kwargs)}"
    return http.run_with_retries(source.name, what, attempt, policy)


def _describe_call(kwargs: Mapping[str, Any]) -> str:
    return json.dumps(dict(kwargs), sort_keys=True, default=_json_default)


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None


def retention_findings(quarter: Quarter, oldest: Mapping[str, datetime | None],
                       clusters: Mapping[str, str]) -> list[Finding]:
    """RETENTION_SHORTER_THAN_QUARTER for each mapped resource whose oldest job listed
    started after the quarter's first day (or that has no job at all)."""
    first_day_end = quarter.start.astimezone(UTC) + timedelta(days=1)
    findings = []
    for arn in sorted(clusters):
        when = oldest.get(arn)
        if when is None:
            findings.append(Finding("RETENTION_SHORTER_THAN_QUARTER", f"{arn} (cluster "
                                    f"{clusters[arn]}): no backup job of the quarter is "
                                    "listed: none of its backups can be proven"))
        elif when >= first_day_end:
            findings.append(Finding("RETENTION_SHORTER_THAN_QUARTER", f"{arn} (cluster "
                                    f"{clusters[arn]}): the oldest job listed was created "
                                    f"{pages.iso_z(when)}, after the quarter's first day: "
                                    "backups before it cannot be proven (the job list "
                                    f"keeps about {JOB_HISTORY_DAYS} days)"))
    return findings


def statement(quarter: Quarter, *, job_ids: list[str], taken_at: datetime,
              oldest: Mapping[str, datetime | None],
              clusters: Mapping[str, str]) -> Completeness:
    """The source's completeness: no total, the covered period, retention per resource."""
    times = [when for when in oldest.values() if when is not None]
    result = pages.forgetful_statement(quarter, keys=job_ids, taken_at=taken_at,
                                       oldest=min(times) if times else None,
                                       window_days=JOB_HISTORY_DAYS, what="AWS Backup")
    result.findings += retention_findings(quarter, oldest, clusters)
    result.facts["oldest_job_by_resource"] = {
        arn: pages.iso_z(when) if when is not None else None
        for arn, when in sorted(oldest.items())}
    return result


def snapshot(source: Source, ctx: SnapshotContext) -> None:
    """Capture every page of the quarter's backup jobs (canonical JSON of each response),
    then the completeness statement."""
    clusters = resource_clusters(source)
    job_ids: list[str] = []
    oldest: dict[str, datetime | None] = {arn: None for arn in clusters}
    taken: list[datetime] = []
    _capture(source, ctx, job_ids, oldest, taken)
    completeness.record(source, ctx, statement(
        ctx.quarter, job_ids=job_ids, taken_at=taken[0] if taken else datetime.now(UTC),
        oldest=oldest, clusters=clusters))


def _capture(source: Source, ctx: SnapshotContext, job_ids: list[str],
             oldest: dict[str, datetime | None], taken: list[datetime]) -> None:
    resource_clusters(source)
    region = str(source.get("region") or "")
    if not region:
        raise ConfigError(f"source {source.name!r}: region: required")
    policy = http.RetryPolicy.from_source(source)
    endpoint = source.get("endpoint_url") or os.environ.get(ENDPOINT_ENV) or None
    request: dict[str, Any] = {
        "ByCreatedAfter": ctx.quarter.start_utc,
        "ByCreatedBefore": ctx.quarter.end_utc,
        "MaxResults": pages.page_size(source, 1000, 1000),
    }
    if source.get("vault"):
        request["ByBackupVaultName"] = str(source.get("vault"))
    client = _client(source, policy, endpoint)
    where = f" at {secrets.redact_url(endpoint)}" if endpoint else ""
    token: str | None = None
    for page in range(MAX_PAGES):
        kwargs = dict(request)
        if token:
            kwargs["NextToken"] = token
        response = _call(source, client, kwargs, policy)
        jobs = response.get("BackupJobs")
        if not isinstance(jobs, list):
            raise SourceError(f"source {source.name!r}: ListBackupJobs{where} returned no "
                              "BackupJobs list")
        params = {
            "region": region,
            "vault": request.get("ByBackupVaultName", ""),
            "created_after": _json_default(request["ByCreatedAfter"]),
            "created_before": _json_default(request["ByCreatedBefore"]),
            "page": page,
        }
        if endpoint:
            params["endpoint_url"] = secrets.redact_url(endpoint)
        if not taken:
            headers = response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
            taken.append(pages.server_time(headers, datetime.now(UTC)))
        for job in jobs:
            job_ids.append(str(job.get("BackupJobId") or "") if isinstance(job, dict) else "")
            if not isinstance(job, dict):
                continue
            arn, created = str(job.get("ResourceArn") or ""), _when(job.get("CreationDate"))
            if created is not None:
                known = oldest.get(arn)
                oldest[arn] = created if known is None else min(known, created)
        ctx.capture(source, query_name=f"{source.name}/aws-backup-jobs-{page:05d}",
                    query_text=f"backup.ListBackupJobs region={region}{where} "
                               f"{_describe_call(kwargs)}",
                    params=params, ext="json", raw_table=RAW_TABLE,
                    chunks=[canonical_json(response)],
                    count_rows=partial(count_rows, params),
                    counter=pages.PageCounter(key="BackupJobs"))
        next_token = response.get("NextToken")
        if not next_token:
            return
        if next_token == token:
            raise SourceError(f"source {source.name!r}: ListBackupJobs repeated its NextToken; "
                              "stopping to avoid a paging loop")
        token = next_token
    raise SourceError(f"source {source.name!r}: more than {MAX_PAGES} pages; stopping")


def _jobs(document: Any) -> list[Any] | None:
    if isinstance(document, dict) and isinstance(document.get("BackupJobs"), list):
        return document["BackupJobs"]
    return None


def load(query_params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """One RawRow(doc=job) per backup job of a captured page."""
    yield from pages.json_records(path, _jobs, "a ListBackupJobs response (no BackupJobs list)",
                                 key="BackupJobs")


def count_rows(query_params: Mapping[str, Any], path: Path) -> int:
    """Jobs in the page (a page that cannot be read counts as one rejected row)."""
    return pages.count_page(path, _jobs, "a ListBackupJobs response", key="BackupJobs")
