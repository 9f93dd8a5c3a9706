"""Mid-quarter captures (`soxtrail capture`) and what the quarter's run includes of them.

The demo estate plus an Okta System Log source on the fake services, which forget events
older than 90 days before their clock (`okta_retention_days`), as Okta does:

* a quarter run whose Okta capture is taken on 2024-10-25 covers the quarter only from
  2024-07-27: COVERAGE_GAP, and a deactivation of 2024-07-05 is not seen;
* a capture taken on 2024-08-20 (`soxtrail capture`), then the same quarter run again:
  the run includes the capture's rows (by reference, pinned with their chain links), the
  gap is gone, the 2024-07-05 deactivation reaches AC-02 with the capture's evidence, and
  an event both captures hold counts once, from the run's own (latest) capture;
* a settings capture of pg-pay-01 for 2024Q2 (taken 2024-06-30 23:30) is a known point of
  LG-01 in 2024Q3: the demo's SETTINGS_UNKNOWN start of pg-pay-01 is then known;
* `verify` checks the included rows, and fails when a captured object is altered.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from extract.demo import generate
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.support.cli import Result, soxtrail
from tests.support.fake_services import FakeServices

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TOKEN = "okta-capture-token-5150"
OKTA = "okta"


def _event(uuid: str, published: str, who: str) -> dict[str, Any]:
    return {"uuid": uuid, "published": published, "eventType": "user.lifecycle.deactivate",
            "actor": {"id": "00u-admin", "type": "User", "alternateId": "admin@example.com"},
            "target": [{"id": f"00u-{who}", "type": "User", "alternateId": f"{who}@example.com"}],
            "outcome": {"result": "SUCCESS"}}


EARLY = _event("evt-early-alice", "2024-07-05T10:00:00.000Z", "alice")   # only the capture
BOTH = _event("evt-both-carla", "2024-08-10T10:00:00.000Z", "carla")     # both captures


@pytest.fixture(scope="module")
def services() -> Iterator[FakeServices]:
    with FakeServices(token=TOKEN) as fake:
        fake.okta_retention_days = 90
        fake.add_okta_events([EARLY, BOTH])
        yield fake


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory, services: FakeServices) -> dict[str, Path]:
    """The demo estate with an Okta source; a second config whose pg-pay-01 settings export
    was taken at the end of 2024Q2."""
    out = tmp_path_factory.mktemp("demo")
    generate(out, Quarter.parse("2024Q3"))
    config = yaml.safe_load((out / "soxtrail.yml").read_text())
    config["sources"].append({"name": OKTA, "system": "iam", "connector": "okta_system_log",
                              "url": services.url, "token": "${OKTA_CAPTURE_TOKEN}",
                              "retry": {"attempts": 2, "budget_seconds": 30}})
    (out / "soxtrail.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    earlier = out / "catalog" / "pg-pay-01-2024q2"
    earlier.mkdir()
    for name in ("memberships.csv", "roles.csv"):
        shutil.copy(out / "catalog" / "pg-pay-01" / name, earlier / name)
    settings = (out / "catalog" / "pg-pay-01" / "settings.csv").read_text()
    (earlier / "settings.csv").write_text(
        settings.replace("2024-09-30 23:30:00.000000+00", "2024-06-30 23:30:00.000000+00"))
    for source in config["sources"]:
        if source["name"] == "catalog-pg-pay-01":
            source.update(path=str(earlier / "memberships.csv"),
                          roles_path=str(earlier / "roles.csv"),
                          settings_path=str(earlier / "settings.csv"),
                          captured_at="2024-06-30T23:30:00Z")
    (out / "soxtrail-2024q2.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return {"config": out / "soxtrail.yml", "q2_config": out / "soxtrail-2024q2.yml"}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


def _cli(*args: str, home: Path, db: Database) -> Result:
    return soxtrail(*args, home=home, database_url=db.dsn,
                    env={"OKTA_CAPTURE_TOKEN": TOKEN})


def _run(services: FakeServices, estate: dict[str, Path], home: Path, db: Database) -> str:
    services.server_time = datetime(2024, 10, 25, 9, 0, tzinfo=UTC)
    result = _cli("run", "--quarter", "2024Q3", "--config", str(estate["config"]), "--json",
                  home=home, db=db)
    assert result.code == 0, result.stderr
    return str(result.json()["run_id"])


@pytest.fixture(scope="module")
def runs(pg_database: Database, services: FakeServices, estate: dict[str, Path],
         home: Path) -> dict[str, Any]:
    """A quarter run without captures, the captures, and the quarter run again."""
    before = _run(services, estate, home, pg_database)
    services.server_time = datetime(2024, 8, 20, 12, 0, tzinfo=UTC)
    capture = _cli("capture", "--quarter", "2024Q3", "--config", str(estate["config"]),
                   "--json", home=home, db=pg_database)
    assert capture.code == 0, capture.stderr
    settings = _cli("capture", "--quarter", "2024Q2", "--config", str(estate["q2_config"]),
                    "--sources", "catalog-pg-pay-01", "--json", home=home, db=pg_database)
    assert settings.code == 0, settings.stderr
    after = _run(services, estate, home, pg_database)
    return {"before": before, "capture": capture.json(), "settings": settings.json(),
            "after": after}


def _completeness(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    row = conn.execute(
        "select exception_reasons, covered_periods, finding_details, supporting_evidence_ids"
        " from marts.fct_completeness__sources where run_id = %s and item_key = %s",
        (run_id, f"source|{OKTA}")).fetchone()
    assert row is not None
    return {"reasons": row[0], "covered": row[1], "details": row[2], "supporting": row[3]}


def _ac02(conn: psycopg.Connection[Any], run_id: str, identity: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select item_key, evidence_id from marts.fct_control_ac02__timely_revocation"
        " where run_id = %s and split_part(item_key, '|', 1) = %s order by item_key",
        (run_id, identity)).fetchall()


def _evidence_runs(conn: psycopg.Connection[Any], ids: list[Any]) -> set[str]:
    return {str(r[0]) for r in conn.execute(
        "select run_id from soxtrail.sox_evidence where id = any(%s)", (ids,))}


def test_a_capture_snapshots_and_loads_only_its_sources(runs: dict[str, Any],
                                                        pg_database: Database) -> None:
    capture = runs["capture"]
    assert (capture["kind"], capture["status"], capture["sources"]) == \
        ("capture", "completed", [OKTA])
    with pg_database.connect() as conn:
        sources = {r[0] for r in conn.execute(
            "select distinct query_params ->> 'source' from soxtrail.sox_evidence"
            " where run_id = %s", (capture["run_id"],))}
        phase = conn.execute("select phase_reached from soxtrail.sox_runs where id = %s",
                             (capture["run_id"],)).fetchone()
    assert sources == {OKTA}
    assert phase == ("load",)


def test_without_a_capture_the_forgotten_start_of_the_quarter_is_a_coverage_gap(
        runs: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        row = _completeness(conn, runs["before"])
        alice = _ac02(conn, runs["before"], "alice")
        carla = _ac02(conn, runs["before"], "carla")
    assert row["reasons"] == ["COVERAGE_GAP"]
    assert "2024-07-01T00:00:00Z to 2024-07-27T09:00:00Z: covered by no capture" in \
        row["details"]
    assert row["supporting"] == []
    assert alice == []  # deactivated on 2024-07-05: forgotten by the quarter-end capture
    assert carla


def test_the_run_includes_the_capture_and_the_gap_is_gone(
        runs: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        row = _completeness(conn, runs["after"])
        included = conn.execute(
            "select doc ->> 'run_id', doc ->> 'purpose', doc ->> 'query_name',"
            " (doc ->> 'chain_seq')::bigint, doc ->> 'chain_hash'"
            " from raw.included_evidence where run_id = %s and source_name = %s",
            (runs["after"], OKTA)).fetchall()
        links = dict(conn.execute(
            "select seq, chain_hash from soxtrail.sox_evidence_chain as chain"
            " join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id"
            " where evidence.run_id = %s", (runs["capture"]["run_id"],)).fetchall())
        statement = conn.execute(
            "select id from soxtrail.sox_evidence where run_id = %s"
            " and query_name = 'completeness'", (runs["capture"]["run_id"],)).fetchone()
    assert row["reasons"] == []
    assert "(capture of 2024-08-20T12:00:00Z)" in row["covered"]
    assert "(capture of 2024-10-25T09:00:00Z)" in row["covered"]
    assert row["supporting"] == [statement[0]]
    # by reference: every row of the capture, each pinned with its chain link
    assert {r[0] for r in included} == {runs["capture"]["run_id"]}
    assert {r[1] for r in included} == {"capture"}
    assert {r[3]: r[4] for r in included} == links


def test_the_included_capture_feeds_the_controls_once_per_event(
        runs: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        alice = _ac02(conn, runs["after"], "alice")
        carla = _ac02(conn, runs["after"], "carla")
        alice_runs = _evidence_runs(conn, [r[1] for r in alice])
        carla_runs = _evidence_runs(conn, [r[1] for r in carla])
    assert alice, "the 2024-07-05 deactivation only the capture holds reaches AC-02"
    assert alice_runs == {runs["capture"]["run_id"]}
    # held by both captures: counted once, from the run's own (latest) capture
    assert carla_runs == {runs["after"]}
    assert len(carla) == len({r[0] for r in carla})


def test_an_earlier_quarters_settings_capture_is_a_known_point_of_lg01(
        runs: dict[str, Any], pg_database: Database) -> None:
    key = "pg-pay-01|2024-07-01"
    with pg_database.connect() as conn:
        rows = dict(conn.execute(
            "select run_id::text, result || ' ' || settings_basis"
            " from marts.fct_control_lg01__audit_logging_complete where item_key = %s"
            " and run_id = any(%s::uuid[])", (key, [runs["before"], runs["after"]])).fetchall())
        purposes = {r[0] for r in conn.execute(
            "select doc ->> 'purpose' from raw.included_evidence where run_id = %s"
            " and source_name = 'catalog-pg-pay-01'", (runs["after"],))}
    assert rows[runs["before"]].startswith("EXCEPTION unknown before the first known point")
    assert rows[runs["after"]] == "PASS the capture of 2024-06-30T23:30:00Z"
    assert purposes == {"earlier_settings"}


def test_verify_checks_the_included_rows_and_a_capture_verifies_on_its_own(
        runs: dict[str, Any], pg_database: Database, home: Path) -> None:
    result = _cli("verify", runs["after"], home=home, db=pg_database)
    assert result.code == 0, result.stdout[-3000:]
    included = [line for line in result.stdout.splitlines() if line.split()[1:2] == ["included"]]
    assert included and all(line.startswith("OK") for line in included)
    assert any("as pinned: link" in line for line in included)
    assert any("re-derived" in line for line in included)
    capture = _cli("verify", runs["capture"]["run_id"], home=home, db=pg_database)
    assert capture.code == 0, capture.stdout[-3000:]
    assert "a capture has no controls, report or bundle" in capture.stdout


def test_verify_fails_when_an_included_capture_object_is_altered(
        runs: dict[str, Any], pg_database: Database, home: Path) -> None:
    with pg_database.connect() as conn:
        key = conn.execute(
            "select raw_output_s3_key from soxtrail.sox_evidence where run_id = %s"
            " and query_name like %s order by query_name limit 1",
            (runs["capture"]["run_id"], f"{OKTA}/okta-logs-%")).fetchone()[0]
    path = home / "store" / key
    original = path.read_bytes()
    path.write_bytes(original.replace(b"alice", b"alicf"))
    try:
        result = _cli("verify", runs["after"], home=home, db=pg_database)
    finally:
        path.write_bytes(original)
    assert result.code != 0
    failing = [line for line in result.stdout.splitlines()
               if line.split()[1:2] == ["included"] and not line.startswith("OK")]
    assert failing and all(key in line for line in failing), result.stdout[-3000:]
    assert failing[0].startswith("MISMATCH")


def test_capture_refuses_a_source_a_run_would_not_include(
        runs: dict[str, Any], estate: dict[str, Path], pg_database: Database,
        home: Path) -> None:
    result = _cli("capture", "--quarter", "2024Q3", "--config", str(estate["config"]),
                  "--sources", "jira", home=home, db=pg_database)
    assert result.code == 2
    assert "jira: the quarter's run would not include a capture of them" in result.stderr
    unknown = _cli("capture", "--quarter", "2024Q3", "--config", str(estate["config"]),
                   "--sources", "nope", home=home, db=pg_database)
    assert unknown.code == 2 and "nope not configured" in unknown.stderr
    listed = _cli("runs", "--json", home=home, db=pg_database)
    kinds = {r["run_id"]: r["kind"] for r in json.loads(listed.stdout)}
    assert kinds[runs["capture"]["run_id"]] == "capture"
    assert kinds[runs["after"]] == "quarter"
    diffed = _cli("diff", runs["capture"]["run_id"], runs["after"], home=home, db=pg_database)
    assert diffed.code == 2 and "is a capture" in diffed.stderr
