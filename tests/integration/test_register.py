"""The exceptions register: management's responses are a source of the run, verified like one;
a waiver never counts as a pass; `soxtrail respond` writes the responses file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from soxtrail.audit import verify
from soxtrail.kernel.controls import REGISTERS, control_evidence_id
from soxtrail.kernel.database import Database
from soxtrail.kernel.store import LocalStore
from tests.support.cli import Result, soxtrail
from tests.support.demo_quarter import DemoQuarter

pytestmark = pytest.mark.integration
REGISTER = REGISTERS["REGISTER"]


@dataclass
class DemoRun:
    run_id: str
    estate: Path
    home: Path
    store: LocalStore
    public_key: Path
    key: Path
    db: Database


@pytest.fixture(scope="module")
def demo_run(demo_quarter: DemoQuarter) -> Iterator[DemoRun]:
    """One full demo run of 2024Q3 (its estate ships a responses file), signed
    (tests/support/demo_quarter.py: this module's to change)."""
    with demo_quarter.checkout() as run:
        yield DemoRun(run.run_id, run.demo, run.home, run.store, run.public_key,
                      run.signing_key, run.db)


def _verify(run: DemoRun, kinds: tuple[str, ...]) -> verify.VerifyReport:
    with verify.connect_read_only(run.db) as conn:
        return verify.verify_run(conn, run.run_id, public_key=run.public_key, kinds=kinds)


def _responses_evidence(run: DemoRun) -> tuple[str, str]:
    with run.db.connect() as conn:
        row = conn.execute("select id::text, raw_output_s3_key from soxtrail.sox_evidence"
                           " where run_id = %s and source_system = 'responses'",
                           (run.run_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_the_responses_file_is_captured_and_loaded_row_for_row(demo_run: DemoRun) -> None:
    evidence_id, key = _responses_evidence(demo_run)
    planted = yaml.safe_load((demo_run.estate / "responses" / "2024Q3.yml").read_text())
    assert (demo_run.store.root / key).read_bytes() == (
        demo_run.estate / "responses" / "2024Q3.yml").read_bytes()
    with demo_run.db.connect() as conn:
        stats = conn.execute("select records_read, records_loaded, records_rejected from"
                             " soxtrail.sox_load_stats where evidence_id = %s",
                             (evidence_id,)).fetchone()
        loaded = conn.execute("select control_id, item_key, status from raw.responses"
                              " where run_id = %s order by locator", (demo_run.run_id,)).fetchall()
    assert stats == (len(planted["responses"]), len(planted["responses"]), 0)
    assert sorted(loaded) == sorted((r["control"], r["item"], r["status"])
                                    for r in planted["responses"])


def test_a_tampered_response_file_fails_verify(demo_run: DemoRun) -> None:
    evidence_id, key = _responses_evidence(demo_run)
    path = demo_run.store.root / key
    original = path.read_bytes()
    path.write_bytes(original.replace(b"status: open", b"status: remediated", 1))
    try:
        report = _verify(demo_run, ("object", "raw"))
    finally:
        path.write_bytes(original)
    failures = [(v.status, v.kind, v.subject) for v in report.failures()]
    assert ("MISMATCH", "object", f"{evidence_id} {key}") in failures
    assert all(subject.startswith(evidence_id) for _, _, subject in failures), failures


def test_the_register_reruns_clean_and_an_expired_waiver_counted_as_pass_fails_verify(
        demo_run: DemoRun) -> None:
    assert not _verify(demo_run, ("control",)).failures()
    with psycopg.connect(demo_run.db.dsn, autocommit=True) as conn:
        changed = conn.execute(
            f"update marts.{REGISTER} set result = 'PASS', register_status = 'PASS'"
            " where run_id = %s and waiver_state = 'expired'", (demo_run.run_id,)).rowcount
        assert changed == 1
        try:
            report = _verify(demo_run, ("control",))
        finally:
            conn.execute(f"update marts.{REGISTER} set result = 'EXCEPTION', register_status ="
                         " 'EXCEPTION (waiver expired ' || expires_on::text || ')'"
                         " where run_id = %s and register_status = 'PASS'", (demo_run.run_id,))
    subjects = [v.subject for v in report.failures()]
    evidence = control_evidence_id(demo_run.run_id, REGISTER)
    assert any(REGISTER in s for s in subjects), subjects
    assert all("REGISTER" in s or REGISTER in s or evidence in s for s in subjects), subjects


def _respond(run: DemoRun, *args: str) -> Result:
    return soxtrail("respond", run.run_id, *args, home=run.home, database_url=run.db.dsn,
                    env={"SOXTRAIL_SIGNING_KEY": str(run.key)})


def test_respond_writes_the_file_and_refuses_a_self_approved_or_open_ended_waiver(
        demo_run: DemoRun) -> None:
    path = demo_run.estate / "responses" / "2024Q3.yml"
    with demo_run.db.connect() as conn:
        found = conn.execute(
            f"select control_item_key from marts.{REGISTER} where run_id = %s"
            " and control_id = 'BK-01' and not has_response order by item_key limit 1",
            (demo_run.run_id,)).fetchone()
    assert found is not None
    item = str(found[0])
    before = path.read_bytes()
    common = (item, "--control", "BK-01", "--owner", "olga", "--due", "2024-11-30",
              "--status", "accepted-risk")
    refused = _respond(demo_run, *common, "--approver", "olga", "--expires", "2025-06-30")
    assert refused.code != 0 and "approver must differ from its owner" in refused.stderr
    refused = _respond(demo_run, *common, "--approver", "piotr")
    assert refused.code != 0 and "needs an expiry date" in refused.stderr
    assert path.read_bytes() == before
    missing = _respond(demo_run, "no|such|item", "--control", "BK-01", "--owner", "olga",
                       "--due", "2024-11-30", "--status", "open")
    assert missing.code != 0 and "has no item" in missing.stderr
    written = _respond(demo_run, *common, "--approver", "piotr", "--expires", "2025-06-30",
                       "--remediation", "OPS-1001")
    assert written.code == 0, written.stderr
    entries = yaml.safe_load(path.read_text())["responses"]
    assert {"control": "BK-01", "item": item, "remediation": "OPS-1001", "owner": "olga",
            "due": "2024-11-30", "status": "accepted-risk", "approver": "piotr",
            "expires": "2025-06-30"} in entries
    assert len(entries) == len(yaml.safe_load(before)["responses"]) + 1
