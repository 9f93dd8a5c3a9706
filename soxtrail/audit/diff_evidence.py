"""`soxtrail diff`, evidence layer: per source, the captured objects added, removed or changed.

Two runs store the same source bytes under different store keys (the key carries the run
id), so an object is matched across runs by its identity in the source: (source, query
name), the query name being the connector's locator (`audit-pg-fin-01/postgresql-….csv`,
`jira/search-1.json`, `catalog-role_catalog/role_catalog`, `<source>/completeness`). A
matched object changed when its SHA-256 or its row count differs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from soxtrail.kernel import evidence

CHANGE_KINDS = ("added", "removed", "changed")
CATALOG_CONNECTOR = "catalog_file"  # the connector that snapshots the three catalogs
COLUMNS = ("source", "query_name", "change", "system", "connector", "sha256_a", "sha256_b",
           "rows_a", "rows_b", "size_a", "size_b", "store_key_a", "store_key_b")


@dataclass(frozen=True)
class StoredObject:
    """One snapshot evidence row of a run: a captured object and where it came from."""

    evidence_id: str
    source: str
    query_name: str
    system: str
    connector: str
    sha256: str
    row_count: int
    store_key: str
    size: int | None = None  # bytes, read from the store for changed objects only

    @property
    def identity(self) -> tuple[str, str]:
        """(source, query name): the object's identity across runs."""
        return (self.source, self.query_name)

    @property
    def is_catalog(self) -> bool:
        """A snapshot of one of the three catalogs (role_catalog, applications, identity_map)."""
        return self.connector == CATALOG_CONNECTOR


@dataclass(frozen=True)
class ObjectChange:
    """An object present in one run only, or whose SHA-256 or row count differs."""

    change: str  # added | removed | changed
    a: StoredObject | None
    b: StoredObject | None

    @property
    def side(self) -> StoredObject:
        """The object as run A holds it, else as run B does."""
        side = self.a or self.b
        assert side is not None, "a change has at least one side"
        return side

    @property
    def identity(self) -> tuple[str, str]:
        """(source, query name) of the object."""
        return self.side.identity

    def row(self) -> dict[str, Any]:
        """The change as a flat row (COLUMNS)."""
        side = self.side
        return {
            "source": side.source, "query_name": side.query_name, "change": self.change,
            "system": side.system, "connector": side.connector,
            "sha256_a": self.a.sha256 if self.a else "",
            "sha256_b": self.b.sha256 if self.b else "",
            "rows_a": self.a.row_count if self.a else None,
            "rows_b": self.b.row_count if self.b else None,
            "size_a": self.a.size if self.a else None, "size_b": self.b.size if self.b else None,
            "store_key_a": self.a.store_key if self.a else "",
            "store_key_b": self.b.store_key if self.b else "",
        }


