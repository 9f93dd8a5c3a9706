"""engine: spark — the intermediate tables a control's stored SQL reads ("stages"): which,
in what order, how they are recorded with its evidence row, what build_stages refuses."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from soxtrail.kernel import evidence, spark
from soxtrail.kernel.errors import PipelineError
from soxtrail.reconcile.engine import stages


def _node(name: str, materialized: str, *upstream: str, code: str | None = None) -> Any:
    """A dbt node as the invocation's results carry it (the attributes stages reads)."""
    return SimpleNamespace(
        name=name, unique_id=f"model.soxtrail.{name}", relation_name=f"work.{name}",
        config=SimpleNamespace(materialized=materialized),
        depends_on=SimpleNamespace(nodes=[f"model.soxtrail.{u}" for u in upstream]),
        compiled_code=f"select * from {name}" if code is None else code)


def _nodes(*nodes: Any) -> dict[str, Any]:
    return {node.unique_id: node for node in nodes}


def test_each_table_comes_after_the_tables_it_reads_and_once() -> None:
    # mart -> b, a; b -> a, c; a -> c; c -> stg (ephemeral: not in the results)
    c = _node("c", "table", "stg")
    a = _node("a", "table", "c")
    b = _node("b", "table", "a", "c")
    mart = _node("mart", "incremental", "b", "a")
    order = [s["model"] for s in stages(mart, _nodes(a, b, c, mart))]
    assert order == ["c", "a", "b"]
    first = stages(mart, _nodes(a, b, c, mart))[0]
    assert first == {"model": "c", "relation": "work.c", "sql": "select * from c"}


def test_marts_and_ephemeral_models_are_not_stages() -> None:
    other = _node("other_mart", "incremental")
    ephemeral = _node("stg_x", "ephemeral")
    mart = _node("summary", "incremental", "other_mart", "stg_x")
    assert stages(mart, _nodes(other, ephemeral, mart)) == []


def test_a_table_without_compiled_sql_is_an_error() -> None:
    a = _node("a", "table", code="")
    with pytest.raises(PipelineError, match="no compiled SQL for a"):
        stages(_node("mart", "incremental", "a"), _nodes(a))


def test_the_evidence_row_records_stages_only_when_there_are_some() -> None:
    common: dict[str, Any] = dict(control_id="AC-02", model="m", unique_id="model.soxtrail.m",
                                  checksum="x", git_commit=None, variables={}, canonical=2)
    plain = evidence.control_params(**common)
    assert "stages" not in plain and evidence.stages_of(plain) == []
    staged = [{"model": "a", "relation": "work.a", "sql": "select 1"}]
    params = evidence.control_params(**common, stages=staged)
    assert evidence.stages_of(params) == staged


@pytest.mark.parametrize("relation", ["marts.fct_x", "raw.tickets", "work.a; drop", "a"])
def test_build_stages_builds_only_tables_of_the_work_schema(relation: str) -> None:
    with pytest.raises(ValueError, match="work schema"):
        spark.build_stages(None, [{"relation": relation, "sql": "select 1"}])  # type: ignore[arg-type]
