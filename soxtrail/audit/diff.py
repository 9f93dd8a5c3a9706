"""Compare two runs layer by layer: evidence, config and catalogs, control SQL, decisions.

The decisions layer lists, per control, the population items added, removed and changed
(result or reasons), and explains each by the layers below it: the item's evidence ids
in both runs are mapped to their objects' identities (diff_evidence), and the control's
SQL and vars (diff_sql) and the sources' config (diff_config) are looked up. Runs of two
quarters match items only for the controls whose items keep their identity across
quarters (registry `identity.stable_across: quarters`, AC-02 and AC-03); the others'
items belong to one period and are compared by counts and reason codes.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from render.diff_workbook import DiffSheet, write_diff_workbook
from soxtrail.audit import diff_config, diff_evidence, diff_sql
from soxtrail.kernel import controls, runs
from soxtrail.kernel.database import home
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import open_store

CHANGE_KINDS = ("added", "removed", "changed")
COLUMNS = ("control_id", "change", "item_key", "result_a", "result_b", "reasons_a", "reasons_b",
           "evidence_id_a", "evidence_id_b", "explained_by", "because")
COUNT_COLUMNS = ("control_id", "compared_by", "population_a", "population_b", "exceptions_a",
                 "exceptions_b", "reasons_a", "reasons_b")

# what explains a changed decision (the layers, most direct first)
POPULATION = "population evidence changed"
SUPPORTING = "supporting evidence changed"
CATALOG = "catalog row changed"
SQL_CHANGED = "control SQL changed"
CONFIG = "config changed"
SOURCE_READ = "a source the control reads changed (object not cited by the item)"
UNEXPLAINED = "UNEXPLAINED"
# the registry's `identity.stable_across` value of items that match across quarters
ACROSS_QUARTERS = "quarters"

# What `--fail-on-change` counts, by layer (docs/auditor-guide.md "Comparing two runs").
COUNTED = {
    "evidence": "objects added, removed or changed (SHA-256 or row count), sources added or "
                "removed",
    "config": f"recorded config keys (but {', '.join(diff_config.RECORD_KEYS)}), scope, "
              "catalog rows",
    "sql": "compiled SQL (run id replaced) or model checksum",
    "decisions": "items added, removed or changed; counts and reason codes where items are "
                 "compared by counts",
}
NOT_COUNTED = ("run ids", "timestamps", "store keys", "evidence ids", "executed_by",
               "git commit", "tool version",
               f"the record keys {', '.join(diff_config.RECORD_KEYS)}")


@dataclass(frozen=True)
class Item:
    """One population item of a run: its result, reasons and evidence ids."""

    result: str
    reasons: tuple[str, ...]
    evidence_id: str | None
    supporting_evidence_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Change:
    """An item present in only one run, or whose result or reasons differ, and why."""

    control_id: str
    change: str  # added | removed | changed
    item_key: str
    a: Item | None
    b: Item | None
    explained_by: tuple[str, ...] = ()  # POPULATION, SUPPORTING, … or (UNEXPLAINED,)
    because: tuple[str, ...] = ()  # the objects, keys or SQL behind each explanation

    def row(self) -> dict[str, str]:
        """The change as a flat row (COLUMNS)."""
        return {
            "control_id": self.control_id, "change": self.change, "item_key": self.item_key,
            "result_a": self.a.result if self.a else "",
            "result_b": self.b.result if self.b else "",
            "reasons_a": ",".join(self.a.reasons) if self.a else "",
            "reasons_b": ",".join(self.b.reasons) if self.b else "",
            "evidence_id_a": (self.a.evidence_id or "") if self.a else "",
            "evidence_id_b": (self.b.evidence_id or "") if self.b else "",
            "explained_by": "; ".join(self.explained_by),
            "because": "; ".join(self.because),
        }


@dataclass
class ControlDiff:
    """Counts and changes of one control."""

    control_id: str
    population_a: int
    population_b: int
    changes: list[Change] = field(default_factory=list)
    # "item" (items matched by key) or "counts" (items of one period: counts and reasons)
    compared_by: str = "item"
    exceptions_a: int = 0
    exceptions_b: int = 0
    reasons_a: dict[str, int] = field(default_factory=dict)
    reasons_b: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str) -> int:
        """How many changes of one kind."""
        return sum(1 for c in self.changes if c.change == kind)

    @property
    def unchanged(self) -> int:
        """Items in both runs with the same result and reasons (items compared by key)."""
        return self.population_a - self.count("removed") - self.count("changed")

    @property
    def differs(self) -> bool:
        """An item changed, or (compared by counts) a count or reason code count differs."""
        if self.compared_by == "counts":
            return ((self.population_a, self.exceptions_a, self.reasons_a)
                    != (self.population_b, self.exceptions_b, self.reasons_b))
        return bool(self.changes)

    def counts_row(self) -> dict[str, Any]:
        """Population, exceptions and reason code counts of both runs (COUNT_COLUMNS)."""
        def codes(counts: Mapping[str, int]) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
        return {"control_id": self.control_id, "compared_by": self.compared_by,
                "population_a": self.population_a, "population_b": self.population_b,
                "exceptions_a": self.exceptions_a, "exceptions_b": self.exceptions_b,
                "reasons_a": codes(self.reasons_a), "reasons_b": codes(self.reasons_b)}


@dataclass
class RunDiff:
    """The diff of two runs, every layer."""

    run_a: runs.Run
    run_b: runs.Run
    controls: list[ControlDiff]
    evidence: diff_evidence.EvidenceDiff | None = None
    config: diff_config.ConfigDiff | None = None
    sql: diff_sql.SqlDiff | None = None

    @property
    def cross_quarter(self) -> bool:
        """True when the runs report different quarters."""
        return self.run_a.quarter != self.run_b.quarter

    def header(self) -> str:
        """One line naming both runs, and saying how items are compared."""
        text = (f"diff run A {self.run_a.id} ({self.run_a.quarter}) -> "
                f"run B {self.run_b.id} ({self.run_b.quarter})")
        if self.cross_quarter:
            by_item = [c.control_id for c in self.controls if c.compared_by == "item"]
            by_count = [c.control_id for c in self.controls if c.compared_by == "counts"]
            text += (f": CROSS-QUARTER comparison; items matched by key for "
                     f"{', '.join(by_item) or 'no control'} (their items recur across "
                     f"quarters); {', '.join(by_count) or 'no control'} compared by counts "
                     "and reason codes (their items belong to one period)")
        else:
            text += ": two runs of the same quarter, items compared by key"
        return text

    def changes(self) -> list[Change]:
        """Every change, control by control."""
        return [c for control in self.controls for c in control.changes]

    def unexplained(self) -> list[Change]:
        """Changed decisions with no changed input: a determinism bug, said loudly."""
        return [c for c in self.changes() if UNEXPLAINED in c.explained_by]

    def differences(self) -> dict[str, int]:
        """Per layer, how many differences `--fail-on-change` counts (COUNTED)."""
        evidence = self.evidence
        return {
            "evidence": (len(evidence.changes) + len(evidence.sources_added)
                         + len(evidence.sources_removed)) if evidence else 0,
            "config": (len(self.config.counted_keys) + len(self.config.catalog_rows))
            if self.config else 0,
            "sql": sum(1 for c in self.sql.controls if c.status != "same") if self.sql else 0,
            "decisions": sum(len(c.changes) if c.compared_by == "item" else int(c.differs)
                             for c in self.controls),
        }

    @property
    def differs(self) -> bool:
        """Any layer differs (what `--fail-on-change` fails on)."""
        return any(self.differences().values())

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form: the runs, each layer, and what counts as a difference."""
        return {
            "run_a": {"id": self.run_a.id, "quarter": self.run_a.quarter},
            "run_b": {"id": self.run_b.id, "quarter": self.run_b.quarter},
            "cross_quarter": self.cross_quarter, "header": self.header(),
            "differs": self.differs, "differences": self.differences(),
            "counted": COUNTED, "not_counted": list(NOT_COUNTED),
            "evidence": self.evidence.as_dict() if self.evidence else None,
            "config": self.config.as_dict() if self.config else None,
            "sql": self.sql.as_dict() if self.sql else None,
            "decisions": {
                "controls": [{**c.counts_row(), "reasons_a": dict(sorted(c.reasons_a.items())),
                              "reasons_b": dict(sorted(c.reasons_b.items())),
                              **{kind: c.count(kind) for kind in CHANGE_KINDS}}
                             for c in self.controls],
                "changes": [c.row() for c in self.changes()],
                "unexplained": len(self.unexplained()),
            },
        }