@dataclass
class EvidenceDiff:
    """The evidence layer: objects of both runs and the ones that differ."""

    objects_a: dict[str, StoredObject]  # evidence id -> object, run A
    objects_b: dict[str, StoredObject]
    changes: list[ObjectChange] = field(default_factory=list)
    sources_added: list[str] = field(default_factory=list)
    sources_removed: list[str] = field(default_factory=list)

    @property
    def changed_identities(self) -> set[tuple[str, str]]:
        """The (source, query name) of every object added, removed or changed."""
        return {c.identity for c in self.changes}

    def identity_of(self, evidence_id: str | None) -> tuple[str, str] | None:
        """The object identity of an evidence id of either run (None: not a snapshot row)."""
        if evidence_id is None:
            return None
        found = self.objects_a.get(evidence_id) or self.objects_b.get(evidence_id)
        return found.identity if found else None

    def object_of(self, evidence_id: str) -> StoredObject | None:
        """The object of an evidence id of either run."""
        return self.objects_a.get(evidence_id) or self.objects_b.get(evidence_id)

    def count(self, kind: str) -> int:
        """How many objects changed in one way."""
        return sum(1 for c in self.changes if c.change == kind)

    @property
    def differs(self) -> bool:
        """Any object or source added, removed or changed."""
        return bool(self.changes or self.sources_added or self.sources_removed)

    def per_source(self) -> list[dict[str, Any]]:
        """Per source: objects in A and B, and how many were added, removed and changed."""
        sources = sorted({o.source for o in self.objects_a.values()}
                         | {o.source for o in self.objects_b.values()},
                         key=lambda s: s.encode("utf-8"))
        rows = []
        for source in sources:
            mine = [c for c in self.changes if c.identity[0] == source]
            rows.append({
                "source": source,
                "objects_a": sum(1 for o in self.objects_a.values() if o.source == source),
                "objects_b": sum(1 for o in self.objects_b.values() if o.source == source),
                **{kind: sum(1 for c in mine if c.change == kind) for kind in CHANGE_KINDS},
                "status": ("added" if source in self.sources_added else
                           "removed" if source in self.sources_removed else
                           "changed" if mine else "same"),
            })
        return rows

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"objects_a": len(self.objects_a), "objects_b": len(self.objects_b),
                "sources_added": self.sources_added, "sources_removed": self.sources_removed,
                "counts": {k: self.count(k) for k in CHANGE_KINDS},
                "per_source": self.per_source(),
                "changes": [c.row() for c in self.changes]}


def _object(row: Mapping[str, Any]) -> StoredObject:
    params = row["query_params"] or {}
    return StoredObject(
        evidence_id=str(row["id"]), source=str(params.get(evidence.SOURCE_KEY) or ""),
        query_name=str(row["query_name"]), system=str(row["source_system"]),
        connector=str(params.get(evidence.CONNECTOR_KEY) or ""),
        sha256=str(row["result_hash"]), row_count=int(row["result_row_count"]),
        store_key=str(row["raw_output_s3_key"]))


def load_objects(conn: psycopg.Connection[Any], run_id: str) -> list[StoredObject]:
    """The run's snapshot evidence rows (every row but the control results)."""
    return [_object(row) for row in evidence.run_rows(conn, run_id)
            if row["source_system"] != evidence.RECONCILE]


def _by_identity(objects: Iterable[StoredObject]) -> dict[tuple[str, str], StoredObject]:
    found: dict[tuple[str, str], StoredObject] = {}
    for obj in objects:
        identity, n = obj.identity, 1
        while identity in found:  # never seen in practice; keep both rather than lose one
            n += 1
            identity = (obj.source, f"{obj.query_name}#{n}")
        found[identity] = obj
    return found


def diff_objects(objects_a: Iterable[StoredObject], objects_b: Iterable[StoredObject],
                 size_of: Callable[[StoredObject], int | None] | None = None) -> EvidenceDiff:
    """Match the objects of two runs by (source, query name) and list those that differ
    ("C" order); `size_of` reads the stored size of each object that differs."""
    list_a, list_b = list(objects_a), list(objects_b)
    by_a, by_b = _by_identity(list_a), _by_identity(list_b)
    result = EvidenceDiff({o.evidence_id: o for o in list_a}, {o.evidence_id: o for o in list_b})
    sized = (lambda o: o) if size_of is None else (
        lambda o: StoredObject(**{**o.__dict__, "size": size_of(o)}))
    for identity in sorted(set(by_a) | set(by_b), key=lambda i: (i[0].encode(), i[1].encode())):
        a, b = by_a.get(identity), by_b.get(identity)
        if a is None:
            result.changes.append(ObjectChange("added", None, sized(b)))
        elif b is None:
            result.changes.append(ObjectChange("removed", sized(a), None))
        elif (a.sha256, a.row_count) != (b.sha256, b.row_count):
            result.changes.append(ObjectChange("changed", sized(a), sized(b)))
    sources_a = {o.source for o in list_a}
    sources_b = {o.source for o in list_b}
    result.sources_added = sorted(sources_b - sources_a)
    result.sources_removed = sorted(sources_a - sources_b)
    return result
