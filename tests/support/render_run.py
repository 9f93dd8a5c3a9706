"""A hand-made run for the render tests: control marts, evidence rows and summary rows."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from soxtrail.kernel import secrets

QUARTER = "2024Q3"
STARTED_AT = datetime(2024, 10, 1, 6, 0, 0, tzinfo=UTC)
SECRET = "s3cr3t-jira-token-XYZ"

MARTS_DDL = """
create schema if not exists marts;
create table marts.fct_control_ac01__privileged_access_approved (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, grantee text,
    granted_role text, granted_at timestamptz, granted_by text, ticket_key text,
    approved_at timestamptz, approver text, has_ticket boolean, is_approved boolean,
    is_approved_before_grant boolean, is_within_validity boolean, is_segregated boolean,
    result text, exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_ac02__timely_revocation (
    run_id uuid, control_id text, item_key text collate "und-x-icu", identity text,
    cluster text, role text,
    deactivated_at timestamptz, revoked_at timestamptz, hours_to_revoke numeric,
    is_revoked boolean, is_within_sla boolean, result text, exception_reasons text[],
    evidence_id uuid, evidence_locator text, supporting_evidence_ids uuid[],
    control_evidence_id uuid);
create table marts.fct_control_ac03__quarter_end_access (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, login_role text,
    granted_role text, identity text, is_privileged boolean, has_catalog_entry boolean,
    is_active_holder boolean, has_approval_on_record boolean, result text,
    exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_cm01__changes_authorized (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, session text,
    statement_id integer, executed_at timestamptz, executed_by text, statement text,
    ticket_key text, has_change_ticket boolean, is_approved boolean, is_within_window boolean,
    result text, exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_bk01__backups_performed (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, backup_date date,
    backup_policy text, last_backup_at timestamptz, has_backup boolean, result text,
    exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_lg01__audit_logging_complete (
    run_id uuid, control_id text, item_key text collate "und-x-icu", cluster text, log_day date,
    running_periods text, audit_off_periods text, log_files text, settings_basis text,
    result text, exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_completeness__sources (
    run_id uuid, control_id text, item_key text collate "und-x-icu", subject text,
    source_name text, basis text, claimed bigint, captured bigint, result text,
    exception_reasons text[], evidence_id uuid, evidence_locator text,
    supporting_evidence_ids uuid[], control_evidence_id uuid);
create table marts.fct_control_summary (
    run_id uuid, control_id text, control_name text, description text, population integer,
    exceptions integer, pass_rate numeric(5, 4), result text, qualified_by text[],
    control_evidence_id uuid);
"""

CONTROLS = {
    "AC-01": ("fct_control_ac01__privileged_access_approved", "Privileged access approved",
              "Every privileged grant on an in-scope cluster has an approved access ticket."),
    "AC-02": ("fct_control_ac02__timely_revocation", "Timely revocation",
              "Access of deactivated people is revoked within the SLA."),
    "AC-03": ("fct_control_ac03__quarter_end_access", "Quarter-end access listing",
              "Every quarter-end role holder is known, active and approved."),
    "BK-01": ("fct_control_bk01__backups_performed", "Backups performed",
              "Every in-scope cluster is backed up per its policy."),
    "CM-01": ("fct_control_cm01__changes_authorized", "Changes authorized",
              "Every DDL statement is covered by an approved change ticket."),
    "LG-01": ("fct_control_lg01__audit_logging_complete", "Audit logging complete and enabled",
              "Every running moment of an in-scope cluster was audited, and its log is held."),
    "COMPLETENESS": ("fct_completeness__sources", "Completeness of the populations",
                     "Every source was captured whole."),
}


def control_evidence_id(run_id: str, model: str) -> str:
    return str(uuid.UUID(hashlib.md5(f"soxtrail:{run_id}:{model}".encode()).hexdigest()))


@dataclass
class SeededRun:
    run_id: str
    rows: dict[str, list[dict[str, Any]]]  # control id -> mart rows of the run, in key order
    evidence_ids: list[str]
    snapshot_ids: list[str]


def _insert_evidence(cur: psycopg.Cursor[Any], run_id: str, system: str, name: str,
                     text: str, params: dict[str, Any], rows: int, key: str,
                     evidence_id: str | None = None) -> str:
    evidence_id = evidence_id or str(uuid.uuid4())
    cur.execute(
        "insert into soxtrail.sox_evidence (id, run_id, source_system, query_name, query_text,"
        " query_params, executed_at, executed_by, result_row_count, result_hash,"
        " raw_output_s3_key) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (evidence_id, run_id, system, name, text, Jsonb(params),
         STARTED_AT + timedelta(minutes=3, microseconds=123456), "ci-bot", rows,
         hashlib.sha256(name.encode()).hexdigest(), key))
    return evidence_id


def _mart_row(control: str, run_id: str, i: int, snapshot: list[str]) -> dict[str, Any]:
    """A realistic row of a control mart; every third one an exception."""
    exception = i % 3 == 1
    cluster = ["pg-fin-01", "pg-hr-02", "Pg-Legacy"][i % 3]
    at = STARTED_AT - timedelta(days=30, hours=i)
    reasons = (["APPROVED_AFTER_GRANT", "NO_TICKET"] if control == "AC-01" else ["NO_BACKUP"]
               if control == "BK-01" else ["NOT_REVOKED"]) if exception else []
    base: dict[str, Any] = {"run_id": run_id, "control_id": control}
    if control == "AC-01":
        base |= {"item_key": f"{cluster}|user{i:03d}|dba|{at:%Y-%m-%dT%H:%M:%SZ}",
                 "cluster": cluster, "grantee": f"user{i:03d}", "granted_role": "dba",
                 "granted_at": at, "granted_by": "Admin", "ticket_key": None if exception
                 else f"DBA-{100 + i}", "approved_at": None if exception else at - timedelta(1),
                 "approver": "carol", "has_ticket": not exception, "is_approved": not exception,
                 "is_approved_before_grant": not exception, "is_within_validity": True,
                 "is_segregated": True}
    elif control == "AC-02":
        base |= {"item_key": f"user{i:03d}|{cluster}|LOGIN", "identity": f"user{i:03d}",
                 "cluster": cluster, "role": "LOGIN", "deactivated_at": at,
                 "revoked_at": None if exception else at + timedelta(hours=3),
                 "hours_to_revoke": None if exception else "3.50",
                 "is_revoked": not exception, "is_within_sla": not exception}
    elif control == "AC-03":
        base |= {"item_key": f"{cluster}|{'User' if i % 2 else 'user'}{i:03d}|reader",
                 "cluster": cluster, "login_role": f"user{i:03d}", "granted_role": "reader",
                 "identity": f"user{i:03d}", "is_privileged": False, "has_catalog_entry": True,
                 "is_active_holder": not exception, "has_approval_on_record": True}
    elif control == "CM-01":
        base |= {"item_key": f"{cluster}|65f1a2b3.{i:x}|{i}", "cluster": cluster,
                 "session": f"65f1a2b3.{i:x}", "statement_id": i, "executed_at": at,
                 "executed_by": "deploy", "statement": f"=ALTER TABLE t{i} ADD COLUMN c int; "
                 "/* CHG-2001 */ -- \"quoted\", with comma", "ticket_key": "CHG-2001",
                 "has_change_ticket": True, "is_approved": not exception,
                 "is_within_window": True}
    elif control == "LG-01":
        day = date(2024, 7, 1) + timedelta(days=i // 3)
        base |= {"item_key": f"{cluster}|{day.isoformat()}", "cluster": cluster, "log_day": day,
                 "running_periods": f"{day}T00:00:00Z/{day + timedelta(1)}T00:00:00Z",
                 "audit_off_periods": f"off {day}T20:00:00Z/{day + timedelta(1)}T00:00:00Z"
                 if exception else None, "log_files": f"audit-{cluster}/postgresql-{day}.csv",
                 "settings_basis": "carried back from the capture of 2024-09-30T23:30:00Z"}
        reasons = ["AUDIT_DISABLED"] if exception else []
    elif control == "COMPLETENESS":
        base |= {"item_key": f"source|source-{i:02d}", "subject": "source",
                 "source_name": f"source-{i:02d}", "basis": "server_total", "claimed": 10 + i,
                 "captured": 10 + i - (1 if exception else 0)}
        reasons = ["COUNT_MISMATCH"] if exception else []
    else:
        day = date(2024, 7, 1) + timedelta(days=i // 3)
        base |= {"item_key": f"{cluster}|{day.isoformat()}", "cluster": cluster,
                 "backup_date": day, "backup_policy": "daily",
                 "last_backup_at": None if exception else at, "has_backup": not exception}
    base |= {"result": "EXCEPTION" if exception else "PASS", "exception_reasons": reasons,
             "evidence_id": snapshot[i % len(snapshot)],
             "evidence_locator": f"postgresql-{i:02d}.csv:{10 + i}",
             "supporting_evidence_ids": sorted(snapshot[:2]),
             "control_evidence_id": control_evidence_id(run_id, CONTROLS[control][0])}
    return base


def seed_run(conn: psycopg.Connection[Any], counts: dict[str, int], *,
             quarter: str = QUARTER) -> SeededRun:
    """One run: a sox_runs row, snapshot + reconcile evidence rows, mart and summary rows."""
    run_id = str(uuid.uuid4())
    secrets.remember(SECRET)
    config = {"sources": [{"name": "jira", "connector": "jira", "token": "${JIRA_TOKEN}",
                           "url": "https://jira.example.com"}],
              "note": f"leaked {SECRET}"}
    with conn.cursor() as cur:
        cur.execute(
            "insert into soxtrail.sox_runs (id, quarter, clusters, config, config_hash,"
            " tool_version, git_commit, triggered_by, started_at)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, quarter, ["pg-fin-01", "pg-hr-02"], Jsonb(config), "c0ffee" * 10 + "abcd",
             "0.1.0", "0123456789abcdef", "ci-bot", STARTED_AT))
        cur.execute("select soxtrail.run_mark_phase(%s, 'reconcile')", (run_id,))
        snapshot = [
            _insert_evidence(cur, run_id, system, name, f"select * from {name}",
                             {"source": name, "token": "***"}, 10 + n,
                             f"{quarter}/{run_id}/raw/{system}/{name}/out.csv")
            for n, (system, name) in enumerate([
                ("db_audit", "pgaudit_pg-fin-01"), ("db_audit", "pgaudit_pg-hr-02"),
                ("tickets", "jira_issues"), ("iam", "okta_events"),
                ("backups", "pgbackrest_info"), ("db_catalog", "catalog_memberships")])]
        rows: dict[str, list[dict[str, Any]]] = {}
        for control, (model, name, description) in CONTROLS.items():
            items = [_mart_row(control, run_id, i, snapshot) for i in range(counts[control])]
            items.sort(key=lambda r: r["item_key"].encode())
            rows[control] = items
            columns = list(items[0]) if items else []
            for item in items:
                cur.execute(
                    f"insert into marts.{model} ({', '.join(columns)}) values "
                    f"({', '.join(['%s'] * len(columns))})", list(item.values()))
            # a row of another run, which must never show
            other = _mart_row(control, str(uuid.uuid4()), 0, snapshot)
            cur.execute(
                f"insert into marts.{model} ({', '.join(other)}) values "
                f"({', '.join(['%s'] * len(other))})", list(other.values()))
            exceptions = sum(r["result"] == "EXCEPTION" for r in items)
            evidence_id = _insert_evidence(
                cur, run_id, "reconcile", f"model.soxtrail.{model}",
                f"-- compiled {model}\nselect *\nfrom staging.x\nwhere run_id = '{run_id}'",
                {"vars": {"quarter": quarter, "revocation_sla_hours": 24},
                 "checksum": "abc", "git_commit": "0123456789abcdef"},
                len(items), f"{quarter}/{run_id}/reconcile/{model}.jsonl",
                evidence_id=control_evidence_id(run_id, model))
            if control == "COMPLETENESS":
                result, qualified = ("INCOMPLETE" if exceptions else "COMPLETE"), []
            else:
                result = "EXCEPTIONS" if exceptions else "EFFECTIVE"
                qualified = ["source|source-01"] if control == "AC-01" else []
            cur.execute(
                "insert into marts.fct_control_summary values"
                " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (run_id, control, name, description, len(items), exceptions,
                 round(1 - exceptions / len(items), 4) if items else 1,
                 result, qualified, evidence_id))
        cur.execute("select id from soxtrail.sox_evidence where run_id = %s", (run_id,))
        evidence_ids = [str(r[0]) for r in cur.fetchall()]
    conn.commit()
    return SeededRun(run_id, rows, evidence_ids, snapshot)


COUNTS = {"AC-01": 7, "AC-02": 4, "AC-03": 9, "BK-01": 12, "CM-01": 5, "LG-01": 6,
          "COMPLETENESS": 3}