# ---------------------------------------------------------------- decisions


def load_items(conn: psycopg.Connection[Any], model: str, run_id: str) -> dict[str, Item]:
    """The population items of one control mart in one run, by item key."""
    query = sql.SQL("select item_key, result, exception_reasons, evidence_id::text,"
                    " supporting_evidence_ids::text[] from {} where run_id = %s").format(
        sql.Identifier(controls.MARTS_SCHEMA, model))
    rows = conn.execute(query, (run_id,)).fetchall()
    return {str(key): Item(str(result), tuple(sorted(reasons or ())), evidence,
                           tuple(sorted(supporting or ())))
            for key, result, reasons, evidence, supporting in rows}


def _reason_counts(items: Mapping[str, Item]) -> dict[str, int]:
    return dict(Counter(r for item in items.values() for r in item.reasons))


def _exceptions(items: Mapping[str, Item]) -> int:
    return sum(1 for item in items.values() if item.result == "EXCEPTION")


def diff_control(control_id: str, items_a: dict[str, Item],
                 items_b: dict[str, Item], *, by_counts: bool = False) -> ControlDiff:
    """Added, removed and changed items of one control (sorted by key, "C" order), or, with
    `by_counts`, only the counts and reason codes of both runs."""
    result = ControlDiff(control_id, len(items_a), len(items_b),
                         compared_by="counts" if by_counts else "item",
                         exceptions_a=_exceptions(items_a), exceptions_b=_exceptions(items_b),
                         reasons_a=_reason_counts(items_a), reasons_b=_reason_counts(items_b))
    if by_counts:
        return result
    for key in sorted(set(items_a) | set(items_b), key=lambda k: k.encode("utf-8")):
        a, b = items_a.get(key), items_b.get(key)
        if a is None:
            result.changes.append(Change(control_id, "added", key, None, b))
        elif b is None:
            result.changes.append(Change(control_id, "removed", key, a, None))
        elif (a.result, a.reasons) != (b.result, b.reasons):
            result.changes.append(Change(control_id, "changed", key, a, b))
    return result


