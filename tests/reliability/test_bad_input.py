"""Bad input through the whole pipeline: no traceback, no row lost, every reject with its reason.

The demo config plus sources of broken files (all on the in-scope cluster pg-fin-01), run
once. For every object: read = loaded + rejected + skipped (sox_load_stats), and each
rejected record is in sox_rejects with a reason and a locator (file:line or object#index).
"""

from __future__ import annotations

import csv
import gzip
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from soxtrail.kernel.database import Database
from tests.reliability.checks import integrity_problems, load_totals
from tests.reliability.conftest import QUARTER
from tests.support.cli import soxtrail

PWNED = f"pwned_{uuid.uuid4().hex[:8]}"
EVIL_CLUSTER = f"x'); create table public.{PWNED} (); --\"; drop table soxtrail.sox_runs;"
PREFIX = "%m [%p] %q%u@%d "


def _csv_line(message: str, *, log_time: str = "2024-07-05 10:00:00.000 UTC",
              session: str = "66aa0001.1", line: int = 1) -> str:
    quoted = message.replace('"', '""')
    return (f'{log_time},"grace","postgres",4242,"10.0.0.1:5000",{session},{line},"SELECT",'
            f'2024-07-05 09:59:00 UTC,3/1,0,LOG,00000,"{quoted}",,,,,,,,,"psql",'
            '"client backend",,0\n')


def _read(n: int) -> str:
    return f"AUDIT: SESSION,{n},1,READ,SELECT,,,SELECT {n},<not logged>"


