"""Connector `responses`: management's responses file, validated row by row."""

from __future__ import annotations

from pathlib import Path

import pytest

from extract.connectors import responses
from extract.demo.oracle_register import expected_register
from extract.demo.plan_responses import plan_responses
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import RawRow, Reject

GOOD = """\
responses:
  - control: AC-01
    item: pg-fin-01|hiro|fin_admin|2024-07-09T15:40:00Z
    root_cause: grant before approval
    remediation: SEC-901
    owner: dana
    due: 2024-10-31
    status: open
  - control: AC-02
    item: elena|pg-fin-01|LOGIN
    owner: erin
    due: 2024-10-31
    status: accepted-risk
    approver: frank
    expires: 2025-03-31
"""

BAD = """\
responses:
  - control: AC-02
    item: a|b|c
    owner: erin
    due: 2024-10-31
    status: accepted-risk
    approver: Erin
    expires: 2025-03-31
  - control: AC-02
    item: a|b|d
    owner: erin
    due: 2024-10-31
    status: accepted-risk
    approver: frank
  - control: AC-01
    item: x
    owner: dana
    due: soon
    status: open
  - control: AC-01
    item: y
    owner: dana
    due: 2024-10-31
    status: closed
  - control: AC-01
    item: z
    due: 2024-10-31
    status: open
  - control: AC-01
    item: x2
    owner: dana
    due: 2024-10-31
    status: open
    colour: red
  - control: AC-01
    item: x2
    owner: dana
    due: 2024-10-31
    status: open
  - control: AC-01
    item: x2
    owner: dana
    due: 2024-11-30
    status: open
"""


def _load(tmp_path: Path, text: str) -> tuple[list[RawRow], list[Reject], int]:
    path = tmp_path / "2024Q3.yml"
    path.write_text(text, encoding="utf-8")
    items = list(responses.load({}, path))
    rows = [i for i in items if isinstance(i, RawRow)]
    rejects = [i for i in items if isinstance(i, Reject)]
    return rows, rejects, responses.count_rows({}, path)


def test_a_valid_file_loads_one_row_per_response_located_by_line(tmp_path: Path) -> None:
    rows, rejects, read = _load(tmp_path, GOOD)
    assert not rejects and read == 2
    assert [r.locator for r in rows] == ["2024Q3.yml:2", "2024Q3.yml:9"]
    assert rows[0].values == ("AC-01", "pg-fin-01|hiro|fin_admin|2024-07-09T15:40:00Z",
                              "grant before approval", "SEC-901", "dana", "2024-10-31", "open",
                              None, None, None)
    assert rows[1].values[-2:] == ("frank", "2025-03-31")


def test_bad_responses_are_rejected_with_line_and_field_and_every_one_is_counted(
        tmp_path: Path) -> None:
    rows, rejects, read = _load(tmp_path, BAD)
    reasons = {r.locator: r.reason for r in rejects}
    assert reasons == {
        "2024Q3.yml:2": "approver: a waiver's approver must differ from its owner",
        "2024Q3.yml:9": "expires: a waiver (accepted-risk) needs an expiry date",
        "2024Q3.yml:15": "due: 'soon' is not a date (YYYY-MM-DD)",
        "2024Q3.yml:20": "status: 'closed' is not one of open, remediated, accepted-risk",
        "2024Q3.yml:25": "owner: required",
        "2024Q3.yml:29": f"colour: unknown field (allowed: {', '.join(responses.FIELDS)})",
        "2024Q3.yml:40": "item: a second response to AC-01 x2 (first on line 35)",
    }
    assert [r.locator for r in rows] == ["2024Q3.yml:35"]
    assert read == len(rows) + len(rejects) == 8


def test_a_missing_or_empty_file_is_no_responses(tmp_path: Path) -> None:
    assert _load(tmp_path, "") == ([], [], 0)


def test_respond_writes_the_file_and_replaces_a_response_to_the_same_item(
        tmp_path: Path) -> None:
    path = tmp_path / "responses" / "2024Q3.yml"
    entry = {"control": "AC-01", "item": "k|1", "owner": "dana", "due": "2024-10-31",
             "status": "open"}
    assert responses.write_response(path, entry) is False
    assert responses.write_response(path, {**entry, "status": "remediated"}) is True
    assert responses.write_response(path, {**entry, "item": "k|2"}) is False
    rows, rejects, _ = _load(tmp_path, path.read_text(encoding="utf-8"))
    assert not rejects
    assert [(r.values[1], r.values[6]) for r in rows] == [("k|1", "remediated"), ("k|2", "open")]


@pytest.mark.parametrize(("extra", "message"), [
    ({"approver": "dana", "expires": "2025-01-31"}, "approver must differ from its owner"),
    ({"approver": "frank"}, "needs an expiry date"),
    ({"expires": "2025-01-31"}, "needs an approver"),
])
def test_respond_refuses_a_waiver_approved_by_its_owner_or_without_expiry(
        tmp_path: Path, extra: dict[str, str], message: str) -> None:
    path = tmp_path / "2024Q3.yml"
    with pytest.raises(ConfigError, match=message):
        responses.write_response(path, {"control": "AC-02", "item": "a|b|c", "owner": "dana",
                                        "due": "2024-10-31", "status": "accepted-risk",
                                        **extra})
    assert not path.exists()


def test_the_demo_plants_one_waiver_and_one_expired_waiver_never_counted_as_pass() -> None:
    quarter = Quarter.parse("2024Q3")
    items = {c: [(["x", str(n)], "EXCEPTION", ["R"]) for n in range(3)]
             for c in ("AC-01", "AC-02", "AC-03", "LG-01")}
    planned = plan_responses(quarter, items)
    register = expected_register(planned, exceptions=12, judged_on=quarter.end_day)
    states = sorted(row["waiver_state"] for row in register["rows"])
    assert states == ["expired", "none", "none", "none", "waived until 2034-12-31"]
    assert all(row["register_status"].startswith("EXCEPTION") for row in register["rows"])
    assert register["without_response"] == 12 - len(planned)
    assert all(r.approver != r.owner for r in planned if r.status == "accepted-risk")