# ---------------------------------------------------------------- attribution


def _name(identity: tuple[str, str]) -> str:
    """An object as people name it: its query name when that starts with its source."""
    source, name = identity
    return name if name.startswith(f"{source}/") else f"{source}:{name}"


def explain(change: Change, control: controls.Control | None,
            evidence: diff_evidence.EvidenceDiff, config: diff_config.ConfigDiff,
            sql_diff: diff_sql.SqlDiff) -> Change:
    """The change with the layers that explain it (`explained_by`) and what in each
    (`because`); UNEXPLAINED when no input it depends on changed."""
    changed = evidence.changed_identities
    sides = [item for item in (change.a, change.b) if item is not None]
    found: dict[str, list[str]] = {}

    population = {evidence.identity_of(item.evidence_id) for item in sides} - {None}
    moved = len(population) > 1  # the item rests on another object in run B
    for identity in sorted(i for i in population if i is not None and (i in changed or moved)):
        found.setdefault(POPULATION, []).append(_name(identity))
    cited_sources: set[str] = {i[0] for i in population if i is not None}
    for evidence_id in sorted({e for item in sides for e in item.supporting_evidence_ids}):
        obj = evidence.object_of(evidence_id)
        if obj is None:
            continue
        cited_sources.add(obj.source)
        if obj.identity in changed:
            layer = CATALOG if obj.is_catalog else SUPPORTING
            if _name(obj.identity) not in found.get(layer, []):
                found.setdefault(layer, []).append(_name(obj.identity))
    control_sql = sql_diff.get(change.control_id)
    if control_sql is not None and control_sql.sql_changed:
        found[SQL_CHANGED] = [f"{change.control_id} compiled SQL ({control_sql.cause})"]
    if control_sql is not None and control_sql.vars_reach_sql:
        found.setdefault(CONFIG, []).extend(f"var {v}" for v in control_sql.vars_changed)
    for source in sorted(cited_sources & config.changed_sources()):
        found.setdefault(CONFIG, []).append(f"sources[{source}]")
    if not found and control is not None:
        read = sorted({_name(c.identity) for c in evidence.changes
                       if c.side.system in control.systems})
        if read:
            found[SOURCE_READ] = read[:5] + ([f"… {len(read) - 5} more"] if len(read) > 5 else [])
    if not found:
        return replace(change, explained_by=(UNEXPLAINED,),
                       because=("no input of the item changed: a determinism bug",))
    order = (POPULATION, SUPPORTING, CATALOG, SQL_CHANGED, CONFIG, SOURCE_READ)
    layers = tuple(layer for layer in order if layer in found)
    return replace(change, explained_by=layers,
                   because=tuple(f"{layer}: {', '.join(found[layer])}" for layer in layers))


