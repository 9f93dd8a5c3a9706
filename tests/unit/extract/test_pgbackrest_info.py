"""pgbackrest_info: command or file, one capture, one row per backup, stanza settings."""

from __future__ import annotations

import json
import shlex
import sys
import uuid
from pathlib import Path

import pytest

from extract.connectors import pgbackrest_info
from extract.snapshot import SnapshotRun
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject, Source
from soxtrail.kernel.store import LocalStore


def backup(label: str, kind: str, start: int) -> dict[str, object]:
    return {"label": label, "type": kind, "timestamp": {"start": start, "stop": start + 60},
            "error": False, "info": {"size": 1, "delta": 1,
                                     "repository": {"size": 1, "delta": 1}},
            "prior": None, "reference": None, "database": {"id": 1, "repo-key": 1}}


INFO = [
    {"name": "fin", "status": {"code": 0, "message": "ok"}, "db": [], "archive": [],
     "backup": [backup("20240701-020000F", "full", 1719799200),
                backup("20240701-020000F_20240702-020000I", "incr", 1719885600)]},
    {"name": "hr", "status": {"code": 2, "message": "no valid backups"}, "backup": []},
    {"name": "ops", "status": {"code": 0, "message": "ok"},
     "backup": [backup("20240703-020000F", "full", 1719972000)]},
]
INFO_BYTES = json.dumps(INFO, indent=2).encode()


def make_run(tmp_path: Path) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                       executed_by="ci", store=LocalStore(tmp_path / "store"),
                       spool_dir=tmp_path / "spool")


def source(tmp_path: Path, **values: object) -> Source:
    return Source(name="backrest", system="backups", connector="pgbackrest_info",
                  values=values, base_dir=tmp_path)


def test_file_is_captured_as_is_and_loads_one_row_per_backup(tmp_path: Path) -> None:
    (tmp_path / "info.json").write_bytes(INFO_BYTES)
    run = make_run(tmp_path)
    pgbackrest_info.snapshot(source(tmp_path, path="info.json"), run)
    record, statement = run.records
    assert statement.query_name == "completeness"
    assert record.result_row_count == 3
    assert record.query_params["raw_table"] == "raw.backups"
    # a saved output: the file it was read from, and that no command line was run
    assert record.query_params["file"] == "info.json"
    assert record.query_params["capture"] == "saved output"
    assert record.query_params["command_line"] is None
    assert record.query_text.startswith(f"file {tmp_path / 'info.json'} (saved output of "
                                        "`pgbackrest info --output=json`")
    stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
    assert stored.read_bytes() == INFO_BYTES
    items = list(pgbackrest_info.load(record.query_params, stored))
    assert [i.locator for i in items] == ["info.json#0.0", "info.json#0.1", "info.json#2.0"]
    assert isinstance(items[1], RawRow)
    assert items[1].values == ({"stanza": "fin", "backup": INFO[0]["backup"][1]},)  # type: ignore[index]


def test_command_output_is_captured_exactly(tmp_path: Path) -> None:
    script = tmp_path / "fake_info.py"
    script.write_text(f"import sys; sys.stdout.buffer.write({INFO_BYTES!r})")
    argv = [sys.executable, str(script), "--output=json"]
    run = make_run(tmp_path)
    pgbackrest_info.snapshot(source(tmp_path, command=argv), run)
    record, statement = run.records
    assert statement.query_name == "completeness"
    assert record.query_text.endswith("fake_info.py --output=json")
    assert record.query_params["command"] == argv
    assert record.query_params["command_line"] == shlex.join(argv) == record.query_text
    assert record.query_params["capture"] == "command output"
    assert run.store.fetch(record.raw_output_s3_key, tmp_path).read_bytes() == INFO_BYTES
    assert record.result_row_count == 3


def test_a_secret_on_the_command_line_never_reaches_the_evidence(tmp_path: Path) -> None:
    script = tmp_path / "fake_info.py"
    script.write_text(f"import sys; sys.stdout.buffer.write({INFO_BYTES!r})")
    canary = "canary-backrest-8c1f2e"
    secrets.remember(canary)
    argv = [sys.executable, str(script), f"--repo1-cipher-pass={canary}", "--output=json"]
    run = make_run(tmp_path)
    pgbackrest_info.snapshot(source(tmp_path, command=argv), run)
    record = run.records[0]
    assert canary not in record.query_text + json.dumps(record.query_params)
    assert record.query_params["command_line"].endswith("--output=json")
    assert "--repo1-cipher-pass=" in record.query_params["command_line"]


