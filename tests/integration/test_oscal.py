"""`soxtrail export-oscal`: valid OSCAL assessment-results, an observation per evidence row."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from trestle.oscal.assessment_results import AssessmentResults

from soxtrail.kernel.controls import CONTROLS, control_evidence_id
from soxtrail.kernel.database import Database
from tests.support.cli import soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = pytest.mark.integration


@dataclass
class Exported:
    run_id: str
    home: Path
    path: Path
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def pg_database(demo_run: DemoRun) -> Database:
    """The database of this module's demo run (tests/support/demo_quarter.py)."""
    return demo_run.db


@pytest.fixture(scope="module")
def exported(pg_database: Database, demo_run: DemoRun,
             tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A completed default demo run of 2024Q3, exported to OSCAL."""
    run_id = demo_run.run_id
    path = tmp_path_factory.mktemp("oscal") / "assessment-results.json"
    out = soxtrail("export-oscal", run_id, "--out", str(path), home=demo_run.home,
                   database_url=pg_database.dsn)
    assert out.code == 0, out.stderr
    return Exported(run_id, demo_run.home, path, json.loads(path.read_text()))


def _props(thing: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p["value"] for p in thing.get("props", [])}


def test_the_document_validates_with_trestle(exported: Exported) -> None:
    model = AssessmentResults.oscal_read(exported.path)
    assert model is not None
    assert len(model.results) == 1


def test_one_observation_per_evidence_row_collected_at_its_execution(
        exported: Exported, pg_database: Database) -> None:
    with pg_database.connect() as conn:
        conn.execute("set time zone 'UTC'")
        rows = {str(r[0]): r[1:] for r in conn.execute(
            "select id, executed_at, result_hash, raw_output_s3_key from soxtrail.sox_evidence"
            " where run_id = %s", (exported.run_id,))}
    result = exported.doc["assessment-results"]["results"][0]
    observations = result["observations"]
    assert len(observations) == len(rows)
    back_matter = exported.doc["assessment-results"]["back-matter"]
    resources = {r["uuid"]: r for r in back_matter["resources"]}
    by_evidence = {_props(o)["evidence-id"]: o for o in observations}
    assert set(by_evidence) == set(rows)
    for evidence_id, (executed_at, digest, key) in rows.items():
        observation = by_evidence[evidence_id]
        assert observation["collected"] == executed_at.isoformat(
            timespec="microseconds").replace("+00:00", "Z")
        href = observation["relevant-evidence"][0]["href"]
        resource = resources[href.lstrip("#")]
        rlink = resource["rlinks"][0]
        assert rlink["href"].endswith(key)
        assert rlink["hashes"] == [{"algorithm": "SHA-256", "value": digest}]


def test_one_finding_per_control_with_its_state_and_observations(
        exported: Exported, pg_database: Database) -> None:
    with pg_database.connect() as conn:
        exceptions = dict(conn.execute("select control_id, exceptions from"
                                       " marts.fct_control_summary where run_id = %s",
                                       (exported.run_id,)).fetchall())
    result = exported.doc["assessment-results"]["results"][0]
    observation_of = {_props(o)["evidence-id"]: o["uuid"] for o in result["observations"]}
    findings = {f["target"]["target-id"]: f for f in result["findings"]}
    assert set(findings) == {c.lower() for c in CONTROLS}
    for control_id, model in CONTROLS.items():
        finding = findings[control_id.lower()]
        state = "satisfied" if exceptions[control_id] == 0 else "not-satisfied"
        assert finding["target"]["status"]["state"] == state
        related = [r["observation-uuid"] for r in finding["related-observations"]]
        assert observation_of[control_evidence_id(exported.run_id, model)] == related[0]
        assert len(related) > 1  # the snapshots its population rests on
    assert any(f["target"]["status"]["state"] == "not-satisfied" for f in findings.values())


def test_uuids_are_deterministic_v5_and_the_export_is_byte_identical(
        exported: Exported, pg_database: Database) -> None:
    again = soxtrail("export-oscal", exported.run_id, home=exported.home,
                     database_url=pg_database.dsn)
    assert again.code == 0, again.stderr
    assert again.stdout == exported.path.read_text()
    doc = exported.doc["assessment-results"]
    uuids = [doc["uuid"], *(o["uuid"] for o in doc["results"][0]["observations"]),
             *(f["uuid"] for f in doc["results"][0]["findings"])]
    assert len(set(uuids)) == len(uuids)
    assert all(uuid.UUID(u).version == 5 for u in uuids)