def explain_all(diff: RunDiff) -> None:
    """Attribute every change of the decisions layer (needs the three other layers)."""
    assert diff.evidence is not None and diff.config is not None and diff.sql is not None
    registry = {c.id: c for c in controls.registry()}
    for control in diff.controls:
        control.changes = [explain(c, registry.get(c.control_id), diff.evidence, diff.config,
                                   diff.sql) for c in control.changes]


# ---------------------------------------------------------------- assembling


def store_sizes(run_a: runs.Run, run_b: runs.Run) -> Callable[[diff_evidence.StoredObject],
                                                                int | None]:
    """Read an object's size from the store its run recorded (None when unreadable)."""
    stores: dict[str, Any] = {}

    def size_of(obj: diff_evidence.StoredObject) -> int | None:
        run = run_a if run_a.id in obj.store_key else run_b
        uri = str(run.config.get("_store") or "")
        try:
            if uri not in stores:
                stores[uri] = open_store(uri or None, home() / "store")
            with stores[uri].open(obj.store_key) as handle:
                return sum(len(chunk) for chunk in iter(lambda: handle.read(1 << 20), b""))
        except (OSError, SoxtrailError):  # a size is a courtesy; the hash is the evidence
            return None
    return size_of


def diff_runs(conn: psycopg.Connection[Any], run_a: str, run_b: str, *,
              sizes: bool = False) -> RunDiff:
    """Compare two runs at every layer and attribute each changed decision."""
    first = runs.get_quarter_run(conn, run_a, "compare")
    second = runs.get_quarter_run(conn, run_b, "compare")
    cross = first.quarter != second.quarter
    result = []
    for control in controls.by_kind("control"):
        by_counts = cross and control.identity.get("stable_across") != ACROSS_QUARTERS
        result.append(diff_control(control.id, load_items(conn, control.model, first.id),
                                   load_items(conn, control.model, second.id),
                                   by_counts=by_counts))
    evidence = diff_evidence.diff_objects(
        diff_evidence.load_objects(conn, first.id), diff_evidence.load_objects(conn, second.id),
        store_sizes(first, second) if sizes else None)
    config = diff_config.diff_config(conn, first, second)
    sql_diff = diff_sql.diff_compiled(diff_sql.load_compiled(conn, first.id),
                                      diff_sql.load_compiled(conn, second.id),
                                      controls.EVIDENCED_MARTS)
    conn.commit()
    diff = RunDiff(first, second, result, evidence, config, sql_diff)
    explain_all(diff)
    return diff


# ---------------------------------------------------------------- output


def to_csv(diff: RunDiff) -> str:
    """The decisions layer's changes as CSV (header row first)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for change in diff.changes():
        writer.writerow(change.row())
    return buffer.getvalue()


SUMMARY_COLUMNS = ("layer", "differences", "counted")


def sheets(diff: RunDiff) -> list[DiffSheet]:
    """One sheet per layer, after a summary: evidence, config, catalogs, sql, decisions."""
    differences = diff.differences()
    summary = [{"layer": layer, "differences": n, "counted": COUNTED[layer]}
               for layer, n in differences.items()]
    title = [diff.header(),
             "Not counted as a difference: " + ", ".join(NOT_COUNTED)]
    if diff.unexplained():
        title.append(f"UNEXPLAINED: {len(diff.unexplained())} changed decision(s) with no "
                     "changed input (a determinism bug)")
    evidence_rows = diff.evidence.changes if diff.evidence else []
    config_rows = diff.config.keys if diff.config else []
    catalog_rows = diff.config.catalog_rows if diff.config else []
    sql_rows = diff.sql.controls if diff.sql else []
    return [
        DiffSheet("summary", SUMMARY_COLUMNS, summary, title),
        DiffSheet("evidence", diff_evidence.COLUMNS, [c.row() for c in evidence_rows]),
        DiffSheet("config", diff_config.CONFIG_COLUMNS, [c.row() for c in config_rows]),
        DiffSheet("catalogs", diff_config.CATALOG_COLUMNS, [c.row() for c in catalog_rows]),
        DiffSheet("sql", (*diff_sql.COLUMNS, "unified_diff"),
                  [{**c.row(), "unified_diff": c.unified_diff} for c in sql_rows]),
        DiffSheet("decisions", (*COUNT_COLUMNS, *CHANGE_KINDS),
                  [{**c.counts_row(), **{k: c.count(k) for k in CHANGE_KINDS}}
                   for c in diff.controls]),
        DiffSheet("changes", COLUMNS, [c.row() for c in diff.changes()]),
    ]


def write_xlsx(diff: RunDiff, path: Path) -> None:
    """The workbook: summary, one sheet per layer, and the changed items."""
    write_diff_workbook(path, sheets(diff))
