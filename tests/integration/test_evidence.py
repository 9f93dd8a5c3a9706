"""Canonical results on PostgreSQL: both forms, the mart and the compiled SQL, and verify."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest

from soxtrail.audit import verify
from soxtrail.kernel import canonical, evidence
from soxtrail.kernel.database import Database

pytestmark = pytest.mark.integration

MODEL = "fct_control_zz__canonical_probe"
COMPILED = f"select * from marts.{MODEL} where run_id = '{{run}}' and coalesce(note, '') <> '100%'"


@dataclass(frozen=True)
class Probe:
    """A database with one run and a small mart holding every column type of the marts."""

    db: Database
    run_id: str


@pytest.fixture(scope="module")
def probe(pg_database: Database) -> Iterator[Probe]:
    run_id, other_run = "3f1c7a52-0000-4000-8000-000000000001", str(uuid.uuid4())
    with pg_database.connect() as conn:
        for run in (run_id, other_run):
            conn.execute(
                "insert into soxtrail.sox_runs (id, quarter, config, config_hash, tool_version,"
                " triggered_by) values (%s, '2024Q3', '{}', 'x', 'test', 'tester')", (run,))
        conn.execute("create schema if not exists marts")
        conn.execute(f"""
            create table marts.{MODEL} (
                run_id uuid, item_key text, happened_at timestamptz, hours numeric,
                is_ok bool, reasons text[], refs uuid[], day date, n int4, note text
            )""")
        conn.execute(f"""
            insert into marts.{MODEL} values
            (%(run)s, 'b', '2024-07-01 14:30:05.5+02', 1.50, true, '{{}}',
             '{{3f1c7a52-0000-4000-8000-0000000000ff}}', '2024-07-01', 7, 'plain'),
            (%(run)s, 'B', null, 0.0000001, false, '{{"x y",NULL}}', null, null, null,
             'quote " and
newline'),
            (%(run)s, 'É', '2024-12-31 23:00:00-05', 12.000, null, null, '{{}}',
             '2024-12-31', -1, 'Zürich'),
            (%(run)s, 'a', '2024-07-01 00:00:00+00', null, true, '{{AC01_LATE}}', null,
             null, 0, null),
            (%(other)s, 'a', now(), 1, true, null, null, null, 0, 'another run')
            """, {"run": run_id, "other": other_run})
        conn.commit()
    yield Probe(pg_database, run_id)


EXPECTED_V2 = "\n".join([
    '{"run_id":"3f1c7a52-0000-4000-8000-000000000001","item_key":"B","happened_at":null,'
    '"hours":0.0000001,"is_ok":false,"reasons":["x y",null],"refs":null,"day":null,'
    '"n":null,"note":"quote \\" and\\nnewline"}',
    '{"run_id":"3f1c7a52-0000-4000-8000-000000000001","item_key":"a",'
    '"happened_at":"2024-07-01T00:00:00.000000Z","hours":null,"is_ok":true,'
    '"reasons":["AC01_LATE"],"refs":null,"day":null,"n":0,"note":null}',
    '{"run_id":"3f1c7a52-0000-4000-8000-000000000001","item_key":"b",'
    '"happened_at":"2024-07-01T12:30:05.500000Z","hours":1.50,"is_ok":true,"reasons":[],'
    '"refs":["3f1c7a52-0000-4000-8000-0000000000ff"],"day":"2024-07-01","n":7,'
    '"note":"plain"}',
    '{"run_id":"3f1c7a52-0000-4000-8000-000000000001","item_key":"É",'
    '"happened_at":"2025-01-01T04:00:00.000000Z","hours":12.000,"is_ok":null,"reasons":null,'
    '"refs":[],"day":"2024-12-31","n":-1,"note":"Zürich"}',
])


def _mart(probe: Probe, version: int) -> tuple[canonical.Canonical, bytes]:
    chunks: list[bytes] = []
    with probe.db.connect() as conn:
        conn.execute("set time zone 'America/New_York'")  # the session's zone changes nothing
        result = canonical.mart_result(conn, "marts", MODEL, probe.run_id, version=version,
                                      sink=chunks.append)
    return result, b"".join(chunks)


def test_version_2_is_the_documented_encoding_in_binary_item_key_order(probe: Probe) -> None:
    result, text = _mart(probe, 2)
    assert text.decode("utf-8") == EXPECTED_V2
    assert result == canonical.Canonical(hashlib.sha256(text).hexdigest(), 4)


def test_version_1_is_row_to_json_as_runs_before_version_2_recorded_it(probe: Probe) -> None:
    with probe.db.connect() as conn:
        conn.execute("set time zone 'UTC'")
        lines = [line for (line,) in conn.execute(
            f"select row_to_json(t)::text from marts.{MODEL} as t "  # the query of version 1
            'where t.run_id = %s order by t.item_key collate "C"', (probe.run_id,))]
    result, text = _mart(probe, 1)
    assert text.decode("utf-8") == "\n".join(lines)
    assert result == canonical.Canonical(hashlib.sha256(text).hexdigest(), 4)
    assert result.sha256 != _mart(probe, 2)[0].sha256


@pytest.mark.parametrize("version", [1, 2])
def test_the_compiled_sql_and_the_mart_hash_alike(probe: Probe, version: int) -> None:
    with probe.db.connect() as conn:
        rerun = canonical.sql_result(conn, COMPILED.format(run=probe.run_id) + ";\n",
                                    version=version)
    assert rerun == _mart(probe, version)[0]


def _control_row(probe: Probe, version: int | None, result: canonical.Canonical,
                 model: str = MODEL) -> str:
    params = evidence.control_params(
        control_id="ZZ-01", model=model, unique_id=f"model.soxtrail.{model}",
        checksum="0" * 64, git_commit=None, variables={}, canonical=version or 1)
    if version is None:  # recorded before the canonical form had a version
        del params[evidence.CANONICAL_KEY]
    row = evidence.EvidenceRow(
        id=str(uuid.uuid4()), run_id=probe.run_id, source_system=evidence.RECONCILE,
        query_name=evidence.control_query_name(f"model.soxtrail.{model}", "0" * 64),
        query_text=COMPILED.format(run=probe.run_id), query_params=params,
        executed_at=datetime.now(timezone.utc), executed_by="tester",
        result_row_count=result.row_count, result_hash=result.sha256,
        raw_output_s3_key=f"2024Q3/{probe.run_id}/reconcile/{model}.jsonl")
    with probe.db.connect() as conn:
        evidence.insert_rows(conn, [row])
        conn.commit()
    return row.id


def test_a_run_hashed_with_version_1_still_verifies_and_version_2_rows_use_2(
        probe: Probe) -> None:
    v1, v2 = _mart(probe, 1)[0], _mart(probe, 2)[0]
    legacy = _control_row(probe, None, v1)
    current = _control_row(probe, 2, v2)
    mislabelled = _control_row(probe, 2, v1)  # a version 1 hash claimed as version 2
    with probe.db.connect() as conn:
        conn.read_only = True
        rows = {str(row["id"]): row for row in verify.evidence_rows(conn, probe.run_id)}
        verdicts = {evidence_id: [(v.status, v.kind) for v in verify.check_control(conn, row)]
                    for evidence_id, row in rows.items()}
        chain = [verify.check_chain(row).status for row in rows.values()]
    assert verdicts[legacy] == [("OK", "control"), ("OK", "mart")]
    assert verdicts[current] == [("OK", "control"), ("OK", "mart")]
    assert verdicts[mislabelled] == [("MISMATCH", "control"), ("MISMATCH", "mart")]
    assert chain == ["OK", "OK", "OK"]
