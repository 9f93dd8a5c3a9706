"""The dbt project end to end on a small estate: raw rows in, control marts out."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from soxtrail.kernel import controls
from soxtrail.kernel.database import Database

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[2]
RUN_ID = str(uuid.uuid4())
QUARTER_VARS = {
    "run_id": RUN_ID,
    "quarter": "2024Q3",
    "quarter_start": "2024-07-01T00:00:00Z",
    "quarter_end": "2024-10-01T00:00:00Z",
    "clusters": [],
}

# One evidence row per snapshot object the raw rows claim to come from.
EVIDENCE = {
    name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"soxtrail-test:{RUN_ID}:{name}"))
    for name in ("csvlog", "jsonlog", "stderr", "memberships", "roles", "cloudtrail",
                 "okta", "jira", "servicenow", "pgbackrest", "aws_backup", "role_catalog",
                 "applications", "identity_map")
}
SYSTEM = {
    "csvlog": "db_audit", "jsonlog": "db_audit", "stderr": "db_audit",
    "memberships": "db_catalog", "roles": "db_catalog", "cloudtrail": "iam", "okta": "iam",
    "jira": "tickets", "servicenow": "tickets", "pgbackrest": "backups",
    "aws_backup": "backups", "role_catalog": "role_catalog", "applications": "role_catalog",
    "identity_map": "role_catalog",
}


def _audit(statement_id: int, substatement_id: int, audit_class: str, command: str,
           statement: str, object_type: str = "", object_name: str = "") -> str:
    """A pgaudit message, CSV-quoting the statement the way pgaudit does."""
    if any(ch in statement for ch in ',"\n\r'):
        statement = '"' + statement.replace('"', '""') + '"'
    return (f"AUDIT: SESSION,{statement_id},{substatement_id},{audit_class},{command},"
            f"{object_type},{object_name},{statement},<not logged>")


def _csvlog(cluster: str, line: int, log_time: str, user: str, session: str,
            message: str, application_name: str = "psql") -> dict[str, Any]:
    return {"cluster": cluster, "locator": f"postgresql.csv:{line}", "log_time": log_time,
            "user_name": user, "database_name": "app", "process_id": "4242",
            "session_id": session, "session_line_num": str(line), "error_severity": "LOG",
            "message": message, "application_name": application_name}


CSVLOG = [
    # AC-01: explicit key, approved the day before by someone independent -> PASS
    _csvlog("pg-fin-01", 1, "2024-07-05 10:00:00.123 UTC", "dba_bob", "s1",
            _audit(1, 1, "ROLE", "GRANT", "/* ACC-101 */ GRANT fin_admin TO carol")),
    # AC-01: implicit match, approved the day after -> APPROVED_AFTER_GRANT
    _csvlog("pg-fin-01", 2, "2024-07-06 09:00:00 UTC", "dba_bob", "s1",
            _audit(2, 1, "ROLE", "GRANT", "GRANT fin_admin, app_read TO erin")),
    # out-of-scope cluster: never in a population
    _csvlog("pg-dev-09", 3, "2024-07-06 09:00:00 UTC", "dba_bob", "s9",
            _audit(1, 1, "ROLE", "ALTER ROLE", "ALTER ROLE zed SUPERUSER")),
    # CM-01: one multi-line statement logged twice (log_relation) -> one PASS item
    _csvlog("pg-fin-01", 4, "2024-07-10 09:00:00 UTC", "dba_bob", "s2",
            _audit(1, 1, "DDL", "CREATE TABLE",
                   "/* CHG-2001 */ CREATE TABLE ledger (\n    id int,\n    note text\n)",
                   "TABLE", "public.ledger")),
    _csvlog("pg-fin-01", 5, "2024-07-10 09:00:00 UTC", "dba_bob", "s2",
            _audit(1, 1, "DDL", "CREATE TABLE",
                   "/* CHG-2001 */ CREATE TABLE ledger (\n    id int,\n    note text\n)",
                   "INDEX", "public.ledger_pkey")),
    # CM-01: service account inside / outside the approved window, no key
    _csvlog("pg-fin-01", 6, "2024-07-11 03:00:00 UTC", "svc_deploy", "s3",
            _audit(1, 1, "DDL", "ALTER TABLE", "ALTER TABLE ledger ADD COLUMN amount numeric")),
    _csvlog("pg-fin-01", 7, "2024-07-12 03:00:00 UTC", "svc_deploy", "s3",
            _audit(2, 1, "DDL", "ALTER TABLE", "ALTER TABLE ledger ADD COLUMN currency text")),
    # AC-02: gina deactivated 2024-08-01 10:00Z; role revoked at exactly 24 h,
    # login dropped one second over
    _csvlog("pg-fin-01", 8, "2024-08-02 10:00:00 UTC", "dba_bob", "s4",
            _audit(1, 1, "ROLE", "REVOKE", "REVOKE fin_admin FROM gina")),
    _csvlog("pg-fin-01", 9, "2024-08-02 10:00:01 UTC", "dba_bob", "s4",
            _audit(2, 1, "ROLE", "DROP ROLE", "DROP ROLE gina")),
]

JSONLOG = [
    # AC-01: the approver ran the grant himself; key in application_name
    {"cluster": "pg-fin-01", "locator": "postgresql.json:1", "doc": {
        "timestamp": "2024-07-08 12:00:00.000 UTC", "user": "dave", "dbname": "app",
        "pid": 777, "session_id": "j1", "line_num": 1, "error_severity": "LOG",
        "application_name": "psql ACC-103",
        "message": _audit(1, 1, "ROLE", "ALTER ROLE", "ALTER ROLE frank WITH SUPERUSER")}},
]

STDERR = [
    # CM-01: key names a ticket raised for another cluster
    {"cluster": "pg-hr-02", "locator": "postgresql.log:1", "log_time": "2024-07-10 09:30:00 UTC",
     "user_name": "dba_bob", "database_name": "hr", "process_id": "555", "session_id": None,
     "session_line_num": "1", "application_name": None, "remote_host": None,
     "error_severity": "LOG",
     "message": _audit(1, 1, "DDL", "CREATE INDEX", "-- CHG-2001\nCREATE INDEX ON staff (id)"),
     "raw_entry": "…"},
]

MEMBERSHIPS = [
    ("pg-fin-01", "carol", "fin_admin", "t"),
    ("pg-fin-01", "erin", "fin_admin", "t"),
    ("pg-fin-01", "carol", "app_read", "t"),
    ("pg-fin-01", "svc_deploy", "mystery_role", "t"),
    ("pg-hr-02", "gina", "hr_admin", "t"),
    ("pg-dev-09", "zed", "fin_admin", "t"),
]
ROLES = [
    # cluster, rolname, rolsuper, rolcreaterole, rolcanlogin
    ("pg-fin-01", "carol", "f", "f", "t"),
    ("pg-fin-01", "erin", "f", "f", "t"),
    ("pg-fin-01", "frank", "t", "f", "t"),
    ("pg-fin-01", "dba_bob", "f", "t", "t"),
    ("pg-fin-01", "svc_deploy", "f", "f", "t"),
    ("pg-fin-01", "fin_admin", "f", "f", "f"),
    ("pg-hr-02", "gina", "f", "f", "t"),
    ("pg-dev-09", "zed", "t", "f", "t"),
]
IAM = [
    ("cloudtrail", "aws_cloudtrail", {
        "eventVersion": "1.08", "eventTime": "2024-08-01T10:00:00Z",
        "eventSource": "iam.amazonaws.com", "eventName": "DeleteUser",
        "requestParameters": {"userName": "gina"}}),
    ("cloudtrail", "aws_cloudtrail", {
        "eventVersion": "1.08", "eventTime": "2024-08-01T09:00:00Z",
        "eventSource": "s3.amazonaws.com", "eventName": "DeleteBucket",
        "requestParameters": {"bucketName": "erin"}}),
    ("okta", "okta_system_log", {
        "uuid": "u1", "published": "2024-09-01T00:00:00.000Z",
        "eventType": "user.lifecycle.suspend", "outcome": {"result": "SUCCESS"},
        "target": [{"type": "User", "alternateId": "henry@corp.example"}]}),
]


def _jira(key: str, issue_type: str, status: str, reporter: str, approver: str | None,
          subject: str | None, cluster: str, role: str | None, approved: str | None,
          window: tuple[str, str] | None = None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "summary": key, "status": {"name": status}, "issuetype": {"name": issue_type},
        "reporter": {"name": reporter}, "customfield_10402": {"value": cluster},
    }
    if approver:
        fields["customfield_10500"] = {"name": approver}
    if subject:
        fields["customfield_10401"] = {"name": subject}
    if role:
        fields["customfield_10403"] = role
    if window:
        fields["customfield_10404"], fields["customfield_10405"] = window
    histories = []
    if approved:
        histories.append({"created": approved, "items": [
            {"field": "status", "fromString": "In Review", "toString": "Approved"}]})
    return {"id": key, "key": key, "fields": fields, "changelog": {"histories": histories}}


TICKETS = [
    ("jira", "jira", _jira("ACC-101", "Access Request", "Done", "carol", "dave", "carol",
                            "pg-fin-01", "fin_admin", "2024-07-04T16:20:00.000+0000")),
    ("jira", "jira", _jira("ACC-102", "Access Request", "Done", "erin", "dave", "erin",
                            "pg-fin-01", "fin_admin", "2024-07-07T10:00:00.000+0000")),
    ("jira", "jira", _jira("CHG-2001", "Change", "Closed", "dba_bob", "dave", None,
                            "pg-fin-01", None, "2024-07-09T10:00:00.000+0000",
                            ("2024-07-10T08:00:00.000+0000", "2024-07-10T12:00:00.000+0000"))),
    # ServiceNow times are local to the instance (Europe/Berlin: UTC+2 in summer)
    ("servicenow", "servicenow", {
        "number": "ACC-103", "u_type": "access", "approval": "approved",
        "requested_by": {"display_value": "frank"}, "u_approver": "dave",
        "sys_updated_on": "2024-07-08 13:00:00", "u_user": "frank", "cmdb_ci": "pg-fin-01",
        "u_role": "SUPERUSER"}),
    ("servicenow", "servicenow", {
        "number": "CHG-2002", "u_type": "change", "approval": "approved",
        "requested_by": {"display_value": "svc_deploy"}, "u_approver": "dave",
        "sys_updated_on": "2024-07-10 12:00:00", "cmdb_ci": "pg-fin-01",
        "start_date": "2024-07-11 04:00:00", "end_date": "2024-07-11 06:00:00"}),
]

# as the connectors' settings() record them: the config's paths over each connector's
# default paths (SPEC.ticket_fields)
SETTINGS = [
    ("jira", "jira", "field", "ticket_key", "key"),
    ("jira", "jira", "field", "ticket_type", "fields.issuetype.name"),
    ("jira", "jira", "field", "status", "fields.status.name"),
    ("jira", "jira", "field", "requester", "fields.reporter.name"),
    ("jira", "jira", "field", "approver", "fields.customfield_10500.name"),
    ("jira", "jira", "field", "approved_at", "changelog"),
    ("jira", "jira", "field", "subject_user", "fields.customfield_10401.name"),
    ("jira", "jira", "field", "cluster", "fields.customfield_10402.value"),
    ("jira", "jira", "field", "role", "fields.customfield_10403"),
    ("jira", "jira", "field", "window_start", "fields.customfield_10404"),
    ("jira", "jira", "field", "window_end", "fields.customfield_10405"),
    ("jira", "jira", "type", "Access Request", "access"),
    ("jira", "jira", "type", "Change", "change"),
    ("servicenow", "servicenow", "field", "ticket_key", "number"),
    ("servicenow", "servicenow", "field", "ticket_type", "u_type"),
    ("servicenow", "servicenow", "field", "status", "approval"),
    ("servicenow", "servicenow", "field", "requester", "requested_by.display_value"),
    ("servicenow", "servicenow", "field", "approver", "u_approver"),
    ("servicenow", "servicenow", "field", "approved_at", "sys_updated_on"),
    ("servicenow", "servicenow", "field", "subject_user", "u_user"),
    ("servicenow", "servicenow", "field", "cluster", "cmdb_ci"),
    ("servicenow", "servicenow", "field", "role", "u_role"),
    ("servicenow", "servicenow", "field", "window_start", "start_date"),
    ("servicenow", "servicenow", "field", "window_end", "end_date"),
    ("servicenow", "servicenow", "approved_status", "approved", "true"),
    ("servicenow", "servicenow", "timezone", "", "Europe/Berlin"),
    ("aws_backup", "aws_backup", "resource_cluster",
     "arn:aws:rds:eu-west-1:123456789012:db:hr-primary", "pg-hr-02"),
]

ROLE_CATALOG = [
    ("fin_admin", "pg-fin-*", "true"), ("hr_admin", "pg-hr-*", "true"),
    ("app_read", "*", "false"), ("SUPERUSER", "*", "true"), ("CREATEROLE", "*", "true"),
]
APPLICATIONS = [
    ("ledger", "pg-fin-01", "true", "daily"), ("payroll", "pg-hr-02", "true", "weekly"),
    ("sandbox", "pg-dev-09", "false", "daily"),
]
IDENTITY_MAP = [("svc_deploy", "deploy-bot", "service", "CAB-1")]


def _backups() -> list[tuple[str, str, dict[str, Any]]]:
    rows: list[tuple[str, str, dict[str, Any]]] = []
    day = date(2024, 7, 1)
    while day < date(2024, 10, 1):
        stop = datetime(day.year, day.month, day.day, 2, 30, tzinfo=timezone.utc)
        label = day.strftime("%Y%m%d-020000F")
        if day != date(2024, 8, 15):  # a missing backup: a gap
            rows.append(("pgbackrest", "pgbackrest_info", {"stanza": "pg-fin-01", "backup": {
                "label": label, "type": "full", "error": day == date(2024, 8, 16),
                "timestamp": {"start": int(stop.timestamp()) - 1800,
                              "stop": int(stop.timestamp())}}}))
        day += timedelta(days=1)
    day = date(2024, 7, 1)
    while day < date(2024, 10, 1):
        rows.append(("aws_backup", "aws_backup", {
            "BackupJobId": f"job-{day.isoformat()}",
            "ResourceArn": "arn:aws:rds:eu-west-1:123456789012:db:hr-primary",
            "CompletionDate": f"{day.isoformat()}T03:00:00Z",
            "State": "FAILED" if day == date(2024, 9, 2) else "COMPLETED"}))
        day += timedelta(days=7)
    return rows


def _load(db: Database) -> None:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "insert into soxtrail.sox_runs (id, quarter, clusters, config, config_hash,"
            " tool_version, triggered_by) values (%s, '2024Q3', null, '{}', 'x', 'test', 'pytest')",
            (RUN_ID,))
        for name, evidence_id in EVIDENCE.items():
            cur.execute(
                "insert into soxtrail.sox_evidence (id, run_id, source_system, query_name,"
                " query_text, query_params, executed_at, executed_by, result_row_count,"
                " result_hash, raw_output_s3_key) values (%s, %s, %s, %s, 'q', '{}', now(),"
                " 'pytest', 0, 'h', %s)",
                (evidence_id, RUN_ID, SYSTEM[name], name, f"2024Q3/{RUN_ID}/raw/{name}"))
        for row in CSVLOG:
            columns = ["run_id", "evidence_id", "source_name", *row]
            cur.execute(
                f"insert into raw.pgaudit_csvlog ({', '.join(columns)})"
                f" values ({', '.join(['%s'] * len(columns))})",
                (RUN_ID, EVIDENCE["csvlog"], "pg-logs", *row.values()))
        for row in JSONLOG:
            cur.execute(
                "insert into raw.pgaudit_jsonlog (run_id, evidence_id, source_name, cluster,"
                " locator, doc) values (%s, %s, 'pg-json', %s, %s, %s)",
                (RUN_ID, EVIDENCE["jsonlog"], row["cluster"], row["locator"],
                 json.dumps(row["doc"])))
        for row in STDERR:
            columns = ["run_id", "evidence_id", "source_name", *row]
            cur.execute(
                f"insert into raw.pgaudit_stderr ({', '.join(columns)})"
                f" values ({', '.join(['%s'] * len(columns))})",
                (RUN_ID, EVIDENCE["stderr"], "pg-stderr", *row.values()))
        for index, (cluster, member, granted, login) in enumerate(MEMBERSHIPS):
            cur.execute(
                "insert into raw.catalog_memberships (run_id, evidence_id, source_name, cluster,"
                " locator, member, granted_role, admin_option, rolsuper, rolcanlogin,"
                " rolcreaterole, rolvaliduntil) values (%s, %s, 'catalog', %s, %s, %s, %s,"
                " 'f', 'f', %s, 'f', null)",
                (RUN_ID, EVIDENCE["memberships"], cluster, f"memberships.csv:{index + 2}",
                 member, granted, login))
        for index, (cluster, name, rolsuper, createrole, login) in enumerate(ROLES):
            cur.execute(
                "insert into raw.catalog_roles (run_id, evidence_id, source_name, cluster,"
                " locator, rolname, rolsuper, rolcreaterole, rolcanlogin, rolvaliduntil)"
                " values (%s, %s, 'catalog', %s, %s, %s, %s, %s, %s, 'infinity')",
                (RUN_ID, EVIDENCE["roles"], cluster, f"roles.csv:{index + 2}", name, rolsuper,
                 createrole, login))
        for table, rows in (("iam_events", IAM), ("tickets", TICKETS), ("backups", _backups())):
            for index, (source, connector, doc) in enumerate(rows):
                cur.execute(
                    f"insert into raw.{table} (run_id, evidence_id, source_name, connector,"
                    " locator, doc) values (%s, %s, %s, %s, %s, %s)",
                    (RUN_ID, EVIDENCE[source], source, connector, f"page-0.json#{index}",
                     json.dumps(doc)))
        for index, (role, pattern, privileged) in enumerate(ROLE_CATALOG):
            cur.execute(
                "insert into raw.role_catalog (run_id, evidence_id, locator, role_name,"
                " cluster_pattern, is_privileged, description, owner, allowed_holders)"
                " values (%s, %s, %s, %s, %s, %s, '', 'dba', '')",
                (RUN_ID, EVIDENCE["role_catalog"], f"role_catalog.csv:{index + 2}", role,
                 pattern, privileged))
        for index, (application, cluster, in_scope, policy) in enumerate(APPLICATIONS):
            cur.execute(
                "insert into raw.applications (run_id, evidence_id, locator, application,"
                " cluster, sox_in_scope, backup_policy) values (%s, %s, %s, %s, %s, %s, %s)",
                (RUN_ID, EVIDENCE["applications"], f"applications.csv:{index + 2}",
                 application, cluster, in_scope, policy))
        for index, (login_role, identity, kind, ref) in enumerate(IDENTITY_MAP):
            cur.execute(
                "insert into raw.identity_map (run_id, evidence_id, locator, login_role,"
                " identity, identity_type, approval_ref) values (%s, %s, %s, %s, %s, %s, %s)",
                (RUN_ID, EVIDENCE["identity_map"], f"identity_map.csv:{index + 2}",
                 login_role, identity, kind, ref))
        for source, connector, setting, key, value in SETTINGS:
            cur.execute(
                "insert into raw.source_settings (run_id, source_name, connector, setting, key,"
                " value) values (%s, %s, %s, %s, %s, %s)",
                (RUN_ID, source, connector, setting, key, value))
        conn.commit()


@pytest.fixture(scope="module")
def built(pg_database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Load the estate, run one `dbt build` (models, snapshot, data and unit tests)."""
    from dbt.cli.main import dbtRunner

    _load(pg_database)
    work = tmp_path_factory.mktemp("dbt")
    params = pg_database.params
    profile = {"soxtrail": {"target": "test", "outputs": {"test": {
        "type": "postgres", "host": params.get("host", "127.0.0.1"),
        "port": int(params.get("port", 5432)), "user": params.get("user", "postgres"),
        "password": params.get("password", ""), "dbname": params["dbname"],
        "schema": "marts", "threads": 2}}}}
    (work / "profiles.yml").write_text(yaml.safe_dump(profile), encoding="utf-8")
    os.environ.update(controls.dbt_environment())  # the registry control_models() reads
    result = dbtRunner().invoke([
        "build", "--vars", json.dumps(QUARTER_VARS),
        "--profiles-dir", str(work), "--project-dir", str(PROJECT_DIR),
        "--target-path", str(work / "target"), "--log-path", str(work / "logs"),
    ])
    yield result


