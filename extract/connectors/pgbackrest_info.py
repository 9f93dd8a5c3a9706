"""Connector `pgbackrest_info`: `pgbackrest info --output=json`, from a command or a file."""

from __future__ import annotations

import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import IO, Any

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
from soxtrail.kernel.sources import (
    DOC_TABLE,
    ConnectorSpec,
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
        params: dict[str, Any] = {"command": argv, "file": object_name}
        with tempfile.TemporaryFile() as output:
            _run(source, argv, output)
            ctx.capture(source, query_name=f"{source.name}/pgbackrest_info",
                        query_text=shlex.join(argv), params=params, ext="json",
                        raw_table=RAW_TABLE, chunks=_spooled(output),
                        count_rows=partial(count_rows, params))
        return
    path = source.path("path")
    if not path.is_file():
        raise SourceError(f"source {source.name}: file not found: {path}")
    params = {"path": str(path), "file": path.name}
    ctx.capture(source, query_name=f"{source.name}/{safe_name(path.name)}",
                query_text=f"file {path}", params=params, ext="json", raw_table=RAW_TABLE,
                chunks=iter_file(path), count_rows=partial(count_rows, params))


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
    return sum(1 for _ in _items(str(params.get("file") or path.name), path))


def load(params: Mapping[str, Any], path: Path) -> Iterator[LoadItem]:
    """RawRow(doc={"stanza": name, "backup": <backup as-is>}) per backup."""
    return _items(str(params.get("file") or path.name), path)


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
