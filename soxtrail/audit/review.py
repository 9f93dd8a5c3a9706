"""The user access review behind AC-03: the review files a run's role owners fill in (export)
and the returned files checked and filed where the next quarter run captures them (import).

The file format (columns, decisions, the rules a returned row must meet) is the access
review connector's (`extract.connectors.access_review`): export writes its COLUMNS, import
checks a file with the same `review_rows` the load applies, so one rule set decides both.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from extract.connectors.access_review import COLUMNS, DECISIONS, FORMATS, review_rows
from render.review import write_review_csv, write_review_xlsx
from soxtrail.kernel import controls, runs
from soxtrail.kernel.config import policy_value, quarter_of
from soxtrail.kernel.errors import ConfigError

GROUPINGS = ("owner",)  # `--by`: one file per role owner (the role catalog's `owner`)
FORMAT_CHOICES = {"xlsx": ("xlsx",), "csv": ("csv",), "both": ("xlsx", "csv")}
UNOWNED = "unowned"  # the file of the items whose role has no owner in the role catalog
FILE_PREFIX = "access-review"
# what the reviewer fills in; the other columns are the run's, pre-filled
TO_FILL = ("decision", "reviewer", "reviewed_at", "comment")
_NAME = re.compile(r"^access-review_(?P<quarter>\d{4}Q[1-4])_", re.I)

# Every AC-03 item of the run (every membership on an in-scope cluster at quarter end), with
# the latest AC-01 grant of the same cluster, login role and role in the run, if any.
ITEMS = """
with grants as (
    select distinct on (cluster, grantee, granted_role)
        cluster,
        grantee,
        granted_role,
        granted_at,
        evidence_id::text as grant_evidence_id,
        evidence_locator as grant_evidence_locator
    from {ac01}
    where run_id = %(run_id)s
    order by cluster, grantee, granted_role, granted_at desc, item_key
)
select
    access.item_key,
    access.cluster,
    access.login_role,
    access.holder_identity,
    access.is_holder_active,
    access.granted_role,
    access.role_owner,
    access.evidence_id::text as evidence_id,
    access.evidence_locator,
    grants.granted_at,
    grants.grant_evidence_id,
    grants.grant_evidence_locator
from {ac03} as access
left join grants
    on
        access.cluster = grants.cluster
        and access.login_role = grants.grantee
        and access.granted_role = grants.granted_role
where access.run_id = %(run_id)s
order by access.item_key
"""


@dataclass(frozen=True)
class ReviewFile:
    """One review file written: whose it is, where, how many rows."""

    owner: str | None  # None: the items whose role has no owner
    path: Path
    rows: int


@dataclass(frozen=True)
class ReviewExport:
    """What `export_review` wrote for a run."""

    run: runs.Run
    items: int
    files: list[ReviewFile]


def resolve_run(conn: psycopg.Connection[Any], ref: str, purpose: str) -> runs.Run:
    """The run `ref` names (an id, an 8+ character prefix, or `latest`: the newest completed
    quarter run), refused unless it is a completed quarter run (a capture has no marts)."""
    run = runs.get_quarter_run(conn, ref, purpose)
    if run.status != "completed":
        raise ConfigError(f"run {run.id} is {run.status}: only a completed quarter run has the "
                          f"AC-03 rows to {purpose}")
    return run


def _timestamp(value: datetime | None) -> str | None:
    """An ISO 8601 UTC timestamp (`2024-07-08T09:15:02Z`, milliseconds when it has them)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    spec = "milliseconds" if value.microsecond else "seconds"
    return value.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def _grant_evidence(row: dict[str, Any]) -> str:
    """Where the membership was seen (the catalog snapshot row) and, when the run saw it
    granted, where the grant was logged; each with its evidence id."""
    text = f"catalog {row['evidence_locator']} (evidence {row['evidence_id']})"
    if row["grant_evidence_id"] is not None:
        text += (f"; grant {row['grant_evidence_locator']} "
                 f"(evidence {row['grant_evidence_id']})")
    return text


def _has_owner_column(conn: psycopg.Connection[Any], table: str) -> bool:
    found = conn.execute(
        "select 1 from information_schema.columns where table_schema = %s"
        " and table_name = %s and column_name = 'role_owner'",
        (controls.MARTS_SCHEMA, table)).fetchone()
    return found is not None


