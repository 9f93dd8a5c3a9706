"""Check a run's sign-off (`verify` kind `attest`): each attestation's signature under the key
it records and signers.yml's key for that person, its row against its signed document and
the file in the store, the attestation chain, the manifest it attests against the bundle's
newest version, and segregation of duties."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import psycopg

from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import attestations, runs
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import Store

KIND = "attest"


@dataclass(frozen=True)
class Manifest:
    """One bundle version's MANIFEST.sha256: its hash, and whether and by what key it is
    signed."""

    version: int
    prefix: str
    sha256: str
    signed: bool
    fingerprint: str | None


def read_object(store: Store, key: str) -> bytes | None:
    """The bytes of a store object, None when it is not there (also verify_sample)."""
    if not store.exists(key):
        return None
    handle = store.open(key)
    try:
        return handle.read()
    finally:
        handle.close()


def bundle_manifests(store: Store, run: runs.Run) -> list[Manifest]:
    """Every bundle version of the run that has a manifest, oldest first."""
    from render.bundle import FINGERPRINT, MANIFEST, SIGNATURE
    from soxtrail.audit.verify_report import version_prefixes

    found = []
    for number, prefix in enumerate(version_prefixes(store, run.quarter, run.id), start=1):
        data = read_object(store, f"{prefix}/{MANIFEST}")
        if data is None:
            continue
        fp = read_object(store, f"{prefix}/{FINGERPRINT}")
        found.append(Manifest(version=number, prefix=prefix,
                              sha256=hashlib.sha256(data).hexdigest(),
                              signed=store.exists(f"{prefix}/{SIGNATURE}"),
                              fingerprint=fp.decode("utf-8", "replace").strip() if fp else None))
    return found


def executed_by(conn: psycopg.Connection[Any], run_id: str) -> list[str]:
    """Who executed the run's evidence (sox_evidence.executed_by)."""
    rows = conn.execute("select distinct executed_by from soxtrail.sox_evidence"
                        " where run_id = %s order by 1", (run_id,)).fetchall()
    return [str(r[0]) for r in rows]


def current_signers(run: runs.Run) -> tuple[attestations.Signers | None, str | None]:
    """The signers file the run's recorded config names, and why it is not there."""
    path = attestations.signers_path(run.config)
    if path is None:
        return None, "the run's config names no signers file"
    try:
        return attestations.load_signers(path), None
    except SoxtrailError as exc:
        return None, str(exc)


