"""The tamper suite's machinery: a signed baseline kept as a template, a fresh copy of its
database and store per attack, an attacker's rights, and `soxtrail verify` on the copy."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from render import signing
from soxtrail.audit.verdict import FAILING
from soxtrail.kernel.database import Database
from tests.conftest import ADMIN_URL, _with_dbname
from tests.support.cli import Result, soxtrail

# Every link of the chain recomputed from the rows as they stand (all runs share one chain):
# what an owner does after rewriting evidence rows so that the database's own chain holds.
RECHAIN = """
do $$
declare
    link record;
    previous text := repeat('0', 64);
    recomputed text;
begin
    for link in
        select chain.seq, evidence.*
        from soxtrail.sox_evidence_chain as chain
        inner join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id
        order by chain.seq
    loop
        recomputed := encode(sha256(convert_to(previous || '|' || soxtrail.evidence_row_text(
            link.id, link.run_id, link.source_system, link.query_name, link.query_text,
            link.query_params, link.executed_at, link.executed_by, link.result_row_count,
            link.result_hash, link.raw_output_s3_key), 'UTF8')), 'hex');
        update soxtrail.sox_evidence_chain
        set prev_hash = previous, chain_hash = recomputed
        where seq = link.seq;
        previous := recomputed;
    end loop;
end $$
"""

# A link for an evidence row that has none, after the latest one, as the chain trigger
# would have written it: the forged row then sits in a chain the database finds consistent.
LINK = """
insert into soxtrail.sox_evidence_chain (evidence_id, prev_hash, chain_hash)
select evidence.id, latest.chain_hash,
    encode(sha256(convert_to(latest.chain_hash || '|' || soxtrail.evidence_row_text(
        evidence.id, evidence.run_id, evidence.source_system, evidence.query_name,
        evidence.query_text, evidence.query_params, evidence.executed_at, evidence.executed_by,
        evidence.result_row_count, evidence.result_hash, evidence.raw_output_s3_key),
        'UTF8')), 'hex')
from soxtrail.sox_evidence as evidence,
    (select chain_hash from soxtrail.sox_evidence_chain order by seq desc limit 1) as latest
where evidence.id = %s
"""


@dataclass(frozen=True)
class Role:
    """Whose rights an attack runs with."""

    name: str
    owner: bool  # owns the tables: may disable triggers, alter, update, delete
    login: str | None = None  # the role to log in as (None: the admin that owns the copy)

    def dsn(self, db: Database) -> str:
        """The copy's connection string as this role."""
        if self.login is None:
            return db.dsn
        params = psycopg.conninfo.conninfo_to_dict(db.dsn)
        params.pop("password", None)
        params["user"] = self.login
        return psycopg.conninfo.make_conninfo("", **params)


# The database owner (the superuser that applied the schema: `soxtrail db init --admin-url`).
# The run role (`--run-role`), which made the baseline runs, is tests/reliability/
# test_tamper.py's RUN: an attack as the run role must be refused (InsufficientPrivilege)
# or, with the rights the role keeps (INSERT, its marts, the files), still fail verify.
OWNER = Role("owner", owner=True)


@dataclass(frozen=True)
class Finding:
    """A failing check verify must report: its kind, a part of its subject and its detail."""

    kind: str | None  # None: any kind
    subject: str = ""
    detail: Sequence[str] = ()
    statuses: frozenset[str] = FAILING

    def found_in(self, checks: list[dict[str, str]]) -> bool:
        """True when one check of verify's --json output is this finding."""
        return any(c["status"] in self.statuses and self.kind in (None, c["kind"])
                   and self.subject in c["subject"]
                   and all(part in c["detail"] for part in self.detail) for c in checks)

    def __str__(self) -> str:
        return f"{'|'.join(sorted(self.statuses))} {self.kind or '*'} ~{self.subject!r} " \
               f"with {list(self.detail)!r}"


@dataclass
class Tampered:
    """What an attack leaves for verify: which run, which bundle, what verify must name."""

    run_id: str
    findings: list[Finding]
    bundle: Path | None = None  # verify --bundle
    only: bool = False  # every failing check is one of the findings (one defence catches it)

    def unexpected(self, checks: list[dict[str, str]]) -> list[dict[str, str]]:
        """The failing checks that are none of the findings (only=True: none may be)."""
        if not self.only:
            return []
        return [c for c in checks if c["status"] in FAILING
                and not any(f.found_in([c]) for f in self.findings)]


@dataclass
class Baseline:
    """Two signed one-cluster demo runs, kept as a template database and a template home.

    `database` is the name the runs were made in: the stored control SQL names it, so every
    copy gets that name (CREATE DATABASE <database> TEMPLATE <template>) and re-runs as made.
    The home (the store inside it) is copied to the same path for the same reason: the signed
    anchor records the store's path.
    """

    database: str
    template: str
    root: Path
    quarter: str
    run_id: str  # run A: a clean run, one reject planted in its audit log
    hidden_run_id: str  # run B: a GRANT's raw row deleted between its load and reconcile
    hidden_locator: str
    report: Path  # what `run` printed as "report:" for run A
    key: Path  # the team's signing key
    public_key: Path  # the auditor's pinned copy of its public half

    @property
    def home(self) -> Path:
        """SOXTRAIL_HOME of the runs and of every copy (the store is home/store)."""
        return self.root / "home"

    @property
    def home_template(self) -> Path:
        """The baseline's home as the runs left it."""
        return self.root / "home-template"


