"""A live source that fails during snapshot, then recovers, then goes down for good; and secrets.

The demo config plus a `jira-live` source against the fake Jira (tests/support/fake_services).
Everything here runs as a non-superuser login role that owns its database, with a password
in SOXTRAIL_DATABASE_URL, a bearer token from `${SOXTRAIL_CANARY}` and a literal token in the
Jira URL's query string: three canaries, grepped for in every artifact at the end.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from soxtrail.kernel.database import Database
from tests.conftest import ADMIN_URL, _with_dbname
from tests.reliability.checks import count, integrity_problems, run_row
from tests.reliability.conftest import QUARTER, SCOPE
from tests.support.cli import Result, soxtrail
from tests.support.debian import PG_BIN
from tests.support.fake_services import FakeServices

BEARER = "cnryB" + uuid.uuid4().hex
DSN_PASSWORD = "cnryD" + uuid.uuid4().hex
URL_TOKEN = "cnryU" + uuid.uuid4().hex
CANARIES = (BEARER, DSN_PASSWORD, URL_TOKEN)
SEARCH = "/rest/api/2/search"
FAULTS = ("down", "500", "hang", "truncate")


class Session:
    """The module's CLI calls (all output kept for the secrets check)."""

    def __init__(self, dsn: str, home: Path) -> None:
        self.dsn, self.home = dsn, home
        self.outputs: list[Result] = []

    def __call__(self, *args: str) -> Result:
        result = soxtrail(*args, home=self.home, database_url=self.dsn,
                          env={"SOXTRAIL_CANARY": BEARER,
                                                                "SOXTRAIL_URL_CANARY": URL_TOKEN})
        self.outputs.append(result)
        return result


@pytest.fixture(scope="module")
def app_db() -> Iterator[tuple[Database, str]]:
    """A non-superuser login role with a password, owning a new database: the pipeline's role."""
    role = f"soxtrail_app_{uuid.uuid4().hex[:8]}"
    name = f"soxtrail_relapp_{uuid.uuid4().hex[:8]}"
    ident = psycopg.sql.Identifier
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole"
                                      " password {}").format(ident(role),
                                                             psycopg.sql.Literal(DSN_PASSWORD)))
        admin.execute(psycopg.sql.SQL("create database {} owner {}").format(ident(name),
                                                                           ident(role)))
    params = psycopg.conninfo.conninfo_to_dict(_with_dbname(ADMIN_URL, name))
    host = params.get("host", "127.0.0.1")
    url = f"postgresql://{role}:{DSN_PASSWORD}@{host}:{params.get('port', 5432)}/{name}"
    try:
        yield Database(dsn=url, embedded=False), name
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(psycopg.sql.SQL("drop database if exists {} with (force)").format(
                ident(name)))
            admin.execute(psycopg.sql.SQL("drop role if exists {}").format(ident(role)))


@pytest.fixture(scope="module")
def fake(rel_demo: Path) -> Iterator[FakeServices]:
    page = json.loads(next((rel_demo / "jira").glob("*.json")).read_text())
    issues = []
    for number, issue in enumerate(page["issues"][:6]):  # new keys: no clash with the files
        issue = {**issue, "id": str(90000 + number), "key": f"LIVE-{number + 1}"}
        issues.append(issue)
    with FakeServices(token=BEARER, jira_max_results=2) as services:
        services.add_jira_issues(issues)
        yield services


@pytest.fixture(scope="module")
def live_config(rel_demo: Path, fake: FakeServices) -> Path:
    config = yaml.safe_load((rel_demo / "soxtrail.yml").read_text())
    demo_jira = next(s for s in config["sources"] if s["connector"] == "jira")
    config["sources"].append({
        "name": "jira-live", "system": "tickets", "connector": "jira",
        # a token in the query string (the path is appended after it: the fake still
        # sees /rest/api/2/search, with api_key among its parameters)
        "url": f"{fake.url}{SEARCH}?api_key=${{SOXTRAIL_URL_CANARY}}&x=",
        "jql": 'project = LIVE AND updated >= "{quarter_start}"',
        "auth": {"type": "bearer", "token": "${SOXTRAIL_CANARY}"},
        "api": "v2", "page_size": 2,
        "fields": demo_jira["fields"], "types": demo_jira["types"],
        "approved_statuses": demo_jira["approved_statuses"],
        "retry": {"attempts": 2, "budget_seconds": 10, "backoff_seconds": 0.05,
                  "backoff_max_seconds": 0.1, "connect_timeout_seconds": 1,
                  "read_timeout_seconds": 0.5},
    })
    path = rel_demo / "soxtrail-live.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def session(app_db: tuple[Database, str], tmp_path_factory: pytest.TempPathFactory) -> Session:
    return Session(app_db[0].dsn, tmp_path_factory.mktemp("home-live"))


def _objects_match(db: Database, home: Path, run_id: str) -> list[str]:
    """Evidence rows whose object is missing or differs from its hash."""
    with db.connect() as conn:
        rows = conn.execute("select raw_output_s3_key, result_hash from soxtrail.sox_evidence"
                            " where run_id = %s", (run_id,)).fetchall()
    bad = []
    for key, digest in rows:
        path = home / "store" / key
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(key)
    return bad


