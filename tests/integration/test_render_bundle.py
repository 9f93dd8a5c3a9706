"""Phase 5 on hand-made marts: the signed bundle and its checks."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from render.bundle import (
    BundleInputs,
    bundle_ok,
    check_bundle,
    generate_signing_key,
    write_bundle,
)
from render.workbook import render_workbook
from soxtrail.kernel.database import Database
from soxtrail.kernel.store import LocalStore
from tests.support.render_run import (
    CONTROLS,
    COUNTS,
    MARTS_DDL,
    QUARTER,
    SECRET,
    SeededRun,
    control_evidence_id,
    seed_run,
)

pytestmark = pytest.mark.integration


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def conn(pg_database: Database) -> Iterator[psycopg.Connection[Any]]:
    with pg_database.connect() as connection:
        connection.execute(MARTS_DDL)
        connection.commit()
        yield connection


@pytest.fixture(scope="module")
def seeded(conn: psycopg.Connection[Any]) -> SeededRun:
    return seed_run(conn, COUNTS)


@pytest.fixture(scope="module")
def rendered(conn: psycopg.Connection[Any], seeded: SeededRun,
             tmp_path_factory: pytest.TempPathFactory) -> Any:
    return render_workbook(conn, run_id=seeded.run_id, out=tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "signing.pem"
    generate_signing_key(path)
    return path


def _inputs(rendered: Any, base: Path) -> BundleInputs:
    base.mkdir(parents=True, exist_ok=True)
    (base / "catalog_memberships.sql").write_text(
        "select member, granted_role\nfrom pg_auth_members\n")
    (base / "jira_issues.jql").write_text(
        f"project = ACC and updated >= -90d  -- token={SECRET}\n")
    (base / "manifest.json").write_text(json.dumps({"metadata": {"dbt_version": "1.10.0"}}))
    (base / "run_results.json").write_text(json.dumps({"results": []}))
    (base / "log.jsonl").write_text(
        json.dumps({"event": "query", "dsn": f"postgresql://sox:{SECRET}@db/x"}) + "\n"
        + json.dumps({"event": "done"}) + "\n")
    return BundleInputs(
        query_files=[base / "catalog_memberships.sql", base / "jira_issues.jql"],
        manifest_json=base / "manifest.json", run_results_json=base / "run_results.json",
        log_jsonl=base / "log.jsonl", report_dir=rendered.xlsx.parent)


@pytest.fixture(scope="module")
def bundle(conn: psycopg.Connection[Any], seeded: SeededRun, rendered: Any, signing_key: Path,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalStore, Any]:
    store = LocalStore(tmp_path_factory.mktemp("store"))
    result = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path_factory.mktemp("inputs")),
                          signing_key=signing_key)
    return store, result


def _download(store: LocalStore, prefix: str, dest: Path) -> Path:
    for key in store.list(prefix):
        target = dest / key[len(prefix) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with store.open(key) as handle:
            target.write_bytes(handle.read())
    return dest


def test_bundle_holds_every_part(bundle: tuple[LocalStore, Any], seeded: SeededRun,
                                 rendered: Any) -> None:
    store, result = bundle
    assert result.prefix == f"{QUARTER}/{seeded.run_id}/bundle"
    names = {k[len(result.prefix) + 1:] for k in store.list(result.prefix)}
    expected = {"run.json", "evidence.jsonl", "anchor.json", "log.jsonl", "README.txt",
                "dbt/manifest.json", "dbt/run_results.json", "queries/catalog_memberships.sql",
                "queries/jira_issues.jql", f"report/{rendered.xlsx.name}",
                "MANIFEST.sha256", "MANIFEST.sha256.sig", "signing-key.pub",
                "signing-key.fingerprint"}
    expected |= {f"queries/controls/{model}.sql" for model, _, _ in CONTROLS.values()}
    expected |= {f"report/{c}.csv" for c in CONTROLS}
    assert names == expected
    assert result.signed and result.missing == [] and result.stale == []


def test_manifest_covers_every_other_file_sorted(bundle: tuple[LocalStore, Any]) -> None:
    store, result = bundle
    with store.open(f"{result.prefix}/MANIFEST.sha256") as handle:
        lines = handle.read().decode().splitlines()
    listed = [line.split("  ", 1)[1] for line in lines]
    assert listed == sorted(listed)
    names = {k[len(result.prefix) + 1:] for k in store.list(result.prefix)}
    assert set(listed) == names - {"MANIFEST.sha256", "MANIFEST.sha256.sig"}


def test_sha256sum_checks_a_downloaded_copy(bundle: tuple[LocalStore, Any],
                                            tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    done = subprocess.run(["sha256sum", "--strict", "-c", "MANIFEST.sha256"], cwd=copy,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len(
        (copy / "MANIFEST.sha256").read_text().splitlines())


def test_openssl_verifies_the_signature_and_fingerprint(bundle: tuple[LocalStore, Any],
                                                        tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    done = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pub", "-rawin",
         "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"],
        cwd=copy, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", "signing-key.pub", "-outform",
                          "DER"], cwd=copy, capture_output=True, check=True).stdout
    assert hashlib.sha256(der[-32:]).hexdigest() == \
        (copy / "signing-key.fingerprint").read_text().strip() == result.fingerprint
    (copy / "MANIFEST.sha256").write_text((copy / "MANIFEST.sha256").read_text() + "\n")
    bad = subprocess.run(
        ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "signing-key.pub", "-rawin",
         "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"],
        cwd=copy, capture_output=True, text=True, check=False)
    assert bad.returncode != 0


def test_check_bundle_passes_an_untouched_bundle(bundle: tuple[LocalStore, Any],
                                                 signing_key: Path, tmp_path: Path) -> None:
    store, result = bundle
    checks = check_bundle(store, result.prefix)
    assert bundle_ok(checks, require_signature=True), [str(c) for c in checks if not c.ok]
    assert checks[-1].status == "OK" and checks[-1].path == "MANIFEST.sha256.sig"
    public = tmp_path / "given.pub"
    with store.open(f"{result.prefix}/signing-key.pub") as handle:
        public.write_bytes(handle.read())
    assert bundle_ok(check_bundle(store, result.prefix, public_key=public))


def test_check_bundle_fails_with_another_key(bundle: tuple[LocalStore, Any],
                                            tmp_path: Path) -> None:
    store, result = bundle
    other = tmp_path / "other.pem"
    generate_signing_key(other)
    from render.signing import load_private_key, public_key_pem

    (tmp_path / "other.pub").write_bytes(public_key_pem(load_private_key(other).public_key()))
    checks = check_bundle(store, result.prefix, public_key=tmp_path / "other.pub")
    assert not bundle_ok(checks)
    failed = {c.path for c in checks if c.status == "FAIL"}
    assert failed == {"signing-key.pub", "MANIFEST.sha256.sig"}


@pytest.mark.parametrize("victim", ["run.json", "evidence.jsonl", "log.jsonl", "report/AC-01.csv",
                                    "queries/controls/fct_control_ac02__timely_revocation.sql",
                                    "signing-key.pub", "xlsx"])
def test_tampering_with_any_file_is_detected(bundle: tuple[LocalStore, Any], tmp_path: Path,
                                             victim: str) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    if victim == "xlsx":
        victim = next(p.relative_to(copy).as_posix() for p in copy.glob("report/*.xlsx"))
    data = bytearray((copy / victim).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / victim).write_bytes(bytes(data))
    checks = check_bundle(copy)
    assert not bundle_ok(checks)
    assert ("MISMATCH", victim) in {(c.status, c.path) for c in checks}


def test_tampering_with_the_manifest_breaks_the_signature(bundle: tuple[LocalStore, Any],
                                                          tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    manifest = copy / "MANIFEST.sha256"
    lines = manifest.read_text().splitlines(keepends=True)
    (copy / "run.json").write_text('{"forged": true}\n')
    forged = hashlib.sha256((copy / "run.json").read_bytes()).hexdigest()
    manifest.write_text("".join(f"{forged}  run.json\n" if line.endswith("  run.json\n")
                                else line for line in lines))
    checks = check_bundle(copy)
    assert ("OK", "run.json") in {(c.status, c.path) for c in checks}  # hashes agree now...
    assert ("FAIL", "MANIFEST.sha256.sig") in {(c.status, c.path) for c in checks}  # ...not signed
    assert not bundle_ok(checks)


def test_missing_and_extra_files_are_reported(bundle: tuple[LocalStore, Any],
                                              tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    (copy / "log.jsonl").unlink()
    (copy / "report" / "smuggled.csv").write_text("x\r\n")
    statuses = {(c.status, c.path) for c in check_bundle(copy)}
    assert ("MISSING", "log.jsonl") in statuses
    assert ("EXTRA", "report/smuggled.csv") in statuses


def test_nothing_in_the_bundle_contains_a_secret(bundle: tuple[LocalStore, Any]) -> None:
    store, result = bundle
    for key in store.list(result.prefix):
        with store.open(key) as handle:
            assert SECRET.encode() not in handle.read(), key


def test_run_json_records_versions_and_the_redacted_config(bundle: tuple[LocalStore, Any],
                                                           seeded: SeededRun) -> None:
    store, result = bundle
    with store.open(f"{result.prefix}/run.json") as handle:
        doc = json.load(handle)
    assert doc["run"]["id"] == seeded.run_id
    assert doc["run"]["config"]["sources"][0]["token"] == "${JIRA_TOKEN}"
    assert doc["git_commit"] == "0123456789abcdef"
    assert doc["versions"]["python"] and doc["versions"]["soxtrail"]
    assert "dbt-core" in doc["versions"] and "dbt-postgres" in doc["versions"]
    assert [c["control_id"] for c in doc["controls"]] == sorted(CONTROLS)
    assert doc["signed"] is True


def test_evidence_jsonl_has_every_row_with_its_chain_link(
        bundle: tuple[LocalStore, Any], seeded: SeededRun,
        conn: psycopg.Connection[Any]) -> None:
    store, result = bundle
    with store.open(f"{result.prefix}/evidence.jsonl") as handle:
        records = [json.loads(line) for line in handle.read().decode().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(seeded.evidence_ids)
    assert [r["chain_seq"] for r in records] == sorted(r["chain_seq"] for r in records)
    record = records[0]
    text = conn.execute(
        "select soxtrail.evidence_row_text(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (record["id"], record["run_id"], record["source_system"], record["query_name"],
         record["query_text"], Jsonb(record["query_params"]), record["executed_at"],
         record["executed_by"], record["result_row_count"], record["result_hash"],
         record["raw_output_s3_key"])).fetchone()[0]  # type: ignore[index]
    conn.rollback()
    link = hashlib.sha256(f"{record['prev_hash']}|{text}".encode()).hexdigest()
    assert link == record["chain_hash"]


def test_control_sql_files_carry_a_header(bundle: tuple[LocalStore, Any],
                                          seeded: SeededRun) -> None:
    store, result = bundle
    model = CONTROLS["AC-01"][0]
    with store.open(f"{result.prefix}/queries/controls/{model}.sql") as handle:
        text = handle.read().decode()
    assert text.startswith("-- soxtrail control AC-01: Privileged access approved\n")
    assert f"-- run:         {seeded.run_id} ({QUARTER})" in text
    assert f"-- evidence id: {control_evidence_id(seeded.run_id, model)}" in text
    assert '"revocation_sla_hours":24' in text
    assert text.rstrip().endswith(f"where run_id = '{seeded.run_id}'")


def test_an_unsigned_bundle_says_so_loudly(conn: psycopg.Connection[Any], seeded: SeededRun,
                                           rendered: Any, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOXTRAIL_SIGNING_KEY", raising=False)
    store = LocalStore(tmp_path / "store")
    result = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path / "in"), signing_key=None)
    assert result.signed is False and result.fingerprint is None
    with store.open(f"{result.prefix}/UNSIGNED") as handle:
        assert handle.read().startswith(b"THIS BUNDLE IS NOT SIGNED.")
    checks = check_bundle(store, result.prefix)
    assert ("UNSIGNED", "MANIFEST.sha256.sig") in {(c.status, c.path) for c in checks}
    assert bundle_ok(checks) and not bundle_ok(checks, require_signature=True)
    assert not store.exists(f"{result.prefix}/MANIFEST.sha256.sig")


def test_the_signing_key_comes_from_the_environment(conn: psycopg.Connection[Any],
                                                    seeded: SeededRun, rendered: Any,
                                                    signing_key: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(signing_key))
    store = LocalStore(tmp_path / "store")
    result = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path / "in"), signing_key=None)
    assert result.signed


def test_writing_the_bundle_twice_gives_the_same_manifest(
        conn: psycopg.Connection[Any], seeded: SeededRun, rendered: Any,
        bundle: tuple[LocalStore, Any], signing_key: Path, tmp_path: Path) -> None:
    store, first = bundle
    second = write_bundle(conn, store, run_id=seeded.run_id, quarter=QUARTER,
                          files=_inputs(rendered, tmp_path / "in"), signing_key=signing_key)
    assert second.manifest_sha256 == first.manifest_sha256
    assert bundle_ok(check_bundle(store, second.prefix))


def test_a_wrong_quarter_is_refused(conn: psycopg.Connection[Any], seeded: SeededRun,
                                    rendered: Any, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not 2024Q4"):
        write_bundle(conn, LocalStore(tmp_path), run_id=seeded.run_id, quarter="2024Q4",
                     files=BundleInputs(), signing_key=None)
    conn.rollback()


def test_a_downloaded_copy_outside_the_store_still_checks(bundle: tuple[LocalStore, Any],
                                                          tmp_path: Path) -> None:
    store, result = bundle
    copy = _download(store, result.prefix, tmp_path / "copy")
    moved = tmp_path / "elsewhere"
    shutil.move(str(copy), moved)
    assert bundle_ok(check_bundle(moved, "", public_key=moved / "signing-key.pub"),
                     require_signature=True)
