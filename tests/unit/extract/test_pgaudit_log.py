"""pgaudit_log: csvlog / jsonlog / stderr parsing, rejects, counts, snapshot from globs and S3."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract.connectors import pgaudit_classify, pgaudit_log
from extract.connectors.pgaudit_log import CSVLOG_COLUMNS
from extract.connectors.registry import RAW_TABLES
from extract.snapshot import SnapshotRun
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Skipped, Source
from soxtrail.kernel.store import LocalStore

GRANT = 'AUDIT: SESSION,1,1,ROLE,GRANT,,,"GRANT ""app, read"" TO alice",<not logged>'
MULTILINE = ('AUDIT: SESSION,2,1,DDL,CREATE TABLE,TABLE,public.t1,'
             '"/* CHG-2001 */ CREATE TABLE t1 (\n  id int,\n  name text\n)",<not logged>')
STDERR_MULTILINE = ('AUDIT: SESSION,2,1,DDL,CREATE TABLE,TABLE,public.t1,'
                    '"/* CHG-2001 */ CREATE TABLE t1 (\n\t  id int,\n\t)",<not logged>')



def log_records(run: SnapshotRun) -> list[Any]:
    """The log files' evidence records of a pgaudit_log snapshot; the source's completeness
    statement comes after them (pgaudit_files)."""
    *logs, statement = run.records
    assert statement.query_name == "completeness"
    assert statement.query_params["raw_table"] == "raw.source_completeness"
    return logs

def csvlog(message: str, *, time: str = "2024-07-05 10:00:00.123 UTC", user: str = "alice",
           width: int = 26, app: str = "psql") -> bytes:
    """One csvlog record as PostgreSQL writes it."""
    fields = [time, user, "appdb", "1234", "[local]", "66a1b2c3.4d2", "1", "GRANT ROLE",
              "2024-07-05 09:59:00 UTC", "3/12", "0", "LOG", "00000", message, "", "", "", "",
              "", "", "", "", app, "client backend", "", "0"]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields[:width])
    return out.getvalue().encode()


def jsonlog(message: str | None, **extra: object) -> bytes:
    doc: dict[str, object] = {"timestamp": "2024-07-05 10:00:00.123 UTC", "user": "alice",
                              "dbname": "appdb", "pid": 1234, "session_id": "66a1b2c3.4d2",
                              "error_severity": "LOG", "application_name": "psql",
                              "backend_type": "client backend", "query_id": 0}
    if message is not None:
        doc["message"] = message
    doc.update(extra)
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def items_of(fmt: str, path: Path, **params: str) -> list[RawRow | Reject | Skipped]:
    return list(pgaudit_log.load({"format": fmt, "file": path.name, **params}, path))


def record_count(items: list[RawRow | Reject | Skipped]) -> int:
    return sum(item.count if isinstance(item, Skipped) else 1 for item in items)


def rows(items: list[RawRow | Reject | Skipped]) -> list[RawRow]:
    return [item for item in items if isinstance(item, RawRow)]


def rejects(items: list[RawRow | Reject | Skipped]) -> list[Reject]:
    return [item for item in items if isinstance(item, Reject)]


# --------------------------------------------------------------------------- csvlog


def test_csvlog_loads_audit_records_and_server_events_and_skips_the_rest(
        tmp_path: Path) -> None:
    data = (csvlog("database system is ready to accept connections", user="")
            + csvlog(GRANT) + csvlog(MULTILINE) + csvlog("checkpoint starting: time")
            + csvlog(GRANT, user="bob"))
    path = write(tmp_path, "postgresql.csv", data)
    items = items_of("csvlog", path)
    server, *loaded = rows(items)
    assert server.locator == "postgresql.csv:1"  # a server event LG-01 reads: kept
    assert dict(zip(CSVLOG_COLUMNS, server.values, strict=True))["message"] == \
        "database system is ready to accept connections"
    assert [r.locator for r in loaded] == ["postgresql.csv:2", "postgresql.csv:3",
                                           "postgresql.csv:8"]
    assert all(len(r.values) == len(RAW_TABLES["raw.pgaudit_csvlog"].payload) for r in loaded)
    first = dict(zip(CSVLOG_COLUMNS, loaded[0].values, strict=True))
    assert first["log_time"] == "2024-07-05 10:00:00.123 UTC"
    assert first["user_name"] == "alice"
    assert first["message"] == GRANT
    assert first["application_name"] == "psql"
    assert first["detail"] is None  # empty csv field → null, as COPY CSV would load it
    assert dict(zip(CSVLOG_COLUMNS, loaded[1].values, strict=True))["message"] == MULTILINE
    assert dict(zip(CSVLOG_COLUMNS, loaded[2].values, strict=True))["user_name"] == "bob"
    assert sum(i.count for i in items if isinstance(i, Skipped)) == 1  # the checkpoint
    assert pgaudit_log.count_rows({"format": "csvlog"}, path) == 5 == record_count(items)


def test_csvlog_pg13_files_have_24_columns_and_get_null_leader_pid_and_query_id(
        tmp_path: Path) -> None:
    path = write(tmp_path, "pg13.csv", csvlog(GRANT, width=24))
    (row,) = rows(items_of("csvlog", path))
    values = dict(zip(CSVLOG_COLUMNS, row.values, strict=True))
    assert values["backend_type"] == "client backend"
    assert values["leader_pid"] is None and values["query_id"] is None


def test_csvlog_record_with_another_column_count_is_rejected_naming_the_count(
        tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", csvlog(GRANT, width=25) + csvlog(GRANT))
    items = items_of("csvlog", path)
    (reject,) = rejects(items)
    assert reject.locator == "x.csv:1"
    assert "25" in reject.reason and "26" in reject.reason
    assert reject.raw_text is not None and reject.raw_text.startswith("2024-07-05")
    assert [r.locator for r in rows(items)] == ["x.csv:2"]


def test_csvlog_broken_quoting_is_rejected_and_the_next_records_still_load(
        tmp_path: Path) -> None:
    broken = b'2024-07-05 10:00:00.123 UTC,"alice"x,"appdb"\n'
    path = write(tmp_path, "x.csv", csvlog(GRANT) + broken + csvlog(GRANT))
    items = items_of("csvlog", path)
    assert [r.locator for r in rows(items)] == ["x.csv:1", "x.csv:3"]
    (reject,) = rejects(items)
    assert reject.locator == "x.csv:2" and "broken CSV quoting" in reject.reason


def test_csvlog_unterminated_quote_at_end_of_file_is_one_reject(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", csvlog(GRANT) + b'2024-07-05 10:00:01 UTC,"alice,\nmore\n')
    items = items_of("csvlog", path)
    (reject,) = rejects(items)
    assert reject.locator == "x.csv:2" and "unterminated" in reject.reason
    assert record_count(items) == 2 == pgaudit_log.count_rows({"format": "csvlog"}, path)


def test_csvlog_invalid_utf8_is_rejected_not_a_crash(tmp_path: Path) -> None:
    bad = csvlog(GRANT).replace(b"alice", b"al\xffce")
    path = write(tmp_path, "x.csv", bad + csvlog(GRANT))
    items = items_of("csvlog", path)
    (reject,) = rejects(items)
    assert reject.locator == "x.csv:1" and "invalid UTF-8" in reject.reason
    assert "\\xff" in (reject.raw_text or "")
    assert len(rows(items)) == 1


@pytest.mark.parametrize(("time", "reason"), [
    ("2024-07-05 10:00:00.123", "no time zone"),
    ("yesterday at noon UTC", "unparseable"),
    ("2024-13-05 10:00:00 UTC", "unparseable"),
    ("", "missing log time"),
])
def test_audit_record_with_a_bad_log_time_is_rejected(tmp_path: Path, time: str,
                                                      reason: str) -> None:
    path = write(tmp_path, "x.csv", csvlog(GRANT, time=time))
    (reject,) = items_of("csvlog", path)
    assert isinstance(reject, Reject) and reason in reject.reason


def test_log_time_with_numeric_or_named_zone_is_accepted() -> None:
    for value in ("2024-07-05 10:00:00.123 UTC", "2024-07-05 10:00:00 CEST",
                  "2024-07-05 10:00:00.123 +0530", "2024-07-05 10:00:00.123 -03"):
        assert pgaudit_classify.log_time_problem(value) is None, value


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(
    st.sampled_from(["2024-07-05", "2024-02-30", "2024-12-31", "2024/07/05"]),
    st.sampled_from([" ", "T", "_"]),
    st.sampled_from(["10:00", "23:59", "24:00", "09:60", "1:00"]),
    st.sampled_from([":00", ":59", ":60", ":5", ":99", ""]),
    st.sampled_from(["", ".1", ".123456789", ".1234567890", "."]),
    st.sampled_from(["", " UTC", "UTC", " +0530", "+05:30", " -03", " CEST2", " +5", "  UTC"]),
), min_size=1, max_size=6))
def test_log_time_fast_path_agrees_with_the_full_check(
        parts: list[tuple[str, str, str, str, str, str]]) -> None:
    """A minute seen in a good log time skips the full check: never with another answer."""
    values = ["".join(p) for p in parts]
    pgaudit_classify._GOOD_MINUTES.clear()
    full = []
    for value in values:
        pgaudit_classify._GOOD_MINUTES.clear()
        full.append(pgaudit_classify.log_time_problem(value))
    pgaudit_classify._GOOD_MINUTES.clear()
    for value in values:  # primes the minutes of the good ones
        pgaudit_classify.log_time_problem(value)
    assert [pgaudit_classify.log_time_problem(value) for value in values] == full


def test_csvlog_record_without_message_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv", csvlog(""))
    (reject,) = items_of("csvlog", path)
    assert isinstance(reject, Reject) and reject.reason == "missing message"


def test_gzipped_log_files_are_read_transparently(tmp_path: Path) -> None:
    path = write(tmp_path, "x.csv.gz", gzip.compress(csvlog("hello") + csvlog(GRANT)))
    items = items_of("csvlog", path)
    assert [r.locator for r in rows(items)] == ["x.csv.gz:2"]
    assert pgaudit_log.count_rows({"format": "csvlog"}, path) == 2


def test_truncated_gzip_keeps_the_records_before_and_rejects_the_rest(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(csvlog(GRANT) for _ in range(2000)))
    path = write(tmp_path, "x.csv.gz", whole[: len(whole) // 2])
    items = items_of("csvlog", path)
    assert len(rows(items)) > 100
    reason = rejects(items)[-1].reason
    assert "unreadable file" in reason and "end-of-stream" in reason
    assert record_count(items) == pgaudit_log.count_rows({"format": "csvlog"}, path)


def test_a_single_10_mb_statement_loads(tmp_path: Path) -> None:
    big = "GRANT x TO y /* " + "z" * (10 << 20) + " */"
    message = f'AUDIT: SESSION,1,1,ROLE,GRANT,,,"{big}",<not logged>'
    path = write(tmp_path, "big.csv", csvlog(message) + csvlog(GRANT))
    loaded = rows(items_of("csvlog", path))
    assert len(loaded) == 2 and loaded[0].values[13] == message
    jpath = write(tmp_path, "big.json", jsonlog(message))
    (doc_row,) = rows(items_of("jsonlog", jpath))
    assert doc_row.values[0]["message"] == message


# --------------------------------------------------------------------------- jsonlog


def test_jsonlog_loads_audit_objects_and_skips_other_lines(tmp_path: Path) -> None:
    data = (jsonlog("checkpoint starting: time") + jsonlog(GRANT) + b"\n"
            + jsonlog(MULTILINE, application_name="CHG-3003 deploy"))
    path = write(tmp_path, "x.json", data)
    items = items_of("jsonlog", path)
    loaded = rows(items)
    assert [r.locator for r in loaded] == ["x.json:2", "x.json:4"]
    doc = loaded[1].values[0]
    assert doc["message"] == MULTILINE and doc["application_name"] == "CHG-3003 deploy"
    assert pgaudit_log.count_rows({"format": "jsonlog"}, path) == 3 == record_count(items)


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"timestamp":"2024-07-05 10:00:00 UTC","message":"AUDIT: SESSION,1', "invalid JSON"),
    (b'["AUDIT: not an object"]', "not a JSON object"),
    (b'{"timestamp":"2024-07-05 10:00:00 UTC","user":"AUDIT: x"}', "missing message"),
    (b'{"timestamp":"2024-07-05 10:00:00","message":"AUDIT: SESSION"}', "no time zone"),
    (b'{"timestamp":"2024-07-05 10:00:00 UTC","message":"AUDIT: S\\u0000"}', "NUL"),
    (b'{"timestamp":"2024-07-05 10:00:00 UTC","message":"AUDIT: S\\ud800"}', "surrogate"),
    (b'{"timestamp":"2024-07-05 10:00:00 UTC","message":"AUDIT: S","x":NaN}', "NaN"),
    (b'{"timestamp":"2024-07-05 10:00:00 UTC","message":"AUDIT: \xc3("}', "invalid UTF-8"),
    (b'{"message":"checkpoint \xff"}', "invalid UTF-8"),
    (b'garbage', "invalid JSON"),
])
def test_jsonlog_broken_lines_are_rejected_with_a_reason(tmp_path: Path, line: bytes,
                                                        reason: str) -> None:
    path = write(tmp_path, "x.json", jsonlog(GRANT) + line + b"\n")
    items = items_of("jsonlog", path)
    (reject,) = rejects(items)
    assert reject.locator == "x.json:2" and reason in reject.reason
    assert len(rows(items)) == 1


# --------------------------------------------------------------------------- stderr

STDERR = (
    b"2024-07-05 10:00:00.001 UTC [10] LOG:  checkpoint starting: time\n"
    b"2024-07-05 10:00:00.123 UTC [1234] alice@appdb LOG:  " + GRANT.encode() + b"\n"
    b"2024-07-05 10:00:01.000 UTC [1234] alice@appdb LOG:  " + STDERR_MULTILINE.encode() + b"\n"
    b"2024-07-05 10:00:02.000 UTC [1234] alice@appdb ERROR:  permission denied\n"
    b"2024-07-05 10:00:02.000 UTC [1234] alice@appdb STATEMENT:  select\n\t1\n"
)


def test_stderr_default_prefix_fields_and_continuation_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "postgresql.log", STDERR)
    items = items_of("stderr", path)
    loaded = rows(items)
    columns = RAW_TABLES["raw.pgaudit_stderr"].payload
    assert [r.locator for r in loaded] == ["postgresql.log:2", "postgresql.log:3"]
    first = dict(zip(columns, loaded[0].values, strict=True))
    assert first["log_time"] == "2024-07-05 10:00:00.123 UTC"
    assert (first["user_name"], first["database_name"], first["process_id"]) == (
        "alice", "appdb", "1234")
    assert first["error_severity"] == "LOG" and first["message"] == GRANT
    assert first["session_id"] is None and first["application_name"] is None
    second = dict(zip(columns, loaded[1].values, strict=True))
    assert second["message"] == STDERR_MULTILINE.replace("\n\t", "\n")
    assert second["raw_entry"].endswith("\t)\",<not logged>")
    assert pgaudit_log.count_rows({"format": "stderr"}, path) == 5 == record_count(items)


def test_stderr_prefix_with_application_session_line_and_remote_host(tmp_path: Path) -> None:
    prefix = "%t [%p-%l] %q%u@%d app=%a %c %r "
    line = ("2024-07-05 10:00:00 UTC [77-3] bob@fin app=CHG-3003 deploy 66a1b2c3.4d2 "
            f"10.0.0.5(51234) LOG:  {GRANT}\n")
    data = b"2024-07-05 09:00:00 UTC [5-1] LOG:  autovacuum launcher started\n" + line.encode()
    path = write(tmp_path, "x.log", data)
    items = items_of("stderr", path, log_line_prefix=prefix)
    (row,) = rows(items)
    values = dict(zip(RAW_TABLES["raw.pgaudit_stderr"].payload, row.values, strict=True))
    assert values == {
        "log_time": "2024-07-05 10:00:00 UTC", "user_name": "bob", "database_name": "fin",
        "process_id": "77", "session_id": "66a1b2c3.4d2", "session_line_num": "3",
        "application_name": "CHG-3003 deploy", "remote_host": "10.0.0.5",
        "error_severity": "LOG", "message": GRANT, "raw_entry": line.rstrip("\n"),
    }
    assert record_count(items) == 2


def test_stderr_unknown_placeholders_become_null(tmp_path: Path) -> None:
    path = write(tmp_path, "x.log", b"2024-07-05 10:00:00.123 UTC [1] a@[unknown] [unknown] LOG:  "
                 + GRANT.encode() + b"\n")
    (row,) = rows(items_of("stderr", path, log_line_prefix="%m [%p] %u@%d %a "))
    values = dict(zip(RAW_TABLES["raw.pgaudit_stderr"].payload, row.values, strict=True))
    assert (values["user_name"], values["database_name"], values["application_name"]) == (
        "a", None, None)


def test_stderr_verbose_sqlstate_before_the_audit_message_is_dropped(tmp_path: Path) -> None:
    path = write(tmp_path, "x.log", b"2024-07-05 10:00:00.123 UTC [1] a@b LOG:  00000: "
                 + GRANT.encode() + b"\n")
    (row,) = rows(items_of("stderr", path))
    assert row.values[9] == GRANT


def test_stderr_audit_entry_not_matching_the_prefix_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "x.log", b"Jul  5 10:00:00 host postgres[1]: LOG:  "
                 + GRANT.encode() + b"\n")
    (reject,) = items_of("stderr", path)
    assert isinstance(reject, Reject) and "log_line_prefix" in reject.reason


def test_stderr_invalid_utf8_is_rejected_even_in_a_non_audit_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "x.log", b"2024-07-05 10:00:00.123 UTC [1] LOG:  caf\xe9\n" + STDERR)
    items = items_of("stderr", path)
    assert rejects(items)[0].locator == "x.log:1"
    assert "invalid UTF-8" in rejects(items)[0].reason


def test_prefix_without_time_is_refused_at_snapshot(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_bytes(STDERR)
    source = pg_source(tmp_path, format="stderr", paths=["*.log"], log_line_prefix="%u@%d ")
    with pytest.raises(ConfigError, match="no %m or %t"):
        pgaudit_log.snapshot(source, make_run(tmp_path))


def test_compile_prefix_understands_escapes_padding_percent_and_q() -> None:
    parser = pgaudit_log.compile_prefix("%% %m %-8u|%x|%q%d ")
    assert parser.fields == ("log_time", "user_name", "database_name")
    match = parser.regex.match("% 2024-07-05 10:00:00.123 UTC al      |99|db LOG:  AUDIT: x")
    assert match is not None and match.group("user_name").strip() == "al"
    assert match.group("database_name") == "db"
    bare = parser.regex.match("% 2024-07-05 10:00:00.123 UTC al      |99|LOG:  hello")
    assert bare is not None and bare.group("database_name") is None


# --------------------------------------------------------------------------- snapshot


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                       executed_by="ci", store=LocalStore(tmp_path / "store"),
                       spool_dir=tmp_path / "spool")


def pg_source(base: Path, **values: object) -> Source:
    return Source(name="fin-audit", system="db_audit", connector="pgaudit_log",
                  values={"cluster": "pg-fin-01", **values}, base_dir=base)


def test_snapshot_captures_each_matched_file_byte_for_byte(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    (logs / "b").mkdir(parents=True)
    (logs / "a").mkdir()
    files = {
        logs / "b" / "postgresql-2.csv": csvlog(GRANT) + csvlog("hello"),
        logs / "a" / "postgresql-1.csv": csvlog(MULTILINE),
        logs / "a" / "postgresql-0.csv.gz": gzip.compress(csvlog(GRANT)),
        logs / "a" / "postgresql-2.csv": csvlog("other host, same name"),
    }
    for path, data in files.items():
        path.write_bytes(data)
    run = make_run(tmp_path)
    pgaudit_log.snapshot(pg_source(tmp_path, format="csvlog",
                                   paths=["logs/a/*.csv*", "logs/b/*.csv"]), run)
    assert [r.query_params["file"] for r in log_records(run)] == [
        "postgresql-0.csv.gz", "postgresql-1.csv", "postgresql-2.csv", "postgresql-2.csv"]
    assert len({r.raw_output_s3_key for r in log_records(run)}) == 4
    assert log_records(run)[0].raw_output_s3_key.endswith("/postgresql-0.csv.gz")
    for record in log_records(run):
        params = record.query_params
        assert params["cluster"] == "pg-fin-01" and params["format"] == "csvlog"
        assert params["raw_table"] == "raw.pgaudit_csvlog"
        assert params["source"] == "fin-audit" and params["connector"] == "pgaudit_log"
        assert record.source_system == "db_audit"
        assert "logs/a/*.csv*" in record.query_text
        stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
        original = next(p for p in files if record.query_text.endswith(str(p)))
        assert stored.read_bytes() == files[original]
        assert record.result_row_count == pgaudit_log.count_rows(params, stored)
    assert [r.result_row_count for r in log_records(run)] == [1, 1, 1, 2]


def test_snapshot_stderr_records_the_prefix_for_load(tmp_path: Path) -> None:
    (tmp_path / "x.log").write_bytes(STDERR)
    run = make_run(tmp_path)
    pgaudit_log.snapshot(pg_source(tmp_path, format="stderr", paths="x.log"), run)
    (record,) = log_records(run)
    assert record.query_params["log_line_prefix"] == pgaudit_log.DEFAULT_PREFIX
    assert record.query_params["raw_table"] == "raw.pgaudit_stderr"
    stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
    assert len(rows(list(pgaudit_log.load(record.query_params, stored)))) == 2


def test_snapshot_without_any_matching_file_fails_naming_the_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"fin-audit.*no log file matches logs/\*\.csv"):
        pgaudit_log.snapshot(pg_source(tmp_path, format="csvlog", paths=["logs/*.csv"]),
                             make_run(tmp_path))


def test_snapshot_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="format 'syslog'"):
        pgaudit_log.snapshot(pg_source(tmp_path, format="syslog", paths=["*"]),
                             make_run(tmp_path))


def test_snapshot_lists_an_s3_prefix(tmp_path: Path, s3_endpoint: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_S3_ENDPOINT_URL", s3_endpoint)
    bucket = f"logs-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="pg-fin-01/postgresql-2.json", Body=jsonlog(GRANT))
    s3.put_object(Bucket=bucket, Key="pg-fin-01/postgresql-1.json", Body=jsonlog("x"))
    s3.put_object(Bucket=bucket, Key="pg-fin-01/postgresql-1.csv", Body=csvlog(GRANT))
    s3.put_object(Bucket=bucket, Key="pg-hr-02/postgresql-1.json", Body=jsonlog(GRANT))
    run = make_run(tmp_path)
    pgaudit_log.snapshot(pg_source(tmp_path, format="jsonlog",
                                   paths=f"s3://{bucket}/pg-fin-01/*.json"), run)
    assert [r.query_params["file"] for r in log_records(run)] == ["postgresql-1.json",
                                                             "postgresql-2.json"]
    assert log_records(run)[1].query_text.endswith(f"s3://{bucket}/pg-fin-01/postgresql-2.json")
    stored = run.store.fetch(log_records(run)[1].raw_output_s3_key, tmp_path)
    assert stored.read_bytes() == jsonlog(GRANT)
    assert [r.result_row_count for r in log_records(run)] == [1, 1]


# --------------------------------------------------------------------------- properties

PIECES = {
    "csvlog": [csvlog(GRANT), csvlog(MULTILINE), csvlog("hello"), csvlog(GRANT, width=24),
               b'"unclosed,\n', b'a,"b"c\n', b"\n", b"\xff\xfe\n", b'""\n'],
    "jsonlog": [jsonlog(GRANT), jsonlog("hello"), b"{}\n", b"{\n", b"\n", b"[1]\n",
                b'{"message":"AUDIT: x"}\n', b"\xff\n"],
    "stderr": [STDERR, b"\tcontinued\n", b"\n", b"garbage AUDIT: line\n", b"\r\n",
               b"2024-07-05 10:00:00 UTC [1] a@b LOG:  AUDIT: \xff\n"],
}


def _check_counts(fmt: str, data: bytes, plain: bytes | None = None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "f.log"
        path.write_bytes(data)
        params = {"format": fmt, "file": "f.log", "log_line_prefix": pgaudit_log.DEFAULT_PREFIX}
        items = list(pgaudit_log.load(params, path))
        width = len(RAW_TABLES[pgaudit_log.FORMAT_TABLES[fmt]].payload)
        lines = (data if plain is None else plain).count(b"\n") + 1
        for item in items:
            assert isinstance(item, RawRow | Reject | Skipped)
            if isinstance(item, Skipped):
                assert item.count > 0
                continue
            assert 1 <= int(item.locator.rsplit(":", 1)[1]) <= lines + 1
            if isinstance(item, RawRow):
                assert len(item.values) == width
        assert record_count(items) == pgaudit_log.count_rows(params, path)


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_bytes_give_rows_rejects_or_skips_that_add_up(fmt: str, data: st.DataObject) -> None:
    chunks = data.draw(st.lists(st.one_of(st.sampled_from(PIECES[fmt]), st.binary(max_size=40)),
                                max_size=12))
    _check_counts(fmt, b"".join(chunks))


@pytest.mark.parametrize("fmt", ["csvlog", "jsonlog", "stderr"])
@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=0, max_value=400))
def test_gzip_cut_anywhere_still_adds_up(fmt: str, cut: int) -> None:
    plain = b"".join(PIECES[fmt] * 3)
    _check_counts(fmt, gzip.compress(plain)[:cut], plain)
