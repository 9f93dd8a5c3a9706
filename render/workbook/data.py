"""What the workbook shows, read from the database: the run, its controls' marts and evidence."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from soxtrail.kernel import evidence
from soxtrail.kernel.controls import (
    COMPLETENESS,
    CONTROLS,
    MARTS_SCHEMA,
    POPULATIONS,
    REGISTERS,
    SUMMARY_MODEL,
)
from soxtrail.kernel.errors import PipelineError

SUMMARY_TABLE = SUMMARY_MODEL
# every population a row's absence claim searched, one row per evidence object (issue 19)
SEARCHED_TABLE = next(iter(POPULATIONS.values()), "")  # the registry's kind `population`
SEARCHED_ORDER = ("population_key", "evidence_id")
# the exceptions register: one row per exception across the controls (the registry's kind
# `register`), with management's response
REGISTER_TABLE = next(iter(REGISTERS.values()), "")
# the run config's record of how its bundle is signed (render.signing.signing_record)
SIGNING_KEY = "_signing"

# Columns of the Queries sheet: one row per line of each control's compiled SQL.
QUERY_COLUMNS: dict[str, str] = {
    "control_id": "text", "control_name": "text", "model": "text", "query_name": "text",
    "evidence_id": "uuid", "line": "int4", "sql": "text",
}
# Extra evidence columns joined from the hash chain.
CHAIN_COLUMNS: dict[str, str] = dict(evidence.CHAIN_COLUMN_TYPES)


class RenderError(PipelineError):
    """The run's data cannot be rendered (missing run, mart or summary row)."""


def control_marts() -> dict[str, str]:
    """Control id -> mart table of every registered control, in control-id (sheet) order, then
    the completeness marts (their sheets follow the controls')."""
    return {**dict(sorted(CONTROLS.items())), **COMPLETENESS}


def control_id_of(table: str) -> str | None:
    """A control or completeness mart's table name -> its id (e.g. `AC-01`); None for other
    tables."""
    return next((control for control, model in {**CONTROLS, **COMPLETENESS}.items()
                 if model == table), None)


def _columns_of(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, udt_name from information_schema.columns "
        "where table_schema = %s and table_name = %s order by ordinal_position",
        (schema, table)).fetchall()
    return {name: udt for name, udt in rows}


