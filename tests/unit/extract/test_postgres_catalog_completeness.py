"""postgres_catalog's completeness statement: when the catalog was taken against quarter end."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from extract.connectors import completeness, postgres_catalog
from extract.connectors.registry import SPECS
from extract.snapshot import SnapshotRun
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Source
from soxtrail.kernel.store import LocalStore

Q3 = Quarter.parse("2024Q3")  # ends 2024-10-01T00:00:00Z
MEMBERSHIPS = (
    "member,granted_role,admin_option,rolsuper,rolcanlogin,rolcreaterole,rolvaliduntil\n"
    "alice,app_admin,f,f,t,f,\nbob,app_read,t,f,t,f,\ncarol,app_read,f,f,t,f,\n"
)
ROLES = "rolname,rolsuper,rolcreaterole,rolcanlogin,rolvaliduntil\nalice,f,f,t,\n"


def settings_csv(captured_at: str) -> str:
    return ("captured_at,name,setting,unit,source,pending_restart\n"
            f"{captured_at},log_filename,postgresql-%a.log,,default,f\n"
            f"{captured_at},pgaudit.log,\"role,ddl\",,configuration file,f\n")


def run_for(tmp_path: Path, policy: dict[str, Any] | None = None) -> SnapshotRun:
    return SnapshotRun(run_id=str(uuid.uuid4()), quarter=Q3, executed_by="ci",
                       store=LocalStore(tmp_path / "store"), spool_dir=tmp_path / "spool",
                       policy=policy or {})


def source_for(tmp_path: Path, *, settings: str | None = None, **keys: Any) -> Source:
    folder = tmp_path / "exports"
    folder.mkdir(exist_ok=True)
    (folder / "memberships.csv").write_text(MEMBERSHIPS)
    (folder / "roles.csv").write_text(ROLES)
    values: dict[str, Any] = {"cluster": "pg-fin-01", "path": "exports/memberships.csv",
                              "roles_path": "exports/roles.csv", **keys}
    if settings is not None:
        (folder / "settings.csv").write_text(settings)
        values["settings_path"] = "exports/settings.csv"
    return Source(name="catalog-pg-fin-01", system="db_catalog", connector="postgres_catalog",
                  values=values, base_dir=tmp_path)


def stated(tmp_path: Path, source: Source, policy: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """Snapshot `source`; the statement as loaded from its evidence object."""
    run = run_for(tmp_path, policy)
    postgres_catalog.snapshot(source, run)
    record = run.records[-1]
    assert record.query_name == "completeness"
    assert record.query_params["raw_table"] == "raw.source_completeness"
    (item,) = completeness.load(record.query_params,
                                run.store.fetch(record.raw_output_s3_key, tmp_path))
    assert isinstance(item, RawRow)
    doc: dict[str, Any] = dict(item.values[0])
    assert record.query_params["completeness"]["findings"] == sorted(
        {f["code"] for f in doc["findings"]})
    return doc


def codes(doc: dict[str, Any]) -> list[tuple[str, bool]]:
    return [(f["code"], f["exception"]) for f in doc["findings"]]


def test_an_export_taken_at_quarter_end_states_its_capture_time_and_no_finding(
        tmp_path: Path) -> None:
    doc = stated(tmp_path, source_for(tmp_path,
                                      settings=settings_csv("2024-09-30 23:30:00.5+00")))
    assert doc["basis"] == "capture_time" and doc["captured"] == 3
    assert doc["findings"] == []
    assert doc["facts"]["captured_at"] == "2024-09-30T23:30:00.500000Z"
    assert doc["facts"]["captured_at_from"] == "server"
    assert doc["facts"]["quarter_end"] == "2024-10-01T00:00:00Z"
    assert doc["facts"]["offset_seconds"] == -1799
    assert doc["facts"]["rows"] == {"catalog_memberships": 3, "catalog_roles": 1,
                                    "catalog_settings": 2}


def test_an_export_taken_weeks_after_quarter_end_is_not_at_quarter_end(
        tmp_path: Path) -> None:
    doc = stated(tmp_path, source_for(tmp_path,
                                      settings=settings_csv("2024-10-28 09:15:00+00")))
    assert codes(doc) == [("SNAPSHOT_NOT_AT_QUARTER_END", True)]
    detail = doc["findings"][0]["detail"]
    assert "2024-10-28T09:15:00Z" in detail and "657.2 h after" in detail
    assert "tolerance of 72 h" in detail


def test_a_catalog_taken_well_before_quarter_end_is_flagged_too(tmp_path: Path) -> None:
    doc = stated(tmp_path, source_for(tmp_path, captured_at="2024-09-01T00:00:00Z"))
    assert codes(doc) == [("SNAPSHOT_NOT_AT_QUARTER_END", True)]
    assert " before the quarter's end" in doc["findings"][0]["detail"]


def test_without_settings_the_declared_captured_at_dates_the_exports(tmp_path: Path) -> None:
    on_time = stated(tmp_path, source_for(tmp_path, captured_at="2024-10-01T02:00:00+02:00"))
    assert on_time["findings"] == []
    assert on_time["facts"]["captured_at"] == "2024-10-01T00:00:00Z"
    assert on_time["facts"]["captured_at_from"] == "declared"
    late = stated(tmp_path / "late", source_for(tmp_path, captured_at="2024-10-28T09:00:00Z"))
    assert codes(late) == [("SNAPSHOT_NOT_AT_QUARTER_END", True)]


def test_a_yaml_timestamp_is_a_declared_capture_time(tmp_path: Path) -> None:
    value = yaml.safe_load("captured_at: 2024-10-28T09:00:00Z")["captured_at"]
    assert isinstance(value, datetime)
    doc = stated(tmp_path, source_for(tmp_path, captured_at=value))
    assert doc["facts"]["captured_at"] == "2024-10-28T09:00:00Z"


def test_the_servers_clock_wins_over_the_declared_time(tmp_path: Path) -> None:
    doc = stated(tmp_path, source_for(tmp_path, settings=settings_csv("2024-10-28 09:00:00+00"),
                                      captured_at="2024-09-30T23:00:00Z"))
    assert codes(doc) == [("SNAPSHOT_NOT_AT_QUARTER_END", True)]
    assert doc["facts"]["captured_at_from"] == "server"
    assert doc["facts"]["declared_captured_at"] == "2024-09-30T23:00:00Z"


def test_an_export_that_says_not_when_it_was_taken_is_unverified_not_an_exception(
        tmp_path: Path) -> None:
    doc = stated(tmp_path, source_for(tmp_path))
    assert codes(doc) == [("UNVERIFIED", False)]
    assert doc["facts"]["captured_at"] is None
    # a settings export whose rows carry no readable captured_at says nothing either
    doc = stated(tmp_path / "blank", source_for(tmp_path, settings=settings_csv("")))
    assert codes(doc) == [("UNVERIFIED", False)]


def test_exactly_the_tolerance_passes_and_a_second_more_does_not() -> None:
    end = Q3.end_utc

    def at(moment: datetime, tolerance: int | float = 72) -> list[str]:
        return [f.code for f in postgres_catalog.statement(
            Q3, server_time=moment, declared=None, tolerance_hours=tolerance,
            counts={}).findings]

    assert at(end + timedelta(hours=72)) == []
    assert at(end - timedelta(hours=72)) == []
    assert at(end + timedelta(hours=72, seconds=1)) == ["SNAPSHOT_NOT_AT_QUARTER_END"]
    assert at(end + timedelta(hours=12), tolerance=6) == ["SNAPSHOT_NOT_AT_QUARTER_END"]
    assert at(end + timedelta(hours=12), tolerance=12.5) == []


def test_the_policy_tolerance_reaches_the_connector(tmp_path: Path) -> None:
    source = source_for(tmp_path, captured_at="2024-10-02T00:00:00Z")  # 24 h late
    assert stated(tmp_path / "a", source)["findings"] == []
    tight = stated(tmp_path / "b", source, {"catalog_capture_tolerance_hours": 12})
    assert codes(tight) == [("SNAPSHOT_NOT_AT_QUARTER_END", True)]
    assert tight["facts"]["tolerance_hours"] == 12
    assert "tolerance of 12 h" in tight["findings"][0]["detail"]


@pytest.mark.parametrize("value", ["2024-09-30 23:30:00", "30/09/2024", "soon", 1727740800,
                                   datetime(2024, 9, 30, 23, 30)])
def test_a_captured_at_without_an_offset_or_not_a_time_is_refused(
        tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"catalog-pg-fin-01: captured_at: expected an ISO "
                                          r"8601 time with its UTC offset"):
        postgres_catalog.snapshot(source_for(tmp_path, captured_at=value), run_for(tmp_path))


def test_the_captured_at_key_is_accepted_by_the_config(tmp_path: Path) -> None:
    entry = {"name": "catalog-pg-fin-01", "system": "db_catalog",
             "connector": "postgres_catalog", "cluster": "pg-fin-01",
             "path": "m.csv", "roles_path": "r.csv",
             "captured_at": datetime(2024, 9, 30, 23, 30, tzinfo=UTC)}
    config = parse_config({"sources": [entry]}, path=tmp_path / "soxtrail.yml",
                          base_dir=tmp_path, specs=SPECS)
    assert config.sources[0].get("captured_at") == entry["captured_at"]


@pytest.mark.parametrize("value", [0, -1, "72", True, float("nan"), float("inf")])
def test_a_capture_tolerance_that_is_not_a_positive_number_is_refused_at_load(
        tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"policy\.catalog_capture_tolerance_hours: expected "
                                          r"a number of hours > 0"):
        parse_config({"policy": {"catalog_capture_tolerance_hours": value}},
                     path=tmp_path / "soxtrail.yml", base_dir=tmp_path, specs=SPECS)


def test_a_capture_tolerance_loads_as_written(tmp_path: Path) -> None:
    config = parse_config({"policy": {"catalog_capture_tolerance_hours": 36.5}},
                          path=tmp_path / "soxtrail.yml", base_dir=tmp_path, specs=SPECS)
    assert config.policy == {"catalog_capture_tolerance_hours": 36.5}
    assert postgres_catalog.capture_tolerance_hours(config.policy) == 36.5
    assert postgres_catalog.capture_tolerance_hours({}) == 72


def test_the_statement_is_the_same_bytes_for_the_same_exports(tmp_path: Path) -> None:
    source = source_for(tmp_path, settings=settings_csv("2024-10-28 09:15:00+00"))
    texts = []
    for n in range(2):
        run = run_for(tmp_path / str(n))
        postgres_catalog.snapshot(source, run)
        texts.append(run.store.fetch(run.records[-1].raw_output_s3_key,
                                     tmp_path / str(n)).read_bytes())
    assert texts[0] == texts[1]
    assert json.loads(texts[0])["basis"] == "capture_time"


class MovingStore(LocalStore):
    """A store that takes the spooled file away and gives back no local path: the
    statement must not read a capture back from it."""

    def put_file(self, key: str, path: Path, *, move: bool = False,
                 lock: bool = False) -> None:
        super().put_file(key, path, move=False, lock=lock)
        path.unlink()


def test_the_capture_time_does_not_need_the_spooled_object(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import extract.snapshot
    # the snapshot keeps a local path only for a LocalStore: make this one look remote
    monkeypatch.setattr(extract.snapshot, "LocalStore", type("NoLocalStore", (), {}))
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Q3, executed_by="ci",
                      store=MovingStore(tmp_path / "store"), spool_dir=tmp_path / "spool")
    source = source_for(tmp_path, settings=settings_csv("2024-10-28 09:15:00+00"))
    postgres_catalog.snapshot(source, run)
    doc = json.loads(run.store.fetch(run.records[-1].raw_output_s3_key, tmp_path).read_text())
    assert doc["facts"]["captured_at"] == "2024-10-28T09:15:00Z"