def _rows(db: Database, model: str) -> dict[str, dict[str, Any]]:
    with db.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f"select * from marts.{model} where run_id = %s", (RUN_ID,))  # type: ignore[arg-type]
        return {row["item_key"]: row for row in cur.fetchall()}


def _verdicts(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[str, list[str]]]:
    return {key: (row["result"], row["exception_reasons"]) for key, row in rows.items()}


def test_build_runs_models_snapshot_data_and_unit_tests_without_failure(built: Any) -> None:
    failures = [(r.node.unique_id, str(r.status), r.message) for r in built.result
                if str(r.status) not in ("success", "pass")]
    assert built.success, failures
    kinds = {r.node.resource_type for r in built.result}
    assert {"model", "snapshot", "test", "unit_test"} <= {str(k) for k in kinds}


def test_privileged_grants_are_judged_by_their_ticket(built: Any, pg_database: Database) -> None:
    rows = _rows(pg_database, "fct_control_ac01__privileged_access_approved")
    assert _verdicts(rows) == {
        "pg-fin-01|carol|fin_admin|2024-07-05T10:00:00Z": ("PASS", []),
        "pg-fin-01|erin|fin_admin|2024-07-06T09:00:00Z": ("EXCEPTION", ["APPROVED_AFTER_GRANT"]),
        "pg-fin-01|frank|SUPERUSER|2024-07-08T12:00:00Z": ("EXCEPTION", ["APPROVER_RAN_GRANT"]),
    }
    carol = rows["pg-fin-01|carol|fin_admin|2024-07-05T10:00:00Z"]
    assert (carol["ticket_key"], carol["ticket_match"]) == ("ACC-101", "explicit")
    assert str(carol["evidence_id"]) == EVIDENCE["csvlog"]
    assert [str(e) for e in carol["supporting_evidence_ids"]] == sorted(
        [EVIDENCE["jira"], EVIDENCE["role_catalog"]])
    frank = rows["pg-fin-01|frank|SUPERUSER|2024-07-08T12:00:00Z"]
    # ServiceNow 13:00 Europe/Berlin is 11:00 UTC: approved an hour before the grant
    assert frank["approved_at"] == datetime(2024, 7, 8, 11, tzinfo=timezone.utc)


