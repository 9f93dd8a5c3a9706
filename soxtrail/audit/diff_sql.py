"""`soxtrail diff`, SQL layer: per control, whether the compiled SQL it ran changed, and why.

A control's reconcile evidence row records the SQL dbt compiled (`query_text`), the model
file's checksum, the git commit and the vars. The compiled SQL carries the run id (each
run's own) and the policy vars inlined; the run id is replaced by `RUN_ID_PLACEHOLDER`
before hashing, so two runs of one project, one config and one quarter compare equal.
A control changed when that SQL or its model file's checksum differs; the cause: `model`
(the checksum differs), `vars` (every changed line differs only by the value of a var
that differs, other than the run id: a policy var or the quarter, the config layer's
change reaching this control's SQL), `macros` (lines differ with the vars the same: a
macro, a source definition, a dependency or dbt itself compiled it otherwise), or
`vars+macros` (both). Vars that differ while the SQL is the same are listed but do not
reach the control.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg

from soxtrail.kernel import evidence

RUN_ID_PLACEHOLDER = "<run_id>"
# vars that name the run, not an input: never a cause
RECORD_VARS = ("run_id",)
COLUMNS = ("control_id", "status", "cause", "sql_sha256_a", "sql_sha256_b", "checksum_a",
           "checksum_b", "git_commit_a", "git_commit_b", "vars_changed")
DIFF_CONTEXT = 3


@dataclass(frozen=True)
class CompiledControl:
    """What one control evidence row says about the SQL that ran."""

    control_id: str
    model: str
    sql: str  # compiled SQL, run id replaced
    checksum: str
    git_commit: str | None
    variables: Mapping[str, Any]

    @property
    def sql_sha256(self) -> str:
        """SHA-256 of the compiled SQL with the run id replaced."""
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass
class ControlSqlDiff:
    """One control's SQL in both runs."""

    control_id: str
    a: CompiledControl | None
    b: CompiledControl | None
    vars_changed: list[str] = field(default_factory=list)
    unified_diff: str = ""

    @property
    def status(self) -> str:
        """same | changed | added | removed."""
        if self.a is None:
            return "added"
        if self.b is None:
            return "removed"
        same = (self.a.sql_sha256, self.a.checksum) == (self.b.sql_sha256, self.b.checksum)
        return "same" if same else "changed"

    @property
    def cause(self) -> str:
        """Why it changed: model, vars, macros, vars+macros (empty when the same)."""
        if self.status == "same":
            return ""
        if self.a is None or self.b is None or self.a.checksum != self.b.checksum:
            return "model"
        if not self.vars_changed:
            return "macros"
        return "vars" if _only_vars(self.a, self.b, self.vars_changed) else "vars+macros"

    @property
    def sql_changed(self) -> bool:
        """The control's own SQL changed (model or macros), not only the vars it received."""
        return self.cause in ("model", "macros", "vars+macros")

    @property
    def vars_reach_sql(self) -> bool:
        """A var that differs changed the compiled SQL (the config layer's change)."""
        return self.cause in ("vars", "vars+macros")

    def row(self) -> dict[str, Any]:
        """A flat row (COLUMNS)."""
        return {
            "control_id": self.control_id, "status": self.status, "cause": self.cause,
            "sql_sha256_a": self.a.sql_sha256 if self.a else "",
            "sql_sha256_b": self.b.sql_sha256 if self.b else "",
            "checksum_a": self.a.checksum if self.a else "",
            "checksum_b": self.b.checksum if self.b else "",
            "git_commit_a": (self.a.git_commit or "") if self.a else "",
            "git_commit_b": (self.b.git_commit or "") if self.b else "",
            "vars_changed": ",".join(self.vars_changed),
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, with the unified diff of the compiled SQL."""
        return {**self.row(), "vars_changed": self.vars_changed,
                "unified_diff": self.unified_diff}


@dataclass
class SqlDiff:
    """The SQL layer: every evidenced mart's compiled SQL in both runs."""

    controls: list[ControlSqlDiff]

    def get(self, control_id: str) -> ControlSqlDiff | None:
        """One control's entry."""
        return next((c for c in self.controls if c.control_id == control_id), None)

    @property
    def differs(self) -> bool:
        """Any control's compiled SQL (run id replaced) or model checksum differs."""
        return any(c.status != "same" for c in self.controls)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"controls": [c.as_dict() for c in self.controls]}


