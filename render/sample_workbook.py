"""The tester's workbook of a recorded sample (`soxtrail sample`): the drawn items' mart rows
in rank order with empty columns for the re-performance, and an About sheet saying how the
sample was drawn and how to redraw it without soxtrail."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import xlsxwriter

from render.workbook.values import display
from soxtrail.kernel import sampling

SAMPLE_SHEET = "Sample"
ABOUT_SHEET = "About"
# the tester fills these in; `conclusion` accepts only CONCLUSIONS
TESTER_COLUMNS = ("tester", "tested_at", "conclusion", "notes", "reference")
CONCLUSIONS = ("pass", "fail")

REDRAW_PYTHON = """import hashlib
keys = [...]  # the control's item_key values of the run (population_source)
seed, size = {seed}, {size}
assert hashlib.sha256("\\n".join(sorted(keys)).encode()).hexdigest() == "{population_hash}"
rank = sorted(keys, key=lambda k: (hashlib.sha256(f"{{seed}}|{{k}}".encode()).hexdigest(), k))
print(rank[:size])"""

REDRAW_SQL = """select item_key, rank_hash from (
    select item_key,
        encode(sha256(convert_to('{seed}|' || item_key, 'UTF8')), 'hex') as rank_hash
    from {population_source}
) as ranked
order by rank_hash collate "C", item_key collate "C"
limit {size};"""


def _about(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    strata = doc.get("strata") or {}
    lines = [
        ("sample", str(doc["id"])),
        ("run", f"{doc['run_id']} ({doc['quarter']})"),
        ("control", str(doc["control_id"])),
        ("population", f"{doc['population_count']} items of {doc['population_source']}"),
        ("population hash", f"{doc['population_hash']} (SHA-256 of the item keys sorted by "
                            "code point, joined by a newline, no trailing newline)"),
        ("method", str(doc["method"])),
        ("seed", str(doc["seed"])),
        ("size", f"{doc['size_drawn']} drawn of {doc['size_requested']} asked"
                 + (": the size is at least the population, so every item is tested"
                    if doc.get("all_items") else "")),
        ("stratified by", str(doc.get("stratify") or "not stratified")),
    ]
    lines += [(f"stratum {name}", f"{v['drawn']} drawn of {v['population']}")
              for name, v in strata.items()]
    lines += [
        ("requested by", f"{doc['requested_by']} at {doc['requested_at']}"),
        ("signed with", (doc.get("signer_key") or {}).get("fingerprint")
         or "unsigned (no key found)"),
        ("rank hash", "SHA-256 (hex) of the UTF-8 text '<seed>|<item_key>'; the sample is the "
                      "items with the smallest rank hashes"),
        ("stratified draw", "one item per non-empty stratum, the rest shared in proportion to "
                            "each stratum's remaining items by the largest-remainder rule "
                            "(docs/auditor-guide.md); drawn by rank hash within each stratum"),
        ("redraw in Python", REDRAW_PYTHON.format(
            seed=doc["seed"], size=doc["size_drawn"], population_hash=doc["population_hash"])),
        ("redraw in SQL (not stratified)", REDRAW_SQL.format(
            seed=doc["seed"], size=doc["size_drawn"],
            population_source=doc["population_source"])),
        ("conclusion", "fill tester, tested_at, conclusion (pass or fail), notes and reference "
                       "(the ticket, screenshot or working paper) for each row"),
    ]
    return lines


def _cell(sheet: Any, row: int, col: int, value: Any, udt: str) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        sheet.write_number(row, col, value)
    else:
        sheet.write_string(row, col, display(value, udt))


def write_sample_workbook(path: Path, doc: Mapping[str, Any], columns: Mapping[str, str],
                          rows: Mapping[str, Sequence[Any]]) -> Path:
    """Write the workbook of sample document `doc`: one row per drawn item (its mart row,
    `rows[item_key]`, values in the order of `columns`: name -> type) in rank order."""
    created = datetime.strptime(str(doc["requested_at"]), "%Y-%m-%dT%H:%M:%S.%fZ")
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False,
                                           "strings_to_formulas": False,
                                           "strings_to_urls": False})
    book.set_properties({"title": f"Sample {doc['control_id']} of run {doc['run_id']}",
                         "subject": f"{sampling.METHOD} seed {doc['seed']}",
                         "created": created})
    header = book.add_format({"bold": True, "bg_color": "#D9E1F2", "bottom": 1})
    tester = book.add_format({"bold": True, "bg_color": "#FFF2CC", "bottom": 1})
    wrap = book.add_format({"text_wrap": True, "valign": "top", "font_name": "Consolas"})
    sheet = book.add_worksheet(SAMPLE_SHEET)
    stratified = bool(doc.get("stratify"))
    lead = ["sample_rank", "rank_hash", *(["stratum"] if stratified else [])]
    names = [*lead, *columns, *TESTER_COLUMNS]
    for c, name in enumerate(names):
        sheet.write_string(0, c, name, tester if name in TESTER_COLUMNS else header)
    items = doc.get("items") or []
    for r, item in enumerate(items, start=1):
        sheet.write_number(r, 0, int(item["rank"]))
        sheet.write_string(r, 1, str(item["rank_hash"]))
        if stratified:
            sheet.write_string(r, 2, str(item.get("stratum") or ""))
        values = rows.get(str(item["item_key"]))
        if values is None:
            raise KeyError(f"no mart row for drawn item {item['item_key']!r}")
        for c, (udt, value) in enumerate(zip(columns.values(), values, strict=True),
                                         start=len(lead)):
            _cell(sheet, r, c, value, udt)
    conclusion = names.index("conclusion")
    if items:
        sheet.data_validation(1, conclusion, len(items), conclusion, {
            "validate": "list", "source": list(CONCLUSIONS),
            "input_title": "conclusion", "input_message": "pass or fail",
            "error_message": "pass or fail"})
    sheet.freeze_panes(1, len(lead))
    sheet.autofilter(0, 0, len(items), len(names) - 1)
    sheet.set_column(1, 1, 20)
    about = book.add_worksheet(ABOUT_SHEET)
    about.set_column(0, 0, 30)
    about.set_column(1, 1, 110)
    about.write_string(0, 0, "Drawing a sample for re-performance", header)
    for r, (label, text) in enumerate(_about(doc), start=1):
        about.write_string(r, 0, label)
        about.write_string(r, 1, text, wrap)
    book.close()
    return path