def test_revocations_are_timed_against_the_sla(built: Any, pg_database: Database) -> None:
    assert _verdicts(_rows(pg_database, "fct_control_ac02__timely_revocation")) == {
        "gina|pg-fin-01|fin_admin": ("PASS", []),
        "gina|pg-fin-01|LOGIN": ("EXCEPTION", ["REVOKED_LATE"]),
        "gina|pg-hr-02|hr_admin": ("EXCEPTION", ["NOT_REVOKED"]),
        "gina|pg-hr-02|LOGIN": ("EXCEPTION", ["NOT_REVOKED"]),
    }
    rows = _rows(pg_database, "fct_control_ac02__timely_revocation")
    late = rows["gina|pg-fin-01|LOGIN"]
    # the duration is exact: never a rounded "24 h" next to REVOKED_LATE
    assert late["time_to_revoke"] != "24:00:00" and late["seconds_to_revoke"] > 24 * 3600
    assert late["hours_to_revoke"] > 24
    assert late["revocation_locator"] and late["deactivation_locator"]
    assert rows["gina|pg-hr-02|hr_admin"]["searched_population"] == "audit_log:pg-hr-02"


def test_quarter_end_access_is_listed_and_checked(built: Any, pg_database: Database) -> None:
    assert _verdicts(_rows(pg_database, "fct_control_ac03__quarter_end_access")) == {
        "pg-fin-01|carol|fin_admin": ("PASS", []),
        "pg-fin-01|carol|app_read": ("PASS", []),
        "pg-fin-01|erin|fin_admin": ("PASS", []),
        "pg-fin-01|frank|SUPERUSER": ("PASS", []),
        "pg-fin-01|dba_bob|CREATEROLE": ("EXCEPTION", ["NO_APPROVAL_ON_RECORD"]),
        "pg-fin-01|svc_deploy|mystery_role": ("EXCEPTION", ["UNKNOWN_ROLE"]),
        "pg-hr-02|gina|hr_admin": ("EXCEPTION", ["INACTIVE_HOLDER", "NO_APPROVAL_ON_RECORD"]),
    }


