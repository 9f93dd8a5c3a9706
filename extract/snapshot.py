"""Phase 1: run every source's queries and capture each raw output to the store."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from soxtrail.kernel import evidence, secrets
from soxtrail.kernel.evidence import EvidenceRow
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Captured, RowCounter, Source
from soxtrail.kernel.store import LocalStore, Store, check_key, safe_name, spool


def _counted(chunks: Iterable[bytes], counter: RowCounter) -> Iterator[bytes]:
    """The chunks, each fed to `counter` as it passes."""
    feed = counter.feed
    for chunk in chunks:
        feed(chunk)
        yield chunk


@dataclass
class SnapshotRun:
    """The SnapshotContext handed to connectors: stores objects, queues evidence rows."""

    run_id: str
    quarter: Quarter
    executed_by: str
    store: Store
    spool_dir: Path
    clusters: tuple[str, ...] | None = None
    # the config's `policy` values (e.g. postgres_catalog's capture tolerance)
    policy: Mapping[str, Any] = field(default_factory=dict)
    # worker processes for `count_rows` (a functools.partial of a module function), so
    # that parsing a spooled object to count it does not hold this process's GIL
    counting: Executor | None = None
    records: list[EvidenceRow] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def _count(self, count_rows: Callable[[Path], int], path: Path) -> int:
        if self.counting is not None and isinstance(count_rows, functools.partial):
            return self.counting.submit(count_rows, path).result()
        return count_rows(path)

    def key_for(self, source: Source, query_name: str, ext: str) -> str:
        """`<quarter>/<run_id>/raw/<system>/<source>/<object>.<ext>`."""
        leaf = safe_name(query_name.split("/")[-1] if "/" in query_name else query_name)
        if ext and not leaf.endswith("." + ext):
            leaf = f"{leaf}.{ext}"
        return check_key(f"{self.quarter.label}/{self.run_id}/raw/{source.system}/"
                         f"{safe_name(source.name)}/{leaf}")

    def capture(
        self,
        source: Source,
        *,
        query_name: str,
        query_text: str,
        params: Mapping[str, Any],
        ext: str,
        raw_table: str,
        chunks: Iterable[bytes],
        count_rows: Callable[[Path], int],
        counter: RowCounter | None = None,
    ) -> Captured:
        """Stream the raw bytes to the store, hashing as they pass; queue the evidence row.

        With a `counter` the rows are counted as the bytes pass too (`count_rows`, which
        re-reads the spooled object, only when the counter cannot count this stream). The
        spooled file itself becomes the store object (moved, not copied, into a local
        store): the object is the very bytes that were hashed.
        """
        if query_name in self._names:
            raise ValueError(f"duplicate query name {query_name!r} in source {source.name!r}")
        self._names.add(query_name)
        executed_at = datetime.now(timezone.utc)
        if counter is not None:
            chunks = _counted(chunks, counter)
        path, digest, size = spool(chunks, self.spool_dir)
        counted = counter.total() if counter is not None else None
        rows = counted if counted is not None else self._count(count_rows, path)
        key = self.key_for(source, query_name, ext)
        local = isinstance(self.store, LocalStore)
        # a local store takes the spool file itself (Captured.path is then the object); to
        # another store the file is copied and the spool kept, so that Captured.path stays
        # readable until the source finishes (its spool folder is removed then)
        self.store.put_file(key, path, move=local)
        if local:
            path = Path(self.store.location(key))
        all_params = evidence.snapshot_params(
            params, source=source.name, connector=source.connector, raw_table=raw_table,
            cluster=source.get("cluster"))
        self.records.append(EvidenceRow(
            id=str(uuid.uuid4()),
            run_id=self.run_id,
            source_system=source.system,
            query_name=query_name,
            query_text=secrets.redact(query_text),
            query_params=all_params,
            executed_at=executed_at,
            executed_by=self.executed_by,
            result_row_count=rows,
            result_hash=digest,
            raw_output_s3_key=key,
        ))
        return Captured(query_name=query_name, key=key, sha256=digest, size=size,
                        row_count=rows, path=path)