@dataclass
class Copy:
    """One attack's fresh copy of the baseline (the `ctx` every attack gets)."""

    baseline: Baseline
    db: Database  # the copy, reached with the admin's (owner's) rights
    role: Role

    @property
    def run_id(self) -> str:
        """Run A, the clean signed run most attacks aim at."""
        return self.baseline.run_id

    @property
    def store(self) -> Path:
        """The copy's store folder (at the path the signed anchor records)."""
        return self.baseline.home / "store"

    def bundle(self, run_id: str | None = None, version: int = 1) -> Path:
        """A bundle version of a run (default: run A's first)."""
        name = "bundle" if version == 1 else f"bundle-v{version}"
        return self.store / self.baseline.quarter / (run_id or self.run_id) / name

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the copy with the attacker's role's rights."""
        return psycopg.connect(self.role.dsn(self.db), autocommit=True)

    @contextmanager
    def unguarded(self, conn: psycopg.Connection[Any], *tables: str) -> Iterator[None]:
        """The tables' triggers off while the block runs (append-only, chain, forward-only),
        back on after, as an owner covering their tracks does: nothing the next run checks
        looks changed."""
        for table in tables:
            conn.execute(sql.SQL("alter table {} disable trigger user").format(
                sql.Identifier(*table.split("."))))
        try:
            yield
        finally:
            for table in tables:
                conn.execute(sql.SQL("alter table {} enable trigger user").format(
                    sql.Identifier(*table.split("."))))

    def one(self, query: str, params: Sequence[Any] = ()) -> dict[str, Any]:
        """The first row of a query on the copy (as the admin: the attacker's reconnaissance)."""
        with self.db.connect() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            row = cur.fetchone()
        assert row is not None, query
        return row

    def cli(self, *args: str) -> Result:
        """`soxtrail ARGS` on the copy as the attacker, with the team's signing key."""
        return soxtrail(*args, home=self.baseline.home, database_url=self.role.dsn(self.db),
                        env={"SOXTRAIL_SIGNING_KEY": str(self.baseline.key)})

    def resign(self, bundle: Path) -> None:
        """Re-hash the bundle's manifest for its files as they are now and sign it with the
        team's key (what an insider holding the key can do)."""
        lines = []
        for line in (bundle / "MANIFEST.sha256").read_text().splitlines():
            _, name = line.split("  ", 1)
            lines.append(f"{hashlib.sha256((bundle / name).read_bytes()).hexdigest()}  {name}\n")
        manifest = "".join(lines).encode()
        (bundle / "MANIFEST.sha256").write_bytes(manifest)
        key = signing.load_private_key(self.baseline.key)
        (bundle / "MANIFEST.sha256.sig").write_bytes(signing.sign(key, manifest))

    def verify(self, run_id: str, bundle: Path | None = None) -> Result:
        """The auditor's `soxtrail verify RUN --public-key … --require-signature --json`."""
        args = ["verify", run_id, "--public-key", str(self.baseline.public_key),
                "--require-signature", "--json"]
        if bundle is not None:
            args += ["--bundle", str(bundle)]
        return soxtrail(*args, home=self.baseline.home, database_url=self.db.dsn)


def admin() -> psycopg.Connection[Any]:
    """An autocommit connection to the server's maintenance database."""
    return psycopg.connect(ADMIN_URL, autocommit=True)


def drop_database(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop a database, ending its sessions first."""
    conn.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                 " where datname = %s and pid <> pg_backend_pid()", (name,))
    conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def keep_as_template(baseline: Baseline) -> None:
    """Rename the runs' database and home to their template names (nothing is connected)."""
    with admin() as conn:
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                     " where datname = %s and pid <> pg_backend_pid()", (baseline.database,))
        conn.execute(sql.SQL("alter database {} rename to {}").format(
            sql.Identifier(baseline.database), sql.Identifier(baseline.template)))
    baseline.home.rename(baseline.home_template)


@contextmanager
def fresh_copy(baseline: Baseline, role: Role) -> Iterator[Copy]:
    """The baseline's database and home copied under their original names; dropped after."""
    with admin() as conn:
        drop_database(conn, baseline.database)
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity"
                     " where datname = %s", (baseline.template,))
        conn.execute(sql.SQL("create database {} template {}").format(
            sql.Identifier(baseline.database), sql.Identifier(baseline.template)))
    shutil.rmtree(baseline.home, ignore_errors=True)
    shutil.copytree(baseline.home_template, baseline.home, symlinks=True)
    db = Database(dsn=_with_dbname(ADMIN_URL, baseline.database), embedded=False)
    try:
        yield Copy(baseline, db, role)
    finally:
        with admin() as conn:
            drop_database(conn, baseline.database)
        shutil.rmtree(baseline.home, ignore_errors=True)


@contextmanager
def append_only_off(db: Database, table: str) -> Iterator[psycopg.Connection[Any]]:
    """An attacker with the owner's rights: `table`'s append-only trigger disabled (an
    autocommit connection to change rows with), then enabled again."""
    with db.connect() as conn:
        conn.autocommit = True
        conn.execute(sql.SQL("alter table {} disable trigger append_only").format(
            sql.Identifier(*table.split("."))))
        try:
            yield conn
        finally:
            conn.execute(sql.SQL("alter table {} enable trigger append_only").format(
                sql.Identifier(*table.split("."))))
