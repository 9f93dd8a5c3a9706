"""`soxtrail verify` against the bundle's signed anchor: a re-chained database fails, the
bundle is tied to its run, a signature without the auditor's key is called what it is."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from extract.demo import generate
from render import signing
from render.bundle import generate_signing_key
from soxtrail.audit import verify
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.store import LocalStore
from tests.conftest import ADMIN_URL, _with_dbname
from tests.support.cli import soxtrail
from tests.support.tamper import RECHAIN

pytestmark = pytest.mark.integration

SCOPE = "pg-fin-01"  # one cluster keeps both runs small
# The control re-runs take seconds and cannot see the chain: left out where they prove nothing.
NO_RERUN = ("object", "chain", "bundle", "links")


@dataclass
class TwoRuns:
    first: str  # run A
    second: str  # run B, started after A
    quarter: str
    home: Path
    store: LocalStore
    key: Path
    public_key: Path
    db: Database

    def bundle(self, run_id: str) -> Path:
        return self.store.root / self.quarter / run_id / "bundle"


@pytest.fixture(scope="module")
def two_runs(pg_database: Database, tmp_path_factory: pytest.TempPathFactory) -> TwoRuns:
    """Two signed demo runs of 2024Q3 (one cluster), one after the other, one store."""
    root = tmp_path_factory.mktemp("anchor")
    generate(root / "demo", Quarter.parse("2024Q3"))
    key = root / "signing.pem"
    generate_signing_key(key)
    public = root / "signing.pub"
    public.write_bytes(signing.public_key_pem(signing.load_private_key(key).public_key()))
    home = root / "home"
    ids = []
    for _ in range(2):
        result = soxtrail("run", "--quarter", "2024Q3", "--config",
                          str(root / "demo" / "soxtrail.yml"), "--clusters", SCOPE,
                          "--json", "--quiet", home=home, database_url=pg_database.dsn,
                          env={"SOXTRAIL_SIGNING_KEY": str(key)})
        assert result.code == 0, result.stderr
        ids.append(result.json()["run_id"])
    return TwoRuns(ids[0], ids[1], "2024Q3", home, LocalStore(home / "store"), key, public,
                   pg_database)


@contextmanager
def _copy(runs: TwoRuns) -> Iterator[Database]:
    """A copy of the runs' database (CREATE DATABASE … TEMPLATE), dropped afterwards."""
    source = psycopg.conninfo.conninfo_to_dict(runs.db.dsn)["dbname"]
    name = f"{source}_copy"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'create database "{name}" template "{source}"')  # type: ignore[arg-type]
    try:
        yield Database(dsn=_with_dbname(ADMIN_URL, name), embedded=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')  # type: ignore[arg-type]


@contextmanager
def _owner(db: Database) -> Iterator[psycopg.Connection[Any]]:
    """The table owner with the append-only triggers of the evidence and chain disabled."""
    with db.connect(autocommit=True) as conn:
        for table in ("soxtrail.sox_evidence", "soxtrail.sox_evidence_chain"):
            conn.execute(f"alter table {table} disable trigger append_only")  # type: ignore[arg-type]
        yield conn


def _verify(db: Database, run_id: str, public_key: Path | None,
            **kwargs: Any) -> verify.VerifyReport:
    with verify.connect_read_only(db) as conn:
        return verify.verify_run(conn, run_id, public_key=public_key, **kwargs)


def _failures(report: verify.VerifyReport) -> list[verify.Verdict]:
    return report.failures()


def _chain_order(db: Database, run_id: str) -> list[str]:
    with db.connect() as conn:
        return [str(r[0]) for r in conn.execute(
            "select chain.evidence_id from soxtrail.sox_evidence_chain as chain"
            " inner join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id"
            " where evidence.run_id = %s order by chain.seq", (run_id,))]


def _notes(report: verify.VerifyReport, kind: str, subject: str) -> list[str]:
    return [v.detail for v in report.verdicts
            if (v.status, v.kind, v.subject) == ("NOTE", kind, subject)]


def _resign(bundle: Path, key: Path | None) -> None:
    """Rewrite the manifest for the files now in `bundle` and sign it (unsigned: no key)."""
    names = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
                   if p.is_file() and not p.name.startswith("MANIFEST.sha256"))
    manifest = "".join(f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n"
                       for n in names).encode()
    (bundle / "MANIFEST.sha256").write_bytes(manifest)
    if key is not None:
        (bundle / "MANIFEST.sha256.sig").write_bytes(
            signing.sign(signing.load_private_key(key), manifest))


