"""One demo quarter run per test process, lent to each module that asks for it.

A full demo run of 2024Q3 takes 20-30 s; a dozen modules only need *a* completed run to
read, verify, export or tamper with. The `demo_run` fixture (tests/conftest.py) gives each
such module a completed run it may change at will, made once per xdist worker:

    def test_something(demo_run: DemoRun) -> None:
        result = soxtrail("verify", demo_run.run_id, home=demo_run.home,
                          database_url=demo_run.db.dsn)

What the module gets is exactly what this command leaves behind on a fresh machine:

    soxtrail run --quarter 2024Q3 --config <demo>/soxtrail.yml --json --quiet

in a new bootstrapped database (no SOXTRAIL_SIGNING_KEY, no CI: the run creates the home's
machine key, `home/keys/signing-key.pem`, and signs with it). `DemoRun.summary` is that
command's --json output.

How it is lent (check-out, restore): the run is made once into database N with its estate
and SOXTRAIL_HOME under folder W, then copied aside (`CREATE DATABASE N_p TEMPLATE N`, a copy
of W). A module works on N and W themselves: the names and absolute paths the run recorded
(the store path in `sox_runs.config`, the database named in the compiled control SQL that
`verify` re-runs, the estate's paths in evidence parameters) are the real ones, so nothing a
module does can trip on a copy's different name. When the module is done, N and W are
thrown away and put back from the pristine copies (well under a second), so no module ever
sees what another one did. Modules run one after another in a worker (`--dist loadfile`),
which is what makes the check-out exclusive; the fixture refuses a second check-out while
one is open.

Use it when the module needs a completed default demo run and nothing about how the run
was made (its flags, environment, signing key, config) is what the module tests. Keep a
module's own `soxtrail run` when the run itself is under test (kill/resume, concurrency,
backends, captures, first-run behaviour) or when it needs another config or environment.
"""

from __future__ import annotations

import copy
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from extract.demo import generate
from soxtrail.kernel.database import Database, bootstrap
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.store import LocalStore
from tests.support.cli import soxtrail

QUARTER = "2024Q3"


def with_dbname(url: str, dbname: str) -> str:
    """`url` pointing at database `dbname` on the same server."""
    params = psycopg.conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**params)


@dataclass(frozen=True)
class DemoRun:
    """A completed demo run of 2024Q3 that the current module may change at will."""

    run_id: str
    summary: dict[str, Any] = field(repr=False)  # the run's --json output
    demo: Path  # the estate (extract.demo.generate)
    home: Path  # SOXTRAIL_HOME of the run (store/, keys/, runs/)
    db: Database

    @property
    def quarter(self) -> str:
        return QUARTER

    @property
    def config(self) -> Path:
        return self.demo / "soxtrail.yml"

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.home / "store")

    @property
    def signing_key(self) -> Path:
        """The private key the run signed its bundle with (created by the run)."""
        return self.home / "keys" / "signing-key.pem"

    @property
    def public_key(self) -> Path:
        return self.home / "keys" / "signing-key.pub"


class DemoQuarter:
    """The per-process demo run, its pristine copies, and the check-out protocol."""

    def __init__(self, admin_url: str, root: Path) -> None:
        self.admin_url = admin_url
        self.name = f"soxtrail_demo_{uuid.uuid4().hex[:12]}"
        self.pristine_name = f"{self.name}_p"
        self.work = root / "work"
        self.pristine = root / "pristine"
        self._run: DemoRun | None = None
        self._failed: str | None = None
        self._out = False

    def _admin(self, *statements: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            for statement in statements:
                admin.execute(statement)  # type: ignore[arg-type]

    def _make(self) -> DemoRun:
        demo, home = self.work / "demo", self.work / "home"
        generate(demo, Quarter.parse(QUARTER))
        self._admin(f'create database "{self.name}"')
        db = Database(dsn=with_dbname(self.admin_url, self.name), embedded=False)
        bootstrap(db)
        result = soxtrail("run", "--quarter", QUARTER, "--config", str(demo / "soxtrail.yml"),
                          "--json", "--quiet", home=home, database_url=db.dsn)
        assert result.code == 0, result.stderr
        summary = result.json()
        assert summary["status"] == "completed", summary
        self._admin(f'create database "{self.pristine_name}" template "{self.name}"')
        shutil.copytree(self.work, self.pristine, symlinks=True)
        return DemoRun(str(summary["run_id"]), summary, demo, home, db)

    def _restore(self) -> None:
        self._admin(f'drop database if exists "{self.name}" with (force)',
                    f'create database "{self.name}" template "{self.pristine_name}"')
        shutil.rmtree(self.work)
        shutil.copytree(self.pristine, self.work, symlinks=True)

    @contextmanager
    def checkout(self) -> Iterator[DemoRun]:
        """The run, for one module; put back as it was on exit."""
        assert not self._out, "the demo run is already checked out (modules run one at a time)"
        if self._failed is not None:  # fail each later module at once, naming the cause
            raise AssertionError(f"the shared demo run failed earlier: {self._failed}")
        if self._run is None:
            try:
                self._run = self._make()
            except BaseException as error:
                self._failed = f"{type(error).__name__}: {error}"[:4000]
                raise
        self._out = True
        try:
            yield DemoRun(self._run.run_id, copy.deepcopy(self._run.summary), self._run.demo,
                          self._run.home, self._run.db)
        finally:
            self._restore()
            self._out = False

    def drop(self) -> None:
        """Drop both databases (end of the session)."""
        self._admin(f'drop database if exists "{self.name}" with (force)',
                    f'drop database if exists "{self.pristine_name}" with (force)')
