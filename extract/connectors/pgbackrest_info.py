"""Connector `pgbackrest_info`: `pgbackrest info --output=json`, from a command or a file.

Completeness (one `completeness` object per snapshot, docs/configuration.md): the
listing is the repository's own, in one document (no total to compare; basis
`capture_time`). Retention: a stanza whose oldest backup still listed started after the
quarter's first day, or that lists none, is `RETENTION_SHORTER_THAN_QUARTER` (backups
that expired cannot be proven); `covered` runs from the latest of the stanzas' oldest
backups to the newest backup listed, bounded by the quarter.

Provenance (query_params): `command_line` as run (secrets redacted) and `capture:
command output`; a saved file: its `file` name, `capture: saved output`, `command_line`
null (the file records not the command that made it).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

from extract.connectors import completeness
from extract.connectors.formats import (
    READ_ERRORS,
    json_needs_check,
    jsonb_problem,
    open_bytes,
    parse_json,
    preview,
)
from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError, SourceError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import (
    DOC_TABLE,
    Completeness,
    ConnectorSpec,
    Finding,
    LoadItem,
    RawRow,
    Reject,
    Source,
    iter_file,
)
from soxtrail.kernel.store import safe_name

SPEC = ConnectorSpec(
    name="pgbackrest_info",
    systems=frozenset({"backups"}),
    optional=frozenset({"stanza_cluster", "timeout"}),
    one_of=(frozenset({"path"}), frozenset({"command"})),
    raw_tables={"raw.backups": DOC_TABLE},
)

RAW_TABLE = "raw.backups"
DEFAULT_TIMEOUT = 300
CHUNK = 1 << 20


def _command(source: Source) -> list[str]:
    command = source.get("command")
    if isinstance(command, str) or not isinstance(command, list) or not command or not all(
            isinstance(arg, str | int) for arg in command):
        raise ConfigError(f"source {source.name}: command: expected an argument list, e.g. "
                          f"[pgbackrest, info, --output=json] (no shell)")
    return [str(arg) for arg in command]


def _timeout(source: Source) -> float:
    value = source.get("timeout", DEFAULT_TIMEOUT)
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        timeout = -1.0
    if timeout <= 0:
        raise ConfigError(f"source {source.name}: timeout: expected seconds > 0, got {value!r}")
    return timeout


def _spooled(handle: IO[bytes]) -> Iterator[bytes]:
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        yield chunk


def _run(source: Source, argv: list[str], output: IO[bytes]) -> None:
    shown = secrets.redact(shlex.join(argv))
    try:
        result = subprocess.run(argv, stdout=output, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, timeout=_timeout(source), check=False)
    except FileNotFoundError as exc:
        raise SourceError(f"source {source.name}: command not found: {argv[0]}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SourceError(f"source {source.name}: `{shown}` timed out after "
                          f"{exc.timeout:g} s") from exc
    except OSError as exc:
        raise SourceError(f"source {source.name}: cannot run `{shown}`: {exc}") from exc
    if result.returncode != 0:
        lines = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = secrets.redact(lines[-1]) if lines else "no error output"
        raise SourceError(f"source {source.name}: `{shown}` exited with {result.returncode}: "
                          f"{detail}")


def snapshot(source: Source, ctx: Any) -> None:
    """One capture: the info JSON exactly as pgBackRest printed it (or as the file holds it)."""
    list(settings(source))  # validate stanza_cluster now
    object_name = "pgbackrest_info.json"
    if source.get("command") is not None:
        argv = _command(source)
        params: dict[str, Any] = {"command": argv, "file": object_name,
                                  "command_line": secrets.redact(shlex.join(argv)),
                                  "capture": "command output"}
        with tempfile.TemporaryFile() as output:
            _run(source, argv, output)
            ctx.capture(source, query_name=f"{source.name}/pgbackrest_info",
                        query_text=shlex.join(argv), params=params, ext="json",
                        raw_table=RAW_TABLE, chunks=_spooled(output),
                        count_rows=partial(count_rows, params))
            output.seek(0)
            completeness.record(source, ctx, statement(ctx.quarter, output.read()))
        return
    path = source.path("path")
    if not path.is_file():
        raise SourceError(f"source {source.name}: file not found: {path}")
    params = {"path": str(path), "file": path.name, "capture": "saved output",
              "command_line": None}
    ctx.capture(source, query_name=f"{source.name}/{safe_name(path.name)}",
                query_text=f"file {path} (saved output of `pgbackrest info --output=json`; "
                           "the file records not the command line that made it)",
                params=params, ext="json", raw_table=RAW_TABLE,
                chunks=iter_file(path), count_rows=partial(count_rows, params))
    try:
        with open_bytes(path) as handle:
            data = handle.read()
    except READ_ERRORS:
        data = b""
    completeness.record(source, ctx, statement(ctx.quarter, data))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None


def statement(quarter: Quarter, data: bytes) -> Completeness:
    """Retention per stanza from the captured listing (`data`, the bytes captured).

    A stanza's oldest backup (by `timestamp.start`) must have started on or before the
    quarter's first day: else RETENTION_SHORTER_THAN_QUARTER (also for a stanza listing
    no backup). What cannot be read is the load's business (a reject): it is skipped here.
    """
    try:
        document = json.loads(data)
    except ValueError:
        document = None
    stanzas = document if isinstance(document, list) else []
    start, end = quarter.start.astimezone(UTC), quarter.end.astimezone(UTC)
    first_day_end = start + timedelta(days=1)
    findings: list[Finding] = []
    by_stanza: dict[str, dict[str, Any]] = {}
    oldest_all: list[datetime] = []
    newest_all: list[datetime] = []
    captured = 0
    for stanza in stanzas:
        if not isinstance(stanza, dict) or not isinstance(stanza.get("name"), str) \
                or not isinstance(stanza.get("backup"), list):
            continue
        name = stanza["name"]
        starts, stops = [], []
        for backup in stanza["backup"]:
            times = backup.get("timestamp") if isinstance(backup, dict) else None
            if isinstance(times, dict):
                begun, ended = _epoch(times.get("start")), _epoch(times.get("stop"))
                starts += [begun] if begun else []
                stops += [ended] if ended else []
        captured += len(stanza["backup"])
        oldest = min(starts) if starts else None
        by_stanza[name] = {"backups": len(stanza["backup"]),
                           "oldest_start": _iso(oldest) if oldest else None,
                           "newest_stop": _iso(max(stops)) if stops else None}
        if oldest is None:
            findings.append(Finding("RETENTION_SHORTER_THAN_QUARTER", f"stanza {name} lists "
                                    "no backup: none of the quarter's backups can be proven"))
            continue
        oldest_all.append(oldest)
        newest_all += [max(stops)] if stops else []
        if oldest >= first_day_end:
            findings.append(Finding("RETENTION_SHORTER_THAN_QUARTER", f"stanza {name}: the "
                                    f"oldest backup still listed started {_iso(oldest)}, "
                                    f"after the quarter's first day ({_iso(start)}): backups "
                                    "that expired before it cannot be proven"))
    covered: list[tuple[str, str]] = []
    if oldest_all and newest_all and len(oldest_all) == len(by_stanza):
        # from the latest of the stanzas' oldest backups to the newest backup listed (the
        # listing was taken after it), bounded by the quarter
        begin, finish = max(start, max(oldest_all)), min(end, max(newest_all))
        if begin < finish:
            covered = [(_iso(begin), _iso(finish))]
    return Completeness(basis="capture_time", captured=captured, findings=findings,
                        covered=covered, facts={"stanzas": dict(sorted(by_stanza.items()))})


def _items(name: str, path: Path) -> Iterator[LoadItem]:
    """Every backup as a RawRow; an unreadable document or stanza as one Reject."""
    try:
        with open_bytes(path) as handle:
            data = handle.read()
    except READ_ERRORS as exc:
        yield Reject(f"{name}#0", f"{name}: unreadable: {exc}", None)
        return
    try:
        text = data.decode("utf-8")
        doc = parse_json(text)
    except UnicodeDecodeError as exc:
        yield Reject(f"{name}#0", f"{name}: invalid UTF-8 at offset {exc.start}", preview(data))
        return
    except ValueError as exc:
        yield Reject(f"{name}#0", f"{name}: invalid JSON: {exc}", preview(data))
        return
    if not isinstance(doc, list):
        yield Reject(f"{name}#0", f"{name}: expected a JSON array of stanzas", preview(data))
        return
    check = json_needs_check(text)
    for s_index, stanza in enumerate(doc):
        backups = stanza.get("backup") if isinstance(stanza, dict) else None
        stanza_name = stanza.get("name") if isinstance(stanza, dict) else None
        if not isinstance(stanza_name, str) or not isinstance(backups, list):
            yield Reject(f"{name}#{s_index}", "stanza without a name or a backup list", None)
            continue
        for b_index, backup in enumerate(backups):
            locator = f"{name}#{s_index}.{b_index}"
            problem = None if isinstance(backup, dict) else "backup is not a JSON object"
            if problem is None and check:
                problem = jsonb_problem(backup) or jsonb_problem(stanza_name)
            if problem:
                yield Reject(locator, problem, None)
            else:
                yield RawRow(locator, ({"stanza": stanza_name, "backup": backup},))


def count_rows(params: Mapping[str, Any], path: Path) -> int:
    """Number of backups over all stanzas (an unreadable document or stanza counts as one)."""
    return sum(1 for _ in _items(path.name, path))


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """RawRow(doc={"stanza": name, "backup": <backup as-is>}) per backup."""
    return _items(path.name, path)


def settings(source: Source) -> Iterator[tuple[str, str, str]]:
    """("stanza_cluster", stanza, cluster) for each entry of the stanza_cluster map."""
    mapping = source.get("stanza_cluster")
    if mapping is None:
        return
    if not isinstance(mapping, Mapping) or not all(
            isinstance(v, str) and v for v in mapping.values()):
        raise ConfigError(f"source {source.name}: stanza_cluster: expected a mapping of "
                          f"stanza name to cluster")
    for stanza, cluster in mapping.items():
        yield ("stanza_cluster", str(stanza), cluster)