def review_items(conn: psycopg.Connection[Any], run: runs.Run) -> list[dict[str, Any]]:
    """The run's AC-03 items as review rows (every column of COLUMNS, sorted by item_key):
    pre-filled from the run, the reviewer's columns empty."""
    ac03 = controls.CONTROLS["AC-03"]
    if not _has_owner_column(conn, ac03):
        raise ConfigError(f"{controls.MARTS_SCHEMA}.{ac03} has no role_owner column (a release "
                          "before the access review reconciled it): run the quarter again")
    query = sql.SQL(ITEMS).format(
        ac01=sql.Identifier(controls.MARTS_SCHEMA, controls.CONTROLS["AC-01"]),
        ac03=sql.Identifier(controls.MARTS_SCHEMA, ac03))
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, {"run_id": run.id})
        found = cur.fetchall()
    items = []
    for row in found:
        item: dict[str, Any] = dict.fromkeys(COLUMNS)
        item.update({
            "item_key": row["item_key"], "cluster": row["cluster"],
            "login_role": row["login_role"], "holder_identity": row["holder_identity"],
            "identity_status": "active" if row["is_holder_active"] else "deactivated",
            "granted_role": row["granted_role"], "role_owner": row["role_owner"] or None,
            "last_granted_at": _timestamp(row["granted_at"]),
            "grant_evidence": _grant_evidence(row),
        })
        items.append(item)
    return items


def slug(owner: str) -> str:
    """An owner's name as a file-name part: ASCII letters, digits, `.`, `_` and `-` only,
    lower case (`Platform DBA` → `platform-dba`)."""
    ascii_text = unicodedata.normalize("NFKD", owner).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9._-]+", "-", ascii_text.lower()).strip("-._")


def file_names(owners: Sequence[str | None], quarter: str) -> dict[str | None, str]:
    """`access-review_<quarter>_<owner>` per owner (None: `unowned`); owners whose names
    give the same (or no) slug get a part of their name's SHA-256 added, so no two owners
    ever share a file."""
    slugs = {owner: (slug(owner) if owner is not None else UNOWNED) for owner in owners}
    taken = Counter(slugs.values())
    names = {}
    for owner, part in slugs.items():
        if owner is not None and (not part or taken[part] > 1):
            digest = hashlib.sha256(owner.encode()).hexdigest()[:8]
            part = f"{part}-{digest}" if part else f"owner-{digest}"
        names[owner] = f"{FILE_PREFIX}_{quarter}_{part}"
    return names


def deadline(run: runs.Run) -> str:
    """The review's deadline under the run's recorded policy, as YYYY-MM-DD: its
    `access_review_deadline`, else `access_review_due_days` after the quarter's last local
    day (the rule of AC-03's `review_late_from`)."""
    fixed = policy_value(run.config, "access_review_deadline")
    if fixed:
        return str(fixed)
    last_day = quarter_of(run.config, run.quarter).end_day - timedelta(days=1)
    return (last_day + timedelta(days=int(policy_value(run.config,
                                                       "access_review_due_days")))).isoformat()


def _about(run: runs.Run, owner: str | None, rows: int, exported_at: datetime
           ) -> list[tuple[str, str]]:
    decisions = " or ".join(DECISIONS)
    return [
        ("Access review", "The user access review behind AC-03 (quarter-end access listing)."),
        ("Run", run.id),
        ("Quarter", run.quarter),
        ("Owner", owner if owner is not None
         else "(none: these roles have no owner in the role catalog)"),
        ("Items", str(rows)),
        ("Exported at", _timestamp(exported_at) or ""),
        ("Deadline", f"{deadline(run)}: a decision dated later is reported as REVIEW_LATE "
         "(policy access_review_deadline of the run's config; the next run's config decides)."),
        ("How to fill in",
         f"On the Review sheet, for every row you decide: decision = {decisions} (keep: the "
         "holder still needs the role; remove: revoke it), reviewer = your identity (your "
         "login, as the identity map knows you), reviewed_at = the date you decided "
         "(YYYY-MM-DD). comment is optional. Leave a row's decision empty if you cannot "
         "decide it (it stays a missing review). Change nothing in the grey columns: they "
         "are what the run saw."),
        ("Reviewing yourself", "A decision on a role you hold yourself (reviewer = holder) is "
         "reported as an exception (REVIEWER_IS_HOLDER): leave those rows to someone else."),
        ("Removals", "A role you decide to remove must be revoked within the grace period; "
         "the next run checks that it is gone (REMOVE_NOT_ACTIONED)."),
        ("Return", "Return the file as it is (keep its name and its Review sheet); it is "
         "imported with `soxtrail review import` and captured, with its SHA-256, as evidence "
         "by the next quarter run."),
        ("Columns", ", ".join(COLUMNS)),
    ]