def compiled(row: Mapping[str, Any]) -> CompiledControl:
    """The compiled control of one control evidence row (all columns). On Spark its SQL
    is the SQL of the intermediate tables it reads (their stages, each headed by the
    table's name) and then its own: what PostgreSQL's one statement inlines."""
    params = row["query_params"] or {}
    run_id = str(row["run_id"])
    text = evidence.control_sql(params, str(row["query_text"]))
    return CompiledControl(
        control_id=str(params.get(evidence.CONTROL_ID_KEY) or row["query_name"]),
        model=str(params.get(evidence.MODEL_KEY) or ""),
        sql=text.replace(run_id, RUN_ID_PLACEHOLDER),
        checksum=str(params.get("checksum") or ""), git_commit=params.get("git_commit"),
        variables=dict(params.get(evidence.VARS_KEY) or {}))


def load_compiled(conn: psycopg.Connection[Any], run_id: str) -> list[CompiledControl]:
    """The run's control evidence rows as compiled controls."""
    return [compiled(row) for row in evidence.control_rows(conn, run_id)]


def _renderings(value: Any) -> list[str]:
    """How a var's value may be written in compiled SQL (a number also as a float)."""
    values = value if isinstance(value, list) else [value]
    found: set[str] = set()
    for item in values:
        if isinstance(item, bool) or item is None:
            found.add(str(item).lower())
        elif isinstance(item, int | float):
            found.update({str(item), str(float(item))})
        else:
            found.add(str(item))
    return sorted((f for f in found if f), key=len, reverse=True)


def _masked(lines: list[str], variables: Mapping[str, Any], names: list[str]) -> list[str]:
    masked = []
    for line in lines:
        for name in names:
            for text in _renderings(variables.get(name)):
                line = re.sub(rf"(?<![\w.]){re.escape(text)}(?!\w)", f"<var:{name}>", line)
        masked.append(line)
    return masked


def _only_vars(a: CompiledControl, b: CompiledControl, names: list[str]) -> bool:
    """Every line that differs differs only by the values of the vars `names`."""
    lines_a, lines_b = a.sql.splitlines(), b.sql.splitlines()
    matcher = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal" and (_masked(lines_a[i1:i2], a.variables, names)
                               != _masked(lines_b[j1:j2], b.variables, names)):
            return False
    return True


def _vars_changed(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b)
                  if k not in RECORD_VARS and a.get(k) != b.get(k))


def diff_control(control_id: str, a: CompiledControl | None,
                 b: CompiledControl | None) -> ControlSqlDiff:
    """One control's SQL in both runs, with the unified diff when the SQL differs."""
    result = ControlSqlDiff(control_id, a, b)
    if a is not None and b is not None:
        result.vars_changed = _vars_changed(a.variables, b.variables)
    if (a.sql if a else "") != (b.sql if b else ""):
        result.unified_diff = "".join(difflib.unified_diff(
            (a.sql if a else "").splitlines(keepends=True),
            (b.sql if b else "").splitlines(keepends=True),
            fromfile=f"A/{a.model if a else control_id}.sql",
            tofile=f"B/{b.model if b else control_id}.sql", n=DIFF_CONTEXT))
    return result


def diff_compiled(controls_a: Iterable[CompiledControl],
                  controls_b: Iterable[CompiledControl], order: Iterable[str]) -> SqlDiff:
    """Match the compiled controls of two runs by control id (`order` first, then the rest)."""
    by_a = {c.control_id: c for c in controls_a}
    by_b = {c.control_id: c for c in controls_b}
    ids = [i for i in order if i in by_a or i in by_b]
    ids += sorted((set(by_a) | set(by_b)) - set(ids))
    return SqlDiff([diff_control(i, by_a.get(i), by_b.get(i)) for i in ids])
