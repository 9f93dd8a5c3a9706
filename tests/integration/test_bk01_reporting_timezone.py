"""BK-01's days are local days of the reporting time zone, over the config's fiscal quarter."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from extract.connectors.registry import SPECS
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import PipelineError
from soxtrail.pipeline.phases import quarter_vars
from soxtrail.reconcile import dbt

pytestmark = pytest.mark.integration

MART = "fct_control_bk01__backups_performed"
CLUSTER = "pg-fin-01"
# the backup this test is about: late on 30 September in UTC, 08:30 on 1 October in Tokyo
LATE_BACKUP = datetime(2024, 9, 30, 23, 30, tzinfo=UTC)
RUNS = {"UTC": str(uuid.uuid4()), "Asia/Tokyo": str(uuid.uuid4())}


def _backup_times() -> list[datetime]:
    """A backup at noon UTC (evening in Tokyo: the same day in both zones) every day from
    before to after the quarter, except 30 September and 1 October; and the late one."""
    times, day = [LATE_BACKUP], date(2024, 7, 25)
    while day < date(2024, 11, 5):
        if day not in (date(2024, 9, 30), date(2024, 10, 1)):
            times.append(datetime(day.year, day.month, day.day, 12, tzinfo=UTC))
        day += timedelta(days=1)
    return times


def _load(db: Database, run_id: str) -> None:
    evidence = {name: str(uuid.uuid4()) for name in ("backups", "applications")}
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "insert into soxtrail.sox_runs (id, quarter, clusters, config, config_hash,"
            " tool_version, triggered_by) values (%s, '2024Q3', null, '{}', 'x', 'test',"
            " 'pytest')", (run_id,))
        for name, evidence_id in evidence.items():
            cur.execute(
                "insert into soxtrail.sox_evidence (id, run_id, source_system, query_name,"
                " query_text, query_params, executed_at, executed_by, result_row_count,"
                " result_hash, raw_output_s3_key) values (%s, %s, %s, %s, 'q', '{}', now(),"
                " 'pytest', 0, 'h', %s)",
                (evidence_id, run_id, "backups" if name == "backups" else "role_catalog", name,
                 f"2024Q3/{run_id}/raw/{name}"))
        cur.execute(
            "insert into raw.applications (run_id, evidence_id, locator, application, cluster,"
            " sox_in_scope, backup_policy) values (%s, %s, 'applications.csv:2', 'ledger', %s,"
            " 'true', 'daily')", (run_id, evidence["applications"], CLUSTER))
        for index, stop in enumerate(_backup_times()):
            doc = {"stanza": CLUSTER, "backup": {
                "label": stop.strftime("%Y%m%d-%H%M%SF"), "type": "full", "error": False,
                "timestamp": {"start": int(stop.timestamp()) - 600, "stop": int(stop.timestamp())}}}
            cur.execute(
                "insert into raw.backups (run_id, evidence_id, source_name, connector, locator,"
                " doc) values (%s, %s, 'pgbackrest', 'pgbackrest_info', %s, %s)",
                (run_id, evidence["backups"], f"info.json#{index}", json.dumps(doc)))
        conn.commit()


def _vars(zone: str) -> dict[str, Any]:
    """The run's dbt vars as the reconcile phase makes them, from a config naming a fiscal
    year starting in February (2024Q3 = August to October 2024) and the reporting zone."""
    config = parse_config({"version": 1, "fiscal_year_start_month": 2, "timezone": zone},
                          path=None, base_dir=Path.cwd(), specs=SPECS)
    return {"run_id": RUNS[zone], **quarter_vars(config.quarter("2024Q3")), "clusters": []}


@pytest.fixture(scope="module")
def bk01(pg_database: Database, tmp_path_factory: pytest.TempPathFactory,
         ) -> Iterator[dict[str, dict[str, dict[str, Any]]]]:
    """BK-01's rows per reporting zone: the same backups, judged in UTC and in Tokyo."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for zone, run_id in RUNS.items():
        _load(pg_database, run_id)
        result = dbt.invoke(pg_database, ["run", "--select", MART],
                            workdir=tmp_path_factory.mktemp("dbt"), vars=_vars(zone))
        assert result.success, dbt.failures(result)
        with pg_database.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(f"select * from marts.{MART} where run_id = %s",  # type: ignore[arg-type]
                        (run_id,))
            rows[zone] = {row["item_key"]: row for row in cur.fetchall()}
    yield rows


def _exceptions(rows: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(key for key, row in rows.items() if row["result"] == "EXCEPTION")


def test_the_quarter_is_the_fiscal_quarter_in_either_zone(bk01: Any) -> None:
    for rows in bk01.values():
        days = sorted(row["backup_day"] for row in rows.values())
        assert (len(days), days[0], days[-1]) == (92, date(2024, 8, 1), date(2024, 10, 31))


def test_a_backup_at_2330_utc_on_30_september_counts_for_that_day_in_utc(bk01: Any) -> None:
    rows = bk01["UTC"]
    assert _exceptions(rows) == [f"{CLUSTER}|2024-10-01"]
    assert rows[f"{CLUSTER}|2024-09-30"]["last_completed_at"] == LATE_BACKUP


def test_the_same_backup_counts_for_1_october_in_tokyo(bk01: Any) -> None:
    rows = bk01["Asia/Tokyo"]
    assert _exceptions(rows) == [f"{CLUSTER}|2024-09-30"]
    assert rows[f"{CLUSTER}|2024-09-30"]["exception_reasons"] == ["NO_BACKUP"]
    assert rows[f"{CLUSTER}|2024-10-01"]["last_completed_at"] == LATE_BACKUP


def test_a_zone_var_that_is_not_a_zone_name_stops_the_compile(
        pg_database: Database, tmp_path: Path) -> None:
    variables = {**_vars("UTC"), "reporting_timezone": "UTC'::text; drop table x; --"}
    with pytest.raises(PipelineError, match="var reporting_timezone: not an IANA time zone"):
        dbt.invoke(pg_database, ["compile", "--select", MART], workdir=tmp_path,
                   vars=variables)