def test_ddl_is_one_item_per_statement_and_needs_a_change_ticket(
        built: Any, pg_database: Database) -> None:
    rows = _rows(pg_database, "fct_control_cm01__changes_authorized")
    assert _verdicts(rows) == {
        "pg-fin-01|s2|1": ("PASS", []),
        "pg-fin-01|s3|1": ("PASS", []),
        # no key and no approved window covers it: no ticket is linked to it
        "pg-fin-01|s3|2": ("EXCEPTION", ["NO_CHANGE_TICKET"]),
        "pg-hr-02|555|1": ("EXCEPTION", ["TICKET_CLUSTER_MISMATCH"]),
    }
    unlinked = rows["pg-fin-01|s3|2"]
    assert (unlinked["has_change_ticket"], unlinked["ticket_key"]) == (False, None)
    # the absence claim cites every ticket object searched (the Jira and ServiceNow ones)
    assert (unlinked["searched_population"], unlinked["searched_count"]) == ("tickets", 2)
    assert unlinked["candidate_count"] >= 1
    assert all(not c["chosen"] for c in json.loads(unlinked["candidates"]))
    assert all(row["searched_population"] is None for key, row in rows.items()
               if "NO_CHANGE_TICKET" not in row["exception_reasons"])
    ledger = rows["pg-fin-01|s2|1"]
    assert ledger["audit_entry_count"] == 2
    assert ledger["statement_text"].startswith("/* CHG-2001 */ CREATE TABLE ledger (\n")
    assert rows["pg-fin-01|s3|1"]["executed_by_identity_type"] == "service"


