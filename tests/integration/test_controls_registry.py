"""The control registry: declared once in the marts' YAML meta, read the same way by
Python (registry) and dbt (manifest.json, the control_models() macro)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from soxtrail.kernel import controls
from soxtrail.kernel.database import Database
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import SYSTEMS
from soxtrail.reconcile import dbt

REPO = Path(__file__).resolve().parents[2]


def test_the_registry_lists_the_six_controls_in_control_order() -> None:
    registry = controls.by_kind("control")
    assert [c.id for c in registry] == ["AC-01", "AC-02", "AC-03", "CM-01", "BK-01", "LG-01"]
    assert all(c.model.startswith("fct_control_") for c in registry)
    assert controls.CONTROLS == {c.id: c.model for c in registry}
    # each control names the source systems it reads (what a completeness exception qualifies)
    assert all(c.systems and set(c.systems) <= SYSTEMS for c in registry)
    assert all(c.title and c.question and c.identity.get("key") == "item_key" for c in registry)
    stable = {c.id for c in registry if c.identity.get("stable_across") == "quarters"}
    assert stable == {"AC-02", "AC-03"}


def test_completeness_is_registered_after_the_controls_and_never_counted_as_one() -> None:
    [completeness] = controls.by_kind("completeness")
    assert (completeness.id, completeness.sheet) == ("COMPLETENESS", "Completeness")
    assert completeness.order > max(c.order for c in controls.by_kind("control"))
    assert controls.COMPLETENESS == {"COMPLETENESS": "fct_completeness__sources"}
    assert "COMPLETENESS" not in controls.CONTROLS
    assert list(controls.EVIDENCED_MARTS) == [*controls.CONTROLS, "COMPLETENESS",
                                              controls.SUMMARY_ID, "POPULATIONS", "REGISTER"]


def test_searched_populations_are_evidenced_and_never_counted_as_a_control() -> None:
    [population] = controls.by_kind("population")
    assert (population.id, population.model) == ("POPULATIONS", "fct_searched_populations")
    assert population.order > max(c.order for c in controls.by_kind("completeness"))
    assert controls.POPULATIONS == {"POPULATIONS": "fct_searched_populations"}
    assert "POPULATIONS" not in controls.CONTROLS and "POPULATIONS" not in controls.COMPLETENESS


def test_the_exceptions_register_is_evidenced_and_never_counted_as_a_control() -> None:
    [register] = controls.by_kind("register")
    assert (register.id, register.model, register.sheet) == (
        "REGISTER", "fct_exceptions_register", "Exceptions")
    assert controls.REGISTERS == {"REGISTER": "fct_exceptions_register"}
    assert "REGISTER" not in controls.CONTROLS and "REGISTER" not in controls.COMPLETENESS


def test_items_of_one_period_recur_by_their_non_time_parts() -> None:
    recur = {c.id: c.recur_by for c in controls.by_kind("control")}
    assert recur == {"AC-01": ("cluster", "grantee", "granted_role"),
                     "AC-02": ("item_key",), "AC-03": ("item_key",),
                     "CM-01": ("cluster", "executed_by_identity"),
                     "BK-01": ("cluster",), "LG-01": ("cluster",)}


def test_dbt_manifest_carries_the_same_registry(pg_database: Database, tmp_path: Path) -> None:
    result = dbt.invoke(pg_database, ["parse"], workdir=tmp_path, vars={"run_id": ""})
    assert result.success
    manifest = json.loads((tmp_path / "target" / "manifest.json").read_text())
    assert controls.from_manifest(manifest) == controls.registry()
    summary = manifest["nodes"]["model.soxtrail.fct_control_summary"]
    # the summary tallies the controls and the completeness marts, not the searched populations
    assert {f"model.soxtrail.{c.model}" for c in controls.registry()
            if c.kind not in ("population", "register")} <= set(summary["depends_on"]["nodes"])


def _models_dir(tmp_path: Path, body: str) -> Path:
    folder = tmp_path / "marts"
    folder.mkdir()
    (folder / "_x.yml").write_text(body)
    return folder


def test_a_control_declared_twice_is_refused(tmp_path: Path) -> None:
    meta = ("    config:\n      meta:\n        control: {id: AC-01, order: 1, title: t, "
            "question: q, kind: control}\n")
    folder = _models_dir(tmp_path, f"models:\n  - name: a\n{meta}  - name: b\n{meta}")
    with pytest.raises(ConfigError, match="declared twice"):
        controls.registry(folder)


def test_a_declaration_missing_a_field_names_the_model(tmp_path: Path) -> None:
    folder = _models_dir(tmp_path, "models:\n  - name: fct_x\n    config:\n      meta:\n"
                                   "        control: {id: XX-01, order: 1, kind: control}\n")
    with pytest.raises(ConfigError, match=r"fct_x lacks title, question"):
        controls.registry(folder)


def test_no_other_file_lists_the_control_marts() -> None:
    """The marts' own files, docs and tests may name them; code and config may not."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    names = [c.model for c in controls.registry()]
    offenders = []
    for name in tracked:
        path = REPO / name
        if (name.startswith(("docs/", "tests/", "models/marts/controls/fct_control_"))
                or name == "models/marts/controls/_controls__models.yml"
                or path.suffix not in {".py", ".sql", ".yml", ".j2", ".pyx"}
                or not path.exists()):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if sum(model in text for model in names) > 1:
            offenders.append(name)
    assert offenders == []
