"""The demo's oracle: `expected.json`, every control's population items and verdicts.

The verdicts are an independent second implementation of docs/controls.md, per control family
(`oracle_access`, `oracle_changes`, `oracle_backups`); they exist to check the SQL, so they
never run it. The controls and their order come from the kernel's `CONTROLS`.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.quarter import Quarter

TICKET_KEY = re.compile(r"[A-Z][A-Z0-9]+-[0-9]+")
Item = tuple[list[str], str, list[str]]


def result(key: list[str], reasons: Iterable[str]) -> Item:
    """An item with its result: EXCEPTION when there is any reason."""
    codes = sorted(set(reasons))
    return (key, "EXCEPTION" if codes else "PASS", codes)


def stmt_key(sql: str, app: str) -> str | None:
    """The ticket key of a statement per docs/controls.md: comments first, then application_name."""
    for comment in _comments(sql):
        match = TICKET_KEY.search(comment)
        if match:
            return match.group(0)
    match = TICKET_KEY.search(app or "")
    return match.group(0) if match else None


def _comments(sql: str) -> Iterator[str]:
    """SQL comments of a statement in order, skipping string literals and quoted identifiers."""
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            while end != -1 and end + 1 < n and sql[end + 1] == ch:
                end = sql.find(ch, end + 2)
            i = n if end == -1 else end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end == -1 else end
            yield sql[i + 2:end]
            i = end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            end = n if end == -1 else end
            yield sql[i + 2:end]
            i = end + 2
        else:
            i += 1


class ItemSink:
    """Streams expected items (one JSON line each) and counts them."""

    def __init__(self, handle: io.TextIOBase | Any) -> None:
        self.handle = handle
        self.count = 0
        self.exceptions = 0

    def add(self, key: list[str], reasons: list[str]) -> None:
        self.handle.write(_item_json(result(key, reasons)))
        self.handle.write("\n")
        self.count += 1
        self.exceptions += bool(reasons)


def _item_json(item: Item) -> str:
    return json.dumps({"key": item[0], "result": item[1], "reasons": item[2]})


def write_expected(path: Path, quarter: Quarter, controls: dict[str, list[Item]],
                   streamed: dict[str, Path],
                   completeness: dict[str, list[str]] | None = None,
                   completeness_clusters: dict[str, list[str]] | None = None,
                   register: dict[str, Any] | None = None) -> None:
    """`expected.json`: per control of `CONTROLS`, computed items or streamed ones; then
    `completeness`: per source name, the sorted finding codes its statement must carry;
    `completeness_clusters`: per cluster with a planted scope finding, its codes;
    `register`: the exceptions register's responded rows and counts (oracle_register)."""
    with path.open("w", encoding="utf-8") as out:
        out.write(f'{{"quarter": "{quarter.label}", "controls": {{\n')
        for n, control in enumerate(CONTROLS):
            out.write(f'"{control}": [\n')
            first = True
            lines: Iterable[str]
            if control in controls:
                lines = (_item_json(i) for i in controls[control])
            else:
                lines = _stripped_lines(streamed[control])
            for line in lines:
                if not first:
                    out.write(",\n")
                out.write(line)
                first = False
            out.write("\n]" + (",\n" if n < len(CONTROLS) - 1 else "\n"))
        out.write("},\n")
        out.write(f'"completeness": {json.dumps(completeness or {}, sort_keys=True)},\n')
        out.write('"completeness_clusters": '
                  f'{json.dumps(completeness_clusters or {}, sort_keys=True)},\n')
        out.write(f'"register": {json.dumps(register or {}, sort_keys=True)}}}\n')


def _stripped_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            yield line.rstrip("\n")
