"""Phase 2: COPY each snapshot object of a run into its raw table; rejects keep the reason."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from extract.base import RawRow, Reject, Skipped, Source
from extract.registry import connector_module
from extract.store import Store
from soxtrail import secrets
from soxtrail.errors import PipelineError

MAX_REJECT_TEXT = 10_000


@dataclass(frozen=True)
class RawTable:
    """A raw table: the context columns filled from the evidence row, then the payload."""

    context: tuple[str, ...]
    payload: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return ("run_id", "evidence_id", *self.context, "locator", *self.payload)


CSVLOG_COLUMNS = (
    "log_time", "user_name", "database_name", "process_id", "connection_from",
    "session_id", "session_line_num", "command_tag", "session_start_time",
    "virtual_transaction_id", "transaction_id", "error_severity", "sql_state_code",
    "message", "detail", "hint", "internal_query", "internal_query_pos", "context",
    "query", "query_pos", "location", "application_name", "backend_type",
    "leader_pid", "query_id",
)

RAW_TABLES: dict[str, RawTable] = {
    "raw.pgaudit_csvlog": RawTable(("source_name", "cluster"), CSVLOG_COLUMNS),
    "raw.pgaudit_jsonlog": RawTable(("source_name", "cluster"), ("doc",)),
    "raw.pgaudit_stderr": RawTable(("source_name", "cluster"), (
        "log_time", "user_name", "database_name", "process_id", "session_id",
        "session_line_num", "application_name", "remote_host", "error_severity",
        "message", "raw_entry")),
    "raw.catalog_memberships": RawTable(("source_name", "cluster"), (
        "member", "granted_role", "admin_option", "rolsuper", "rolcanlogin",
        "rolcreaterole", "rolvaliduntil")),
    "raw.catalog_roles": RawTable(("source_name", "cluster"), (
        "rolname", "rolsuper", "rolcreaterole", "rolcanlogin", "rolvaliduntil")),
    "raw.iam_events": RawTable(("source_name", "connector"), ("doc",)),
    "raw.tickets": RawTable(("source_name", "connector"), ("doc",)),
    "raw.backups": RawTable(("source_name", "connector"), ("doc",)),
    "raw.role_catalog": RawTable((), (
        "role_name", "cluster_pattern", "is_privileged", "description", "owner",
        "allowed_holders")),
    "raw.applications": RawTable((), ("application", "cluster", "sox_in_scope", "backup_policy")),
    "raw.identity_map": RawTable((), ("login_role", "identity", "identity_type", "approval_ref")),
}


@dataclass
class LoadCounts:
    """Counts for one object (or summed over a run)."""

    read: int = 0
    loaded: int = 0
    rejected: int = 0
    skipped: int = 0

    def add(self, other: LoadCounts) -> None:
        self.read += other.read
        self.loaded += other.loaded
        self.rejected += other.rejected
        self.skipped += other.skipped


@dataclass
class LoadReport:
    """What a load phase did: per raw table counts and the reject reasons seen."""

    tables: dict[str, LoadCounts] = field(default_factory=dict)
    objects_loaded: int = 0
    objects_already_loaded: int = 0

    @property
    def total(self) -> LoadCounts:
        total = LoadCounts()
        for counts in self.tables.values():
            total.add(counts)
        return total


def _has_nul(values: tuple[Any, ...]) -> bool:
    return any(isinstance(v, str) and "\x00" in v for v in values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


def copy_object(conn: psycopg.Connection[Any], *, run_id: str, evidence_id: str,
                params: dict[str, Any], path: Path) -> LoadCounts:
    """COPY one object into its raw table inside the caller's transaction."""
    table_name = params["raw_table"]
    table = RAW_TABLES.get(table_name)
    if table is None:
        raise PipelineError(f"evidence {evidence_id}: unknown raw table {table_name!r}")
    module = connector_module(params["connector"])
    context = tuple(params.get(col) if col != "source_name" else params.get("source")
                    for col in table.context)
    counts = LoadCounts()
    rejects: list[tuple[str, str, str | None]] = []
    width = len(table.payload)
    columns = ", ".join(table.columns)
    with conn.cursor() as cur:
        with cur.copy(f"copy {table_name} ({columns}) from stdin") as copy:  # type: ignore[arg-type]
            for item in module.load(params, path):
                if isinstance(item, RawRow):
                    counts.read += 1
                    values = tuple(_jsonable(v) for v in item.values)
                    if len(values) != width:
                        raise PipelineError(f"{params['connector']} produced {len(values)} "
                                            f"values for {table_name} (expected {width})")
                    if _has_nul(values) or "\x00" in item.locator:
                        counts.rejected += 1
                        rejects.append((item.locator.replace("\x00", ""), "NUL byte in value", None))
                        continue
                    copy.write_row((run_id, evidence_id, *context, item.locator, *values))
                    counts.loaded += 1
                elif isinstance(item, Reject):
                    counts.read += 1
                    counts.rejected += 1
                    text = item.raw_text
                    if text is not None:
                        text = text.replace("\x00", "\\x00")
                        if len(text) > MAX_REJECT_TEXT:
                            text = text[:MAX_REJECT_TEXT] + f"… [{len(text)} chars, truncated]"
                    rejects.append((item.locator, item.reason, text))
                elif isinstance(item, Skipped):
                    counts.read += item.count
                    counts.skipped += item.count
        if rejects:
            with cur.copy("copy soxtrail.sox_rejects (run_id, evidence_id, source_name, raw_table, "
                          "locator, reason, raw_text) from stdin") as copy:
                for locator, reason, text in rejects:
                    copy.write_row((run_id, evidence_id, params.get("source", ""), table_name,
                                    locator, reason, text))
        cur.execute(
            "insert into soxtrail.sox_load_stats (run_id, evidence_id, raw_table, records_read,"
            " records_loaded, records_rejected, records_skipped) values (%s,%s,%s,%s,%s,%s,%s)",
            (run_id, evidence_id, table_name, counts.read, counts.loaded, counts.rejected,
             counts.skipped),
        )
    return counts


