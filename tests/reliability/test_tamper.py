"""The tamper suite (issue 17): every attempt to forge a signed run, made on a fresh copy of
one baseline with the owner's rights, must fail `soxtrail verify --public-key …
--require-signature` and be named in its output.

One baseline per session: two signed one-cluster demo runs in their own database, renamed to
a template; each attack gets `CREATE DATABASE <original name> TEMPLATE <template>` (the stored
control SQL names its database) and a copy of the home with the store at its original path
(the signed anchor names it), tampers, runs verify, and drops the copy. An attack is a
function `attack(conn, ctx) -> Tampered` over a psycopg connection with the attacker's rights
and the copy (`tests/support/tamper.py`), so the same attacks run under another role.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openpyxl
import psycopg
import pytest
from psycopg import sql

from extract.demo import generate
from render import signing
from render.bundle import generate_signing_key
from soxtrail.kernel.controls import CONTROLS, SUMMARY_ID, SUMMARY_MODEL, control_evidence_id
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.conftest import ADMIN_URL, _with_dbname
from tests.support.cli import soxtrail
from tests.support.faults import FAULTY_CLI, start_cli, wait_for
from tests.support.tamper import (
    LINK,
    OWNER,
    RECHAIN,
    Baseline,
    Copy,
    Finding,
    Role,
    Tampered,
    admin,
    drop_database,
    fresh_copy,
    keep_as_template,
)

QUARTER = "2024Q3"
SCOPE = "pg-fin-01"  # one cluster keeps both runs small; its audit log has a NO_TICKET grant
AC01 = CONTROLS["AC-01"]
EVIDENCE, CHAIN = "soxtrail.sox_evidence", "soxtrail.sox_evidence_chain"
RUNS, LOAD_STATS, REJECTS = "soxtrail.sox_runs", "soxtrail.sox_load_stats", "soxtrail.sox_rejects"
# the class test of models/staging/db_audit/stg_db_audit__audit_entries.sql: rows outside it
# are loaded and kept as evidence, and no control reads them
READ_BY_CONTROLS = r"^\s*AUDIT: [^,]*,[^,]*,[^,]*,(ROLE|DDL),"
# a csvlog line with 10 columns: the loader rejects it (one sox_rejects row in run A)
BAD_LINE = "2024-09-30 10:00:00.000 UTC,grace,postgres,1,2,3,4,5,6,7\n"

Attack = Callable[[psycopg.Connection[Any], Copy], Tampered]


# ---------------------------------------------------------------- the baseline


def _no_ticket_grant(db: Database, run_id: str) -> str:
    """The raw locator of a GRANT that AC-01 reports as NO_TICKET in the run."""
    with db.connect() as conn:
        row = conn.execute(f"select evidence_locator from marts.{AC01} where run_id = %s"
                           " and 'NO_TICKET' = any(exception_reasons) order by item_key limit 1",
                           (run_id,)).fetchone()
    assert row is not None, "the demo plants a NO_TICKET grant on pg-fin-01"
    return str(row[0])


def _exceptions(db: Database, run_id: str) -> int:
    with db.connect() as conn:
        row = conn.execute(f"select count(*) from marts.{AC01} where run_id = %s"
                           " and result = 'EXCEPTION'", (run_id,)).fetchone()
    assert row is not None
    return int(row[0])


def _run_hiding_a_grant(db: Database, runs_as: Database, config: Path, home: Path, key: Path,
                        locator: str) -> str:
    """A run (by the run role) paused at the start of reconcile while the owner deletes the
    GRANT's raw row (its NO_TICKET exception disappears from the marts, the evidence and the
    bundle)."""
    marker = home.parent / "paused"
    process = start_cli("run", "--quarter", QUARTER, "--config", str(config), "--clusters",
                        SCOPE, "--json", "--quiet", home=home, database_url=runs_as.dsn,
                        env={"SOXTRAIL_TEST_PAUSE_AT": f"reconcile:start={marker}",
                             "SOXTRAIL_SIGNING_KEY": str(key)}, launcher=FAULTY_CLI)
    try:
        wait_for(marker.exists, 120, "the run pausing at the start of reconcile")
        with db.connect(autocommit=True) as owner:
            [(run_id,)] = owner.execute("select id::text from soxtrail.sox_runs"
                                        " where status = 'running'").fetchall()
            owner.execute("alter table raw.pgaudit_csvlog disable trigger user")
            deleted = owner.execute("delete from raw.pgaudit_csvlog where run_id = %s"
                                    " and locator = %s", (run_id, locator)).rowcount
            owner.execute("alter table raw.pgaudit_csvlog enable trigger user")
        assert deleted == 1
        marker.unlink()
        _, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    return run_id


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    """Run A (clean; one reject planted in its audit log) and run B (a GRANT's raw row deleted
    between its load and reconcile), both signed, kept as a template database and home."""
    root = tmp_path_factory.mktemp("tamper")
    generate(root / "demo", Quarter.parse(QUARTER))
    log = sorted((root / "demo" / "logs" / SCOPE).glob("*.csv"))[-1]
    with log.open("a", encoding="utf-8") as handle:
        handle.write(BAD_LINE)
    key = root / "signing.pem"
    generate_signing_key(key)
    public_key = root / "signing.pub"
    public_key.write_bytes(signing.public_key_pem(signing.load_private_key(key).public_key()))
    database = f"soxtrail_tamper_{uuid.uuid4().hex[:12]}"  # one per session: runs in parallel
    template = f"{database}_tpl"
    with admin() as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    try:
        db = Database(dsn=_with_dbname(ADMIN_URL, database), embedded=False)
        init = soxtrail("db", "init", "--admin-url", db.dsn, "--run-role", str(RUN.login),
                        home=root / "home", database_url=None)
        assert init.code == 0, init.stderr
        runs_as = Database(dsn=RUN.dsn(db), embedded=False)  # the runs are the run role's
        config = root / "demo" / "soxtrail.yml"
        made = soxtrail("run", "--quarter", QUARTER, "--config", str(config), "--clusters", SCOPE,
                        "--json", "--quiet", home=root / "home", database_url=runs_as.dsn,
                        env={"SOXTRAIL_SIGNING_KEY": str(key)})
        assert made.code == 0, made.stderr
        run_a = made.json()
        locator = _no_ticket_grant(db, run_a["run_id"])
        hidden = _run_hiding_a_grant(db, runs_as, config, root / "home", key, locator)
        assert _exceptions(db, hidden) == _exceptions(db, run_a["run_id"]) - 1  # it disappeared
        found = Baseline(database, template, root, QUARTER, run_a["run_id"], hidden, locator,
                         Path(run_a["report"]), key, public_key)
        keep_as_template(found)
        yield found
    finally:
        with admin() as conn:
            drop_database(conn, database)
            drop_database(conn, template)
            conn.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(str(RUN.login))))


# ---------------------------------------------------------------- helpers of the attacks


def _chain_order(ctx: Copy, run_id: str) -> list[str]:
    with ctx.db.connect() as conn:
        return [str(r[0]) for r in conn.execute(
            "select chain.evidence_id from soxtrail.sox_evidence_chain as chain"
            " inner join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id"
            " where evidence.run_id = %s order by chain.seq", (run_id,))]


def _object(ctx: Copy, raw_table: str, where: str = "true") -> dict[str, Any]:
    """An object of run A loading into `raw_table` (its evidence row), and one of its rows."""
    return ctx.one(
        f"select e.id::text as evidence_id, e.raw_output_s3_key as key, r.locator"
        f" from {raw_table} as r inner join soxtrail.sox_evidence as e on e.id = r.evidence_id"
        f" where r.run_id = %s and ({where}) order by e.raw_output_s3_key, r.locator limit 1",
        (ctx.run_id,))


def _workbook(bundle: Path) -> str:
    return next(p.name for p in (bundle / "report").glob("*.xlsx"))


def _summary_says_ac01_is_effective(conn: psycopg.Connection[Any], ctx: Copy) -> tuple[Any, ...]:
    """fct_control_summary edited: AC-01 has 0 exceptions and is EFFECTIVE; the old values."""
    before = conn.execute(f"select exceptions, pass_rate, result from marts.{SUMMARY_MODEL}"
                          " where run_id = %s and control_id = 'AC-01'", (ctx.run_id,)).fetchone()
    assert before is not None and before[0] > 0  # the demo plants AC-01 exceptions
    conn.execute(f"update marts.{SUMMARY_MODEL} set exceptions = 0, pass_rate = 1,"
                 " result = 'EFFECTIVE' where run_id = %s and control_id = 'AC-01'",
                 (ctx.run_id,))
    return tuple(before)


def _restore_summary(conn: psycopg.Connection[Any], ctx: Copy, before: tuple[Any, ...]) -> None:
    conn.execute(f"update marts.{SUMMARY_MODEL} set exceptions = %s, pass_rate = %s,"
                 " result = %s where run_id = %s and control_id = 'AC-01'",
                 (*before, ctx.run_id))


def _refused_on_the_completed_run(ctx: Copy, phase: str) -> None:
    result = ctx.cli(phase, "--run", ctx.run_id, "--quiet")
    assert result.code == 2, result.stdout + result.stderr
    assert "completed and immutable" in result.stderr and "--new-version" in result.stderr


# ---------------------------------------------------------------- the table


def rewrite_executed_by_and_rechain(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """Trigger off, `executed_by` rewritten on every evidence row, the whole chain recomputed."""
    first = _chain_order(ctx, ctx.run_id)[0]
    with ctx.unguarded(conn, EVIDENCE, CHAIN):
        conn.execute("update soxtrail.sox_evidence set executed_by = 'someone_else'")
        conn.execute(RECHAIN)
    return Tampered(ctx.run_id, [
        Finding("chain", first, ("differs from the bundle's signed copy", "executed_by (signed",
                                 '"someone_else"'))])


def delete_evidence_row_and_rechain(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """Trigger off, an evidence row and its link deleted, the whole chain recomputed."""
    order = _chain_order(ctx, ctx.run_id)
    victim, after = order[3], order[4]
    with ctx.unguarded(conn, EVIDENCE, CHAIN):
        conn.execute("delete from soxtrail.sox_evidence_chain where evidence_id = %s", (victim,))
        conn.execute("delete from soxtrail.sox_evidence where id = %s", (victim,))
        conn.execute(RECHAIN)
    return Tampered(ctx.run_id, [
        Finding("chain", victim, ("not in the database (the row was deleted)",)),
        Finding("chain", after, ("differs from the bundle's signed copy", "chain_hash"))])


def delete_grant_between_load_and_reconcile(conn: psycopg.Connection[Any],
                                            ctx: Copy) -> Tampered:
    """Done while run B ran (the baseline): its NO_TICKET GRANT's raw row deleted before
    reconcile, so the marts, the control evidence and the signed bundle all lack it."""
    locator = ctx.baseline.hidden_locator
    row = ctx.one("select id::text, raw_output_s3_key from soxtrail.sox_evidence"
                  " where run_id = %s and raw_output_s3_key like %s",
                  (ctx.baseline.hidden_run_id, "%/" + locator.rsplit(":", 1)[0]))
    return Tampered(ctx.baseline.hidden_run_id, [
        Finding("raw", f"{row['id']} {row['raw_output_s3_key']}",
                (f"raw.pgaudit_csvlog locator '{locator}' deleted", "load stats say"))],
        only=True)  # the control re-run agrees with marts built without the row


def change_unread_raw_row_and_delete_ticket(conn: psycopg.Connection[Any],
                                            ctx: Copy) -> Tampered:
    """An audit row no control reads changed, and a ticket row deleted (raw.tickets one row
    short of what the load stats say)."""
    audit = _object(ctx, "raw.pgaudit_csvlog", f"r.message !~* '{READ_BY_CONTROLS}'")
    ticket = _object(ctx, "raw.tickets")
    with ctx.unguarded(conn, "raw.pgaudit_csvlog", "raw.tickets"):
        changed = conn.execute("update raw.pgaudit_csvlog set application_name = 'forged'"
                               " where run_id = %s and evidence_id = %s and locator = %s",
                               (ctx.run_id, audit["evidence_id"], audit["locator"])).rowcount
        deleted = conn.execute("delete from raw.tickets where run_id = %s and evidence_id = %s"
                               " and locator = %s",
                               (ctx.run_id, ticket["evidence_id"], ticket["locator"])).rowcount
    assert (changed, deleted) == (1, 1)
    return Tampered(ctx.run_id, [
        Finding("raw", audit["evidence_id"],
                (f"raw.pgaudit_csvlog locator '{audit['locator']}' changed in application_name",
                 "'forged'")),
        Finding("raw", ticket["evidence_id"],
                (f"raw.tickets locator '{ticket['locator']}' deleted", "raw.tickets has",
                 "load stats say"))])


def edit_summary_then_render_and_bundle(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """fct_control_summary says AC-01 is EFFECTIVE; `render --run` and `bundle --run` on the
    completed run are refused (exit 2); `render --run --new-version --reason` writes bundle-v2
    from the edited summary, signed with the team's key."""
    _summary_says_ac01_is_effective(conn, ctx)
    _refused_on_the_completed_run(ctx, "render")
    _refused_on_the_completed_run(ctx, "bundle")
    result = ctx.cli("render", "--run", ctx.run_id, "--new-version", "--reason", "x", "--quiet")
    assert result.code == 0, result.stderr
    assert (ctx.bundle(version=2) / "MANIFEST.sha256.sig").is_file()
    return Tampered(ctx.run_id, [Finding("mart", f"{SUMMARY_ID} marts.{SUMMARY_MODEL}",
                                         ("the run's mart rows give",))])