def test_failing_command_names_the_source_and_exit_code(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print('ERROR: [055]: unable to open', "
                                  "file=sys.stderr); sys.exit(55)"]
    with pytest.raises(SourceError, match=r"backrest: .* exited with 55: ERROR: \[055\]"):
        pgbackrest_info.snapshot(source(tmp_path, command=argv), make_run(tmp_path))


def test_command_that_hangs_times_out(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(SourceError, match=r"timed out after 0\.5 s"):
        pgbackrest_info.snapshot(source(tmp_path, command=argv, timeout=0.5), make_run(tmp_path))


def test_command_must_be_an_argument_list(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="argument list"):
        pgbackrest_info.snapshot(source(tmp_path, command="pgbackrest info | cat"),
                                 make_run(tmp_path))


@pytest.mark.parametrize(("data", "reason"), [
    (b"[{", "invalid JSON"),
    (b'{"name": "fin"}', "expected a JSON array"),
    (b"\xff", "invalid UTF-8"),
])
def test_unreadable_output_is_one_reject(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "info.json"
    path.write_bytes(data)
    (reject,) = pgbackrest_info.load({"file": "info.json"}, path)
    assert isinstance(reject, Reject) and reason in reject.reason
    assert pgbackrest_info.count_rows({"file": "info.json"}, path) == 1


def test_malformed_stanza_is_rejected_and_counts_add_up(tmp_path: Path) -> None:
    path = tmp_path / "info.json"
    path.write_text(json.dumps([{"name": "fin"}, INFO[0]]))
    items = list(pgbackrest_info.load({"file": "info.json"}, path))
    assert isinstance(items[0], Reject) and items[0].locator == "info.json#0"
    assert len(items) == 3 == pgbackrest_info.count_rows({}, path)


def test_settings_map_stanzas_to_clusters(tmp_path: Path) -> None:
    src = source(tmp_path, path="x", stanza_cluster={"fin": "pg-fin-01", "hr": "pg-hr-02"})
    assert list(pgbackrest_info.settings(src)) == [("stanza_cluster", "fin", "pg-fin-01"),
                                                  ("stanza_cluster", "hr", "pg-hr-02")]
    with pytest.raises(ConfigError, match="stanza_cluster"):
        list(pgbackrest_info.settings(source(tmp_path, path="x", stanza_cluster=["fin"])))


# ---------------------------------------------------------------------------
# completeness: retention against the quarter start


def _statement(run: SnapshotRun) -> dict[str, object]:
    [record] = [r for r in run.records if r.query_name == "completeness"]
    assert record.query_params["raw_table"] == "raw.source_completeness"
    return json.loads(run.store.fetch(record.raw_output_s3_key, Path("unused")).read_bytes())


def test_stanzas_whose_oldest_backup_is_after_the_first_day_have_short_retention(
        tmp_path: Path) -> None:
    (tmp_path / "info.json").write_bytes(INFO_BYTES)
    run = make_run(tmp_path)
    pgbackrest_info.snapshot(source(tmp_path, path="info.json"), run)
    doc = _statement(run)
    assert doc["basis"] == "capture_time" and doc["captured"] == 3
    assert doc["findings"] == [  # fin's oldest backup ran on the quarter's first day: fine
        {"code": "RETENTION_SHORTER_THAN_QUARTER", "exception": True,
         "detail": "stanza hr lists no backup: none of the quarter's backups can be proven"},
        {"code": "RETENTION_SHORTER_THAN_QUARTER", "exception": True,
         "detail": "stanza ops: the oldest backup still listed started 2024-07-03T02:00:00Z, "
                   "after the quarter's first day (2024-07-01T00:00:00Z): backups that "
                   "expired before it cannot be proven"}]
    assert doc["facts"]["stanzas"]["fin"] == {"backups": 2,  # type: ignore[index]
                                              "oldest_start": "2024-07-01T02:00:00Z",
                                              "newest_stop": "2024-07-02T02:01:00Z"}


def test_a_listing_reaching_back_before_the_quarter_has_no_finding(tmp_path: Path) -> None:
    listing = [{"name": "fin", "backup": [backup("20240620-020000F", "full", 1718848800),
                                          backup("20240930-020000F", "full", 1727661600)]}]
    script = tmp_path / "fake_info.py"
    script.write_text(f"import sys; sys.stdout.buffer.write({json.dumps(listing).encode()!r})")
    run = make_run(tmp_path)
    pgbackrest_info.snapshot(source(tmp_path, command=[sys.executable, str(script)]), run)
    doc = _statement(run)
    assert doc["findings"] == []
    assert doc["covered"] == [{"from": "2024-07-01T00:00:00Z", "to": "2024-09-30T02:01:00Z"}]
