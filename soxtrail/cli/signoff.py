"""`soxtrail signoff`: a person's signed attestation of a run's bundle (docs/operations.md,
"Sign-off"); a reviewer's makes the run the official run of its quarter."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from soxtrail.audit import verify_attest
from soxtrail.audit.verify import run_store
from soxtrail.cli.common import JsonOpt, err, handled, open_database, out
from soxtrail.kernel import attestations, runs
from soxtrail.kernel.config import load_config
from soxtrail.kernel.errors import ConfigError

signoff_app = typer.Typer()


def _signers(config: Path | None, run: runs.Run) -> attestations.Signers | None:
    """signers.yml as `--config` names it, else as the run's recorded config names it."""
    if config is not None:
        from extract.connectors.registry import SPECS

        cfg = load_config(config, specs=SPECS, resolve_secrets=False)
        recorded: dict[str, Any] = {**cfg.raw, "_base_dir": str(cfg.base_dir)}
    else:
        recorded = run.config
    path = attestations.signers_path(recorded)
    return attestations.load_signers(path) if path is not None else None


@signoff_app.command()
def signoff(
    run_id: Annotated[str, typer.Argument(
        help="The completed quarter run to sign off (id, 8+ character prefix, or `latest`).")],
    signer: Annotated[str, typer.Option("--as", help="Who signs: a person of signers.yml.")],
    role: Annotated[str, typer.Option("--role", help="preparer or reviewer.")],
    comment: Annotated[str | None, typer.Option("--comment", help="Recorded as written.")] = None,
    key: Annotated[Path | None, typer.Option(
        "--key", help="The signer's Ed25519 private key (PEM); default $SOXTRAIL_SIGNOFF_KEY.")
    ] = None,
    manifest_sha256: Annotated[str | None, typer.Option(
        "--manifest-sha256",
        help="The SHA-256 of the MANIFEST.sha256 you reviewed: refused unless it is the "
             "newest bundle version's.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="soxtrail.yml naming signers.yml (default: the run's recorded "
                               "config).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Attest a run's bundle as preparer or reviewer: a signed, hash-chained record in the
    database and a signed file beside the bundle. A reviewer must be neither a preparer nor
    whoever ran the pipeline; a reviewer's sign-off makes the run its quarter's official run."""
    with handled():
        if role not in attestations.ROLES:
            raise ConfigError(f"--role {role!r}: expected preparer or reviewer")
        if not signer.strip():
            raise ConfigError("--as: give the signer's name")
        _, conn = open_database()
        with conn:
            run = runs.get_quarter_run(conn, run_id, "sign off")
            conn.commit()
            if run.status != "completed":
                raise ConfigError(f"run {run.id} is {run.status}: only a completed run (with "
                                  "its bundle) is signed off")
            store = run_store(run)
            manifests = verify_attest.bundle_manifests(store, run)
            if not manifests:
                raise ConfigError(f"run {run.id} has no bundle manifest in {store.uri}")
            bundle = manifests[-1]
            err.print(f"run {run.id} ({run.quarter}), {bundle.prefix} (bundle version "
                      f"{bundle.version}, {'signed' if bundle.signed else 'UNSIGNED'}): "
                      f"MANIFEST.sha256 sha256 {bundle.sha256}", markup=False)
            if manifest_sha256 is not None and manifest_sha256.strip().lower() != bundle.sha256:
                raise ConfigError(f"refused: you reviewed MANIFEST.sha256 {manifest_sha256}, "
                                  f"the run's newest bundle ({bundle.prefix}) has "
                                  f"{bundle.sha256}; review that bundle and sign again")
            doc, row = _sign(conn, run, bundle, signer, role, comment, key, config, store)
        _report(doc, row, store.location(str(row["store_key"])), as_json)


def _sign(conn: Any, run: runs.Run, bundle: verify_attest.Manifest, signer: str, role: str,
          comment: str | None, key: Path | None, config: Path | None,
          store: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    signers = _signers(config, run)
    key_path = attestations.signoff_key_path(key)
    private = attestations.load_private(key_path) if key_path is not None else None
    fp = attestations.fingerprint(private.public_key()) if private is not None else None
    name = signer.strip()
    if signers is not None:
        person = signers.get(name)
        if person is None:
            raise ConfigError(f"{name} is not in {signers.path}: only a person listed there "
                              "may sign off")
        name = person.name
        if private is None:
            raise ConfigError(f"{name}'s private key is needed: --key PEM or "
                              f"${attestations.KEY_ENV}")
        if fp != person.fingerprint:
            raise ConfigError(f"refused: the key given ({fp}) is not {name}'s key in "
                              f"{signers.path} ({person.fingerprint})")
    executors = verify_attest.executed_by(conn, run.id)
    conn.commit()
    with conn.transaction():
        previous = attestations.begin_chain(conn)
        existing = attestations.list_attestations(conn, run.id)
        if role == attestations.REVIEWER:
            others = attestations.pipeline_parties(run.triggered_by, executors, signers)
            others += [attestations.Party(str(r["signer"]),
                                          f"prepared it (attestation {r['id']})",
                                          r.get("key_fingerprint"))
                       for r in existing if r["role"] == attestations.PREPARER]
            reasons = attestations.self_review(name, fp, others)
            if reasons:
                raise ConfigError("refused, segregation of duties: the reviewer must be neither "
                                  "a preparer nor whoever ran the pipeline: "
                                  + "; ".join(reasons))
        official = attestations.official_runs(conn).get(run.quarter)
        supersedes = ({"run_id": official["run_id"], "attestation_id": official["id"]}
                      if role == attestations.REVIEWER and official
                      and official["run_id"] != run.id else None)
        ordinal = attestations.next_ordinal(conn, run.id)
        doc: dict[str, Any] = {
            "format": attestations.FORMAT,
            "id": str(uuid.uuid4()),
            "run_id": run.id,
            "quarter": run.quarter,
            "role": role,
            "signer": name,
            "signed_at": attestations.utc_text(datetime.now(UTC)),
            "comment": comment,
            "bundle_version": bundle.version,
            "bundle_prefix": bundle.prefix,
            "bundle_signed": bundle.signed,
            "bundle_key_fingerprint": bundle.fingerprint,
            "manifest_sha256": bundle.sha256,
            "authenticated": signers is not None,
            "signer_key": ({"fingerprint": fp,
                            "public_key_pem": attestations.public_pem(private.public_key())}
                           if private is not None else None),
            "signers_file": ({"path": str(signers.path), "sha256": signers.sha256}
                             if signers is not None else None),
            "triggered_by": run.triggered_by,
            "executed_by": executors,
            "supersedes": supersedes,
            "previous": previous,
        }
        data = attestations.document_bytes(doc)
        signature = private.sign(data) if private is not None else None
        store_key = attestations.store_key(run.quarter, run.id, ordinal, role, name)
        row = attestations.insert(conn, doc, signature, store_key, ordinal)
        # put-if-absent and, on a bucket with Object Lock, locked like the anchor; before
        # the commit: a failed write leaves no row without its file
        store.put_bytes(store_key, data, lock=True)
        if signature is not None:
            store.put_bytes(store_key + attestations.SIGNATURE_SUFFIX, signature, lock=True)
    return doc, row


def _report(doc: dict[str, Any], row: dict[str, Any], location: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"attestation_id": doc["id"], "run_id": doc["run_id"],
                          "quarter": doc["quarter"], "role": doc["role"],
                          "signer": doc["signer"], "manifest_sha256": doc["manifest_sha256"],
                          "bundle_version": doc["bundle_version"],
                          "authenticated": doc["authenticated"],
                          "key_fingerprint": (doc["signer_key"] or {}).get("fingerprint"),
                          "supersedes": doc["supersedes"], "file": location,
                          "chain_hash": row["chain_hash"]}, sort_keys=True))
        return
    out.print(f"attestation: {doc['id']} ({doc['role']} {doc['signer']})", markup=False)
    out.print(f"attests: MANIFEST.sha256 {doc['manifest_sha256']} of {doc['bundle_prefix']}",
              markup=False)
    out.print(f"file: {location}", markup=False)
    if not doc["authenticated"]:
        out.print("authenticated: no (no signers.yml: only the typed name says who signed)",
                  markup=False)
    if doc["role"] == attestations.REVIEWER:
        out.print(f"official: run {doc['run_id']} is the official run of {doc['quarter']}",
                  markup=False)
    if doc["supersedes"]:
        out.print(f"supersedes: run {doc['supersedes']['run_id']}", markup=False)
