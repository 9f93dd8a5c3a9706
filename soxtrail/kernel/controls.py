"""The control registry, control evidence ids and the marts' names.

The controls are declared once, in the control marts' YAML (`config.meta.control` in
`models/marts/controls/_controls__models.yml`): id, order, title, question, sheet, kind
and how an item keeps its identity across runs. `registry()` reads that declaration;
dbt gets it from the same reader through the `SOXTRAIL_CONTROLS` environment variable
(`macros/controls/control_models.sql`), and dbt's `manifest.json` carries it as node
meta (`from_manifest`), so the summary mart, the workbook, OSCAL, the demo's oracle and
the docs all read one list.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from soxtrail.kernel.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parents[2]
CONTROL_MODELS_DIR = PROJECT_DIR / "models" / "marts"
CONTROLS_ENV = "SOXTRAIL_CONTROLS"
# libyaml's safe loader when PyYAML was built with it: the marts' YAML (with its dbt unit
# tests) takes ~0.8 s to read in pure Python, at the start of every command
FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Control:
    """One control as its mart declares it (`config.meta.control`)."""

    id: str
    model: str
    order: int
    title: str
    question: str
    sheet: str
    kind: str
    identity: Mapping[str, Any]
    # the source systems the control reads (`sources.SYSTEMS`): a completeness exception of
    # a source of one of them qualifies the control's result
    systems: tuple[str, ...] = ()

    @property
    def recur_by(self) -> tuple[str, ...]:
        """The mart columns by which an item recurs in a later run (`identity.recur_by`):
        the whole `item_key` unless the control declares its non-time parts."""
        return tuple(str(c) for c in self.identity.get("recur_by") or ("item_key",))

    def as_dict(self) -> dict[str, Any]:
        """The declaration as dbt receives it (JSON-able, keys sorted by the caller)."""
        return {"id": self.id, "model": self.model, "order": self.order, "title": self.title,
                "question": self.question, "sheet": self.sheet, "kind": self.kind,
                "identity": dict(self.identity), "systems": list(self.systems)}


def _control(model: str, meta: Any, where: str) -> Control:
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: meta.control of {model} is not a mapping")
    missing = [k for k in ("id", "order", "title", "question", "kind") if k not in meta]
    if missing:
        raise ConfigError(f"{where}: meta.control of {model} lacks {', '.join(missing)}")
    return Control(id=str(meta["id"]), model=model, order=int(meta["order"]),
                   title=str(meta["title"]), question=str(meta["question"]),
                   sheet=str(meta.get("sheet") or meta["id"]), kind=str(meta["kind"]),
                   identity=dict(meta.get("identity") or {}),
                   systems=tuple(str(s) for s in meta.get("systems") or ()))


def _ordered(controls: list[Control], where: str) -> tuple[Control, ...]:
    ids = [c.id for c in controls]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: a control id is declared twice: {sorted(ids)}")
    return tuple(sorted(controls, key=lambda c: (c.order, c.id)))


@functools.cache
def registry(models_dir: Path = CONTROL_MODELS_DIR) -> tuple[Control, ...]:
    """Every control declared in the marts' YAML, in control order."""
    found: list[Control] = []
    for path in sorted(models_dir.rglob("*.yml")):
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=FAST_SAFE_LOADER) or {}
        for model in doc.get("models") or []:
            meta = ((model.get("config") or {}).get("meta") or {}).get("control")
            if meta is not None:
                found.append(_control(str(model["name"]), meta, str(path)))
    if not found:
        raise ConfigError(f"{models_dir}: no model declares config.meta.control")
    return _ordered(found, str(models_dir))


def from_manifest(manifest: Mapping[str, Any]) -> tuple[Control, ...]:
    """The controls as a dbt `manifest.json` records them (its model nodes' meta)."""
    found = [_control(node["name"], node["config"]["meta"]["control"], "manifest.json")
             for node in manifest.get("nodes", {}).values()
             if node.get("resource_type") == "model"
             and "control" in ((node.get("config") or {}).get("meta") or {})]
    return _ordered(found, "manifest.json")


def dbt_environment() -> dict[str, str]:
    """The environment dbt reads the registry from (`env_var('SOXTRAIL_CONTROLS')`)."""
    return {CONTROLS_ENV: json.dumps([c.as_dict() for c in registry()], sort_keys=True)}


def by_kind(kind: str = "control") -> tuple[Control, ...]:
    """The registry's entries of one kind, in control order."""
    return tuple(c for c in registry() if c.kind == kind)


# control id -> mart model, in control order (derived from the registry)
CONTROLS: dict[str, str] = {c.id: c.model for c in by_kind("control")}
# the completeness marts (kind `completeness`): evidenced and verified like a control, shown
# on their own sheet, never counted as a control result
COMPLETENESS: dict[str, str] = {c.id: c.model for c in by_kind("completeness")}
# the searched-population marts (kind `population`): what the absence claims searched, one row
# per evidence object; evidenced and verified like a control, never counted as one
POPULATIONS: dict[str, str] = {c.id: c.model for c in by_kind("population")}
# the exceptions register (kind `register`): every exception item across the controls with
# management's response, waiver state and recurrence; evidenced and verified like a control,
# never counted as one
REGISTERS: dict[str, str] = {c.id: c.model for c in by_kind("register")}
SUMMARY_MODEL = "fct_control_summary"
# The summary mart is not a control, but it has its own reconcile evidence row like one
# (query_params control_id = SUMMARY_ID) and verify re-runs it the same way.
SUMMARY_ID = "SUMMARY"
# every mart with a reconcile evidence row: id -> model, the controls first, then the
# completeness marts, then the summary, then the searched populations, then the register
EVIDENCED_MARTS: dict[str, str] = {**CONTROLS, **COMPLETENESS, SUMMARY_ID: SUMMARY_MODEL,
                                   **POPULATIONS, **REGISTERS}
MARTS_SCHEMA = "marts"


def control_evidence_id(run_id: str, model: str) -> str:
    """The control's evidence id: md5('soxtrail:' || run_id || ':' || model)::uuid, as in SQL."""
    return str(uuid.UUID(hashlib.md5(f"soxtrail:{run_id}:{model}".encode()).hexdigest()))