def load_settings(conn: psycopg.Connection[Any], run_id: str, sources: Iterable[Source]) -> int:
    """Write the non-secret per-source settings staging needs (idempotent)."""
    rows = []
    for source in sources:
        module = connector_module(source.connector)
        settings = getattr(module, "settings", None)
        if settings is None:
            continue
        for setting, key, value in settings(source):
            rows.append((run_id, source.name, source.connector, setting, key,
                         None if value is None else secrets.redact(str(value))))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.source_settings (run_id, source_name, connector, setting, key, value)"
            " values (%s,%s,%s,%s,%s,%s) on conflict do nothing", rows)
    return len(rows)


def load_run(conn: psycopg.Connection[Any], *, run_id: str, store: Store, spool_dir: Path,
             sources: Iterable[Source], progress: Any = None) -> LoadReport:
    """Load every not-yet-loaded snapshot object of the run; one transaction per object."""
    report = LoadReport()
    with conn.cursor() as cur:
        cur.execute(
            "select e.id::text, e.query_params, e.raw_output_s3_key, e.query_name"
            " from soxtrail.sox_evidence e"
            " left join soxtrail.sox_load_stats s on s.run_id = e.run_id and s.evidence_id = e.id"
            " where e.run_id = %s and e.source_system <> 'reconcile'"
            "   and e.query_params ? 'raw_table' and s.evidence_id is null"
            " order by e.executed_at, e.id", (run_id,))
        pending = cur.fetchall()
        cur.execute("select count(*) from soxtrail.sox_load_stats where run_id = %s", (run_id,))
        report.objects_already_loaded = cur.fetchone()[0]  # type: ignore[index]
    conn.commit()
    for evidence_id, params, key, query_name in pending:
        local = store.fetch(key, spool_dir / "load" / Path(key).name)
        try:
            counts = copy_object(conn, run_id=run_id, evidence_id=evidence_id,
                                 params=params, path=local)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if local.parent == spool_dir / "load":
                local.unlink(missing_ok=True)
        report.tables.setdefault(params["raw_table"], LoadCounts()).add(counts)
        report.objects_loaded += 1
        if progress is not None:
            progress(query_name, counts)
    load_settings(conn, run_id, sources)
    conn.commit()
    return report