# ---------------------------------------------------------------- the anchor


def test_the_bundle_anchors_every_link_of_its_run_and_the_earlier_runs(two_runs: TwoRuns) -> None:
    anchor = json.loads((two_runs.bundle(two_runs.second) / "anchor.json").read_text())
    assert (anchor["run_id"], anchor["quarter"]) == (two_runs.second, "2024Q3")
    assert [link["evidence_id"] for link in anchor["links"]] == \
        _chain_order(two_runs.db, two_runs.second)
    first = json.loads((two_runs.bundle(two_runs.first) / "anchor.json").read_text())
    assert first["earlier_runs"] == [] and first["before"] is None
    assert anchor["before"]["seq"] == first["links"][-1]["seq"]  # A's last link precedes B's
    assert anchor["earlier_runs"] == [{
        "run_id": two_runs.first, "quarter": "2024Q3", "seq": first["links"][-1]["seq"],
        "evidence_id": first["links"][-1]["evidence_id"],
        "chain_hash": first["links"][-1]["chain_hash"]}]
    assert anchor["origin"]["database"] == \
        psycopg.conninfo.conninfo_to_dict(two_runs.db.dsn)["dbname"]
    assert anchor["origin"]["system_identifier"].isdigit()
    assert anchor["origin"]["store"] == str(two_runs.store.root)
    manifest = (two_runs.bundle(two_runs.second) / "MANIFEST.sha256").read_text()
    assert "  anchor.json\n" in manifest  # signed with the rest


def test_a_fresh_run_matches_its_anchor(two_runs: TwoRuns) -> None:
    for run_id in (two_runs.first, two_runs.second):
        report = _verify(two_runs.db, run_id, two_runs.public_key, kinds=NO_RERUN)
        assert report.passed, [v.line() for v in report.failures()]
        assert [(v.status, v.subject) for v in report.verdicts if v.status != "OK"] == [
            ("NOTE", "anchor.json lock")]  # a folder has no Object Lock
        lines = {(v.kind, v.subject): v.detail for v in report.verdicts}
        assert "as anchored" in lines[("chain", "anchor.json")]
        assert lines[("bundle", "run")].startswith(
            f"the bundle is of run {run_id} (2024Q3) (anchor.json of ")
        assert ("bundle", "origin") in lines


def test_executed_by_rewritten_and_the_chain_recomputed_fails_naming_the_first_row(
        two_runs: TwoRuns) -> None:
    with _copy(two_runs) as copy:
        with _owner(copy) as owner:
            owner.execute("update soxtrail.sox_evidence set executed_by = 'someone_else'")
            owner.execute(RECHAIN)
        with verify.connect_read_only(copy) as conn:  # the database's own chain is consistent
            rows = verify.evidence_rows(conn, two_runs.first)
            assert {verify.check_chain(row).status for row in rows} == {"OK"}
        report = _verify(copy, two_runs.first, two_runs.public_key, kinds=NO_RERUN)
        later = _verify(copy, two_runs.second, two_runs.public_key, kinds=("chain",))
    failures = _failures(report)
    first = _chain_order(two_runs.db, two_runs.first)[0]
    assert (failures[0].status, failures[0].kind, failures[0].subject) == \
        ("MISMATCH", "chain", first)
    assert "executed_by (signed" in failures[0].detail
    assert '"someone_else"' in failures[0].detail
    assert {(v.status, v.kind) for v in failures} == {("MISMATCH", "chain")}
    # B's bundle recorded A's latest link: the rewrite of the earlier run is named
    assert ("FAIL", "chain", f"run {two_runs.first}") in {
        (v.status, v.kind, v.subject) for v in _failures(later)}