@pytest.fixture(scope="module")
def fault_runs(session: Session, live_config: Path, fake: FakeServices,
               app_db: tuple[Database, str]) -> dict[str, dict[str, Any]]:
    """Per fault: a run that fails in snapshot, then its snapshot once the source recovered."""
    db = app_db[0]
    seen: set[str] = set()
    out: dict[str, dict[str, Any]] = {}
    for fault in FAULTS:
        if fault == "down":
            fake.down()
        else:
            fake.inject(SEARCH, fault, times=1000, seconds=2.0)
        failed = session("run", "--quarter", QUARTER, "--config", str(live_config),
                         "--clusters", SCOPE, "--quiet")
        run_id = next(p.name for p in (session.home / "runs").iterdir() if p.name not in seen)
        seen.add(run_id)
        observed: dict[str, Any] = {
            "run_id": run_id, "failed": failed, "row": run_row(db, run_id),
            "evidence_after_failure": count(db, "select count(*) from soxtrail.sox_evidence"
                                            " where run_id = %s", run_id)}
        fake.clear_faults()
        fake.up()
        observed["snapshot"] = session("snapshot", "--run", run_id, "--quiet")
        observed["jira_pages"] = count(db, "select count(*) from soxtrail.sox_evidence where"
                                       " run_id = %s and query_params->>'source' = 'jira-live'"
                                       " and query_params->>'raw_table' = 'raw.tickets'",
                                       run_id)
        observed["bad_objects"] = _objects_match(db, session.home, run_id)
        out[fault] = observed
    return out


@pytest.fixture(scope="module")
def completed_after_outage(fault_runs: dict[str, dict[str, Any]], session: Session,
                           fake: FakeServices) -> dict[str, Any]:
    """The source goes down for good after the snapshot: the rest of the run needs none of it."""
    run_id = fault_runs["down"]["run_id"]
    fake.down()
    before = len(fake.requests)
    try:
        result = session("resume", run_id, "--json", "--quiet")
    finally:
        fake.up()
    assert result.code == 0, result.stderr
    return {"run_id": run_id, "result": result.json(), "requests": len(fake.requests) - before}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failing_source_fails_the_run_naming_it(fault: str,
                                                  fault_runs: dict[str, dict[str, Any]]) -> None:
    observed = fault_runs[fault]
    failed = observed["failed"]
    assert failed.code == 3, failed.stderr
    assert "jira-live" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert observed["row"]["status"] == "failed"
    assert observed["row"]["phase_reached"] is None
    assert "jira-live" in observed["row"]["error"]


@pytest.mark.parametrize("fault", FAULTS)
def test_a_failed_snapshot_leaves_no_evidence_row(fault: str,
                                                  fault_runs: dict[str, dict[str, Any]]) -> None:
    assert fault_runs[fault]["evidence_after_failure"] == 0


@pytest.mark.parametrize("fault", FAULTS)
def test_the_snapshot_completes_once_the_source_recovers(
        fault: str, fault_runs: dict[str, dict[str, Any]]) -> None:
    observed = fault_runs[fault]
    assert observed["snapshot"].code == 0, observed["snapshot"].stderr
    assert observed["jira_pages"] == 3  # 6 issues, 2 per page
    assert observed["bad_objects"] == []  # every row names a whole object with its hash


def test_after_the_snapshot_the_source_can_stay_down(completed_after_outage: dict[str, Any],
                                                     app_db: tuple[Database, str]) -> None:
    assert completed_after_outage["result"]["status"] == "completed"
    assert completed_after_outage["requests"] == 0  # load..bundle never called the source
    assert integrity_problems(app_db[0], completed_after_outage["run_id"]) == []
    live = count(app_db[0], "select count(*) from raw.tickets where run_id = %s"
                 " and source_name = 'jira-live'", completed_after_outage["run_id"])
    assert live == 6


def test_the_run_needs_no_superuser(completed_after_outage: dict[str, Any],
                                    app_db: tuple[Database, str]) -> None:
    with app_db[0].connect() as conn:
        user, is_super = conn.execute(
            "select current_user, rolsuper from pg_roles where rolname = current_user").fetchone()
        owners = {o for (o,) in conn.execute(
            "select distinct tableowner from pg_tables where schemaname in"
            " ('soxtrail', 'raw', 'marts')").fetchall()}
    assert not is_super
    assert owners == {user}


def _files_with(root: Path, needles: tuple[str, ...]) -> list[str]:
    hits = []
    raw = [n.encode() for n in needles]
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if any(n in data for n in raw):
            hits.append(str(path))
        if data[:2] == b"PK":  # xlsx and any zip: look inside
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if any(n in archive.read(member) for n in raw):
                        hits.append(f"{path}!{member}")
    return hits


def test_the_canaries_were_really_used(completed_after_outage: dict[str, Any],
                                       fake: FakeServices, session: Session) -> None:
    requests = fake.requests_to(SEARCH)
    assert any(r.headers.get("Authorization") == f"Bearer {BEARER}" for r in requests)
    assert any(URL_TOKEN in (r.param("api_key") or "") for r in requests)
    assert DSN_PASSWORD in session.dsn


def test_no_secret_in_any_file_of_the_run(completed_after_outage: dict[str, Any],
                                          session: Session) -> None:
    assert (session.home / "store").is_dir()
    assert any(session.home.rglob("*.xlsx"))
    assert _files_with(session.home, CANARIES) == []


def test_no_secret_in_any_output(completed_after_outage: dict[str, Any],
                                 session: Session) -> None:
    assert len(session.outputs) >= 9
    for result in session.outputs:
        for canary in CANARIES:
            assert canary not in result.stdout
            assert canary not in result.stderr


def test_no_secret_in_the_database(completed_after_outage: dict[str, Any],
                                   app_db: tuple[Database, str]) -> None:
    params = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    dump = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--data-only", "--host", params.get("host", "127.0.0.1"),
         "--port", str(params.get("port", 5432)), "--username", params.get("user", "postgres"),
         app_db[1]], capture_output=True, text=True, check=True, timeout=120).stdout
    # the references, not the values
    assert "${SOXTRAIL_CANARY}" in dump and "api_key=${SOXTRAIL_URL_CANARY}" in dump
    for canary in CANARIES:
        assert canary not in dump