def export_review(conn: psycopg.Connection[Any], run: runs.Run, *, by: str,
                  formats: Sequence[str], out: Path,
                  exported_at: datetime | None = None) -> ReviewExport:
    """Write one review file per role owner of the run's AC-03 items (and `unowned` for
    roles without one) into `out`, in each of `formats` (xlsx, csv); an existing file of
    the same name is replaced."""
    if by not in GROUPINGS:
        raise ConfigError(f"--by {by!r}: only `owner` is supported (one file per role owner)")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ConfigError(f"format {unknown[0]!r}: expected one of {', '.join(FORMATS)}")
    items = review_items(conn, run)
    exported_at = exported_at or datetime.now(UTC).replace(microsecond=0)
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault(item["role_owner"], []).append(item)
    names = file_names(list(groups), run.quarter)
    out.mkdir(parents=True, exist_ok=True)
    written: list[ReviewFile] = []
    for owner in sorted(groups, key=lambda o: (o is None, o or "")):
        rows = groups[owner]
        for file_format in formats:
            path = out / f"{names[owner]}.{file_format}"
            if file_format == "csv":
                count = write_review_csv(path, COLUMNS, rows)
            else:
                count = write_review_xlsx(
                    path, COLUMNS, rows, to_fill=TO_FILL, choices={"decision": DECISIONS},
                    text_only=("reviewer", "reviewed_at"),
                    about=_about(run, owner, len(rows), exported_at), created=exported_at)
            written.append(ReviewFile(owner, path, count))
    return ReviewExport(run, len(items), written)


@dataclass
class ReturnedReview:
    """One returned review file as `review_rows` reads it, and what it holds."""

    path: Path
    sha256: str
    rows: int = 0
    owners: list[str] = field(default_factory=list)
    keep: int = 0
    remove: int = 0
    undecided: int = 0
    reviewers: list[str] = field(default_factory=list)
    first_reviewed_at: str | None = None
    last_reviewed_at: str | None = None
    problems: list[str] = field(default_factory=list)  # `file:line: field: reason`
    status: str = ""  # imported | replaced | already imported (after `file_reviews`)


def _instant(text: str) -> tuple[datetime, str]:
    """A `reviewed_at` as the instant the load reads it as (a date: 00:00 UTC), to order by."""
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=UTC), text
        stamp = datetime.fromisoformat(text)
        return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)), text
    except ValueError:
        return datetime.max.replace(tzinfo=UTC), text


def check_review(path: Path, quarter: str) -> ReturnedReview:
    """Read a returned review file with the load's own rules; every problem is one
    `file:line: field: reason` line (`file: reason` for the whole file)."""
    if not path.is_file():
        return ReturnedReview(path, "", problems=[f"{path}: no such file"])
    data = path.read_bytes()
    found = ReturnedReview(path, hashlib.sha256(data).hexdigest())
    named = _NAME.match(path.name)
    if named and named["quarter"].upper() != quarter:
        found.problems.append(f"{path}: the file name is for {named['quarter'].upper()}, "
                              f"not {quarter} (--quarter)")
    try:
        rows, problems = review_rows(path)
    except ConfigError as exc:
        found.problems.append(str(exc))
        return found
    found.problems += [f"{path}:{line}: {reason}" for line, reason in problems]
    decisions = Counter(row["decision"] for row in rows)
    stamps = sorted((str(row["reviewed_at"]) for row in rows if row["reviewed_at"]),
                    key=_instant)
    found.rows = len(rows)
    found.owners = sorted({row["role_owner"] or UNOWNED for row in rows})
    found.keep, found.remove, found.undecided = (decisions["keep"], decisions["remove"],
                                                 decisions[None])
    found.reviewers = sorted({str(row["reviewer"]) for row in rows if row["reviewer"]})
    found.first_reviewed_at = stamps[0] if stamps else None
    found.last_reviewed_at = stamps[-1] if stamps else None
    return found


def file_reviews(reviews: Sequence[ReturnedReview], folder: Path, *,
                 replace: bool) -> None:
    """Copy each checked file's bytes unchanged into `folder` (created if missing) under its
    own name, setting each `status`. Nothing is copied unless every file can be: a
    different file of the same name already there is refused without `replace`."""
    names = Counter(review.path.name for review in reviews)
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise ConfigError(f"two files named {twice[0]}: a quarter's folder holds one file per "
                          "name; rename one")
    for review in reviews:
        target = folder / review.path.name
        if not target.exists():
            review.status = "imported"
        elif hashlib.sha256(target.read_bytes()).hexdigest() == review.sha256:
            review.status = "already imported"
        elif replace:
            review.status = "replaced"
        else:
            raise ConfigError(f"{target} exists and differs from {review.path}: pass --replace "
                              "to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    for review in reviews:
        if review.status == "already imported":
            continue
        target = folder / review.path.name
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(review.path.read_bytes())
        if hashlib.sha256(tmp.read_bytes()).hexdigest() != review.sha256:
            tmp.unlink()
            raise ConfigError(f"{review.path} changed while it was imported: import it again")
        os.replace(tmp, target)
