"""A run as OSCAL assessment-results: an observation per evidence row, a finding per control."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from soxtrail.audit.verify import run_store
from soxtrail.kernel import attestations as signoffs
from soxtrail.kernel import controls, evidence, runs
from soxtrail.kernel.errors import PipelineError

OSCAL_VERSION = "1.1.2"  # the schema version the document follows
# Fixed namespace: every UUID is uuid5(NAMESPACE, "<run id>:<kind>:<thing>"), so the
# same run always exports the same document.
NAMESPACE = uuid.UUID("5f0c7e3a-9d4b-5b8e-a6c1-50c7a1f0e001")
PROP_NS = "https://github.com/soxtrail/soxtrail/ns/oscal"


def stable_uuid(run_id: str, kind: str, thing: str = "") -> str:
    """The deterministic UUID (v5) of one part of a run's document."""
    return str(uuid.uuid5(NAMESPACE, f"{run_id}:{kind}:{thing}"))


def _ts(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _prop(name: str, value: Any) -> dict[str, str] | None:
    text = " ".join(str(value).split()) if value is not None else ""
    return {"name": name, "ns": PROP_NS, "value": text} if text else None


def _props(*pairs: tuple[str, Any]) -> list[dict[str, str]]:
    return [p for p in (_prop(n, v) for n, v in pairs) if p is not None]


def _control_rows(conn: psycopg.Connection[Any], run_id: str) -> dict[str, dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql.SQL("select * from {} where run_id = %s").format(
            sql.Identifier(controls.MARTS_SCHEMA, controls.SUMMARY_MODEL)), (run_id,))
        return {str(r["control_id"]): r for r in cur.fetchall()}


def _related_evidence(conn: psycopg.Connection[Any], model: str, run_id: str) -> list[str]:
    """Evidence ids the control's population items rest on (snapshot and supporting)."""
    query = sql.SQL(
        "select distinct ref::text from (select evidence_id::uuid as ref from {table}"
        " where run_id = %(run)s union all select unnest(supporting_evidence_ids::uuid[])"
        " from {table} where run_id = %(run)s) as refs where ref is not null order by 1").format(
        table=sql.Identifier(controls.MARTS_SCHEMA, model))
    try:
        return [r[0] for r in conn.execute(query, {"run": run_id}).fetchall()]
    except psycopg.Error:
        conn.rollback()
        return []


def _attestations(conn: psycopg.Connection[Any], run: runs.Run, store: Any,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The run's sign-off as OSCAL: parties (one per signer), attestations (one per
    attestation, its fields as props) and back-matter resources (each signed file)."""
    parties: dict[str, dict[str, Any]] = {}
    items = []
    resources = []
    for row in signoffs.list_attestations(conn, run.id):
        signer = str(row["signer"])
        party = parties.setdefault(signer, {
            "uuid": stable_uuid(run.id, "party", signer), "type": "person", "name": signer,
            "props": _props(("key-fingerprint", row["key_fingerprint"]))})
        resource_uuid = stable_uuid(run.id, "attestation-file", str(row["id"]))
        location = store.location(str(row["store_key"]))
        href = location if "://" in location else "file://" + location
        digest = hashlib.sha256(str(row["document"]).encode("utf-8")).hexdigest()
        resources.append({
            "uuid": resource_uuid,
            "title": f"attestation {row['id']} ({row['role']} {signer})",
            "description": "The signed attestation document; its Ed25519 signature is the "
                           "file with `.sig` appended (docs/auditor-guide.md, \"Sign-off\").",
            "rlinks": [{"href": href, "hashes": [{"algorithm": "SHA-256", "value": digest}]}],
        })
        supersedes = str(row["supersedes_run"]) if row["supersedes_run"] else None
        items.append({
            "responsible-parties": [{"role-id": str(row["role"]),
                                     "party-uuids": [party["uuid"]]}],
            "parts": [{
                "name": "attestation",
                "ns": PROP_NS,
                "title": f"{row['role']} sign-off by {signer}",
                "prose": (f"{signer} signed off run {run.id} as {row['role']} on "
                          f"{_ts(row['signed_at'])}, attesting MANIFEST.sha256 "
                          f"{row['manifest_sha256']} of bundle version {row['bundle_version']}"
                          + (f"; comment: {row['comment']}" if row["comment"] else "")
                          + (f"; supersedes run {supersedes}" if supersedes else "")
                          + ("" if row["authenticated"] else
                             "; unauthenticated (no signers.yml)") + "."),
                "props": _props(("attestation-id", row["id"]), ("role", row["role"]),
                                ("signed-at", _ts(row["signed_at"])),
                                ("manifest-sha256", row["manifest_sha256"]),
                                ("bundle-version", row["bundle_version"]),
                                ("authenticated", str(bool(row["authenticated"])).lower()),
                                ("key-fingerprint", row["key_fingerprint"]),
                                ("supersedes-run", supersedes),
                                ("chain-hash", row["chain_hash"]),
                                ("file", f"#{resource_uuid}")),
            }],
        })
    return list(parties.values()), items, resources


def assessment_results(conn: psycopg.Connection[Any], run_id: str) -> dict[str, Any]:
    """The run's OSCAL assessment-results document (a JSON-ready dict)."""
    run = runs.get_quarter_run(conn, run_id, "export")
    if run.phase_reached not in ("reconcile", "render", "bundle"):
        raise PipelineError(f"run {run.id} has not been reconciled (phase reached: "
                            f"{run.phase_reached or 'none'}); there are no findings to export")
    store = run_store(run)
    evidence_rows = evidence.run_rows(conn, run.id)
    summary = _control_rows(conn, run.id)

    resources = []
    observations = []
    observation_of: dict[str, str] = {}
    for row in evidence_rows:
        evidence_id = str(row["id"])
        resource_uuid = stable_uuid(run.id, "resource", evidence_id)
        observation_uuid = stable_uuid(run.id, "observation", evidence_id)
        observation_of[evidence_id] = observation_uuid
        location = store.location(row["raw_output_s3_key"])
        href = location if "://" in location else "file://" + location
        resources.append({
            "uuid": resource_uuid,
            "title": f"raw output of evidence {evidence_id}",
            "description": f"{row['source_system']} / {row['query_name']}: "
                           f"{row['result_row_count']} rows",
            "props": _props(("evidence-id", evidence_id),
                            ("store-key", row["raw_output_s3_key"])),
            "rlinks": [{"href": href,
                        "hashes": [{"algorithm": "SHA-256", "value": row["result_hash"]}]}],
        })
        is_control = row["source_system"] == evidence.RECONCILE
        observations.append({
            "uuid": observation_uuid,
            "title": f"{row['source_system']}: {row['query_name']}",
            "description": (
                f"Evidence row {evidence_id}: {row['query_name']} ran by {row['executed_by']}, "
                f"{row['result_row_count']} rows, SHA-256 {row['result_hash']}."),
            "props": _props(("evidence-id", evidence_id),
                            ("source-system", row["source_system"]),
                            ("query-name", row["query_name"]),
                            ("result-row-count", row["result_row_count"]),
                            ("result-sha256", row["result_hash"]),
                            ("executed-by", row["executed_by"])),
            "methods": ["TEST"] if is_control else ["EXAMINE"],
            "types": ["control-objective"] if is_control else ["historic"],
            "relevant-evidence": [{
                "href": f"#{resource_uuid}",
                "description": (f"raw output at {location}; check with sha256sum, expect "
                                f"{row['result_hash']}"),
            }],
            "collected": _ts(row["executed_at"]),
        })

    findings = []
    for control_id, model in controls.CONTROLS.items():
        info = summary.get(control_id, {})
        control_evidence = controls.control_evidence_id(run.id, model)
        population = info.get("population")
        exceptions = info.get("exceptions")
        satisfied = exceptions is not None and int(exceptions) == 0
        related = [control_evidence, *_related_evidence(conn, model, run.id)]
        related_uuids = list(dict.fromkeys(observation_of[e] for e in related
                                           if e in observation_of))
        qualified_by = sorted(info.get("qualified_by") or [])
        qualification = (f" Qualified by {len(qualified_by)} completeness exception"
                         f"{'s' if len(qualified_by) != 1 else ''} ({', '.join(qualified_by)}): "
                         "the result holds for the population captured, which may not be whole."
                         if qualified_by else "")
        finding: dict[str, Any] = {
            "uuid": stable_uuid(run.id, "finding", control_id),
            "title": f"{control_id} {info.get('control_name') or model}",
            "description": (f"{info.get('description') or model}. Population {population}, "
                            f"exceptions {exceptions}; control evidence {control_evidence}."
                            + qualification),
            "props": _props(("control-evidence-id", control_evidence),
                            ("population", population), ("exceptions", exceptions),
                            ("model", model),
                            *(("qualified-by", item) for item in qualified_by)),
            "target": {
                "type": "objective-id",
                "target-id": control_id.lower(),
                "status": {"state": "satisfied" if satisfied else "not-satisfied",
                           "reason": "pass" if satisfied else "fail"},
            },
        }
        if related_uuids:
            finding["related-observations"] = [{"observation-uuid": u} for u in related_uuids]
        findings.append(finding)
    parties, signed_off, attestation_files = _attestations(conn, run, store)
    conn.commit()

    last_modified = _ts(run.finished_at or run.started_at)
    control_ids = [{"control-id": c.lower()} for c in controls.CONTROLS]
    document = {
        "uuid": stable_uuid(run.id, "assessment-results"),
        "metadata": {
            "title": f"soxtrail SOX ITGC assessment results, {run.quarter}, run {run.id}",
            "last-modified": last_modified,
            "version": run.tool_version,
            "oscal-version": OSCAL_VERSION,
            "props": _props(("run-id", run.id), ("quarter", run.quarter),
                            ("git-commit", run.git_commit), ("triggered-by", run.triggered_by)),
            **({"roles": [{"id": role, "title": f"sign-off {role}"}
                          for role in signoffs.ROLES],
                "parties": parties} if parties else {}),
        },
        "import-ap": {"href": f"#{stable_uuid(run.id, 'resource', 'controls')}"},
        "results": [{
            "uuid": stable_uuid(run.id, "result"),
            "title": f"soxtrail run {run.id} ({run.quarter})",
            "description": (f"Controls {', '.join(controls.CONTROLS)} tested on the evidence "
                            f"of run {run.id}; every observation is one evidence row. "
                            + _completeness_sentence(summary)),
            "start": _ts(run.started_at),
            **({"end": _ts(run.finished_at)} if run.finished_at else {}),
            "reviewed-controls": {"control-selections": [{"include-controls": control_ids}]},
            **({"attestations": signed_off} if signed_off else {}),
            "observations": observations,
            "findings": findings,
        }],
        "back-matter": {"resources": [{
            "uuid": stable_uuid(run.id, "resource", "controls"),
            "title": "soxtrail control definitions (docs/controls.md)",
            "description": "The normative description of each control's population, test "
                           "attributes and reason codes; stands in for an assessment plan.",
        }, *resources, *attestation_files]},
    }
    return {"assessment-results": document}


def _completeness_sentence(summary: dict[str, dict[str, Any]]) -> str:
    """What the completeness marts say of the populations, in one sentence."""
    parts = [f"{c}: {summary[c].get('result')}, {summary[c].get('exceptions')} exceptions "
             f"in {summary[c].get('population')} sources and clusters"
             for c in controls.COMPLETENESS if c in summary]
    return ("Completeness of the populations (not a control; exceptions qualify the "
            "controls reading the source): " + "; ".join(parts) + "."
            if parts else "Completeness of the populations was not assessed by this run.")


def to_json(document: dict[str, Any]) -> str:
    """Stable JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