def test_backup_days_follow_each_clusters_policy(built: Any, pg_database: Database) -> None:
    rows = _rows(pg_database, "fct_control_bk01__backups_performed")
    assert len(rows) == 2 * 92
    exceptions = sorted(key for key, row in rows.items() if row["result"] == "EXCEPTION")
    assert exceptions == (
        ["pg-fin-01|2024-08-15", "pg-fin-01|2024-08-16"]
        + [f"pg-hr-02|2024-09-0{day}" for day in range(2, 9)]
    )
    assert all(row["exception_reasons"] == ["NO_BACKUP"] for key, row in rows.items()
               if key in exceptions)


def test_summary_counts_every_control(built: Any, pg_database: Database) -> None:
    rows = _rows(pg_database, "fct_control_summary")
    assert {key: (row["population"], row["exceptions"], row["result"])
            for key, row in rows.items()} == {
        "AC-01": (3, 2, "EXCEPTIONS"),
        "AC-02": (4, 3, "EXCEPTIONS"),
        "AC-03": (7, 3, "EXCEPTIONS"),
        "CM-01": (4, 2, "EXCEPTIONS"),
        "BK-01": (184, 9, "EXCEPTIONS"),
        # no settings capture and no reload line: every running day's settings are unknown
        "LG-01": (184, 184, "EXCEPTIONS"),
        "COMPLETENESS": (2, 2, "INCOMPLETE"),
    }
    # the hand-made run records no source with a cluster: both in-scope clusters lack their
    # audit-log and catalog sources, which qualifies every control reading those systems
    completeness = _rows(pg_database, "fct_completeness__sources")
    missing = ("EXCEPTION", ["MISSING_SOURCE"],
               "MISSING_SOURCE: in scope, no db_audit, db_catalog source")
    assert {key: (row["result"], row["exception_reasons"], row["finding_details"])
            for key, row in completeness.items()} == {
        "cluster|pg-fin-01": missing, "cluster|pg-hr-02": missing}
    assert {key: row["qualified_by"] for key, row in rows.items()} == {
        **{c: ["cluster|pg-fin-01", "cluster|pg-hr-02"]
           for c in ("AC-01", "AC-02", "AC-03", "CM-01", "LG-01")},
        "BK-01": [], "COMPLETENESS": []}
    expected_id = uuid.UUID(bytes=__import__("hashlib").md5(
        f"soxtrail:{RUN_ID}:fct_control_ac01__privileged_access_approved".encode()).digest())
    assert rows["AC-01"]["control_evidence_id"] == expected_id


