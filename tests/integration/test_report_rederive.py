"""The report is re-derived by verify, a completed run is immutable, and run status only
moves forward (issue 17)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from render import signing
from soxtrail.audit import verify
from soxtrail.kernel.controls import SUMMARY_ID, SUMMARY_MODEL, control_evidence_id
from tests.integration.test_verify import SignedRun, _failures, _verify, signed_run
from tests.support.cli import soxtrail

pytestmark = pytest.mark.integration
__all__ = ["signed_run"]  # the module-scoped demo run of test_verify, one per module


def _bundle(run: SignedRun, name: str = "bundle") -> Path:
    return run.store.root / run.quarter / run.run_id / name


def _workbook(run: SignedRun) -> str:
    return next(p.name for p in (_bundle(run) / "report").glob("*.xlsx"))


@contextmanager
def _summary_says_effective(run: SignedRun) -> Iterator[None]:
    """fct_control_summary edited: AC-01 has no exceptions and is EFFECTIVE (restored after)."""
    with run.db.connect(autocommit=True) as conn:
        before = conn.execute(f"select exceptions, pass_rate, result from marts.{SUMMARY_MODEL}"
                              " where run_id = %s and control_id = 'AC-01'",
                              (run.run_id,)).fetchone()
        assert before is not None and before[0] > 0  # the demo plants AC-01 exceptions
        conn.execute(f"update marts.{SUMMARY_MODEL} set exceptions = 0, pass_rate = 1,"
                     " result = 'EFFECTIVE' where run_id = %s and control_id = 'AC-01'",
                     (run.run_id,))
        try:
            yield
        finally:
            conn.execute(f"update marts.{SUMMARY_MODEL} set exceptions = %s, pass_rate = %s,"
                         " result = %s where run_id = %s and control_id = 'AC-01'",
                         (*before, run.run_id))


def _cli(run: SignedRun, *args: str) -> tuple[int, str, str]:
    key = run.public_key.with_name("signing.pem")
    result = soxtrail(*args, home=run.home, database_url=run.db.dsn,
                      env={"SOXTRAIL_SIGNING_KEY": str(key)})
    return result.code, result.stdout, result.stderr


def _status(run: SignedRun) -> tuple[str, str]:
    with run.db.connect() as conn:
        row = conn.execute("select status, finished_at::text from soxtrail.sox_runs"
                           " where id = %s", (run.run_id,)).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_fresh_run_rederives_the_summary_and_every_report_file(signed_run: SignedRun) -> None:
    report = _verify(signed_run)
    assert report.passed, [v.line() for v in report.failures()]
    by_subject = {(v.kind, v.subject): v for v in report.verdicts}
    summary = control_evidence_id(signed_run.run_id, SUMMARY_MODEL)
    assert by_subject[("control", f"{SUMMARY_ID} {SUMMARY_MODEL} (evidence {summary})")].status \
        == "OK"
    assert by_subject[("mart", f"{SUMMARY_ID} marts.{SUMMARY_MODEL}")].status == "OK"
    bundled = sorted(p.name for p in (_bundle(signed_run) / "report").iterdir())
    for name in bundled:
        verdict = by_subject[("bundle", f"bundle/report/{name}")]
        assert (verdict.status, "re-rendered" in verdict.detail) == ("OK", True), name
    # one report, in the bundle: none beside it in the store
    assert not (signed_run.store.root / signed_run.quarter / signed_run.run_id / "report").exists()


def test_an_edited_summary_fails_verify_and_render_or_bundle_on_the_completed_run_is_refused(
        signed_run: SignedRun) -> None:
    manifest = (_bundle(signed_run) / "MANIFEST.sha256").read_bytes()
    status = _status(signed_run)
    with _summary_says_effective(signed_run):
        report = _verify(signed_run)
        outcomes = [_cli(signed_run, phase, "--run", signed_run.run_id, "--quiet")
                    for phase in ("render", "bundle")]
    assert ("MISMATCH", "mart", f"{SUMMARY_ID} marts.{SUMMARY_MODEL}") in _failures(report)
    for code, _, stderr in outcomes:
        assert code == 2, stderr
        assert "completed and immutable" in stderr and "--new-version" in stderr
    assert (_bundle(signed_run) / "MANIFEST.sha256").read_bytes() == manifest
    assert _status(signed_run) == status


def test_a_new_version_from_an_edited_summary_fails_verify_naming_its_workbook(
        signed_run: SignedRun) -> None:
    first = {p.relative_to(_bundle(signed_run)).as_posix(): p.read_bytes()
             for p in _bundle(signed_run).rglob("*") if p.is_file()}
    status = _status(signed_run)
    no_reason = _cli(signed_run, "render", "--run", signed_run.run_id, "--new-version")
    assert no_reason[0] == 2 and "--reason" in no_reason[2]
    try:
        with _summary_says_effective(signed_run):
            code, stdout, stderr = _cli(signed_run, "render", "--run", signed_run.run_id,
                                        "--new-version", "--reason", "auditor asked for it",
                                        "--json", "--quiet")
        assert code == 0, stderr
        second = _bundle(signed_run, "bundle-v2")
        assert json.loads(stdout)["bundle"] == str(second)
        assert json.loads(stdout)["report"].startswith(str(second / "report"))
        recorded = json.loads((second / "run.json").read_text())["bundle_version"]
        assert recorded["version"] == 2 and recorded["reason"] == "auditor asked for it"
        assert recorded["created_by"]
        report = _verify(signed_run)
    finally:
        shutil.rmtree(_bundle(signed_run, "bundle-v2"), ignore_errors=True)
    # the first version is kept byte for byte; the run row is untouched
    assert {p.relative_to(_bundle(signed_run)).as_posix(): p.read_bytes()
            for p in _bundle(signed_run).rglob("*") if p.is_file()} == first
    assert _status(signed_run) == status
    # the summary is back: every mart verifies, and the second version's workbook (its
    # Summary says AC-01 is EFFECTIVE) is not what the verified marts render, nor is its
    # run.json's control summary
    assert _failures(report) == [
        ("MISMATCH", "bundle", "bundle-v2/run.json controls"),
        ("MISMATCH", "bundle", f"bundle-v2/report/{_workbook(signed_run)}")]
    assert any(v.subject == "bundle-v2/MANIFEST.sha256.sig" and v.status == "OK"
               for v in report.verdicts)  # the second version's signature is checked too


def test_a_report_csv_edited_and_resigned_with_the_teams_key_fails_the_byte_compare(
        signed_run: SignedRun, tmp_path: Path) -> None:
    bundle = _bundle(signed_run)
    saved = tmp_path / "saved"
    shutil.copytree(bundle, saved)
    csv = bundle / "report" / "AC-01.csv"
    csv.write_bytes(csv.read_bytes().replace(b"EXCEPTION", b"PASS", 1))
    lines = []
    for line in (bundle / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if name == "report/AC-01.csv":
            digest = hashlib.sha256(csv.read_bytes()).hexdigest()
        lines.append(f"{digest}  {name}\n")
    manifest = "".join(lines).encode()
    (bundle / "MANIFEST.sha256").write_bytes(manifest)
    key = signing.load_private_key(signed_run.public_key.with_name("signing.pem"))
    (bundle / "MANIFEST.sha256.sig").write_bytes(signing.sign(key, manifest))
    try:
        report = _verify(signed_run, ("bundle",))
    finally:
        shutil.rmtree(bundle)
        shutil.copytree(saved, bundle)
    # the manifest and its signature are fine: only the re-render catches it
    assert _failures(report) == [("MISMATCH", "bundle", "bundle/report/AC-01.csv")]


def test_the_database_refuses_to_move_a_completed_run_back(signed_run: SignedRun) -> None:
    with signed_run.db.connect() as conn:
        for change in ("status = 'running'", "status = 'failed'", "summary = '{}'",
                       "config = config || '{\"_store\": \"/elsewhere\"}'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
                conn.execute(f"update soxtrail.sox_runs set {change} where id = %s",
                             (signed_run.run_id,))
            conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="immutable"):
            conn.execute("delete from soxtrail.sox_runs where id = %s", (signed_run.run_id,))
        conn.rollback()
    # resume of a completed run has nothing to do and leaves it as it is
    status = _status(signed_run)
    code, _, stderr = _cli(signed_run, "resume", signed_run.run_id, "--quiet")
    assert code == 0, stderr
    assert _status(signed_run) == status


def test_status_moves_only_forward_on_a_run_in_progress(signed_run: SignedRun) -> None:
    run_id = "00000000-0000-4000-8000-0000000000aa"
    with signed_run.db.connect(autocommit=True) as conn:
        conn.execute("insert into soxtrail.sox_runs (id, quarter, config, config_hash,"
                     " tool_version, triggered_by) values (%s, '2024Q3', '{}', 'h', 'v', 't')",
                     (run_id,))
        conn.execute("update soxtrail.sox_runs set status = 'failed' where id = %s", (run_id,))
        conn.execute("update soxtrail.sox_runs set status = 'running' where id = %s", (run_id,))
        conn.execute("update soxtrail.sox_runs set status = 'failed' where id = %s", (run_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only moves forward"):
            conn.execute("update soxtrail.sox_runs set status = 'completed' where id = %s",
                         (run_id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only status"):
            conn.execute("update soxtrail.sox_runs set quarter = '2024Q4' where id = %s",
                         (run_id,))
        conn.execute("delete from soxtrail.sox_runs where id = %s", (run_id,))  # not completed


def test_verify_lists_the_report_checks_as_bundle_lines(signed_run: SignedRun) -> None:
    report = _verify(signed_run, ("bundle",))
    assert {v.kind for v in report.verdicts} == {"bundle"}
    assert "bundle" in verify.KINDS
