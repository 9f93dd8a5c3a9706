"""The workbook layout: templates render to YAML that is validated against the marts' columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from render.workbook import (
    LayoutError,
    continuation_name,
    evidence_location,
    header_rows,
    humanize,
    load_layout,
    render_layout_text,
    validate_layout,
)

COMMON = {"run_id": "uuid", "control_id": "text", "item_key": "text", "result": "text",
          "exception_reasons": "_text", "evidence_id": "uuid", "evidence_locator": "text",
          "supporting_evidence_ids": "_uuid", "control_evidence_id": "uuid"}
RUN = {"id": "5b0c8f0e-0000-4000-8000-000000000001", "quarter": "2024Q3",
       "clusters": ["pg-fin-01"], "config": {}, "config_hash": "ab", "tool_version": "0.1.0",
       "git_commit": "abc", "triggered_by": "ci", "started_at": "2024-10-01 06:00:00",
       "finished_at": None, "status": "running", "phase_reached": "reconcile", "error": None,
       "summary": {}}


def _available() -> dict[str, dict[str, str]]:
    ac01 = {**COMMON, "cluster": "text", "granted_at": "timestamptz", "has_ticket": "bool"}
    bk01 = {**COMMON, "cluster": "text", "backup_date": "date", "has_backup": "bool"}
    return {
        "summary": {"run_id": "uuid", "control_id": "text", "control_name": "text",
                    "description": "text", "population": "int4", "exceptions": "int4",
                    "pass_rate": "numeric", "result": "text", "control_evidence_id": "uuid"},
        "AC-01": ac01,
        "BK-01": bk01,
        "evidence": {"id": "uuid", "run_id": "uuid", "source_system": "text",
                     "query_name": "text", "query_text": "text", "query_params": "jsonb",
                     "executed_at": "timestamptz", "executed_by": "text",
                     "result_row_count": "int4", "result_hash": "text",
                     "raw_output_s3_key": "text", "created_at": "timestamptz",
                     "chain_seq": "int8", "chain_hash": "text"},
        "queries": {"control_id": "text", "control_name": "text", "model": "text",
                    "query_name": "text", "evidence_id": "uuid", "line": "int4", "sql": "text"},
    }


def _context(available: dict[str, dict[str, str]]) -> dict[str, Any]:
    controls = [{"control_id": c, "model": f"fct_control_{c.lower().replace('-', '')}__x",
                 "name": f"{c}: name: with colons", "description": 'says "why": here',
                 "columns": list(available[c]), "population": 3, "exceptions": 1,
                 "result": "EXCEPTIONS", "control_evidence_id": "e"}
                for c in ("AC-01", "BK-01")]
    return {"run": RUN, "controls": controls, "summary_columns": list(available["summary"]),
            "evidence_columns": list(available["evidence"]),
            "query_columns": list(available["queries"])}


def _doc(template: str = "default") -> dict[str, Any]:
    available = _available()
    return yaml.safe_load(render_layout_text(template, _context(available)))


def test_default_template_puts_item_first_then_attributes_then_result_and_evidence() -> None:
    available = _available()
    layout = load_layout("default", _context(available), available)
    names = [c.name for c in layout.controls["AC-01"].columns]
    assert names == ["item_key", "cluster", "granted_at", "has_ticket", "result",
                     "exception_reasons", "evidence_id", "evidence_locator",
                     "supporting_evidence_ids"]
    headers = [c.header for c in layout.controls["AC-01"].columns]
    assert headers[2] == "Granted at (UTC)"
    assert layout.controls["AC-01"].notes[0] == 'says "why": here'
    assert layout.sheet_names() == ["Summary", "AC-01", "BK-01", "Evidence", "Queries",
                                    "How to verify"]


def test_compact_template_is_a_different_layout_of_the_same_data() -> None:
    available = _available()
    layout = load_layout("compact", _context(available), available)
    assert [c.header for c in layout.controls["BK-01"].columns] == [
        "Key", "Result", "Why", "Evidence"]
    assert layout.evidence.sheet == "Sources"
    assert layout.summary.sheet == "Overview"


def test_unknown_column_names_the_template_control_and_column() -> None:
    doc = _doc()
    doc["controls"][0]["columns"].insert(1, {"column": "granted_att"})
    with pytest.raises(LayoutError, match=r"'default'.*controls\[0\] \(AC-01\).*"
                                          r"unknown column 'granted_att'"):
        validate_layout("default", doc, _available(), run_columns=list(RUN))


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["controls"].pop(), "no sheet for control"),
    (lambda d: d["controls"].append(dict(d["controls"][0])), "appears twice"),
    (lambda d: d["controls"][0].update(control="XX-99"), "unknown control 'XX-99'"),
    (lambda d: d["controls"][0]["columns"].pop(-3), "must show the 'evidence_id' column"),
    (lambda d: d["evidence"]["columns"].reverse(), "first column must be `id`"),
    (lambda d: d["evidence"].update(sheet="Evid[ence]"), "character Excel refuses"),
    (lambda d: d["queries"].update(sheet="x" * 32), "longer than Excel's 31"),
    (lambda d: d["queries"].update(sheet="summary"), "used twice"),
    (lambda d: d["summary"]["run_fields"].append({"label": "x", "field": "nope"}),
     "unknown run field 'nope'"),
    (lambda d: d["summary"].update(colour="red"), "unknown key"),
    (lambda d: d.pop("verify"), "missing key"),
    (lambda d: d["controls"][0]["columns"].append("item_key"), "appears twice"),
])
def test_bad_layouts_are_refused_with_a_reason(change: Any, message: str) -> None:
    doc = _doc()
    change(doc)
    with pytest.raises(LayoutError, match=message):
        validate_layout("default", doc, _available(), run_columns=list(RUN))


def test_a_missing_template_lists_the_builtin_ones() -> None:
    with pytest.raises(LayoutError, match="built-in templates: compact, default"):
        load_layout("nope", _context(_available()), _available())


def test_a_template_that_uses_an_undefined_name_fails_clearly(tmp_path: Path) -> None:
    template = tmp_path / "bad.yml.j2"
    template.write_text("summary: {{ run.no_such_field }}\n")
    with pytest.raises(LayoutError, match=r"bad\.yml\.j2.*no_such_field"):
        load_layout(str(template), _context(_available()), _available())


def test_continuation_sheet_names_stay_within_31_characters() -> None:
    assert continuation_name("AC-01", 1) == "AC-01"
    assert continuation_name("AC-01", 2) == "AC-01 (2)"
    long = continuation_name("A" * 31, 12)
    assert len(long) == 31 and long.endswith(" (12)")


def test_evidence_locations_follow_the_row_limit() -> None:
    assert evidence_location(0, sheet="Evidence", header_rows=6, per_sheet=4) == ("Evidence", 7)
    assert evidence_location(3, sheet="Evidence", header_rows=6, per_sheet=4) == ("Evidence", 10)
    assert evidence_location(4, sheet="Evidence", header_rows=6, per_sheet=4) == (
        "Evidence (2)", 7)


def test_header_rows_count_title_notes_blank_and_header() -> None:
    available = _available()
    layout = load_layout("default", _context(available), available)
    assert header_rows(layout.controls["AC-01"]) == 1 + 2 + 1 + 1


def test_humanize_makes_headers() -> None:
    assert humanize("has_ticket") == "Has ticket"
    assert humanize("supporting_evidence_ids") == "Supporting evidence IDs"
    assert humanize("control_evidence_id") == "Control evidence ID"