def test_audit_logging_days_without_a_known_setting_are_settings_unknown(
        built: Any, pg_database: Database) -> None:
    """LG-01 on an estate with audit lines but no settings capture or pgaudit.log line: the
    clusters count as running every day, with settings nobody can show; and with no log file
    statement, a day a backup completed proves a run no captured log covers (docs/controls.md)."""
    rows = _rows(pg_database, "fct_control_lg01__audit_logging_complete")
    assert len(rows) == 184
    assert all("SETTINGS_UNKNOWN" in row["exception_reasons"] for row in rows.values())
    unlogged = {key for key, row in rows.items() if "NO_LOG_EVIDENCE" in row["exception_reasons"]}
    assert unlogged and unlogged == {key for key, row in rows.items()
                                     if row["running_evidence"] is not None}
    day = rows["pg-fin-01|2024-07-05"]
    assert day["running_periods"] == "2024-07-05T00:00:00Z/2024-07-06T00:00:00Z"
    assert day["audit_off_periods"] == "unknown 2024-07-05T00:00:00Z/2024-07-06T00:00:00Z"
    assert day["settings_basis"] == "unknown: no capture or change line"


@pytest.mark.parametrize("model", [
    "fct_control_ac01__privileged_access_approved",
    "fct_control_ac02__timely_revocation",
    "fct_control_cm01__changes_authorized",
])
def test_audit_entries_are_read_through_the_role_and_ddl_partial_indexes(
        built: Any, pg_database: Database, model: str) -> None:
    """Each mart reading audit entries can reach them through the three partial indexes of
    soxtrail/sql/platform.sql: their predicates still match the staging's class test.

    With sequential scans disabled, a partial index whose predicate the query does not imply
    cannot be used, and the plan falls back to a (disabled) sequential scan of the raw table.
    """
    compiled = next(r.node.compiled_code for r in built.result if r.node.name == model)
    with pg_database.connect() as conn:
        conn.execute("set local enable_seqscan = off")
        conn.execute("set local enable_nestloop = off")
        plan = "\n".join(row[0] for row in conn.execute(f"explain {compiled}").fetchall())
    for table in ("pgaudit_csvlog", "pgaudit_jsonlog", "pgaudit_stderr"):
        assert f"{table}_role_ddl_idx on {table}" in plan, plan
        assert f"Seq Scan on {table}" not in plan, plan


def test_every_absence_claim_names_a_population_listed_object_by_object(
        built: Any, pg_database: Database) -> None:
    searched = _rows(pg_database, "fct_searched_populations")
    tickets = {row["evidence_id"] for row in searched.values()
               if row["population_key"] == "tickets"}
    assert tickets == {uuid.UUID(EVIDENCE["jira"]), uuid.UUID(EVIDENCE["servicenow"])}
    assert {row["searched_count"] for row in searched.values()
            if row["population_key"] == "tickets"} == {2}
    keys = {row["population_key"] for row in searched.values()}
    cited = set()
    for model in controls.CONTROLS.values():
        for row in _rows(pg_database, model).values():
            assert (row["searched_population"] is None) == (row["searched_count"] is None)
            if row["searched_population"] is not None:
                cited.add(row["searched_population"])
    # AC-01/CM-01/AC-03 cite the tickets, BK-01 the backups, AC-02/LG-01 the audit logs
    assert {"tickets", "backups", "audit_log:pg-hr-02"} <= cited <= keys