def test_an_evidence_row_deleted_and_the_chain_recomputed_fails(two_runs: TwoRuns) -> None:
    victim = _chain_order(two_runs.db, two_runs.first)[3]
    with _copy(two_runs) as copy:
        with _owner(copy) as owner:
            owner.execute("delete from soxtrail.sox_evidence_chain where evidence_id = %s",
                          (victim,))
            owner.execute("delete from soxtrail.sox_evidence where id = %s", (victim,))
            owner.execute(RECHAIN)
        report = _verify(copy, two_runs.first, two_runs.public_key, kinds=("chain",))
        later = _verify(copy, two_runs.second, two_runs.public_key, kinds=("chain",))
    failures = {(v.status, v.kind, v.subject): v.detail for v in _failures(report)}
    assert "the row was deleted" in failures[("MISSING", "chain", victim)]
    after = _chain_order(two_runs.db, two_runs.first)[4]
    assert "chain_hash" in failures[("MISMATCH", "chain", after)]
    assert ("FAIL", "chain", f"run {two_runs.first}") in {
        (v.status, v.kind, v.subject) for v in _failures(later)}


# ---------------------------------------------------------------- the bundle's run and origin


def test_run_a_verified_against_run_bs_bundle_is_refused(two_runs: TwoRuns) -> None:
    result = soxtrail("verify", two_runs.first, "--bundle", str(two_runs.bundle(two_runs.second)),
                      "--public-key", str(two_runs.public_key), home=two_runs.home,
                      database_url=two_runs.db.dsn)
    assert result.code == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["FAIL", "bundle", "run"]
    assert f"refused: the bundle is of run {two_runs.second} (2024Q3), not of run " \
        f"{two_runs.first} (2024Q3) (anchor.json of " in lines[0]
    assert "FAILED" in lines[-1] and len(lines) == 2  # refused: nothing else is checked


def test_a_copy_in_another_database_and_store_is_a_note_not_a_failure(
        two_runs: TwoRuns, tmp_path: Path) -> None:
    store_copy = tmp_path / "store-copy"
    shutil.copytree(two_runs.store.root, store_copy)
    with _copy(two_runs) as copy:
        report = _verify(copy, two_runs.first, two_runs.public_key, kinds=NO_RERUN,
                         store=LocalStore(store_copy))
    assert report.passed, [v.line() for v in report.failures()]
    [note] = _notes(report, "bundle", "origin")
    assert "made in database" in note and "_copy'" in note
    assert f"made with store {two_runs.store.root}, objects read from {store_copy} (--store)" \
        in note
    assert "system identifier" not in note  # the same server


def test_the_run_rows_store_is_not_where_objects_are_read(two_runs: TwoRuns,
                                                          tmp_path: Path) -> None:
    forged = tmp_path / "forged-store"
    shutil.copytree(two_runs.store.root, forged)
    victim = next(p for p in (forged / "2024Q3" / two_runs.first / "raw").rglob("*")
                  if p.is_file())
    victim.write_bytes(victim.read_bytes() + b"forged\n")
    with _copy(two_runs) as copy:
        with copy.connect(autocommit=True) as owner:
            owner.execute("alter table soxtrail.sox_runs disable trigger user")
            owner.execute("update soxtrail.sox_runs set config = jsonb_set(config, '{_store}',"
                          " to_jsonb(%s::text)) where id = %s", (str(forged), two_runs.first))
        report = _verify(copy, two_runs.first, two_runs.public_key, kinds=("object", "bundle"))
    # the forged object is never read (every object check passes: the signed store is read);
    # the row's changed config is itself caught against the signed run.json
    assert [(v.status, v.kind, v.subject) for v in report.failures()] == [
        ("MISMATCH", "bundle", "bundle/run.json run")]
    assert "config._store" in report.failures()[0].detail
    [note] = _notes(report, "bundle", "origin")
    assert f"sox_runs.config._store names {forged}, not the signed store (ignored)" in note
    assert f"objects read from {two_runs.store.root} (the signed anchor)" in note