def fetch_run(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """The sox_runs row of `run_id` as a dict; RenderError when there is none."""
    with conn.cursor() as cur:
        cur.execute("select * from soxtrail.sox_runs where id = %s", (run_id,))
        row = cur.fetchone()
        if row is None:
            raise RenderError(f"run {run_id} not found in soxtrail.sox_runs")
        names = [d.name for d in cur.description or ()]
    return dict(zip(names, row, strict=True))


@dataclass
class RunData:
    """Everything about a run the workbook needs before its rows are streamed."""

    run: dict[str, Any]
    marts: dict[str, str]  # control id -> table
    summary: dict[str, dict[str, Any]]  # control id -> summary row
    available: dict[str, dict[str, str]]
    control_sql: dict[str, tuple[str, str, str | None, str | None]]  # id -> (model, evid, qn, sql)
    clusters: list[str] = field(default_factory=list)  # the clusters the controls tested
    searched_counts: list[tuple[str, int]] = field(default_factory=list)  # key -> rows, in order
    # the exceptions register's tallies (rows, exceptions, without_response, waived, expired,
    # recurring, resolved); empty when the run has no register
    register: dict[str, int] = field(default_factory=dict)

    @property
    def signing(self) -> dict[str, Any]:
        """How the run's bundle is signed, as its config records it: `state` (signed,
        unsigned or unknown: not recorded) and the key's `fingerprint`."""
        return signing_of(self.run)


def signing_of(run: Mapping[str, Any]) -> dict[str, Any]:
    """`{"state": "signed"|"unsigned"|"unknown", "fingerprint": str|None}` from the run's
    config (`_signing`, written by render.signing.signing_record when the run starts)."""
    config = run.get("config")
    record = config.get(SIGNING_KEY) if isinstance(config, Mapping) else None
    if not isinstance(record, Mapping) or not isinstance(record.get("signed"), bool):
        return {"state": "unknown", "fingerprint": None}
    fingerprint = record.get("fingerprint")
    if record["signed"] and isinstance(fingerprint, str) and fingerprint:
        return {"state": "signed", "fingerprint": fingerprint}
    return {"state": "unsigned", "fingerprint": None}


def load_run_data(conn: psycopg.Connection[Any], run_id: str,
                  schema: str = MARTS_SCHEMA) -> RunData:
    """The run, its summary rows, each control's columns and compiled SQL; RenderError if absent.

    The controls are the registry's (`soxtrail.kernel.controls`), in control-id order.
    """
    run = fetch_run(conn, run_id)
    marts = control_marts()
    if not marts:
        raise RenderError("no controls are registered")
    summary_columns = _columns_of(conn, schema, SUMMARY_TABLE)
    if not summary_columns:
        raise RenderError(f"{schema}.{SUMMARY_TABLE} does not exist: run the reconcile phase first")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from {}.{} where run_id = %s "
                            "order by control_id collate \"C\"").format(
            sql.Identifier(schema), sql.Identifier(SUMMARY_TABLE)), (run_id,))
        names = [d.name for d in cur.description or ()]
        summary = {row[names.index("control_id")]: dict(zip(names, row, strict=True))
                   for row in cur.fetchall()}
    for control in summary:
        if control not in marts:
            raise RenderError(f"{schema}.{SUMMARY_TABLE} names control {control}, which is not "
                              f"a registered control ({', '.join(marts)})")
    available: dict[str, dict[str, str]] = {"summary": summary_columns}
    for control, table in marts.items():
        columns = _columns_of(conn, schema, table)
        if not columns:
            raise RenderError(f"{schema}.{table} (control {control}) does not exist: "
                              "run the reconcile phase first")
        if control not in summary:
            raise RenderError(f"{schema}.{table} has no row in {schema}.{SUMMARY_TABLE} "
                              f"for run {run_id}")
        for needed in ("run_id", "item_key", "result"):
            if needed not in columns:
                raise RenderError(f"{schema}.{table} has no {needed!r} column")
        available[control] = columns
    available["evidence"] = {**evidence.COLUMN_TYPES, **CHAIN_COLUMNS}
    available["queries"] = dict(QUERY_COLUMNS)
    searched_counts: list[tuple[str, int]] = []
    searched_columns = _columns_of(conn, schema, SEARCHED_TABLE)
    if searched_columns and all(c in searched_columns for c in ("run_id", *SEARCHED_ORDER)):
        available["searched"] = {k: v for k, v in searched_columns.items() if k != "run_id"}
        searched_counts = [(str(key), int(n)) for key, n in conn.execute(
            sql.SQL("select population_key, count(*) from {}.{} where run_id = %s "
                    "group by population_key order by population_key collate \"C\"").format(
                sql.Identifier(schema), sql.Identifier(SEARCHED_TABLE)), (run_id,)).fetchall()]
    register = _register_tallies(conn, run_id, schema, available)

    control_sql: dict[str, tuple[str, str, str | None, str | None]] = {}
    for control, table in marts.items():
        evidence_id = summary[control].get("control_evidence_id")
        if evidence_id is None:
            evidence_id = str(uuid.UUID(
                conn.execute("select md5(%s)", (f"soxtrail:{run_id}:{table}",))
                .fetchone()[0]))  # type: ignore[index]
        row = evidence.control_query(conn, str(evidence_id), run_id)
        control_sql[control] = (table, str(evidence_id), row[0] if row else None,
                                row[1] if row else None)
    return RunData(run, marts, summary, available, control_sql,
                   clusters=_clusters_tested(conn, run, schema, marts, available),
                   searched_counts=searched_counts, register=register)


