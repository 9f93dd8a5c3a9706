"""`soxtrail diff` layers on hand-made rows: matching, causes and the attribution of changes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from soxtrail.audit import diff, diff_config, diff_evidence, diff_sql
from soxtrail.kernel import controls, runs

RUN_A = "aaaaaaaa-0000-0000-0000-000000000001"
RUN_B = "bbbbbbbb-0000-0000-0000-000000000002"


def _obj(evidence_id: str, source: str, name: str, sha: str, rows: int = 1, run: str = RUN_A,
         connector: str = "jira", system: str = "tickets") -> diff_evidence.StoredObject:
    return diff_evidence.StoredObject(evidence_id, source, name, system, connector, sha, rows,
                                      f"2024Q3/{run}/raw/{source}/{name}")


def _run(run_id: str, config: dict[str, Any], quarter: str = "2024Q3") -> runs.Run:
    return runs.Run(id=run_id, quarter=quarter, clusters=None, config=config, config_hash="",
                    tool_version="", git_commit=None, triggered_by="", started_at=datetime.now(UTC),
                    finished_at=None, status="completed", phase_reached=None, error=None,
                    summary={})


def test_same_bytes_under_two_store_keys_are_the_same_object() -> None:
    a = [_obj("e1", "jira", "jira/search-1.json", "h1"),
         _obj("e2", "jira", "jira/search-2.json", "h2")]
    b = [_obj("f1", "jira", "jira/search-1.json", "h1", run=RUN_B),
         _obj("f2", "jira", "jira/search-2.json", "h2-edited", run=RUN_B),
         _obj("f3", "hr", "hr/terminations.csv", "h3", run=RUN_B, connector="file")]
    result = diff_evidence.diff_objects(a, b, size_of=lambda o: len(o.sha256))
    assert [(c.change, c.identity) for c in result.changes] == [
        ("added", ("hr", "hr/terminations.csv")), ("changed", ("jira", "jira/search-2.json"))]
    assert result.sources_added == ["hr"] and result.sources_removed == []
    assert result.changes[1].row()["size_b"] == len("h2-edited")
    assert result.identity_of("f2") == result.identity_of("e2") == ("jira", "jira/search-2.json")


def test_a_row_count_alone_is_a_change() -> None:
    result = diff_evidence.diff_objects([_obj("e1", "s", "s/x", "h", rows=3)],
                                        [_obj("f1", "s", "s/x", "h", rows=4, run=RUN_B)])
    assert [c.change for c in result.changes] == ["changed"]


def test_config_keys_name_sources_and_record_keys_are_not_counted() -> None:
    a = _run(RUN_A, {"policy": {"revocation_sla_hours": 24}, "_store": "/a",
                     "sources": [{"name": "jira", "path": "j/*.json", "token": "${JIRA}"}]})
    b = _run(RUN_B, {"policy": {"revocation_sla_hours": 48}, "_store": "/b",
                     "sources": [{"name": "jira", "path": "j/*.json", "token": "${JIRA2}"}]},
             quarter="2024Q4")
    changes = {k.key: k for k in diff_config.diff_keys(a, b)}
    assert set(changes) == {"policy.revocation_sla_hours", "_store", "sources[jira].token",
                            "scope.quarter"}
    assert not changes["_store"].counted and changes["policy.revocation_sla_hours"].counted
    assert changes["sources[jira].token"].row()["value_b"] == "${JIRA2}"
    assert diff_config.ConfigDiff(keys=list(changes.values())).changed_sources() == {"jira"}


def test_catalog_rows_are_matched_by_their_key() -> None:
    a = {"dba|*": [{"role_name": "dba", "cluster_pattern": "*", "is_privileged": "true"}],
         "old|*": [{"role_name": "old", "cluster_pattern": "*", "is_privileged": "false"}]}
    b = {"dba|*": [{"role_name": "dba", "cluster_pattern": "*", "is_privileged": "false"}],
         "new|*": [{"role_name": "new", "cluster_pattern": "*", "is_privileged": "false"}]}
    changes = diff_config.diff_catalog("role_catalog", a, b)
    assert [(c.key, c.change) for c in changes] == [
        ("dba|*", "changed"), ("new|*", "added"), ("old|*", "removed")]


def _compiled(run_id: str, sql: str, checksum: str = "c1",
              variables: dict[str, Any] | None = None,
              stages: list[dict[str, str]] | None = None) -> diff_sql.CompiledControl:
    return diff_sql.compiled({
        "run_id": run_id, "query_name": "model.x@c", "query_text": sql,
        "query_params": {"control_id": "AC-01", "model": "fct_x", "checksum": checksum,
                         "git_commit": "g", "vars": {"run_id": run_id, **(variables or {})},
                         **({"stages": stages} if stages else {})}})


def test_on_spark_the_sql_of_the_intermediate_tables_read_is_compared_too() -> None:
    def stage(sql: str) -> list[dict[str, str]]:
        return [{"model": "int_x", "relation": "work.int_x", "sql": sql}]

    mart = "select * from work.int_x"
    same = diff_sql.diff_control(
        "AC-01", _compiled(RUN_A, mart, stages=stage(f"select '{RUN_A}' as run_id")),
        _compiled(RUN_B, mart, stages=stage(f"select '{RUN_B}' as run_id")))
    assert same.status == "same"
    changed = diff_sql.diff_control("AC-01", _compiled(RUN_A, mart, stages=stage("select 1")),
                                    _compiled(RUN_B, mart, stages=stage("select 2")))
    assert changed.status != "same"
    assert "-select 1" in changed.unified_diff and "+select 2" in changed.unified_diff
    assert "-- work.int_x, built first from:" in _compiled(RUN_A, mart, stages=stage("x")).sql


def test_the_run_id_in_compiled_sql_is_not_a_change() -> None:
    a = _compiled(RUN_A, f"select 1 where run_id = '{RUN_A}'")
    b = _compiled(RUN_B, f"select 1 where run_id = '{RUN_B}'")
    entry = diff_sql.diff_control("AC-01", a, b)
    assert entry.status == "same" and entry.unified_diff == ""


def test_sql_causes_model_vars_and_macros() -> None:
    base = _compiled(RUN_A, "select 30", variables={"days": 30})
    model = diff_sql.diff_control("AC-01", base, _compiled(RUN_B, "select 31", checksum="c2",
                                                           variables={"days": 30}))
    assert (model.status, model.cause, model.sql_changed) == ("changed", "model", True)
    assert "-select 30" in model.unified_diff and "+select 31" in model.unified_diff
    var = diff_sql.diff_control("AC-01", base, _compiled(RUN_B, "select 7", variables={"days": 7}))
    assert (var.cause, var.sql_changed, var.vars_changed) == ("vars", False, ["days"])
    floats = diff_sql.diff_control(
        "AC-01", _compiled(RUN_A, "x <= 24.0 * interval '1 hour'", variables={"sla": 24}),
        _compiled(RUN_B, "x <= 2400.0 * interval '1 hour'", variables={"sla": 2400}))
    assert floats.cause == "vars"
    macro = diff_sql.diff_control("AC-01", base, _compiled(RUN_B, "select 30 ",
                                                           variables={"days": 30}))
    assert (macro.cause, macro.sql_changed) == ("macros", True)
    both = diff_sql.diff_control("AC-01", base, _compiled(RUN_B, "select 7 ",
                                                          variables={"days": 7}))
    assert (both.cause, both.sql_changed, both.vars_reach_sql) == ("vars+macros", True, True)
    unused = diff_sql.diff_control("AC-01", base, _compiled(RUN_B, "select 30",
                                                            variables={"days": 30, "x": 1}))
    assert unused.status == "same" and unused.vars_changed == ["x"]


def _layers(objects_b: list[diff_evidence.StoredObject], sql_b: str = "select 1",
            config: diff_config.ConfigDiff | None = None,
            ) -> tuple[diff_evidence.EvidenceDiff, diff_config.ConfigDiff, diff_sql.SqlDiff]:
    objects_a = [_obj("pa", "audit", "audit/log1", "h"), _obj("sa", "jira", "jira/p1", "h"),
                 _obj("ca", "catalog-role_catalog", "catalog-role_catalog/role_catalog", "h",
                      connector="catalog_file", system="role_catalog")]
    evidence = diff_evidence.diff_objects(objects_a, objects_b)
    sql = diff_sql.diff_compiled([_compiled(RUN_A, "select 1")], [_compiled(RUN_B, sql_b)],
                                 ["AC-01"])
    return evidence, config or diff_config.ConfigDiff(), sql


def _b(pop: str = "h", ticket: str = "h", catalog: str = "h") -> list[diff_evidence.StoredObject]:
    return [_obj("pb", "audit", "audit/log1", pop, run=RUN_B),
            _obj("sb", "jira", "jira/p1", ticket, run=RUN_B),
            _obj("cb", "catalog-role_catalog", "catalog-role_catalog/role_catalog", catalog,
                 run=RUN_B, connector="catalog_file", system="role_catalog")]


CHANGE = diff.Change("AC-01", "changed", "k",
                     diff.Item("PASS", (), "pa", ("ca", "sa")),
                     diff.Item("EXCEPTION", ("NOT_APPROVED",), "pb", ("cb", "sb")))


def test_each_changed_decision_is_explained_by_the_layer_that_changed() -> None:
    cases = {
        diff.POPULATION: _layers(_b(pop="x")),
        diff.SUPPORTING: _layers(_b(ticket="x")),
        diff.CATALOG: _layers(_b(catalog="x")),
        diff.SQL_CHANGED: _layers(_b(), sql_b="select 2"),
        diff.CONFIG: _layers(_b(), config=diff_config.ConfigDiff(keys=[diff_config.KeyChange(
            "sources[jira].approved_statuses", "changed", ["Done"], ["Closed"], True)])),
        diff.UNEXPLAINED: _layers(_b()),
    }
    for layer, (evidence, config, sql) in cases.items():
        explained = diff.explain(CHANGE, None, evidence, config, sql)
        assert explained.explained_by == (layer,), (layer, explained)


def test_an_item_resting_on_another_object_is_a_population_change() -> None:
    evidence, config, sql = _layers([*_b(), _obj("pb2", "audit", "audit/log2", "h", run=RUN_B)])
    moved = diff.Change("AC-01", "changed", "k", CHANGE.a, diff.Item("EXCEPTION", (), "pb2"))
    assert diff.explain(moved, None, evidence, config, sql).explained_by[0] == diff.POPULATION


def test_a_changed_object_the_item_does_not_cite_explains_it_only_weakly() -> None:
    evidence, config, sql = _layers([*_b(), _obj("t", "hr", "hr/terminations.csv", "h", run=RUN_B,
                                                 connector="file", system="iam")])
    control = controls.Control(id="AC-01", model="fct_x", order=1, title="", question="",
                               sheet="AC-01", kind="control", identity={}, systems=("iam",))
    explained = diff.explain(CHANGE, control, evidence, config, sql)
    assert explained.explained_by == (diff.SOURCE_READ,)
    assert explained.because == (f"{diff.SOURCE_READ}: hr/terminations.csv",)
    other = replace(control, systems=("backups",))
    assert diff.explain(CHANGE, other, evidence, config, sql).explained_by == (diff.UNEXPLAINED,)