def test_an_old_bundle_without_an_anchor_is_a_note(two_runs: TwoRuns, tmp_path: Path) -> None:
    old = tmp_path / "old-bundle"
    shutil.copytree(two_runs.bundle(two_runs.first), old)
    (old / "anchor.json").unlink()
    _resign(old, two_runs.key)
    report = _verify(two_runs.db, two_runs.first, two_runs.public_key, kinds=NO_RERUN,
                     bundle=str(old))
    assert report.passed, [v.line() for v in report.failures()]
    assert _notes(report, "chain", "anchor.json") == [
        "the bundle has no anchor.json (written before anchoring): its evidence rows and chain "
        "links cannot be checked against a copy outside the database"]
    # run.json still names the run: another run's old bundle is refused all the same
    other = _verify(two_runs.db, two_runs.second, two_runs.public_key, bundle=str(old))
    assert [(v.status, v.subject) for v in other.verdicts] == [("FAIL", "run")]
    assert "(run.json of " in other.verdicts[0].detail


# ---------------------------------------------------------------- what a signature proves


def test_without_a_public_key_the_signers_fingerprint_is_printed_with_a_warning(
        two_runs: TwoRuns) -> None:
    fingerprint = (two_runs.bundle(two_runs.first) / "signing-key.fingerprint").read_text().strip()
    result = soxtrail("verify", two_runs.first, "--store", str(two_runs.store.root),
                      home=two_runs.home, database_url=two_runs.db.dsn)
    assert result.code == 0, result.stdout + result.stderr
    assert "WARNING: the signature was checked with the bundle's own key only" in result.stderr
    assert fingerprint in result.stderr
    assert "self-consistent, not who wrote it" in result.stderr
    [note] = [line for line in result.stdout.splitlines()
              if line.startswith("NOTE") and "anchor.json lock" not in line]
    assert note.split()[1:3] == ["bundle", "signature"] and fingerprint in note
    pinned = soxtrail("verify", two_runs.first, "--public-key", str(two_runs.public_key),
                      home=two_runs.home, database_url=two_runs.db.dsn)
    assert pinned.code == 0 and "WARNING" not in pinned.stderr
    assert not [line for line in pinned.stdout.splitlines()
                if line.startswith("NOTE") and "anchor.json lock" not in line]


def test_an_unsigned_bundle_fails_unless_allowed(two_runs: TwoRuns, tmp_path: Path) -> None:
    """Bundles are signed by default: UNSIGNED fails unless allow_unsigned (--allow-unsigned);
    require_signature (--require-signature, kept for scripts) fails it even then."""
    unsigned = tmp_path / "unsigned"
    shutil.copytree(two_runs.bundle(two_runs.first), unsigned)
    for name in ("MANIFEST.sha256.sig", "signing-key.pub", "signing-key.fingerprint"):
        (unsigned / name).unlink()
    (unsigned / "UNSIGNED").write_text("THIS BUNDLE IS NOT SIGNED.\n")
    _resign(unsigned, None)
    default = _verify(two_runs.db, two_runs.first, None, kinds=("bundle",), bundle=str(unsigned))
    loose = _verify(two_runs.db, two_runs.first, None, kinds=("bundle",), bundle=str(unsigned),
                    allow_unsigned=True)
    strict = _verify(two_runs.db, two_runs.first, None, kinds=("bundle",), bundle=str(unsigned),
                     allow_unsigned=True, require_signature=True)
    assert loose.passed, [v.line() for v in loose.failures()]
    assert ("UNSIGNED", "MANIFEST.sha256.sig") in {(v.status, v.subject) for v in loose.verdicts}
    for report in (default, strict):
        assert [(v.status, v.subject) for v in report.failures()] == [
            ("UNSIGNED", "MANIFEST.sha256.sig")]