def _document(row: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        doc = json.loads(row["document"])
    except ValueError as exc:
        return None, f"the document is not JSON ({exc})"
    return (doc, None) if isinstance(doc, dict) else (None, "the document is not a JSON object")


def check_chain(rows: list[dict[str, Any]], run_id: str, *, kind: str = KIND,
                noun: str = "attestation") -> list[Verdict]:
    """The attestation chain (all runs share it) up to the run's last attestation; the
    samples' chain (verify_sample) is built the same way (`kind`, `noun`)."""
    previous = attestations.GENESIS
    broken = []
    last = max((int(r["seq"]) for r in rows if str(r["run_id"]) == run_id), default=0)
    for row in rows:
        if int(row["seq"]) > last:
            break
        link = attestations.chain_link(previous, row["document"])
        if row["prev_hash"] != previous or row["chain_hash"] != link:
            broken.append(f"seq {row['seq']} ({noun} {row['id']}, run {row['run_id']})")
        previous = row["chain_hash"]
    if broken:
        return [Verdict("MISMATCH", kind, "chain",
                        f"the {noun} chain does not hold at " + "; ".join(broken[:5])
                        + " (a row or link was changed)")]
    return [Verdict("OK", kind, "chain",
                    f"{sum(1 for r in rows if int(r['seq']) <= last)} links hold")]


def recorded_key_signature(row: dict[str, Any], key_doc: dict[str, Any], *, kind: str,
                           subject: str, whose: str) -> tuple[str, Verdict | None]:
    """The signer key a signed record's document carries (`signer_key`: PEM and fingerprint)
    checked against itself, and the row's signature against it: (the key's fingerprint, or
    "" when unreadable; None when the signature verifies, else the FAIL)."""
    try:
        public = attestations.load_public(str(key_doc.get("public_key_pem")), "signer_key")
    except SoxtrailError as exc:
        return "", Verdict("FAIL", kind, subject, str(exc))
    fp = attestations.fingerprint(public)
    if fp != key_doc.get("fingerprint"):
        return fp, Verdict("FAIL", kind, subject, f"the recorded key's fingerprint is {fp}, "
                           f"the document says {key_doc.get('fingerprint')}")
    try:
        signature = bytes.fromhex(row.get("signature") or "")
    except ValueError:
        signature = b""
    if not attestations.verify_signature(public, row["document"].encode("utf-8"), signature):
        return fp, Verdict("FAIL", kind, subject,
                           f"the signature does not verify under {whose} {fp}")
    return fp, None


def _signature(row: dict[str, Any], doc: dict[str, Any], subject: str,
               signers: attestations.Signers | None, why: str | None) -> list[Verdict]:
    key_doc = doc.get("signer_key")
    if not isinstance(key_doc, dict):
        if doc.get("authenticated") or row.get("signature"):
            return [Verdict("FAIL", KIND, subject, "says it is authenticated but records no key")]
        return [Verdict("NOTE", KIND, subject,
                        "unauthenticated: signed off without signers.yml, so only the typed "
                        "name says who it was")]
    fp, failed = recorded_key_signature(row, key_doc, kind=KIND, subject=subject,
                                        whose=f"{doc.get('signer')}'s key")
    if failed is not None:
        return [failed]
    verdicts = [Verdict("OK", KIND, subject, f"Ed25519 signature by {doc.get('signer')}, "
                        f"key {fp}")]
    if not doc.get("authenticated"):
        verdicts.append(Verdict("NOTE", KIND, subject, "signed, but without signers.yml: the "
                                "key is not known to be that person's"))
    elif signers is None:
        verdicts.append(Verdict("NOTE", KIND, subject,
                                f"signers.yml not checked ({why}); compare the key "
                                f"{fp} with the signer's"))
    else:
        person = signers.get(str(doc.get("signer")))
        if person is None:
            verdicts.append(Verdict("FAIL", KIND, subject,
                                    f"{doc.get('signer')} is not in {signers.path}"))
        elif person.fingerprint != fp:
            verdicts.append(Verdict("FAIL", KIND, subject,
                                    f"signed with key {fp}, but {signers.path} gives "
                                    f"{person.name} the key {person.fingerprint}"))
        else:
            verdicts.append(Verdict("OK", KIND, subject,
                                    f"the key is {person.name}'s in {signers.path}"))
    return verdicts


def check_file(store: Store, row: dict[str, Any], subject: str, *, kind: str = KIND,
               noun: str = "attestation") -> list[Verdict]:
    """The row's signed file (`store_key`) and signature in the store are its document's
    (also the samples', verify_sample: `kind`, `noun`)."""
    key = str(row["store_key"])
    stored = read_object(store, key)
    if stored is None:
        return [Verdict("MISSING", kind, subject, f"no {noun} file at {store.location(key)}")]
    if stored != row["document"].encode("utf-8"):
        return [Verdict("MISMATCH", kind, subject,
                        f"{key} differs from the database's document (one of them was edited)")]
    if row.get("signature"):
        sig = read_object(store, key + attestations.SIGNATURE_SUFFIX)
        if sig is None or sig.hex() != row["signature"]:
            return [Verdict("MISMATCH" if sig is not None else "MISSING", kind, subject,
                            f"{key}{attestations.SIGNATURE_SUFFIX} is not the recorded "
                            "signature")]
    return [Verdict("OK", kind, subject, f"{key} is the signed document")]


def _manifest(doc: dict[str, Any], manifests: list[Manifest], subject: str) -> Verdict:
    if not manifests:
        return Verdict("MISSING", KIND, subject, "the run has no bundle manifest to attest")
    newest = manifests[-1]
    attested = next((m for m in manifests if m.version == doc.get("bundle_version")), None)
    if attested is None or attested.sha256 != doc.get("manifest_sha256"):
        return Verdict("MISMATCH", KIND, subject,
                       f"attests MANIFEST.sha256 {doc.get('manifest_sha256')} of bundle version "
                       f"{doc.get('bundle_version')}, which is "
                       + (f"{attested.sha256} now" if attested else "not in the store"))
    if newest.version != attested.version:
        return Verdict("FAIL", KIND, subject,
                       f"out of date: attests bundle version {attested.version}, the run's "
                       f"newest is {newest.version} ({newest.prefix}, MANIFEST.sha256 "
                       f"{newest.sha256}); sign off again")
    return Verdict("OK", KIND, subject, f"attests MANIFEST.sha256 {newest.sha256} of "
                   f"{newest.prefix}, the newest bundle version")


def _segregation(doc: dict[str, Any], row: dict[str, Any], run: runs.Run,
                 run_rows: list[dict[str, Any]], executors: list[str],
                 signers: attestations.Signers | None, subject: str) -> Verdict | None:
    if doc.get("role") != attestations.REVIEWER:
        return None
    others = attestations.pipeline_parties(run.triggered_by, executors, signers)
    for other in run_rows:
        if other["role"] == attestations.PREPARER:
            others.append(attestations.Party(str(other["signer"]),
                                             f"prepared it (attestation {other['id']})",
                                             other.get("key_fingerprint")))
    fp = (doc.get("signer_key") or {}).get("fingerprint")
    reasons = attestations.self_review(str(doc.get("signer")), fp, others)
    if reasons:
        return Verdict("FAIL", KIND, subject,
                       "segregation of duties: self-review — " + "; ".join(reasons))
    return Verdict("OK", KIND, subject, f"segregation of duties: the reviewer is neither a "
                   f"preparer nor who ran the pipeline ({len(others)} parties compared)")


def check_attestations(conn: psycopg.Connection[Any], run: runs.Run,
                       store: Store) -> list[Verdict]:
    """Every check of the run's sign-off (none for a run nobody signed off: a draft)."""
    every = attestations.list_attestations(conn)
    executors = executed_by(conn, run.id)
    official = attestations.official_runs(conn).get(run.quarter)
    conn.commit()
    rows = [r for r in every if str(r["run_id"]) == run.id]
    if not rows:  # a draft: nothing to check (`soxtrail runs` says which run is official)
        return []
    signers, why = current_signers(run)
    manifests = bundle_manifests(store, run)
    verdicts = check_chain(every, run.id)
    for row in rows:
        subject = f"{row['ordinal']}-{row['role']}-{row['signer']} ({row['id']})"
        doc, problem = _document(row)
        if doc is None:
            verdicts.append(Verdict("FAIL", KIND, subject, str(problem)))
            continue
        differences = attestations.row_differences(row, doc)
        if differences:
            verdicts.append(Verdict("MISMATCH", KIND, subject,
                                    "the row differs from its signed document: "
                                    + "; ".join(differences)))
        verdicts += _signature(row, doc, subject, signers, why)
        verdicts += check_file(store, row, subject)
        verdicts.append(_manifest(doc, manifests, subject))
        sod = _segregation(doc, row, run, [r for r in rows if r["id"] != row["id"]],
                           executors, signers, subject)
        if sod is not None:
            verdicts.append(sod)
    if official and official["run_id"] == run.id:
        verdicts.append(Verdict("NOTE", KIND, "sign-off",
                                f"the official run of {run.quarter} (reviewed by "
                                f"{official['signer']})"))
    else:
        verdicts.append(Verdict("NOTE", KIND, "sign-off",
                                f"not the official run of {run.quarter}: superseded by run "
                                f"{official['run_id'] if official else '-'}"
                                if official else "no reviewer sign-off: a draft"))
    return verdicts
