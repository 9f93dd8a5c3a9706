"""The seeds and the PostgreSQL catalog exports (psql CSV) of the demo estate."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from extract.demo.plan import Plan


def csv_text(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    """CSV text with a header row, `\n` line ends."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _tf(value: bool) -> str:
    return "t" if value else "f"


def write_seeds(plan: Plan, folder: Path) -> int:
    """The three seeds; returns the role catalog's row count."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "role_catalog.csv").write_text(csv_text(
        ["role_name", "cluster_pattern", "is_privileged", "description", "owner",
         "allowed_holders"],
        ((r[0], r[1], str(r[2]).lower(), r[3], r[4], r[5]) for r in plan.role_catalog)))
    (folder / "applications.csv").write_text(csv_text(
        ["application", "cluster", "sox_in_scope", "backup_policy"],
        ((c.application, c.name, str(c.in_scope).lower(), c.policy) for c in plan.clusters)))
    (folder / "identity_map.csv").write_text(csv_text(
        ["login_role", "identity", "identity_type", "approval_ref"],
        ((login, *v) for login, v in plan.identity_map.items())))
    return len(plan.role_catalog)


def write_catalogs(plan: Plan, folder: Path) -> None:
    """Per cluster, the quarter-end `memberships.csv` and `roles.csv`."""
    for c in plan.clusters:
        roles, members = plan.final[c.name]
        sub = folder / c.name
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "memberships.csv").write_text(csv_text(
            ["member", "granted_role", "admin_option", "rolsuper", "rolcanlogin",
             "rolcreaterole", "rolvaliduntil"],
            ((m, g, _tf(admin), _tf(roles[m]["super"]), _tf(roles[m]["login"]),
              _tf(roles[m]["createrole"]), roles[m]["valid"])
             for (m, g), admin in sorted(members.items()))))
        (sub / "roles.csv").write_text(csv_text(
            ["rolname", "rolsuper", "rolcreaterole", "rolcanlogin", "rolvaliduntil"],
            ((name, _tf(a["super"]), _tf(a["createrole"]), _tf(a["login"]), a["valid"])
             for name, a in sorted(roles.items()))))