def _write_bad_estate(demo: Path) -> dict[str, Any]:
    bad = demo / "bad"
    shutil.rmtree(bad, ignore_errors=True)
    for sub in ("csv", "json", "stderr", "cloudtrail", "jira", "evil"):
        (bad / sub).mkdir(parents=True)
    real = sorted((demo / "logs" / "pg-fin-01").glob("*.csv"))[1]
    # the same file twice more, under two other names
    shutil.copyfile(real, bad / "csv" / "dup-a.csv")
    shutil.copyfile(real, bad / "csv" / "dup-b.csv")
    packed = gzip.compress(real.read_bytes())
    (bad / "csv" / "truncated.csv.gz").write_bytes(packed[: len(packed) * 2 // 3])
    (bad / "csv" / "utf8.csv").write_bytes(
        _csv_line(_read(1)).encode() + _csv_line(_read(2)).encode().replace(b"SELECT 2",
                                                                            b"SELECT \xff\xfe")
        + _csv_line(_read(3), line=3).encode())
    (bad / "csv" / "quoting.csv").write_text(
        _csv_line("AUDIT: SESSION,1,1,READ,SELECT,,,\"SELECT 1\n  FROM t\n  -- embedded\","
                  "<not logged>")
        + "2024-07-05 10:00:01.000 UTC,\"grace,\"postgres\",4242,broken \"quote\n"
        + _csv_line(_read(9), line=9))
    (bad / "csv" / "columns.csv").write_text(
        "2024-07-05 10:00:00.000 UTC,grace,postgres,1,2,3,4,5,6,7\n" + _csv_line(_read(4)))
    (bad / "csv" / "empty.csv").write_bytes(b"")
    (bad / "csv" / "zones.csv").write_text(
        _csv_line(_read(5), log_time="2024-07-05 10:00:00.000")
        + _csv_line(_read(6), log_time="2024-07-05 12:00:00.000 CEST", line=2)
        + _csv_line(_read(7), log_time="2024-07-05 10:00:00+05:30", line=3)
        + _csv_line(_read(8), log_time="not a time", line=4))

    base = {"timestamp": "2024-07-05 10:00:00.000 UTC", "user": "grace", "dbname": "postgres",
            "pid": 1, "session_id": "66aa0002.1", "line_num": 1, "error_severity": "LOG",
            "message": _read(1)}
    lines = [
        json.dumps(base),
        json.dumps({k: v for k, v in base.items() if k != "message"}),       # missing key
        json.dumps({**base, "extra_key": {"nested": [1, 2]}, "message": _read(2)}),
        json.dumps({**base, "timestamp": "2024-07-05 10:00:00"}),             # no zone
        json.dumps({**base, "timestamp": "2024-07-05T12:00:00+02:00"}),       # another zone
        json.dumps({**base, "message": _read(3) + "\u0000"}),                 # NUL
        json.dumps({**base, "message": _read(4) + "\ud800"}),                 # lone surrogate
        '{"timestamp": "2024-07-05 10:00:00 UTC", "pid": NaN, "message": "x"}',
        "[1, 2, 3]",
        '{"timestamp": "2024-07-05 10:00:00 UTC", "message": ',
        "",
    ]
    (bad / "json" / "keys.json").write_text("\n".join(lines) + "\n")

    huge = "SELECT '" + "x" * (10 << 20) + "'"
    (bad / "stderr" / "huge.log").write_text(
        f"2024-07-05 10:00:00.000 UTC [4242] grace@postgres LOG:  AUDIT: SESSION,1,1,READ,"
        f"SELECT,,,{huge},<not logged>\n"
        "2024-07-05 10:00:01.000 UTC [4242] grace@postgres LOG:  checkpoint starting\n")

    trail = {"eventVersion": "1.08", "eventTime": "2024-07-05T10:00:00Z",
             "eventSource": "ec2.amazonaws.com", "eventName": "RunInstances",
             "awsRegion": "eu-west-1", "userIdentity": {"type": "IAMUser", "userName": "x"}}
    folder = bad / "cloudtrail" / "AWSLogs" / "123456789012" / "CloudTrail" / "eu-west-1" / \
        "2024" / "07" / "05"
    folder.mkdir(parents=True)
    (folder / "123456789012_CloudTrail_eu-west-1_20240705T1000Z_other.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": [trail, {**trail, "eventName": "StopInstances"}]})
                      .encode()))
    iam = {**trail, "eventSource": "iam.amazonaws.com", "eventName": "DeleteLoginProfile",
           "requestParameters": {"userName": "nobody\u0000"}}
    (folder / "123456789012_CloudTrail_eu-west-1_20240705T1005Z_nul.json.gz").write_bytes(
        gzip.compress(json.dumps({"Records": [iam]}).encode()))
    whole = gzip.compress(json.dumps({"Records": [trail] * 50}).encode())
    (folder / "123456789012_CloudTrail_eu-west-1_20240705T1010Z_cut.json.gz").write_bytes(
        whole[: len(whole) // 2])

    issue = {"id": "99001", "key": "ODD-1", "fields": {
        "summary": "ticket key ACC-4242 only in the summary", "issuetype": None,
        "status": None, "reporter": None, "customfield_10401": None}}
    page = ('{"startAt": 0, "maxResults": 50, "total": 7, "issues": ['
            + ", ".join([
                json.dumps(issue),
                json.dumps({"id": "99002", "key": "odd-2"}),                  # no fields at all
                json.dumps({"id": "99003", "key": " ACC-7 ", "fields": {"labels": ["CHG-1"]}}),
                json.dumps({"id": "99004", "key": "ODD-4",
                            "fields": {"summary": "nul \u0000 here"}}),
                '{"id": "99005", "key": "ODD-5", "fields": {"priority": NaN}}',
                json.dumps({"id": "99006", "key": "ODD-6",
                            "fields": {"summary": "half \udc00"}}),
                '"not an object"',
            ]) + "]}")
    (bad / "jira" / "odd.json").write_text(page)
    (bad / "jira" / "cut.json").write_text(page[: len(page) // 2])

    (bad / "evil" / "evil.csv").write_text(_csv_line(_read(1)))
    return {"real_lines": sum(1 for _ in real.open("rb"))}


@pytest.fixture(scope="module")
def bad_run(rel_demo: Path, rel_db: Database,
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    facts = _write_bad_estate(rel_demo)
    config = yaml.safe_load((rel_demo / "soxtrail.yml").read_text())
    demo_jira = next(s for s in config["sources"] if s["connector"] == "jira")
    cluster = "pg-fin-01"
    config["clusters"] = [cluster, EVIL_CLUSTER]  # the run's scope comes from the config
    # a scoped cluster must be one an application lists: the evil name is listed too, so it
    # also travels through the applications catalog
    applications = rel_demo / "bad" / "applications.csv"
    with (rel_demo / config["catalogs"]["applications"]).open(newline="") as seed:
        rows = list(csv.reader(seed))
    rows.append(["evil-app", EVIL_CLUSTER, "true", "daily"])
    with applications.open("w", newline="") as out:
        csv.writer(out).writerows(rows)
    config["catalogs"]["applications"] = "bad/applications.csv"
    config["sources"] += [
        {"name": "bad-csv", "system": "db_audit", "connector": "pgaudit_log",
         "cluster": cluster, "format": "csvlog", "paths": ["bad/csv/*"]},
        {"name": "bad-json", "system": "db_audit", "connector": "pgaudit_log",
         "cluster": cluster, "format": "jsonlog", "paths": ["bad/json/*.json"]},
        {"name": "bad-stderr", "system": "db_audit", "connector": "pgaudit_log",
         "cluster": cluster, "format": "stderr", "paths": ["bad/stderr/*.log"],
         "log_line_prefix": PREFIX},
        {"name": "bad-cloudtrail", "system": "iam", "connector": "aws_cloudtrail",
         "path": "bad/cloudtrail"},
        {"name": "bad-jira", "system": "tickets", "connector": "jira",
         "path": "bad/jira/*.json", "api": "v2", "fields": demo_jira["fields"],
         "types": demo_jira["types"]},
        {"name": "../../evil source", "system": "db_audit", "connector": "pgaudit_log",
         "cluster": EVIL_CLUSTER, "format": "csvlog", "paths": ["bad/evil/*.csv"]},
    ]
    path = rel_demo / "soxtrail-bad.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    home = tmp_path_factory.mktemp("home-bad")
    result = soxtrail("run", "--quarter", QUARTER, "--config", str(path), "--json", "--quiet",
                      home=home, database_url=rel_db.dsn)
    return {"result": result, "home": home, **facts,
            "run_id": result.json()["run_id"] if result.code == 0 else None}


def _objects(db: Database, run_id: str, source: str) -> dict[str, dict[str, Any]]:
    """Per object name of a source: its load stats and its rejects (reason, locator)."""
    with db.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "select e.id, e.raw_output_s3_key, e.result_row_count, s.records_read as read,"
            " s.records_loaded as loaded, s.records_rejected as rejected,"
            " s.records_skipped as skipped from soxtrail.sox_evidence e"
            " join soxtrail.sox_load_stats s on s.evidence_id = e.id and s.run_id = e.run_id"
            " where e.run_id = %s and e.query_params->>'source' = %s", (run_id, source))
        objects = {}
        for row in cur.fetchall():
            cur.execute("select locator, reason from soxtrail.sox_rejects where evidence_id = %s"
                        " order by locator", (row["id"],))
            row["rejects"] = [(r["locator"], r["reason"]) for r in cur.fetchall()]
            objects[row["raw_output_s3_key"].rsplit("/", 1)[-1]] = row
    return objects


def _find(objects: dict[str, dict[str, Any]], part: str) -> dict[str, Any]:
    matches = [v for k, v in objects.items() if part in k]
    assert len(matches) == 1, (part, sorted(objects))
    return matches[0]


def test_the_run_with_bad_input_completes(bad_run: dict[str, Any]) -> None:
    result = bad_run["result"]
    assert result.code == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


def test_no_record_is_lost(bad_run: dict[str, Any], rel_db: Database) -> None:
    read, loaded, rejected, skipped = load_totals(rel_db, bad_run["run_id"])
    assert read == loaded + rejected + skipped
    assert rejected > 0
    assert integrity_problems(rel_db, bad_run["run_id"]) == []


def test_every_reject_has_a_reason_and_a_locator(bad_run: dict[str, Any],
                                                 rel_db: Database) -> None:
    with rel_db.connect() as conn:
        rows = conn.execute("select locator, reason from soxtrail.sox_rejects"
                            " where run_id = %s", (bad_run["run_id"],)).fetchall()
    assert rows
    for locator, reason in rows:
        assert reason.strip() and locator.strip()
        assert ":" in locator or "#" in locator or locator.endswith((".json", ".gz")), locator


def test_broken_csv_logs_are_rejected_line_by_line(bad_run: dict[str, Any],
                                                   rel_db: Database) -> None:
    objects = _objects(rel_db, bad_run["run_id"], "bad-csv")
    utf8 = _find(objects, "utf8")
    assert (utf8["read"], utf8["rejected"]) == (3, 1)
    assert utf8["rejects"][0][0].endswith("utf8.csv:2") and "UTF-8" in utf8["rejects"][0][1]
    columns = _find(objects, "columns")
    assert (columns["read"], columns["loaded"], columns["rejected"]) == (2, 1, 1)
    assert "column" in columns["rejects"][0][1]
    quoting = _find(objects, "quoting")
    # the quoted 3-line statement is one record; the broken line alone is rejected
    assert (quoting["read"], quoting["loaded"], quoting["rejected"]) == (3, 2, 1)
    assert quoting["rejects"][0][0].endswith("quoting.csv:4")
    assert "quoting" in quoting["rejects"][0][1]
    empty = _find(objects, "empty")
    assert (empty["read"], empty["loaded"], empty["rejected"]) == (0, 0, 0)
    truncated = _find(objects, "truncated")
    assert truncated["rejected"] == 1 and truncated["loaded"] + truncated["skipped"] > 0
    assert "gz" in truncated["rejects"][0][1].lower() or "unreadable" in \
        truncated["rejects"][0][1].lower() or "compressed" in truncated["rejects"][0][1].lower()


def test_the_same_file_twice_loads_twice_and_counts_once(bad_run: dict[str, Any],
                                                         baseline: dict[str, Any],
                                                         rel_db: Database) -> None:
    objects = _objects(rel_db, bad_run["run_id"], "bad-csv")
    a, b = _find(objects, "dup-a"), _find(objects, "dup-b")
    assert a["read"] == b["read"] > 0 and a["rejected"] == b["rejected"] == 0
    # the statements of the duplicated files are the same items, not new ones
    for model in ("fct_control_cm01__changes_authorized",
                  "fct_control_ac01__privileged_access_approved"):
        with rel_db.connect() as conn:
            keys = [{k for (k,) in conn.execute(f"select item_key from marts.{model}"
                                                " where run_id = %s", (run,)).fetchall()}
                    for run in (bad_run["run_id"], baseline["run_id"])]
        assert keys[0] == keys[1], model


def test_broken_json_log_lines_are_rejected_with_reasons(bad_run: dict[str, Any],
                                                         rel_db: Database) -> None:
    keys = _find(_objects(rel_db, bad_run["run_id"], "bad-json"), "keys")
    assert keys["read"] == keys["loaded"] + keys["rejected"] + keys["skipped"] == 10
    reasons = " | ".join(r for _, r in keys["rejects"])
    for expected in ("NUL", "surrogate", "JSON"):
        assert expected in reasons, reasons
    assert all(locator.startswith("keys.json:") for locator, _ in keys["rejects"])


def test_a_10_mb_log_line_is_loaded_whole(bad_run: dict[str, Any], rel_db: Database) -> None:
    huge = _find(_objects(rel_db, bad_run["run_id"], "bad-stderr"), "huge")
    assert (huge["read"], huge["loaded"], huge["skipped"]) == (2, 1, 1)
    with rel_db.connect() as conn:
        size = conn.execute("select max(length(message)) from raw.pgaudit_stderr"
                            " where run_id = %s and source_name = 'bad-stderr'",
                            (bad_run["run_id"],)).fetchone()[0]
    assert size > 10 << 20


def test_cloudtrail_files_of_other_services_and_broken_ones(bad_run: dict[str, Any],
                                                            rel_db: Database) -> None:
    objects = _objects(rel_db, bad_run["run_id"], "bad-cloudtrail")
    other = _find(objects, "other")
    assert (other["read"], other["loaded"], other["skipped"]) == (2, 0, 2)
    nul = _find(objects, "nul")
    assert nul["rejected"] == 1 and "NUL" in nul["rejects"][0][1]
    cut = _find(objects, "cut")
    assert cut["rejected"] == 1 and cut["loaded"] == 0


def test_odd_jira_issues_are_loaded_or_rejected_with_reasons(bad_run: dict[str, Any],
                                                             rel_db: Database) -> None:
    objects = _objects(rel_db, bad_run["run_id"], "bad-jira")
    odd = _find(objects, "odd")
    assert (odd["read"], odd["loaded"], odd["rejected"]) == (7, 3, 4)
    reasons = {locator.rsplit("#", 1)[-1]: reason for locator, reason in odd["rejects"]}
    assert "NUL" in reasons["3"] and "NaN" in reasons["4"]
    assert "surrogate" in reasons["5"] and "not a JSON object" in reasons["6"]
    cut = _find(objects, "cut")
    assert (cut["read"], cut["rejected"]) == (1, 1) and "JSON" in cut["rejects"][0][1]


def test_quotes_and_semicolons_in_a_cluster_name_inject_nothing(
        bad_run: dict[str, Any], rel_db: Database) -> None:
    with rel_db.connect() as conn:
        assert conn.execute("select to_regclass(%s)", (f"public.{PWNED}",)).fetchone()[0] is None
        clusters = conn.execute("select clusters from soxtrail.sox_runs where id = %s",
                                (bad_run["run_id"],)).fetchone()[0]
        stored = conn.execute("select distinct cluster from raw.pgaudit_csvlog where run_id = %s"
                              " and source_name = %s",
                              (bad_run["run_id"], "../../evil source")).fetchall()
    assert EVIL_CLUSTER in clusters
    assert stored == [(EVIL_CLUSTER,)]


def test_no_store_key_leaves_the_run_folder(bad_run: dict[str, Any], rel_db: Database) -> None:
    with rel_db.connect() as conn:
        keys = [k for (k,) in conn.execute("select raw_output_s3_key from soxtrail.sox_evidence"
                                           " where run_id = %s", (bad_run["run_id"],))]
    prefix = f"{QUARTER}/{bad_run['run_id']}/"
    for key in keys:
        assert key.startswith(prefix) and ".." not in key.split("/"), key
    store = (bad_run["home"] / "store").resolve()
    for key in keys:
        assert store in (store / key).resolve().parents
    evil = [k for k in keys if "evil" in k]
    assert evil and all("/" not in k[len(prefix):].split("raw/db_audit/", 1)[1].rsplit("/", 1)[0]
                        for k in evil)