def new_bundle_version_then_restore_summary(conn: psycopg.Connection[Any],
                                            ctx: Copy) -> Tampered:
    """As above with `bundle --run --new-version`, then the summary put back: every mart
    verifies, and bundle-v2's workbook says AC-01 is EFFECTIVE."""
    before = _summary_says_ac01_is_effective(conn, ctx)
    result = ctx.cli("bundle", "--run", ctx.run_id, "--new-version", "--reason", "x", "--quiet")
    assert result.code == 0, result.stderr
    _restore_summary(conn, ctx, before)
    return Tampered(ctx.run_id, [
        Finding("bundle", f"bundle-v2/report/{_workbook(ctx.bundle(version=2))}",
                ("differs from a re-render of the verified marts",)),
        Finding("bundle", "bundle-v2/run.json controls",
                ("differs from the verified summary mart", "controls[0]"))], only=True)


def edit_report_csv_and_resign(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """A report CSV edited (an EXCEPTION made a PASS), the bundle re-signed with the team's
    key: manifest and signature check out."""
    csv = ctx.bundle() / "report" / "AC-01.csv"
    csv.write_bytes(csv.read_bytes().replace(b"EXCEPTION", b"PASS", 1))
    ctx.resign(ctx.bundle())
    return Tampered(ctx.run_id, [
        Finding("bundle", "bundle/report/AC-01.csv",
                ("differs from a re-render of the verified marts",))], only=True)


def verify_against_another_runs_bundle(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """Run A verified against run B's signed bundle (`--bundle`)."""
    other = ctx.baseline.hidden_run_id
    return Tampered(ctx.run_id, [
        Finding("bundle", "run", (f"refused: the bundle is of run {other} ({QUARTER}), not of "
                                  f"run {ctx.run_id}",))], bundle=ctx.bundle(other), only=True)


def edit_report_printed_by_run(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """The workbook `run` printed as "report:" edited (its Summary says AC-01 is EFFECTIVE).
    It is the bundle's own copy: the store holds no report outside a bundle."""
    printed = ctx.baseline.report
    assert printed.parent == ctx.bundle() / "report", printed
    # raw objects may be workbooks too (returned access review files): evidence, not reports
    outside = [p for p in ctx.store.rglob("*.xlsx")
               if not p.parent.parent.name.startswith("bundle")
               and "raw" not in p.relative_to(ctx.store).parts]
    assert outside == []
    workbook = openpyxl.load_workbook(printed)
    sheet = workbook["Summary"]
    cells = [c for row in sheet.iter_rows() for c in row if c.value == "AC-01"]
    assert cells, "the Summary sheet names AC-01"
    row = cells[0].row
    edited = [c for c in sheet[row] if c.value == "EXCEPTIONS"]
    assert edited, [c.value for c in sheet[row]]
    edited[0].value = "EFFECTIVE"
    workbook.save(printed)
    return Tampered(ctx.run_id, [
        Finding("bundle", f"bundle/report/{printed.name}",
                ("differs from a re-render of the verified marts",)),
        Finding("bundle", f"report/{printed.name}", ("manifest ", ", file "))])


def point_store_row_at_forged_store(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """A forged copy of the store (an object changed), the evidence row's hash made to match
    it and the chain recomputed, `sox_runs.config._store` pointed at the forged copy."""
    obj = _object(ctx, "raw.catalog_roles")
    forged = ctx.baseline.home / "forged-store"
    shutil.copytree(ctx.store, forged)
    path = forged / obj["key"]
    path.write_bytes(path.read_bytes().replace(b"\n", b"\nforged,f,f,t,\n", 1))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with ctx.unguarded(conn, EVIDENCE, CHAIN, RUNS):
        conn.execute("update soxtrail.sox_evidence set result_hash = %s,"
                     " result_row_count = result_row_count + 1 where id = %s",
                     (digest, obj["evidence_id"]))
        conn.execute(RECHAIN)
        conn.execute("update soxtrail.sox_runs set config = jsonb_set(config, '{_store}',"
                     " to_jsonb(%s::text)) where id = %s", (str(forged), ctx.run_id))
    return Tampered(ctx.run_id, [
        Finding("object", obj["evidence_id"], (f"sha256 recorded {digest}, object ",)),
        Finding("chain", obj["evidence_id"], ("result_hash (signed",)),
        Finding("bundle", "origin", (f"sox_runs.config._store names {forged}, not the signed "
                                     "store (ignored)",), statuses=frozenset({"NOTE"}))])


def edit_run_json_summary_and_resign(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """run.json's control summary says AC-01 is EFFECTIVE with 0 exceptions, the bundle
    re-signed with the team's key (the summary the bundle states, beside the workbook)."""
    path = ctx.bundle() / "run.json"
    doc = json.loads(path.read_text())
    [ac01] = [c for c in doc["controls"] if c["control_id"] == "AC-01"]
    assert ac01["exceptions"] > 0
    ac01.update(exceptions=0, pass_rate="1.0000", result="EFFECTIVE")
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    ctx.resign(ctx.bundle())
    return Tampered(ctx.run_id, [Finding("bundle", "run.json")])


def edit_bundled_control_sql_and_resign(conn: psycopg.Connection[Any],
                                        ctx: Copy) -> Tampered:
    """The compiled SQL of AC-01 the bundle gives the auditor to read made to drop its
    exceptions, the bundle re-signed with the team's key (the database is untouched)."""
    path = next((ctx.bundle() / "queries" / "controls").glob(f"{AC01}_*.sql"))
    text = path.read_text().rstrip().rstrip(";")
    path.write_text(f"select * from ({text}) as shown where result = 'PASS'\n")
    ctx.resign(ctx.bundle())
    return Tampered(ctx.run_id, [Finding("bundle", f"queries/controls/{path.name}")])


# ---------------------------------------------------------------- caught before issue 17


def flip_a_byte_of_a_stored_object(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """One byte of a raw object in the store changed."""
    obj = _object(ctx, "raw.tickets")
    path = ctx.store / obj["key"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return Tampered(ctx.run_id, [Finding("object", f"{obj['evidence_id']} {obj['key']}",
                                         ("sha256 recorded",))])


def change_a_mart_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """An AC-01 exception made a PASS in its mart."""
    changed = conn.execute(
        f"update marts.{AC01} set result = 'PASS', exception_reasons = '{{}}' where item_key = ("
        f"select min(item_key) from marts.{AC01} where run_id = %s and result = 'EXCEPTION')"
        " and run_id = %s", (ctx.run_id, ctx.run_id)).rowcount
    assert changed == 1
    return Tampered(ctx.run_id, [Finding("mart", f"AC-01 marts.{AC01}",
                                         ("the run's mart rows give",))])


def _hide_exceptions_in_compiled_sql(conn: psycopg.Connection[Any], ctx: Copy) -> str:
    evidence_id = control_evidence_id(ctx.run_id, AC01)
    conn.execute("update soxtrail.sox_evidence set query_text = 'select * from ('"
                 " || rtrim(rtrim(query_text), ';') || ') as shown where result = ''PASS'''"
                 " where id = %s", (evidence_id,))
    return evidence_id


def edit_compiled_sql(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """AC-01's compiled SQL in its evidence row made to drop the exceptions (trigger off)."""
    with ctx.unguarded(conn, EVIDENCE):
        evidence_id = _hide_exceptions_in_compiled_sql(conn, ctx)
    return Tampered(ctx.run_id, [
        Finding("chain", evidence_id, ("the evidence row was changed",)),
        Finding("control", f"AC-01 {AC01} (evidence {evidence_id})",
                ("re-run of the compiled SQL gives",))])


def edit_compiled_sql_and_rechain(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """The same, and the whole chain recomputed."""
    with ctx.unguarded(conn, EVIDENCE, CHAIN):
        evidence_id = _hide_exceptions_in_compiled_sql(conn, ctx)
        conn.execute(RECHAIN)
    return Tampered(ctx.run_id, [
        Finding("chain", evidence_id, ("differs from the bundle's signed copy", "query_text")),
        Finding("control", f"AC-01 {AC01} (evidence {evidence_id})",
                ("re-run of the compiled SQL gives",))])


def delete_evidence_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """An evidence row and its link deleted (triggers off), the chain left as it is."""
    order = _chain_order(ctx, ctx.run_id)
    victim, after = order[5], order[6]
    with ctx.unguarded(conn, EVIDENCE, CHAIN):
        conn.execute("delete from soxtrail.sox_evidence_chain where evidence_id = %s", (victim,))
        conn.execute("delete from soxtrail.sox_evidence where id = %s", (victim,))
    return Tampered(ctx.run_id, [
        Finding("chain", victim, ("the row was deleted",)),
        Finding("chain", after, ("prev_hash",))])


def insert_evidence_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """An evidence row added to the completed run, with a correct link after the latest one
    (the run role keeps INSERT on evidence)."""
    source = _object(ctx, "raw.tickets")
    forged = str(uuid.uuid4())
    with ctx.unguarded(conn, EVIDENCE, CHAIN):
        conn.execute("insert into soxtrail.sox_evidence (id, run_id, source_system, query_name,"
                     " query_text, query_params, executed_at, executed_by, result_row_count,"
                     " result_hash, raw_output_s3_key) select %s, run_id, source_system,"
                     " query_name, query_text, query_params, executed_at, executed_by,"
                     " result_row_count, result_hash, raw_output_s3_key"
                     " from soxtrail.sox_evidence where id = %s", (forged, source["evidence_id"]))
        conn.execute(LINK, (forged,))
    return Tampered(ctx.run_id, [
        Finding("chain", forged, ("not in the bundle's anchor.json: added after the bundle",))])


def insert_raw_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """A superuser role added to the run's catalog rows (the run role keeps INSERT on raw)."""
    role = _object(ctx, "raw.catalog_roles")
    forged = role["locator"] + "0"
    conn.execute("insert into raw.catalog_roles select run_id, evidence_id, source_name,"
                 " cluster, %s, 'forged_admin', 'true', rolcreaterole, rolcanlogin,"
                 " rolvaliduntil from raw.catalog_roles where run_id = %s"
                 " and evidence_id = %s and locator = %s",
                 (forged, ctx.run_id, role["evidence_id"], role["locator"]))
    return Tampered(ctx.run_id, [
        Finding("raw", role["evidence_id"], (f"raw.catalog_roles locator '{forged}' added",))])


def change_load_stats_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """An object's load stats say one row fewer loaded and one more skipped."""
    ticket = _object(ctx, "raw.tickets")
    with ctx.unguarded(conn, LOAD_STATS):
        conn.execute("update soxtrail.sox_load_stats set records_loaded = records_loaded - 1,"
                     " records_skipped = records_skipped + 1"
                     " where run_id = %s and evidence_id = %s",
                     (ctx.run_id, ticket["evidence_id"]))
    return Tampered(ctx.run_id, [Finding("raw", ticket["evidence_id"], ("load stats say",))])


def delete_load_stats_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """An object's load stats row deleted."""
    ticket = _object(ctx, "raw.tickets")
    with ctx.unguarded(conn, LOAD_STATS):
        conn.execute("delete from soxtrail.sox_load_stats where run_id = %s"
                     " and evidence_id = %s", (ctx.run_id, ticket["evidence_id"]))
    return Tampered(ctx.run_id, [Finding("raw", ticket["evidence_id"],
                                         ("but no sox_load_stats row",))])


def _reject(ctx: Copy) -> dict[str, Any]:
    return ctx.one("select evidence_id::text, locator from soxtrail.sox_rejects"
                   " where run_id = %s order by locator limit 1", (ctx.run_id,))


def change_reject_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """The planted reject's reason rewritten."""
    reject = _reject(ctx)
    with ctx.unguarded(conn, REJECTS):
        conn.execute("update soxtrail.sox_rejects set reason = 'blank line'"
                     " where run_id = %s and locator = %s", (ctx.run_id, reject["locator"]))
    return Tampered(ctx.run_id, [
        Finding("raw", reject["evidence_id"],
                (f"reject at locator '{reject['locator']}'", "not in sox_rejects",
                 "sox_rejects has a reject at locator"))])


def delete_reject_row(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """The planted reject deleted."""
    reject = _reject(ctx)
    with ctx.unguarded(conn, REJECTS):
        conn.execute("delete from soxtrail.sox_rejects where run_id = %s and locator = %s",
                     (ctx.run_id, reject["locator"]))
    return Tampered(ctx.run_id, [
        Finding("raw", reject["evidence_id"],
                ("sox_rejects has 0 rejects, load stats say 1",
                 f"reject at locator '{reject['locator']}'"))])


def _set_status_back(conn: psycopg.Connection[Any], ctx: Copy, phase: str | None = None) -> None:
    """The completed run made running again: refused by the database (the owner meets the
    forward-only trigger; the run role has no UPDATE at all), so trigger off."""
    refusal = "immutable" if ctx.role.owner else "permission denied for table sox_runs"
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal):
        conn.execute("update soxtrail.sox_runs set status = 'running' where id = %s",
                     (ctx.run_id,))
    with ctx.unguarded(conn, RUNS):
        conn.execute("update soxtrail.sox_runs set status = 'running', finished_at = null,"
                     " phase_reached = coalesce(%s, phase_reached) where id = %s",
                     (phase, ctx.run_id))


def set_status_back_to_running(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """`sox_runs.status` from completed back to running (trigger off)."""
    _set_status_back(conn, ctx)
    return Tampered(ctx.run_id, [Finding(None, "", ("running",))])


def set_phase_back_and_delete_an_objects_rows(conn: psycopg.Connection[Any],
                                              ctx: Copy) -> Tampered:
    """The run set back to running at phase snapshot (trigger off), then every raw row and
    the load stats of one CloudTrail object no control reads (GetUser calls only) deleted."""
    victim = ctx.one(
        "select stats.evidence_id::text from soxtrail.sox_load_stats as stats"
        " where stats.run_id = %s and stats.raw_table = 'raw.iam_events'"
        " and stats.records_loaded > 0 and not exists (select from raw.iam_events as event"
        "  where event.evidence_id = stats.evidence_id"
        "  and (event.doc ->> 'eventName') is distinct from 'GetUser')"
        " order by stats.evidence_id limit 1", (ctx.run_id,))["evidence_id"]
    _set_status_back(conn, ctx, "snapshot")
    with ctx.unguarded(conn, "raw.iam_events", LOAD_STATS):
        conn.execute("delete from raw.iam_events where evidence_id = %s", (victim,))
        conn.execute("delete from soxtrail.sox_load_stats where evidence_id = %s", (victim,))
    return Tampered(ctx.run_id, [Finding("raw", victim)])


def set_status_back_and_rebundle(conn: psycopg.Connection[Any], ctx: Copy) -> Tampered:
    """The summary edited and the run made running again (trigger off): `render --run` and
    `bundle --run` are no longer refused; the store will not overwrite the first bundle, so
    its folder is deleted and written again from the edited summary (signed with the team's
    key, a new anchor of the same rows); the summary put back."""
    before = _summary_says_ac01_is_effective(conn, ctx)
    _set_status_back(conn, ctx)
    rendered = ctx.cli("render", "--run", ctx.run_id, "--quiet")
    assert rendered.code == 0, rendered.stderr
    refused = ctx.cli("bundle", "--run", ctx.run_id, "--quiet")
    assert refused.code == 3 and "refusing to overwrite store object" in refused.stderr, \
        refused.stderr
    shutil.rmtree(ctx.bundle())
    rewritten = ctx.cli("bundle", "--run", ctx.run_id, "--quiet")
    assert rewritten.code == 0, rewritten.stderr
    assert (ctx.bundle() / "MANIFEST.sha256.sig").is_file()
    _restore_summary(conn, ctx, before)
    return Tampered(ctx.run_id, [
        Finding("bundle", f"bundle/report/{_workbook(ctx.bundle())}",
                ("differs from a re-render of the verified marts",))])


ATTACKS = [
    pytest.param(rewrite_executed_by_and_rechain, id="rewrite-executed-by-and-rechain"),
    pytest.param(delete_evidence_row_and_rechain, id="delete-evidence-row-and-rechain"),
    pytest.param(delete_grant_between_load_and_reconcile,
                 id="delete-no-ticket-grant-between-load-and-reconcile"),
    pytest.param(change_unread_raw_row_and_delete_ticket,
                 id="change-unread-raw-row-and-delete-ticket-row"),
    pytest.param(edit_summary_then_render_and_bundle,
                 id="edit-summary-render-refused-then-new-version"),
    pytest.param(new_bundle_version_then_restore_summary,
                 id="edit-summary-new-bundle-version-then-restore-summary"),
    pytest.param(edit_report_csv_and_resign, id="edit-report-csv-and-resign-with-team-key"),
    pytest.param(verify_against_another_runs_bundle, id="verify-run-a-with-run-b-bundle"),
    pytest.param(edit_report_printed_by_run, id="edit-report-printed-by-run"),
    pytest.param(point_store_row_at_forged_store, id="point-store-row-at-forged-store"),
    pytest.param(edit_run_json_summary_and_resign,
                 id="edit-run-json-summary-and-resign-with-team-key"),
    pytest.param(edit_bundled_control_sql_and_resign,
                 id="edit-bundled-control-sql-and-resign-with-team-key"),
    pytest.param(flip_a_byte_of_a_stored_object, id="flip-a-byte-of-a-stored-object"),
    pytest.param(change_a_mart_row, id="change-a-mart-row"),
    pytest.param(edit_compiled_sql, id="edit-compiled-sql"),
    pytest.param(edit_compiled_sql_and_rechain, id="edit-compiled-sql-and-rechain"),
    pytest.param(delete_evidence_row, id="delete-evidence-row"),
    pytest.param(insert_evidence_row, id="insert-evidence-row-with-its-link"),
    pytest.param(insert_raw_row, id="insert-raw-row"),
    pytest.param(change_load_stats_row, id="change-load-stats-row"),
    pytest.param(delete_load_stats_row, id="delete-load-stats-row"),
    pytest.param(change_reject_row, id="change-reject-row"),
    pytest.param(delete_reject_row, id="delete-reject-row"),
    pytest.param(set_status_back_to_running, id="set-status-back-to-running"),
    pytest.param(set_phase_back_and_delete_an_objects_rows,
                 id="set-phase-back-and-delete-an-objects-raw-rows"),
    pytest.param(set_status_back_and_rebundle, id="set-status-back-and-rebundle"),
]

# Whose rights the attacks run with: the owner's (the admin that applied the schema), and the
# run role's of `soxtrail db init --run-role` (SELECT and INSERT on evidence, raw and load
# tables, its own marts, no trigger, ALTER, UPDATE or DELETE), which made the baseline runs
# (a role name unique per session: roles are server-wide). As the run role, an attack is
# refused with InsufficientPrivilege, or done with the rights it keeps and caught by verify.
RUN = Role("run", owner=False, login=f"soxtrail_tamper_run_{uuid.uuid4().hex[:10]}")
ROLES = [pytest.param(OWNER, id="owner"), pytest.param(RUN, id="run-role")]


# ---------------------------------------------------------------- the tests


def test_an_untouched_copy_verifies(baseline: Baseline) -> None:
    with fresh_copy(baseline, OWNER) as ctx:
        result = ctx.verify(ctx.run_id)
    assert result.code == 0, result.stdout + result.stderr
    checks = result.json()["checks"]
    assert not [c for c in checks if c["status"] not in ("OK", "NOTE")]
    # the copy is where the run was made: no origin note (only the store's lack of a lock)
    assert not [c for c in checks if c["status"] == "NOTE" and c["subject"] == "origin"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("attack", ATTACKS)
def test_verify_fails_naming_what_changed(baseline: Baseline, attack: Attack, role: Any) -> None:
    with fresh_copy(baseline, role) as ctx:
        try:
            with ctx.connect() as conn:
                tampered = attack(conn, ctx)
        except psycopg.errors.InsufficientPrivilege:
            if role.owner:
                raise
            return  # refused: the role lacks the right the attack needs
        result = ctx.verify(tampered.run_id, tampered.bundle)
    shown = "\n".join(
        f"{c['status']} {c['kind']} {c['subject']}  {c['detail']}"
        for c in (result.json()["checks"] if result.stdout.startswith("{") else [])
        if c["status"] != "OK") or result.stdout + result.stderr
    assert result.code == 1, f"verify passed (exit {result.code}):\n{shown}"
    checks = result.json()["checks"]
    missing = [str(f) for f in tampered.findings if not f.found_in(checks)]
    assert not missing, f"not named: {missing}\n{shown}"
    assert not tampered.unexpected(checks), f"failing beyond the findings:\n{shown}"
