"""The demo's returned user access review: `reviews/<quarter>/access-review_<quarter>_<owner>.csv`
(one `.xlsx`), in the review file format of extract/connectors/access_review.py."""

from __future__ import annotations

import csv
from datetime import datetime, time
from pathlib import Path

import xlsxwriter

from extract.connectors.access_review import COLUMNS
from extract.demo.plan_review import Review, ReviewFile, ReviewRow
from soxtrail.kernel.csvcells import neutralise

SHEET = "Review"


def _cells(row: ReviewRow) -> list[str]:
    values = {
        "item_key": row.item_key, "cluster": row.cluster, "login_role": row.login_role,
        "holder_identity": row.holder_identity, "identity_status": row.identity_status,
        "granted_role": row.granted_role, "role_owner": row.role_owner,
        "last_granted_at": row.last_granted_at, "grant_evidence": None,
        "decision": row.decision, "reviewer": row.reviewer, "reviewed_at": row.reviewed_at,
        "comment": row.comment,
    }
    return ["" if values[name] is None else str(values[name]) for name in COLUMNS]


def _write_csv(review_file: ReviewFile, path: Path) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in review_file.rows:
            writer.writerow([neutralise(cell) for cell in _cells(row)])


def _write_xlsx(review_file: ReviewFile, path: Path, created: datetime) -> None:
    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False,
                                           "strings_to_formulas": False,
                                           "strings_to_urls": False})
    book.set_properties({"title": f"Access review {path.stem}", "created": created})
    sheet = book.add_worksheet(SHEET)
    for c, name in enumerate(COLUMNS):
        sheet.write_string(0, c, name)
    for r, row in enumerate(review_file.rows, start=1):
        for c, cell in enumerate(_cells(row)):
            if cell:
                sheet.write_string(r, c, cell)
    about = book.add_worksheet("About")
    about.write_string(0, 0, "owner")
    about.write_string(0, 1, review_file.owner)
    book.close()


def write_review(review: Review, folder: Path) -> int:
    """Write the review's files into `folder`; the number of rows written."""
    folder.mkdir(parents=True, exist_ok=True)
    # the workbook's creation time: fixed, so the same plan gives the same bytes
    created = datetime.combine(review.deadline, time(9))
    rows = 0
    for review_file in review.files:
        path = folder / review_file.name
        if review_file.file_format == "xlsx":
            _write_xlsx(review_file, path, created)
        else:
            _write_csv(review_file, path)
        rows += len(review_file.rows)
    return rows
