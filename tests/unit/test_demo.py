"""The demo estate: deterministic, in the real source formats, with complete ground truth."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from extract import demo
from extract.demo.oracle import ItemSink, stmt_key
from extract.demo.plan import Plan
from extract.demo.writers.pgaudit import write_logs
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter

REPO = Path(__file__).resolve().parents[2]
Q3 = Quarter.parse("2024Q3")

# every reason code docs/controls.md lists, per control
REASONS = {
    "AC-01": {"NO_TICKET", "TICKET_CLUSTER_MISMATCH", "NOT_APPROVED", "APPROVED_AFTER_GRANT",
              "APPROVAL_EXPIRED", "SELF_APPROVAL", "APPROVER_IS_REQUESTER",
              "APPROVER_RAN_GRANT"},
    "AC-02": {"REVOKED_LATE", "NOT_REVOKED"},
    "AC-03": {"UNKNOWN_ROLE", "INACTIVE_HOLDER", "NO_APPROVAL_ON_RECORD", "REVIEW_MISSING",
              "REVIEWER_IS_HOLDER", "REMOVE_NOT_ACTIONED", "REVIEW_LATE"},
    "CM-01": {"NO_CHANGE_TICKET", "TICKET_CLUSTER_MISMATCH", "NOT_APPROVED",
              "OUTSIDE_CHANGE_WINDOW"},
    "BK-01": {"NO_BACKUP"},
    # PGAUDIT_NOT_LOADED is left to the dbt unit tests: the demo's clusters all load pgaudit
    "LG-01": {"AUDIT_DISABLED", "LOG_GAP", "NO_LOG_EVIDENCE", "SETTINGS_UNKNOWN"},
}
LOG_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC$")
STDERR_START = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC) \[(\d+)\] ")


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, demo.DemoSummary]:
    out = tmp_path_factory.mktemp("demo") / "estate"
    return out, demo.generate(out, Q3)


@pytest.fixture(scope="module")
def expected(estate: tuple[Path, demo.DemoSummary]) -> dict[str, Any]:
    return json.loads((estate[0] / "expected.json").read_text())


def items(expected: dict[str, Any], control: str) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(i["key"]): i for i in expected["controls"][control]}


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


# ---------------------------------------------------------------------------
# determinism and shape of the ground truth


def test_two_runs_with_the_same_arguments_are_byte_identical(
        estate: tuple[Path, demo.DemoSummary], tmp_path: Path) -> None:
    again = tmp_path / "again"
    demo.generate(again, Q3)
    first, second = files(estate[0]), files(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_another_seed_gives_another_estate(estate: tuple[Path, demo.DemoSummary],
                                           tmp_path: Path) -> None:
    demo.generate(tmp_path / "other", Q3, seed=8)
    name = "logs/pg-fin-01/postgresql-2024-07-01_000000.csv"
    assert (tmp_path / "other" / name).read_bytes() != (estate[0] / name).read_bytes()


def test_expected_lists_every_control_with_well_formed_unique_items(
        expected: dict[str, Any]) -> None:
    assert expected["quarter"] == "2024Q3"
    assert list(expected["controls"]) == ["AC-01", "AC-02", "AC-03", "CM-01", "BK-01", "LG-01"]
    widths = {"AC-01": 4, "AC-02": 3, "AC-03": 3, "CM-01": 3, "BK-01": 2, "LG-01": 2}
    for control, rows in expected["controls"].items():
        keys = [tuple(r["key"]) for r in rows]
        assert len(keys) == len(set(keys)), control
        for row in rows:
            assert len(row["key"]) == widths[control]
            assert row["reasons"] == sorted(set(row["reasons"]))
            assert row["result"] == ("EXCEPTION" if row["reasons"] else "PASS")
            assert set(row["reasons"]) <= REASONS[control]
    for row in expected["controls"]["AC-01"]:
        assert re.fullmatch(r"2024-(07|08|09)-\d\dT\d\d:\d\d:\d\dZ", row["key"][3])


@pytest.mark.parametrize("control", sorted(REASONS))
def test_every_reason_code_is_planted_at_least_twice(expected: dict[str, Any],
                                                     control: str) -> None:
    seen = Counter(code for row in expected["controls"][control] for code in row["reasons"])
    assert {code: seen[code] for code in REASONS[control] if seen[code] < 2} == {}
    assert any(row["result"] == "PASS" for row in expected["controls"][control])


def test_summary_counts_match_expected(estate: tuple[Path, demo.DemoSummary],
                                       expected: dict[str, Any]) -> None:
    summary = estate[1]
    for control, rows in expected["controls"].items():
        assert summary.population[control] == len(rows)
        assert summary.exceptions[control] == sum(r["result"] == "EXCEPTION" for r in rows)
    assert summary.population["BK-01"] == 8 * 92
    assert 5_000 < summary.log_lines < 20_000


# ---------------------------------------------------------------------------
# planted cases and look-alikes


def test_ac01_planted_cases_and_look_alikes(expected: dict[str, Any]) -> None:
    ac01 = items(expected, "AC-01")
    by_grant = {(k[0], k[1], k[2]): v["reasons"] for k, v in ac01.items()}
    assert by_grant[("pg-fin-01", "alice", "fin_admin")] == []  # explicit key in a comment
    assert by_grant[("pg-hr-01", "bruno", "hr_admin")] == []  # implicit match
    assert by_grant[("pg-pay-01", "carla", "pay_admin")] == []  # key in application_name
    assert by_grant[("pg-fin-02", "kemal_adm", "fin_admin")] == []  # identity map, role case
    assert by_grant[("pg-hr-02", "wei", "hr_admin")] == []  # most recent approval wins
    assert by_grant[("pg-fin-03", "vera", "SUPERUSER")] == []  # ALTER ROLE … SUPERUSER
    assert by_grant[("pg-pay-02", "umar", "pay_admin")] == []  # lower case, WITH ADMIN OPTION
    assert by_grant[("pg-hr-01", "tmp_admin", "CREATEROLE")] == ["NO_TICKET"]
    assert by_grant[("pg-pay-01", "xenia", "pay_admin")] == ["APPROVED_AFTER_GRANT"]
    assert by_grant[("pg-pay-02", "chen", "pay_admin")] == ["APPROVER_IS_REQUESTER",
                                                           "SELF_APPROVAL"]
    assert by_grant[("pg-fin-01", "lena", "fin_admin")] == ["APPROVER_RAN_GRANT"]
    # multi-role grant: only the privileged role is an item; NOSUPERUSER is not a grant
    assert ("pg-ord-01", "elena", "ord_admin") in by_grant
    assert ("pg-ord-01", "elena", "ord_rw") not in by_grant
    assert [k for k in by_grant if k[0] == "pg-fin-03" and k[1] == "vera"] == [
        ("pg-fin-03", "vera", "SUPERUSER")]
    # out-of-scope cluster, non-privileged role, before the quarter: not in the population
    assert not [k for k in ac01 if k[0] == "pg-web-01"]
    assert ("pg-fin-01", "carla", "fin_ro") not in by_grant
    assert ("pg-fin-01", "lars", "fin_admin") not in by_grant


def test_ac02_revocation_at_the_sla_boundary_passes_one_second_late_does_not(
        expected: dict[str, Any]) -> None:
    ac02 = items(expected, "AC-02")
    assert {k[2]: v["reasons"] for k, v in ac02.items() if k[0] == "nadia"} == {
        "LOGIN": [], "ord_admin": [], "ord_rw": []}
    assert {k[2]: v["reasons"] for k, v in ac02.items() if k[0] == "farid"} == {
        "LOGIN": ["REVOKED_LATE"], "ord_admin": ["REVOKED_LATE"], "ord_rw": ["REVOKED_LATE"]}


def test_ac02_user_revoked_on_one_cluster_only(expected: dict[str, Any]) -> None:
    ac02 = items(expected, "AC-02")
    elena = {(k[1], k[2]): v["reasons"] for k, v in ac02.items() if k[0] == "elena"}
    assert elena == {("pg-ord-01", "LOGIN"): [], ("pg-ord-01", "ord_admin"): [],
                     ("pg-ord-01", "ord_rw"): [], ("pg-fin-01", "LOGIN"): ["NOT_REVOKED"],
                     ("pg-fin-01", "fin_ro"): ["NOT_REVOKED"]}
    # offboarded before termination, or holding only out-of-scope access: no items
    assert not [k for k in ac02 if k[0] in ("ines", "ivo", "s.meyer", "contractor07")]
    # HR spells him HIRO: identities compare lower-cased
    assert ("hiro", "pg-fin-01", "fin_admin") in ac02


def test_ac03_planted_cases(expected: dict[str, Any]) -> None:
    ac03 = items(expected, "AC-03")
    # an unknown role has no owner to review it (plan_review)
    assert ac03[("pg-pay-01", "otto", "fin_admin")]["reasons"] == ["REVIEW_MISSING",
                                                                   "UNKNOWN_ROLE"]
    assert ac03[("pg-fin-01", "hiro", "fin_admin")]["reasons"] == [
        "INACTIVE_HOLDER", "NO_APPROVAL_ON_RECORD"]
    assert ac03[("pg-ord-01", "kofi", "ord_admin")]["reasons"] == ["NO_APPROVAL_ON_RECORD",
                                                                    "REVIEW_LATE"]
    assert ac03[("pg-pay-01", "pia", "pay_admin")]["reasons"] == []
    assert ac03[("pg-fin-01", "postgres", "SUPERUSER")]["reasons"] == []
    assert ac03[("pg-hr-01", "lars", "CREATEROLE")]["reasons"] == []
    assert not [k for k in ac03 if k[0] in ("pg-web-01", "pg-dev-01")]
    assert not [k for k in ac03 if k[1] in ("report_owner", "dba", "pg_monitor")]


def test_bk01_planted_gaps(expected: dict[str, Any]) -> None:
    bk01 = {tuple(k): v["reasons"] for k, v in items(expected, "BK-01").items()}
    gaps = sorted(k for k, v in bk01.items() if v)
    assert ("pg-fin-03", "2024-09-09") in gaps  # started 23:40, completed the next day
    assert bk01[("pg-fin-03", "2024-09-10")] == []
    assert ("pg-hr-01", "2024-08-19") in gaps  # the day's only backup has error=true
    weekly = [k[1] for k in gaps if k[0] == "pg-ord-01"]
    assert weekly == [f"2024-08-{d}" for d in range(18, 25)]
    assert bk01[("pg-ord-01", "2024-08-17")] == [] and bk01[("pg-ord-01", "2024-08-25")] == []


# ---------------------------------------------------------------------------
# the logs agree with expected.json


def log_records(path: Path, fmt: str, prefix: str | None) -> Iterator[dict[str, Any]]:
    """Minimal independent readers: log time, user, session, pid, app and message."""
    if fmt == "csvlog":
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.reader(handle):
                assert len(row) == 26, row
                yield {"time": row[0], "user": row[1], "session": row[5], "pid": row[3],
                       "app": row[22], "message": row[13], "severity": row[11]}
    elif fmt == "jsonlog":
        for line in path.read_text(encoding="utf-8").splitlines():
            doc = json.loads(line)
            assert {"timestamp", "pid", "session_id", "error_severity", "message"} <= doc.keys()
            assert all(v is not None for v in doc.values())
            yield {"time": doc["timestamp"], "user": doc.get("user"), "pid": str(doc["pid"]),
                   "session": doc["session_id"], "app": doc.get("application_name", ""),
                   "message": doc["message"], "severity": doc["error_severity"]}
    else:
        entries: list[list[str]] = []
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            if line.startswith("\t"):
                entries[-1].append(line[1:])
            else:
                assert STDERR_START.match(line), line
                entries.append([line])
        for lines in entries:
            head = lines[0]
            match = STDERR_START.match(head)
            assert match
            rest = head[match.end():]
            session = app = user = None
            if prefix == demo.PREFIX_SESSION:
                session, _, rest = rest.split(" ", 2)
            severity_at = re.search(r"(LOG|ERROR|FATAL|DETAIL|STATEMENT):  ", rest)
            assert severity_at, head
            fields = rest[:severity_at.start()].split()
            if fields:
                user = fields[0].split("@")[0]
                app = fields[1] if len(fields) > 1 else None
            message = "\n".join([rest[severity_at.end():], *lines[1:]])
            yield {"time": match.group(1), "user": user, "pid": match.group(2),
                   "session": session or match.group(2), "app": app or "",
                   "message": message, "severity": severity_at.group(1)}


def audit_fields(message: str) -> list[str]:
    assert message.startswith("AUDIT: ")
    fields = next(csv.reader(io.StringIO(message[len("AUDIT: "):])))
    assert len(fields) == 9, fields
    assert fields[0] == "SESSION" and fields[8] == "<not logged>"
    return fields


def test_logs_are_well_formed_and_cm01_lists_exactly_their_ddl_statements(
        estate: tuple[Path, demo.DemoSummary], expected: dict[str, Any]) -> None:
    out = estate[0]
    apps = {r["cluster"]: r for r in csv.DictReader((out / "seeds/applications.csv").open())}
    config = (out / "soxtrail.yml").read_text()
    ddl: dict[tuple[str, str, str], list[str]] = {}
    formats = Counter()
    for cluster_dir in sorted((out / "logs").iterdir()):
        cluster = cluster_dir.name
        paths = sorted(cluster_dir.iterdir())
        assert len(paths) >= 13  # weekly rotation over the quarter
        fmt = {".csv": "csvlog", ".json": "jsonlog", ".log": "stderr"}[paths[0].suffix]
        formats[fmt] += 1
        prefix = None
        if fmt == "stderr":
            prefix = re.search(rf"cluster: {cluster}\n.*?log_line_prefix: '([^']*)'", config,
                               re.S).group(1)  # type: ignore[union-attr]
        last_statement: dict[str, int] = {}
        for path in paths:
            for rec in log_records(path, fmt, prefix):
                assert LOG_TIME.match(rec["time"]), rec["time"]
                if not rec["message"].startswith("AUDIT: "):
                    continue
                fields = audit_fields(rec["message"])
                stmt = int(fields[1])
                assert stmt >= last_statement.get(rec["session"], 0)
                last_statement[rec["session"]] = stmt
                in_quarter = "2024-07-01" <= rec["time"][:10] <= "2024-09-30"
                if fields[3] == "DDL" and apps[cluster]["sox_in_scope"] == "true" and in_quarter:
                    ddl.setdefault((cluster, rec["session"], fields[1]), []).append(fields[4])
    assert formats == {"csvlog": 4, "jsonlog": 4, "stderr": 4}
    assert set(ddl) == set(items(expected, "CM-01"))
    assert any(len(commands) == 2 for commands in ddl.values())  # one statement, two entries


def test_cm01_look_alikes(estate: tuple[Path, demo.DemoSummary],
                          expected: dict[str, Any]) -> None:
    out = estate[0]
    cm01 = items(expected, "CM-01")
    wanted = {"ALTER TABLE payments.batch ADD COLUMN settled_at timestamptz;": [],
              "COMMENT ON TABLE gl.journal_archive IS 'Archive per CHG-9999, see runbook';": [],
              "ALTER TABLE payments.transfer ADD COLUMN iban_hash text;": [],
              "/* CHG-2003 */ CREATE INDEX idx_transfer_iban ON payments.transfer "
              "(iban_hash);": ["OUTSIDE_CHANGE_WINDOW"],
              "DROP TABLE hr.tmp_payroll_fix;": ["NO_CHANGE_TICKET"]}
    found = {}
    for cluster, fmt in (("pg-pay-02", "csvlog"), ("pg-fin-01", "csvlog"),
                         ("pg-pay-01", "stderr"), ("pg-hr-02", "jsonlog")):
        prefix = demo.PREFIX_SESSION if cluster == "pg-pay-01" else None
        for path in sorted((out / "logs" / cluster).iterdir()):
            for rec in log_records(path, fmt, prefix):
                if rec["message"].startswith("AUDIT: "):
                    fields = audit_fields(rec["message"])
                    if fields[7] in wanted and fields[3] == "DDL":
                        found[fields[7]] = cm01[(cluster, rec["session"], fields[1])]["reasons"]
    assert found == wanted


def test_ticket_keys_come_from_comments_then_application_name() -> None:
    assert stmt_key("/* CHG-2001 */ CREATE TABLE t (id int);", "psql") == "CHG-2001"
    assert stmt_key("-- ACC-105\nGRANT r TO u;", "psql") == "ACC-105"
    assert stmt_key("COMMENT ON TABLE t IS 'per CHG-9999';", "psql") is None
    assert stmt_key("GRANT r TO u;", "dbops-ACC-103") == "ACC-103"
    assert stmt_key("/* x */ /* CHG-1 */ -- CHG-2", "CHG-3") == "CHG-1"


# ---------------------------------------------------------------------------
# the other sources


def test_catalog_exports_are_psql_csv(estate: tuple[Path, demo.DemoSummary]) -> None:
    for sub in sorted((estate[0] / "catalog").iterdir()):
        members = list(csv.reader((sub / "memberships.csv").open()))
        roles = list(csv.reader((sub / "roles.csv").open()))
        assert members[0] == ["member", "granted_role", "admin_option", "rolsuper",
                              "rolcanlogin", "rolcreaterole", "rolvaliduntil"]
        assert roles[0] == ["rolname", "rolsuper", "rolcreaterole", "rolcanlogin",
                            "rolvaliduntil"]
        names = {r[0] for r in roles[1:]}
        for row in members[1:]:
            assert set(row[2:6]) <= {"t", "f"} and row[0] in names and row[1] in names
        for row in roles[1:]:
            assert set(row[1:4]) <= {"t", "f"}


def test_cloudtrail_files_decompress_to_records(estate: tuple[Path, demo.DemoSummary]) -> None:
    out, summary = estate
    paths = sorted((out / "cloudtrail/AWSLogs/123456789012/CloudTrail").rglob("*.json.gz"))
    assert len(paths) == summary.cloudtrail_files
    names: Counter[str] = Counter()
    total = 0
    pattern = re.compile(r"AWSLogs/123456789012/CloudTrail/([a-z0-9-]+)/(\d{4})/(\d\d)/(\d\d)/"
                         r"123456789012_CloudTrail_\1_\2\3\4T\d{4}Z_[A-Za-z0-9]{16}\.json\.gz$")
    for path in paths:
        assert pattern.search(path.as_posix()), path
        records = json.loads(gzip.decompress(path.read_bytes()))["Records"]
        total += len(records)
        for rec in records:
            assert {"eventVersion", "userIdentity", "eventTime", "eventSource", "eventName",
                    "awsRegion", "requestParameters", "eventID", "recipientAccountId"} <= rec.keys()
            if rec["eventSource"] == "iam.amazonaws.com":
                names[rec["eventName"]] += 1
    assert total == summary.cloudtrail_records
    assert names["DeleteUser"] >= 4 and names["DeleteLoginProfile"] >= 2
    assert names["CreateUser"] and names["AddUserToGroup"] and names["RemoveUserFromGroup"]


def test_jira_pages_are_v2_search_responses(estate: tuple[Path, demo.DemoSummary],
                                            expected: dict[str, Any]) -> None:
    out, summary = estate
    pages = sorted((out / "jira").glob("search-*.json"))
    issues = []
    sequence = []
    for page in pages:
        doc = json.loads(page.read_text())
        assert doc["total"] == summary.tickets and doc["maxResults"] == 50
        sequence.append((doc["startAt"], len(doc["issues"])))
        issues += doc["issues"]
    # planted: the first page lost one issue (CHG-2010), the next still starts at 50
    assert sequence == [(0, 49), (50, 50), (100, summary.tickets - 100)]
    assert len(issues) == summary.tickets - 1
    assert "CHG-2010" not in {i["key"] for i in issues}
    assert expected["completeness"]["jira"] == ["MISSING_PAGE"]
    by_key = {i["key"]: i for i in issues}
    acc = by_key["ACC-101"]
    assert acc["fields"]["customfield_10401"]["name"] == "mkeller"
    assert acc["fields"]["customfield_10403"]["value"] == "pg-fin-01"
    assert acc["fields"]["issuetype"]["name"] == "Access Request"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d{4}", acc["fields"]["created"])
    approved = [h for h in acc["changelog"]["histories"]
                if h["items"][0]["toString"] == "Approved"]
    assert approved[0]["created"] == "2024-07-05T14:02:00.000+0000"
    assert by_key["ACC-117"]["changelog"]["histories"][1]["created"].endswith("-0500")


def test_backups_and_hr_files(estate: tuple[Path, demo.DemoSummary]) -> None:
    out, summary = estate
    stanzas = json.loads((out / "backups/pgbackrest-info.json").read_text())
    assert len(stanzas) == 12 + 1  # and the unscoped cluster's (plan_completeness)
    backups = [b for s in stanzas for b in s["backup"]]
    assert len(backups) == summary.backups
    for b in backups:
        assert b["type"] in ("full", "incr") and b["timestamp"]["stop"] > b["timestamp"]["start"]
        assert re.fullmatch(r"\d{8}-\d{6}F(_\d{8}-\d{6}I)?", b["label"])
    hr = list(csv.DictReader((out / "hr/terminations.csv").open()))
    assert all(re.search(r"(Z|[+-]\d\d:\d\d)$", r["terminated_at"]) for r in hr)


def test_an_unscoped_cluster_has_backups_but_no_application(
        estate: tuple[Path, demo.DemoSummary], expected: dict[str, Any]) -> None:
    out, _summary = estate
    stanzas = {s["name"]: s for s in json.loads(
        (out / "backups/pgbackrest-info.json").read_text())}
    listed = {r["cluster"] for r in csv.DictReader((out / "seeds/applications.csv").open())}
    unscoped = sorted(set(stanzas) - listed)
    assert unscoped == ["pg-legacy-01"]
    assert expected["completeness_clusters"] == {"pg-legacy-01": ["UNSCOPED_CLUSTER"]}
    # its retention reaches back before the quarter, so pgbackrest's own row stays clean
    oldest = min(b["timestamp"]["start"] for b in stanzas["pg-legacy-01"]["backup"])
    assert oldest < Q3.start_utc.timestamp() and expected["completeness"]["pgbackrest"] == []
    # no control judges it
    assert not any("pg-legacy-01" in i["key"] for control in expected["controls"].values()
                   for i in control)


def test_one_catalog_is_exported_weeks_after_quarter_end(
        estate: tuple[Path, demo.DemoSummary], expected: dict[str, Any]) -> None:
    from extract.connectors.registry import SPECS
    from soxtrail.kernel.config import load_config
    config = load_config(estate[0] / "soxtrail.yml", specs=SPECS)
    taken = {s.name: datetime.fromisoformat(s.get("captured_at")) for s in config.sources
             if s.connector == "postgres_catalog"}
    late = {name for name, at in taken.items() if abs(at - Q3.end_utc) > timedelta(hours=72)}
    assert late == {"catalog-pg-hr-02"}
    assert taken["catalog-pg-hr-02"] - Q3.end_utc > timedelta(weeks=3)
    catalogs = {k: v for k, v in expected["completeness"].items() if k.startswith("catalog-")}
    assert catalogs == {name: ["SNAPSHOT_NOT_AT_QUARTER_END"] if name in late else []
                        for name in taken}


def test_shipped_seeds_equal_the_generated_ones(estate: tuple[Path, demo.DemoSummary]) -> None:
    for name in ("role_catalog.csv", "applications.csv", "identity_map.csv"):
        assert (REPO / "seeds" / name).read_bytes() == (estate[0] / "seeds" / name).read_bytes()


def test_the_demo_config_validates(estate: tuple[Path, demo.DemoSummary]) -> None:
    from extract.connectors.registry import SPECS
    from soxtrail.kernel.config import load_config
    config = load_config(estate[0] / "soxtrail.yml", specs=SPECS)
    connectors = Counter(s.connector for s in config.sources)
    assert connectors == {"pgaudit_log": 12, "postgres_catalog": 12, "aws_cloudtrail": 1,
                          "file": 1, "jira": 1, "pgbackrest_info": 1}
    assert config.catalogs["role_catalog"] == estate[0] / "seeds/role_catalog.csv"
    for source in config.sources:
        for key in ("path", "roles_path"):
            if key in source.values and "*" not in str(source.values[key]):
                assert source.path(key).exists(), (source.name, key)


# ---------------------------------------------------------------------------
# scale


def test_scale_knobs_grow_the_estate_and_keep_the_planted_cases(
        tmp_path: Path, expected: dict[str, Any]) -> None:
    scale = demo.DemoScale(clusters=15, in_scope_clusters=10, log_lines=40_000,
                           cloudtrail_records=2_000, tickets=400, backup_records=3_000,
                           role_catalog_rows=60)
    summary = demo.generate(tmp_path / "big", Q3, scale=scale)
    big = json.loads((tmp_path / "big/expected.json").read_text())
    assert summary.clusters == 15 and summary.in_scope_clusters == 10
    assert 34_000 < summary.log_lines < 46_000
    assert summary.cloudtrail_records == 2_000
    assert summary.tickets >= 400 and summary.backups >= 3_000
    assert summary.role_catalog_rows == 60
    assert summary.population["BK-01"] == 10 * 92
    assert summary.population["CM-01"] > len(expected["controls"]["CM-01"])
    assert big["controls"]["AC-01"] == expected["controls"]["AC-01"]
    assert big["controls"]["AC-02"] == expected["controls"]["AC-02"]
    for control in REASONS:
        assert summary.population[control] == len(big["controls"][control])
    in_scope = [r for r in csv.DictReader((tmp_path / "big/seeds/applications.csv").open())
                if r["sox_in_scope"] == "true"]
    assert len(in_scope) == 10


def test_worker_processes_write_the_same_bytes(tmp_path: Path) -> None:
    plan = Plan.build(Q3, demo.DemoScale(log_lines=12_000), 7)
    outputs = []
    for workers in (1, 2):
        sink = ItemSink(io.StringIO())
        write_logs(plan, tmp_path / f"w{workers}" / "logs", sink, workers=workers)
        outputs.append((files(tmp_path / f"w{workers}"), sink.handle.getvalue(), sink.count))
    assert outputs[0] == outputs[1]


def test_too_small_an_estate_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 12 clusters"):
        demo.DemoScale(clusters=10)


def test_cm01_oracle_links_a_keyless_statement_only_through_a_covering_window() -> None:
    """No key: inside an approved window of the cluster passes; outside every one, no ticket
    is linked (NO_CHANGE_TICKET), and OUTSIDE_CHANGE_WINDOW is left to named tickets."""
    from extract.demo.oracle_changes import CmIndex
    from extract.demo.plan import DemoScale

    plan = Plan.build(Q3, DemoScale(), seed=7)
    index = CmIndex(plan)
    cluster, windows = next((c, w) for c, w in index.approved.items() if any(w))
    start, end = next(w for w in windows if w)
    assert index.reasons(cluster, start, None) == []
    assert index.reasons(cluster, end, None) == []
    moment = min(w[0] for w in windows if w) - timedelta(days=400)
    assert index.reasons(cluster, moment, None) == ["NO_CHANGE_TICKET"]
    named = next(t for t in plan.tickets.values()
                 if t.kind == "change" and t.is_approved and t.window and t.cluster == cluster)
    assert named.window is not None
    assert index.reasons(cluster, named.window[1] + timedelta(seconds=1), named.key) == [
        "OUTSIDE_CHANGE_WINDOW"]
