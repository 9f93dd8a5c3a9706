"""The connector contract shared by every source module.

A connector module (``extract/<connector>.py``) exposes:

* ``SPEC``: a :class:`ConnectorSpec` naming its config keys;
* ``snapshot(source, ctx)``: runs its queries against the live source and
  hands each raw output to ``ctx.capture(...)`` byte for byte;
* ``count_rows(query_params, path)``: the row count of one raw object
  (verify recomputes it from the stored bytes);
* optionally ``count_stream(query_params)``: a :class:`RowCounter` giving the same
  count from the bytes as they are captured (no second read of the object);
* ``load(query_params, path)``: parses one raw object into rows of its raw
  table, yielding :class:`RawRow`, :class:`Reject` or :class:`Skipped`;
* optionally ``load_copy_text(query_params, path, head)``: as ``load``, but rows may
  come already encoded: a str (one COPY text line of locator and payload) or
  :class:`CopyRows` (whole lines, `head` being the COPY text of the columns before the
  locator);
* optionally ``settings(source)``: non-secret ``(setting, key, value)``
  triples the staging SQL needs (field maps, time zones, ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from soxtrail.kernel.quarter import Quarter

SYSTEMS = frozenset({"db_audit", "db_catalog", "iam", "tickets", "backups", "role_catalog"})
COMMON_KEYS = frozenset({"name", "system", "connector"})


@dataclass(frozen=True)
class RawTable:
    """A raw table: the context columns filled from the evidence row, then the payload."""

    context: tuple[str, ...]
    payload: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return ("run_id", "evidence_id", *self.context, "locator", *self.payload)


# the raw tables of JSON documents (raw.iam_events, raw.tickets, raw.backups), whichever
# connector feeds them: one `doc jsonb` per record
DOC_TABLE = RawTable(("source_name", "connector"), ("doc",))


@dataclass(frozen=True)
class ConnectorSpec:
    """What a connector accepts in its `sources:` entry, and the raw tables it loads."""

    name: str
    systems: frozenset[str]
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    # keys whose values are secrets even when written literally
    secret: frozenset[str] = frozenset()
    # at least one of these groups must be fully present (e.g. dsn | path+roles_path)
    one_of: tuple[frozenset[str], ...] = ()
    # the raw tables this connector's objects load into, by name (`raw.<table>`), with
    # their shape: the one declaration that platform.sql and the dbt sources are tested against
    raw_tables: Mapping[str, RawTable] = field(default_factory=dict)
    # a `tickets` source: where each normalised ticket field sits in a `raw.tickets` doc
    # unless the source's config says otherwise; `settings(source)` records the result as
    # `field` rows, the only paths the ticket staging reads (it has no defaults of its own)
    ticket_fields: Mapping[str, str] = field(default_factory=dict)
    # a source that forgets: it keeps records about this many days (Okta's System Log 90,
    # AWS Backup's job list 30), so a quarter is whole only with captures during it
    # (`soxtrail capture`), which the quarter's run includes (extract/connectors/inclusion.py)
    forgets_after_days: int | None = None


@dataclass(frozen=True)
class RawRow:
    """One row for the raw table: its locator and the payload columns in table order."""

    locator: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Reject:
    """A record that could not be loaded, with the reason and the raw text."""

    locator: str
    reason: str
    raw_text: str | None = None


@dataclass(frozen=True)
class Skipped:
    """Records read and deliberately not loaded (e.g. non-pgaudit log lines)."""

    count: int = 1


LoadItem = RawRow | Reject | Skipped


@dataclass(frozen=True)
class CopyRows:
    """Rows already in COPY text format with every column of their raw table (run,
    evidence and context columns, locator, payload): `count` lines, each ending in a
    newline, that the loader writes as they are."""

    data: bytes
    count: int


def copy_fields(values: Sequence[str | None], *, empty_as_null: bool = False) -> str:
    """Text values as tab-separated COPY text fields (no newline): None as \\N (and '' too
    with `empty_as_null`), every other value escaped. Raises TypeError at a value that is
    not text. A NUL byte passes through: callers check the line for it."""
    if empty_as_null:
        probe = "".join([value for value in values if value])
        if "\\" in probe or "\n" in probe or "\r" in probe or "\t" in probe:
            return "\t".join([copy_escape(value) if value else "\\N" for value in values])
        return "\t".join([value or "\\N" for value in values])
    probe = "".join([value for value in values if value is not None])
    if "\\" in probe or "\n" in probe or "\r" in probe or "\t" in probe:
        return "\t".join(["\\N" if value is None else copy_escape(value) for value in values])
    return "\t".join(["\\N" if value is None else value for value in values])


_UNESCAPES = {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f",
              "v": "\v"}


def copy_unescape(text: str) -> str | None:
    """One COPY text field read back (copy_texts' inverse): \\N as None, escapes undone."""
    if text == "\\N":
        return None
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out.append(char)
            i += 1
            continue
        escaped = text[i + 1]
        if escaped in "01234567":  # \ooo: an octal byte value (COPY's own form)
            digits = escaped
            while len(digits) < 3 and i + 1 + len(digits) < len(text) \
                    and text[i + 1 + len(digits)] in "01234567":
                digits += text[i + 1 + len(digits)]
            out.append(chr(int(digits, 8)))
            i += 1 + len(digits)
            continue
        out.append(_UNESCAPES.get(escaped, escaped))
        i += 2
    return "".join(out)


def copy_lines_columns(data: bytes, width: int) -> list[list[str | None]]:
    """Whole COPY text lines (UTF-8, each ending in a newline) as `width` columns of values."""
    columns: list[list[str | None]] = [[] for _ in range(width)]
    text = data.decode("utf-8")
    for line in text.split("\n")[:-1] if text else []:
        fields = line.split("\t")
        if len(fields) != width:
            raise ValueError(f"a COPY line has {len(fields)} fields, expected {width}")
        for column, value in zip(columns, fields, strict=True):
            column.append(copy_unescape(value))
    return columns


def copy_escape(value: str) -> str:
    """`value` escaped for COPY text format (backslash, newline, carriage return, tab)."""
    if "\\" in value:
        value = value.replace("\\", "\\\\")
    if "\n" in value:
        value = value.replace("\n", "\\n")
    if "\r" in value:
        value = value.replace("\r", "\\r")
    if "\t" in value:
        value = value.replace("\t", "\\t")
    return value


class JsonDoc(dict[str, Any]):
    """A parsed JSON object (a dict) that also carries the text it was parsed from.

    The loader stores `text` as the jsonb value instead of serialising the object again.
    A connector hands one over only when jsonb reads `text` exactly as it would read
    ``json.dumps`` of the object (e.g. no float, which Python would re-print differently)
    and after its jsonb guards (NUL, lone surrogates, NaN) have passed.
    """

    __slots__ = ("text",)

    def __init__(self, value: Mapping[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text


@dataclass(frozen=True)
class Captured:
    """A raw object written to the store during snapshot."""

    query_name: str
    key: str
    sha256: str
    size: int
    row_count: int
    path: Path  # local copy, valid until the source finishes


@dataclass
class Source:
    """One `sources:` entry with `${ENV}` values resolved (`values`) and as written (`raw`)."""

    name: str
    system: str
    connector: str
    values: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)
    base_dir: Path = Path(".")

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def path(self, key: str) -> Path:
        """A path-valued key, resolved against the config file's folder."""
        value = Path(str(self.values[key]))
        return value if value.is_absolute() else self.base_dir / value


class RowCounter(Protocol):
    """Counts an object's rows from its raw bytes while they stream to the store.

    ``total()`` must equal the connector's ``count_rows(params, path)`` on the same bytes,
    or be None when this stream cannot be counted that way (e.g. gzip data): the caller
    then falls back to ``count_rows``.
    """

    def feed(self, chunk: bytes) -> None:
        """Account for the next bytes of the object."""
        ...

    def total(self) -> int | None:
        """The row count once every byte was fed, or None (use ``count_rows``)."""
        ...


class SnapshotContext(Protocol):
    """What a connector may use while snapshotting (implemented by the pipeline)."""

    run_id: str
    quarter: Quarter
    executed_by: str
    clusters: tuple[str, ...] | None
    policy: Mapping[str, Any]  # the config's `policy` values, as validated

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
        """Stream `chunks` to the store (hashing as it goes) and queue its evidence row."""
        ...


def iter_file(path: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield a file's bytes in chunks (constant memory)."""
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            yield chunk


# ---------------------------------------------------------------- completeness (docs/controls.md)

# The query name and raw table of a source's completeness statement: one small JSON
# document per source and run, captured, hashed and evidenced like any raw object.
COMPLETENESS_QUERY = "completeness"
COMPLETENESS_TABLE = "raw.source_completeness"

# The query name and raw table of what a run includes of earlier runs' evidence for one of
# its sources (extract/connectors/inclusion.py): one JSON line per included evidence row.
INCLUDED_QUERY = "included_evidence"
INCLUDED_TABLE = "raw.included_evidence"


@dataclass(frozen=True)
class Finding:
    """One completeness finding: a stable code (e.g. COUNT_MISMATCH, MISSING_PAGE) and what
    it is about. `exception` False: said for the record, not an exception (NO_TOTAL_AVAILABLE,
    UNVERIFIED)."""

    code: str
    detail: str
    exception: bool = True


@dataclass
class Completeness:
    """What a connector can assert about the wholeness of what it captured from one source.

    `basis`: how it knows (`server_total`, `approximate_total`, `no_total`, `page_sequence`,
    `digest_chain`, `file_sequence`, `capture_time`, ...); `claimed`: what the source itself
    says it holds (None: it says nothing); `captured`: what was captured; `covered`: the
    [from, to) periods the captured data covers, ISO 8601 UTC; `facts`: anything else the
    Completeness mart or an auditor needs (numbers, keys, file names), JSON-serialisable.
    """

    basis: str
    captured: int
    claimed: int | None = None
    approximate: bool = False
    findings: list[Finding] = field(default_factory=list)
    covered: list[tuple[str, str]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The statement as one JSON-ready document (what is stored and loaded)."""
        return {
            "basis": self.basis, "captured": self.captured, "claimed": self.claimed,
            "approximate": self.approximate,
            "findings": [{"code": f.code, "detail": f.detail, "exception": f.exception}
                         for f in self.findings],
            "covered": [{"from": start, "to": end} for start, end in self.covered],
            "facts": self.facts,
        }