def _register_tallies(conn: psycopg.Connection[Any], run_id: str, schema: str,
                      available: dict[str, dict[str, str]]) -> dict[str, int]:
    """Add the register's columns to `available` and count its rows: a waived exception is
    counted as an exception (never as a pass), a response-less one as `without_response`."""
    columns = _columns_of(conn, schema, REGISTER_TABLE) if REGISTER_TABLE else {}
    needed = ("run_id", "item_key", "register_status", "waiver_state", "recurrence",
              "has_response")
    if not all(c in columns for c in needed):
        return {}
    available["register"] = {k: v for k, v in columns.items() if k != "run_id"}
    row = conn.execute(sql.SQL(
        "select count(*),"
        " count(*) filter (where recurrence <> 'resolved'),"
        " count(*) filter (where recurrence <> 'resolved' and not has_response),"
        " count(*) filter (where waiver_state like 'waived until %%'),"
        " count(*) filter (where waiver_state = 'expired'),"
        " count(*) filter (where recurrence = 'recurring'),"
        " count(*) filter (where recurrence = 'resolved')"
        " from {}.{} where run_id = %s").format(
            sql.Identifier(schema), sql.Identifier(REGISTER_TABLE)), (run_id,)).fetchone()
    names = ("rows", "exceptions", "without_response", "waived", "expired", "recurring",
             "resolved")
    return dict(zip(names, (int(v) for v in row or (0,) * len(names)), strict=True))


def _clusters_tested(conn: psycopg.Connection[Any], run: Mapping[str, Any], schema: str,
                     marts: Mapping[str, str], available: Mapping[str, Mapping[str, str]]
                     ) -> list[str]:
    """The clusters in scope by name: the run's `--clusters`, else every cluster a control
    mart of the run names (the SOX-in-scope clusters the controls tested)."""
    chosen = run.get("clusters")
    if chosen:
        return [str(c) for c in chosen]
    parts = [sql.SQL("select cluster::text from {}.{} where run_id = %(run)s").format(
                 sql.Identifier(schema), sql.Identifier(table))
             for control, table in marts.items()
             if control in CONTROLS and "cluster" in available.get(control, {})]
    if not parts:
        return []
    query = sql.SQL("select cluster from ({}) c where cluster is not null group by cluster "
                    "order by cluster collate \"C\"").format(sql.SQL(" union all ").join(parts))
    return [str(row[0]) for row in conn.execute(query, {"run": run["id"]}).fetchall()]


def _stream(conn: psycopg.Connection[Any], query: sql.Composed, params: Sequence[Any],
            name: str) -> Iterator[tuple[Any, ...]]:
    """Rows of a query through a server-side cursor (constant memory)."""
    with conn.cursor(name=name) as cur:
        cur.itersize = 2000
        cur.execute(query, params)
        yield from cur


def read_mart_rows(conn: psycopg.Connection[Any], run_id: str, *, schema: str, table: str,
                   columns: Sequence[str], cursor: str) -> Iterator[tuple[Any, ...]]:
    """The run's rows of a control mart, `columns` in order, by item key (streamed)."""
    query = sql.SQL("select {} from {}.{} where run_id = %s "
                    "order by item_key collate \"C\"").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in columns),
        sql.Identifier(schema), sql.Identifier(table))
    return _stream(conn, query, (run_id,), cursor)


def read_searched_rows(conn: psycopg.Connection[Any], run_id: str, *, schema: str,
                       columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The run's searched populations, `columns` in order, by population key then evidence id
    (streamed; the order `RunData.searched_counts` counts in)."""
    query = sql.SQL("select {} from {}.{} where run_id = %s "
                    "order by population_key collate \"C\", evidence_id").format(
        sql.SQL(", ").join(sql.Identifier(n) for n in columns),
        sql.Identifier(schema), sql.Identifier(SEARCHED_TABLE))
    return _stream(conn, query, (run_id,), "soxtrail_render_searched")


def read_register_rows(conn: psycopg.Connection[Any], run_id: str, *, schema: str,
                       columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The run's exceptions register, `columns` in order then `register_status`, by item key
    (streamed)."""
    return read_mart_rows(conn, run_id, schema=schema, table=REGISTER_TABLE,
                          columns=[*columns, "register_status"], cursor="soxtrail_render_register")


def read_evidence_ids(conn: psycopg.Connection[Any], run_id: str) -> list[str]:
    """The run's evidence ids in Evidence-sheet order."""
    return evidence.report_ids(conn, run_id)


def read_evidence_rows(conn: psycopg.Connection[Any], run_id: str,
                       columns: Sequence[str]) -> Iterator[tuple[Any, ...]]:
    """The run's evidence rows with their chain links, `columns` in order (streamed)."""
    return evidence.stream_report_rows(conn, run_id, columns, "soxtrail_render_evidence")
