"""The evidence tables: every statement on `sox_evidence` and its chain, and canonical results.

One evidence row per captured object (snapshot) or per control result (reconcile). This
module owns the row's shape (`EvidenceRow`), the layout of its `query_params`
(`snapshot_params`, `control_params`), every statement that writes or reads
`soxtrail.sox_evidence` / `soxtrail.sox_evidence_chain`, the chain link, and the canonical
form of a control's result (`mart_result`, `sql_result`; versions in docs/architecture.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from soxtrail.kernel import secrets

RECONCILE = "reconcile"  # source_system of a control's evidence row
GENESIS = "0" * 64  # prev_hash of the first link of the chain


@dataclass(frozen=True)
class EvidenceRow:
    """One `soxtrail.sox_evidence` row as written (`created_at` is the database's)."""

    id: str
    run_id: str
    source_system: str
    query_name: str
    query_text: str
    query_params: dict[str, Any]
    executed_at: datetime
    executed_by: str
    result_row_count: int
    result_hash: str
    raw_output_s3_key: str


COLUMNS = tuple(f.name for f in fields(EvidenceRow))
# The table's columns and their types (udt names), as the workbook's Evidence sheet lists them.
COLUMN_TYPES: dict[str, str] = {
    "id": "uuid", "run_id": "uuid", "source_system": "text", "query_name": "text",
    "query_text": "text", "query_params": "jsonb", "executed_at": "timestamptz",
    "executed_by": "text", "result_row_count": "int4", "result_hash": "text",
    "raw_output_s3_key": "text", "created_at": "timestamptz",
}
# Columns joined from the chain, as readers name them.
CHAIN_COLUMN_TYPES: dict[str, str] = {"chain_seq": "int8", "chain_hash": "text"}

# ---------------------------------------------------------------- query_params layouts

# Keys every snapshot row's query_params carries besides the connector's own parameters
# (`format`, `file`, … are the connector's): the loader dispatches on these, so phases 2-5
# never need the config's secrets.
SOURCE_KEY = "source"
CONNECTOR_KEY = "connector"
RAW_TABLE_KEY = "raw_table"
CLUSTER_KEY = "cluster"
FORMAT_KEY = "format"
# Keys of a control evidence row's query_params.
CONTROL_ID_KEY = "control_id"
MODEL_KEY = "model"
VARS_KEY = "vars"
CANONICAL_KEY = "canonical"  # the canonical form's version; absent = 1
STAGES_KEY = "stages"


def snapshot_params(own: Mapping[str, Any], *, source: str, connector: str, raw_table: str,
                    cluster: Any) -> dict[str, Any]:
    """A snapshot row's query_params: the connector's own (secrets redacted), then ours."""
    params: dict[str, Any] = {
        **{key: secrets.redact_value(value) for key, value in own.items()},
        SOURCE_KEY: source,
        CONNECTOR_KEY: connector,
        RAW_TABLE_KEY: raw_table,
    }
    if cluster is not None and CLUSTER_KEY not in params:
        params[CLUSTER_KEY] = cluster
    return params


def control_params(*, control_id: str, model: str, unique_id: str, checksum: str,
                   git_commit: str | None, variables: Mapping[str, Any],
                   canonical: int, stages: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A control evidence row's query_params: the control, its dbt node and vars, the form;
    on Spark, the intermediate tables its SQL reads, with the SQL each is built from
    (`stages`, in build order: `soxtrail verify` builds them before re-running the SQL)."""
    params: dict[str, Any] = {
        CONTROL_ID_KEY: control_id,
        MODEL_KEY: model,
        "unique_id": unique_id,
        "checksum": checksum,
        "git_commit": git_commit,
        VARS_KEY: dict(variables),
        CANONICAL_KEY: canonical,
    }
    if stages:
        params[STAGES_KEY] = list(stages)
    return params


def stages_of(params: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """The intermediate tables a control evidence row's SQL reads (engine: spark; else [])."""
    return list((params or {}).get(STAGES_KEY) or [])


def control_sql(params: Mapping[str, Any] | None, query_text: str) -> str:
    """A control's whole SQL as an auditor reads it: on Spark the SQL of each intermediate
    table it reads, in build order, each headed by the table's name, then its own (what
    PostgreSQL's one statement inlines); elsewhere `query_text` as it is."""
    return "".join(f"-- {stage['relation']}, built first from:\n{stage['sql']}\n\n"
                   for stage in stages_of(params)) + query_text


def control_query_name(unique_id: str, checksum: str) -> str:
    """A control evidence row's query_name: the dbt node and the first 12 of its checksum."""
    return f"{unique_id}@{checksum[:12]}"


def canonical_version(params: Mapping[str, Any] | None) -> int:
    """The canonical form a control evidence row was hashed with (rows before 2: absent)."""
    return int((params or {}).get(CANONICAL_KEY) or 1)


# ---------------------------------------------------------------- writing

_INSERT = sql.SQL("""
insert into soxtrail.sox_evidence ({columns})
values ({values})
""").format(columns=sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS),
            values=sql.SQL(", ").join(sql.Placeholder() for _ in COLUMNS))


def insert_rows(conn: psycopg.Connection[Any], rows: Iterable[EvidenceRow]) -> int:
    """Insert evidence rows (the chain trigger links each); the caller commits."""
    values = [tuple(json.dumps(row.query_params, sort_keys=True) if column == "query_params"
                    else getattr(row, column) for column in COLUMNS) for row in rows]
    with conn.cursor() as cur:
        cur.executemany(_INSERT, values)
    return len(values)


# ---------------------------------------------------------------- reading

_SNAPSHOT_TOTALS = """
select
    count(*) as objects,
    coalesce(sum(evidence.result_row_count), 0) as result_rows
from soxtrail.sox_evidence as evidence
where evidence.run_id = %s
    and evidence.source_system <> 'reconcile'
"""

_NOT_LOADED = """
from soxtrail.sox_evidence as evidence
left join soxtrail.sox_load_stats as load_stats
    on load_stats.run_id = evidence.run_id
    and load_stats.evidence_id = evidence.id
where evidence.run_id = %s
    and evidence.source_system <> 'reconcile'
    and load_stats.evidence_id is null
"""


def snapshot_totals(conn: psycopg.Connection[Any], run_id: str) -> tuple[int, int]:
    """Snapshot evidence rows of the run and the rows their objects hold."""
    objects, result_rows = conn.execute(_SNAPSHOT_TOTALS, (run_id,)).fetchone() or (0, 0)
    return int(objects), int(result_rows)


def count_not_loaded(conn: psycopg.Connection[Any], run_id: str) -> int:
    """Snapshot evidence rows of the run with no `sox_load_stats` row yet."""
    row = conn.execute("select count(*)" + _NOT_LOADED, (run_id,)).fetchone()  # type: ignore[operator]
    return int(row[0]) if row else 0


def objects_to_load(conn: psycopg.Connection[Any],
                    run_id: str) -> list[tuple[str, dict[str, Any], str, str]]:
    """(evidence id, query_params, store key, query name) of each object still to load."""
    return conn.execute(  # type: ignore[call-overload,no-any-return]
        "select evidence.id::text, evidence.query_params, evidence.raw_output_s3_key,"
        " evidence.query_name" + _NOT_LOADED
        + "    and evidence.query_params ? 'raw_table'\n"
        "order by evidence.executed_at, evidence.id", (run_id,)).fetchall()


def recorded_result(conn: psycopg.Connection[Any], evidence_id: str) -> tuple[str, int] | None:
    """(result_hash, canonical form version) of an evidence row, None when there is none."""
    row = conn.execute(
        "select evidence.result_hash, evidence.query_params"
        " from soxtrail.sox_evidence as evidence where evidence.id = %s",
        (evidence_id,)).fetchone()
    return (str(row[0]), canonical_version(row[1])) if row else None


def _dicts(conn: psycopg.Connection[Any], query: str,
           params: Sequence[Any]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall()


def run_rows(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """Every evidence row of the run, all columns, in execution order."""
    return _dicts(conn, """
select evidence.*
from soxtrail.sox_evidence as evidence
where evidence.run_id = %s
order by evidence.executed_at, evidence.id
""", (run_id,))


def control_rows(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """The run's control evidence rows, all columns, by query name ("C" order)."""
    return _dicts(conn, """
select evidence.*
from soxtrail.sox_evidence as evidence
where evidence.run_id = %s
    and evidence.source_system = 'reconcile'
order by evidence.query_name collate "C", evidence.id
""", (run_id,))


def control_query(conn: psycopg.Connection[Any], evidence_id: str,
                  run_id: str) -> tuple[str, str] | None:
    """(query_name, compiled SQL) of one control evidence row of the run, if it exists."""
    row = conn.execute("""
select evidence.query_name, evidence.query_text
from soxtrail.sox_evidence as evidence
where evidence.id = %s
    and evidence.run_id = %s
""", (evidence_id, run_id)).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def latest_executed_at(conn: psycopg.Connection[Any], run_id: str,
                       raw_tables: Sequence[str]) -> datetime | None:
    """When the last of the run's snapshots into `raw_tables` was taken."""
    row = conn.execute("""
select max(evidence.executed_at)
from soxtrail.sox_evidence as evidence
where evidence.run_id = %s
    and evidence.query_params ->> 'raw_table' = any(%s)
""", (run_id, list(raw_tables))).fetchone()
    return row[0] if row else None


_WITH_CHAIN = """
from soxtrail.sox_evidence as evidence
left join soxtrail.sox_evidence_chain as chain
    on chain.evidence_id = evidence.id
"""
_CHAIN_ORDER = "order by chain.seq nulls last, evidence.id"


def row_with_link(conn: psycopg.Connection[Any], evidence_id: str) -> dict[str, Any] | None:
    """One evidence row with its chain link (`chain_seq`, `prev_hash`, `chain_hash`)."""
    rows = _dicts(conn, "select evidence.*, chain.seq as chain_seq, chain.prev_hash,"
                        " chain.chain_hash" + _WITH_CHAIN + "where evidence.id = %s",
                  (evidence_id,))
    return rows[0] if rows else None


_ROWS_WITH_LINKS = """
select
    evidence.*,
    soxtrail.evidence_row_text(
        evidence.id, evidence.run_id, evidence.source_system, evidence.query_name,
        evidence.query_text, evidence.query_params, evidence.executed_at,
        evidence.executed_by, evidence.result_row_count, evidence.result_hash,
        evidence.raw_output_s3_key
    ) as row_text,
    chain.seq,
    chain.prev_hash,
    chain.chain_hash,
    (
        select previous.chain_hash
        from soxtrail.sox_evidence_chain as previous
        where previous.seq < chain.seq
        order by previous.seq desc
        limit 1
    ) as previous_link
""" + _WITH_CHAIN


def rows_with_links(conn: psycopg.Connection[Any], run_id: str) -> list[dict[str, Any]]:
    """The run's rows in chain order, each with its link (`seq`, `prev_hash`, `chain_hash`),
    the link before it in the chain (`previous_link`) and its text recomputed as it stands
    now (`row_text`, soxtrail.evidence_row_text)."""
    return _dicts(conn, _ROWS_WITH_LINKS + "where evidence.run_id = %s\n" + _CHAIN_ORDER,
                  (run_id,))


def rows_with_links_by_id(conn: psycopg.Connection[Any],
                          evidence_ids: Sequence[str]) -> list[dict[str, Any]]:
    """As `rows_with_links`, for the rows with these ids (whatever their run)."""
    return _dicts(conn, _ROWS_WITH_LINKS + "where evidence.id = any(%s::uuid[])\n"
                  + _CHAIN_ORDER, (list(evidence_ids),))


def chain_link(prev_hash: str, row_text: str) -> str:
    """A chain link: SHA-256 of `<previous link>|<row text>` (as soxtrail.chain_evidence)."""
    return hashlib.sha256(f"{prev_hash}|{row_text}".encode()).hexdigest()


def stream_with_links(conn: psycopg.Connection[Any], run_id: str,
                      cursor: str) -> Iterator[dict[str, Any]]:
    """The run's rows in chain order with `created_at` and their link (streamed)."""
    query = ("select " + ", ".join(f"evidence.{c}" for c in COLUMNS)
             + ", evidence.created_at, chain.seq as chain_seq, chain.prev_hash,"
             " chain.chain_hash" + _WITH_CHAIN + "where evidence.run_id = %s\n" + _CHAIN_ORDER)
    with conn.cursor(name=cursor) as cur:
        cur.itersize = 2000
        cur.execute(query, (run_id,))  # type: ignore[arg-type]
        names = [d.name for d in cur.description or ()]
        for row in cur:
            yield dict(zip(names, row, strict=True))


# ---------------------------------------------------------------- the anchor (bundle, verify)

_LINK = "select chain.seq, chain.evidence_id::text, chain.prev_hash, chain.chain_hash"


def run_links(conn: psycopg.Connection[Any], run_id: str) -> list[tuple[int, str, str, str]]:
    """(seq, evidence id, prev_hash, chain_hash) of every link of the run's rows, by seq."""
    return conn.execute(_LINK + """
from soxtrail.sox_evidence_chain as chain
inner join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id
where evidence.run_id = %s
order by chain.seq""", (run_id,)).fetchall()  # type: ignore[return-value]


def links_at(conn: psycopg.Connection[Any], seqs: Sequence[int]) -> list[dict[str, Any]]:
    """The links at `seqs` (`seq`, `evidence_id`, `prev_hash`, `chain_hash`), each with its
    row's `run_id` and the row's text as it stands now (`row_text`; None without a row)."""
    return _dicts(conn, _LINK + """,
    evidence.run_id::text as run_id,
    soxtrail.evidence_row_text(
        evidence.id, evidence.run_id, evidence.source_system, evidence.query_name,
        evidence.query_text, evidence.query_params, evidence.executed_at,
        evidence.executed_by, evidence.result_row_count, evidence.result_hash,
        evidence.raw_output_s3_key
    ) as row_text
from soxtrail.sox_evidence_chain as chain
left join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id
where chain.seq = any(%s)
order by chain.seq""", ([int(s) for s in seqs],))


def link_before(conn: psycopg.Connection[Any], seq: int) -> tuple[int, str, str, str] | None:
    """(seq, evidence id, prev_hash, chain_hash) of the last link before `seq`, if any."""
    return conn.execute(_LINK + """
from soxtrail.sox_evidence_chain as chain
where chain.seq < %s
order by chain.seq desc
limit 1""", (seq,)).fetchone()  # type: ignore[return-value]


def earlier_runs_latest_links(conn: psycopg.Connection[Any],
                              run_id: str) -> list[dict[str, Any]]:
    """Per run started before `run_id` that has evidence: its latest link (`run_id`,
    `quarter`, `seq`, `evidence_id`, `chain_hash`), by run start.

    As of the run's own last link: a bundle written again on resume (the same bytes, under
    put-if-absent and Object Lock) lists the same links, although another quarter's run may
    have added links since; those are pinned by the next run's anchor."""
    return _dicts(conn, """
with
this_run as (
    select runs.started_at, runs.id from soxtrail.sox_runs as runs where runs.id = %s
),

this_run_last_link as (
    select max(chain.seq) as seq
    from soxtrail.sox_evidence_chain as chain
    inner join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id
    where evidence.run_id = %s
),

latest as (
    select distinct on (evidence.run_id)
        evidence.run_id, chain.seq, chain.evidence_id, chain.chain_hash
    from soxtrail.sox_evidence_chain as chain
    inner join soxtrail.sox_evidence as evidence on evidence.id = chain.evidence_id
    where chain.seq < coalesce((select this_run_last_link.seq from this_run_last_link),
                               9223372036854775807)
    order by evidence.run_id, chain.seq desc
)

select
    latest.run_id::text as run_id, runs.quarter, latest.seq,
    latest.evidence_id::text as evidence_id, latest.chain_hash
from latest
inner join soxtrail.sox_runs as runs on runs.id = latest.run_id
cross join this_run
where (runs.started_at, runs.id) < (this_run.started_at, this_run.id)
order by runs.started_at, runs.id""", (run_id, run_id))


def chain_origin(conn: psycopg.Connection[Any]) -> dict[str, str | None]:
    """Where the chain lives: the database's name and its cluster's system identifier."""
    name = conn.execute("select current_database()").fetchone()
    try:
        with conn.transaction():
            system = conn.execute(
                "select system_identifier::text from pg_control_system()").fetchone()
    except psycopg.Error:  # a role that may not call it: the name still says something
        system = None
    return {"database": str(name[0]) if name else None,
            "system_identifier": str(system[0]) if system else None}


# The report's order: by source, query, time.
REPORT_ORDER = sql.SQL('order by evidence.source_system collate "C",'
                       ' evidence.query_name collate "C", evidence.executed_at, evidence.id')


# The rows a report shows: the run's own and the earlier rows it includes (the rows its
# `included_evidence` objects list, loaded into raw.included_evidence).
_REPORT_ROWS = """where evidence.run_id = %(run)s
    or evidence.id in (
        select cast(included.doc ->> 'evidence_id' as uuid)
        from raw.included_evidence as included
        where included.run_id = %(run)s
    )
"""


def report_ids(conn: psycopg.Connection[Any], run_id: str) -> list[str]:
    """The ids of the run's evidence rows and of the earlier rows it includes, in report
    order."""
    query = sql.SQL("select evidence.id from soxtrail.sox_evidence as evidence "
                    + _REPORT_ROWS + "{}").format(REPORT_ORDER)
    return [str(row[0]) for row in conn.execute(query, {"run": run_id})]


def stream_report_rows(conn: psycopg.Connection[Any], run_id: str, columns: Sequence[str],
                       cursor: str) -> Iterator[tuple[Any, ...]]:
    """The run's rows and the earlier rows it includes, in report order, `columns`
    (COLUMN_TYPES, CHAIN_COLUMN_TYPES) in order."""
    chain = {"chain_seq": sql.SQL("chain.seq"), "chain_hash": sql.SQL("chain.chain_hash")}
    parts = [chain.get(c) or sql.SQL("evidence.{}").format(sql.Identifier(c)) for c in columns]
    query = sql.SQL("select {} " + _WITH_CHAIN + _REPORT_ROWS + "{}").format(
        sql.SQL(", ").join(parts), REPORT_ORDER)
    with conn.cursor(name=cursor) as cur:
        cur.itersize = 2000
        cur.execute(query, {"run": run_id})
        yield from cur


# What a run includes of earlier runs' evidence (extract/connectors/inclusion.py): per
# source of the run, the rows of completed captures of its quarter (sources that forget),
# and per catalog source, the settings captures of its cluster by completed captures of
# the quarter and by the newest completed run of an earlier quarter. Each row with its
# chain link, which the including run pins in its own evidence.
_INCLUDED = """
with
this_run as (
    select runs.id, runs.quarter, runs.started_at
    from soxtrail.sox_runs as runs
    where runs.id = %(run)s
),

earlier as (
    select runs.id, runs.quarter, runs.started_at, runs.config ->> %(kind_key)s as kind
    from soxtrail.sox_runs as runs
    cross join this_run
    where runs.status = 'completed'
        and runs.id <> this_run.id
        and runs.started_at < this_run.started_at
),

forgetting as (
    select wanted.source_name, evidence.id, 'capture' as purpose
    from unnest(%(forgetting)s::text[]) as wanted (source_name)
    inner join soxtrail.sox_evidence as evidence
        on evidence.query_params ->> %(source_key)s = wanted.source_name
    inner join earlier
        on earlier.id = evidence.run_id
    cross join this_run
    where earlier.kind = %(capture)s and earlier.quarter = this_run.quarter
),

settings as (
    select
        wanted.source_name,
        evidence.id,
        case when earlier.quarter = this_run.quarter then 'settings_capture'
            else 'earlier_settings' end as purpose,
        earlier.quarter = this_run.quarter as same_quarter,
        row_number() over (
            partition by wanted.source_name, earlier.quarter = this_run.quarter
            order by evidence.executed_at desc, evidence.id
        ) as newest
    from unnest(%(catalog_sources)s::text[], %(catalog_clusters)s::text[])
        as wanted (source_name, cluster)
    inner join soxtrail.sox_evidence as evidence
        on evidence.query_params ->> %(cluster_key)s = wanted.cluster
        and evidence.query_params ->> %(raw_table_key)s = %(settings_table)s
    inner join earlier
        on earlier.id = evidence.run_id
    cross join this_run
    where (earlier.kind = %(capture)s and earlier.quarter = this_run.quarter)
        or earlier.quarter < this_run.quarter
),

chosen as (
    select forgetting.source_name, forgetting.id, forgetting.purpose from forgetting
    union all
    select settings.source_name, settings.id, settings.purpose
    from settings
    where settings.same_quarter or settings.newest = 1
)

select
    chosen.source_name as included_by,
    chosen.purpose,
    evidence.id as evidence_id,
    evidence.run_id,
    evidence.source_system,
    evidence.query_name,
    evidence.executed_at,
    evidence.result_row_count,
    evidence.result_hash,
    evidence.raw_output_s3_key,
    evidence.query_params ->> %(source_key)s as source_name,
    evidence.query_params ->> %(raw_table_key)s as raw_table,
    chain.seq as chain_seq,
    chain.chain_hash
from chosen
inner join soxtrail.sox_evidence as evidence
    on evidence.id = chosen.id
left join soxtrail.sox_evidence_chain as chain
    on chain.evidence_id = evidence.id
order by chosen.source_name, evidence.executed_at, evidence.query_name, evidence.id
"""


def included_rows(conn: psycopg.Connection[Any], run_id: str, *, forgetting: Sequence[str],
                  catalogs: Sequence[tuple[str, str]], settings_table: str,
                  capture_kind: str, kind_key: str) -> list[dict[str, Any]]:
    """The earlier evidence rows run `run_id` includes (`_INCLUDED`), each with the name of
    the run's source that includes it (`included_by`), its `purpose` and its chain link:
    `forgetting` names the run's sources that forget, `catalogs` its (source, cluster)
    catalog sources."""
    return _dicts(conn, _INCLUDED, {  # type: ignore[arg-type]
        "run": run_id, "forgetting": list(forgetting),
        "catalog_sources": [name for name, _ in catalogs],
        "catalog_clusters": [cluster for _, cluster in catalogs],
        "settings_table": settings_table, "capture": capture_kind, "kind_key": kind_key,
        "source_key": SOURCE_KEY, "cluster_key": CLUSTER_KEY, "raw_table_key": RAW_TABLE_KEY})


def reference_counts(conn: psycopg.Connection[Any], refs: sql.Composable,
                     run_id: str) -> tuple[int, int, list[str], int]:
    """Check the evidence ids `refs` names (a select of `item_key, ref` using `%(run)s`):
    (references, those neither in the run's evidence nor among the earlier rows it includes,
    up to 3 of them, empty references)."""
    query = sql.SQL("""
with
refs as ({refs}),

dangling as (
    select refs.item_key, refs.ref
    from refs
    where refs.ref is not null
        and not exists (
            select 1
            from soxtrail.sox_evidence as evidence
            where evidence.id = refs.ref
                and evidence.run_id = %(run)s
        )
        and not exists (
            select 1
            from raw.included_evidence as included
            where included.run_id = %(run)s
                and (included.doc ->> 'evidence_id')::uuid = refs.ref
        )
)

select
    (select count(*) from refs) as total,
    (select count(*) from dangling) as dangling,
    (
        select (array_agg(dangling.item_key || ' -> ' || dangling.ref::text
            order by dangling.item_key))[1:3]
        from dangling
    ) as examples,
    (select count(*) from refs where refs.ref is null) as nulls
""").format(refs=refs)
    total, dangling, examples, nulls = conn.execute(query, {"run": run_id}).fetchone()  # type: ignore[misc]
    return int(total), int(dangling), list(examples or []), int(nulls)
