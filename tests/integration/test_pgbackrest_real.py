"""pgbackrest_info against real pgBackRest: a PG15 cluster, a full and an incremental backup."""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from extract.connectors import pgbackrest_info
from extract.loader import copy_object
from extract.snapshot import SnapshotRun
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Source
from soxtrail.kernel.store import LocalStore
from tests.support.debian import Cluster, chown_postgres, ensure_packages, postgres_scratch
from tests.support.runs import running

pytestmark = pytest.mark.integration

STANZA = "fin"


@dataclass
class Repo:
    """A pgBackRest repository holding backups of one stanza."""

    config: Path
    started: float
    finished: float


@pytest.fixture(scope="module")
def repo() -> Iterator[Repo]:
    ensure_packages("postgresql-15", "pgbackrest")
    with postgres_scratch("pgbackrest") as root:
        yield from _backups(root)


def _backups(root: Path) -> Iterator[Repo]:
    backrest = root / "backrest"
    for folder in ("repo", "log", "lock", "spool"):
        (backrest / folder).mkdir(parents=True)
    cluster = Cluster(root / "pg")
    config = backrest / "pgbackrest.conf"
    config.write_text(
        "[global]\n"
        f"repo1-path={backrest / 'repo'}\n"
        f"log-path={backrest / 'log'}\n"
        f"lock-path={backrest / 'lock'}\n"
        f"spool-path={backrest / 'spool'}\n"
        "log-level-console=warn\n"
        "start-fast=y\n"
        "compress-type=none\n"
        f"[{STANZA}]\n"
        f"pg1-path={cluster.data}\n"
        f"pg1-socket-path={cluster.socket_dir}\n"
        f"pg1-port={cluster.port}\n"
    )
    for path in (backrest, *backrest.iterdir()):
        chown_postgres(path)
    cluster.settings.update({
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"'pgbackrest --config={config} --stanza={STANZA} archive-push %p'",
    })
    cluster.start()
    try:
        pgbackrest = ["pgbackrest", f"--config={config}", f"--stanza={STANZA}"]
        cluster.run([*pgbackrest, "stanza-create"])
        started = time.time()
        cluster.run([*pgbackrest, "--type=full", "backup"])
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("create table changed as select generate_series(1, 1000) as n")
        cluster.run([*pgbackrest, "--type=incr", "backup"])
        finished = time.time()
    finally:
        cluster.stop()
    yield Repo(config, started, finished)


def test_backups_come_out_of_pgbackrest_info(tmp_path: Path, repo: Repo,
                                             pg_database: Database) -> None:
    binary = shutil.which("pgbackrest")
    assert binary is not None
    run = SnapshotRun(run_id=str(uuid.uuid4()), quarter=Quarter.parse("2024Q3"),
                      executed_by="ci", store=LocalStore(tmp_path / "store"),
                      spool_dir=tmp_path / "spool")
    source = Source(name="backrest", system="backups", connector="pgbackrest_info",
                    values={"command": [binary, f"--config={repo.config}", "info",
                                        "--output=json"],
                            "stanza_cluster": {STANZA: "pg-fin-01"}})
    pgbackrest_info.snapshot(source, run)
    record, statement = run.records
    assert statement.query_name == "completeness"
    # the real listing is read for retention: backups made today are long after 2024Q3 began
    doc = json.loads(run.store.fetch(statement.raw_output_s3_key, tmp_path).read_bytes())
    assert [f["code"] for f in doc["findings"]] == ["RETENTION_SHORTER_THAN_QUARTER"]
    assert doc["facts"]["stanzas"][STANZA]["backups"] == 2 == doc["captured"]
    assert record.result_row_count == 2
    assert record.query_text == f"{binary} --config={repo.config} info --output=json"
    stored = run.store.fetch(record.raw_output_s3_key, tmp_path)
    assert stored.read_bytes().lstrip().startswith(b"[")
    items = list(pgbackrest_info.load(record.query_params, stored))
    assert all(isinstance(i, RawRow) for i in items)
    assert [i.locator for i in items] == ["pgbackrest_info.json#0.0", "pgbackrest_info.json#0.1"]
    full, incr = (i.values[0] for i in items)  # type: ignore[union-attr]
    assert full["stanza"] == incr["stanza"] == STANZA
    assert full["backup"]["type"] == "full" and incr["backup"]["type"] == "incr"
    assert re.fullmatch(r"\d{8}-\d{6}F", full["backup"]["label"])
    assert re.fullmatch(re.escape(full["backup"]["label"]) + r"_\d{8}-\d{6}I",
                        incr["backup"]["label"])
    assert incr["backup"]["prior"] == full["backup"]["label"]
    for backup in (full["backup"], incr["backup"]):
        start, stop = backup["timestamp"]["start"], backup["timestamp"]["stop"]
        assert repo.started - 1 <= start <= stop <= repo.finished + 1
        assert backup["error"] is False
    assert list(pgbackrest_info.settings(source)) == [("stanza_cluster", STANZA, "pg-fin-01")]
    with pg_database.connect() as conn:
        running(conn, run.run_id)
        counts = copy_object(conn, run_id=run.run_id, evidence_id=record.id,
                             params=record.query_params, path=stored)
        conn.commit()
        labels = conn.execute("select doc -> 'backup' ->> 'label' from raw.backups"
                              " where run_id = %s order by locator", (run.run_id,)).fetchall()
    assert (counts.loaded, counts.rejected) == (2, 0)
    assert [label for (label,) in labels] == [full["backup"]["label"], incr["backup"]["label"]]
