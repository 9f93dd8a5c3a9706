"""verify against the signed bundle: the run's rows and links as anchored, the bundle's run.

The database's own chain proves nothing against its owner, who can rewrite a row and
re-chain every link after it. The bundle's `anchor.json` (signed through MANIFEST.sha256)
pins every link of the run, the link before it and the latest link of every earlier run;
`evidence.jsonl` holds every row. This module compares the database with them, checks
that the bundle is the run's own, notes where the run was made and what a signature
without `--public-key` proves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg

from render import bundle as bundles
from render import signing
from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import evidence, runs
from soxtrail.kernel.database import home
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import Store, open_store

ANCHOR = bundles.ANCHOR
# Row fields compared with evidence.jsonl (the chain covers all of them but created_at).
FIELDS = (*evidence.COLUMNS, "created_at")
REDACTED_FIELDS = ("query_text", "query_params")  # as redacted when the bundle was written
NO_ANCHOR = (f"the bundle has no {ANCHOR} (written before anchoring): its evidence rows and "
             "chain links cannot be checked against a copy outside the database")


@dataclass
class SignedBundle:
    """What verify reads from a bundle before comparing: its run, origin, anchor and key."""

    store: Store
    prefix: str
    location: str
    run_id: str | None = None
    quarter: str | None = None
    named_in: str = ""  # the file that names the run: anchor.json, else run.json
    anchor: dict[str, Any] | None = None
    fingerprint: str | None = None  # of the bundle's own signing-key.pub
    signed: bool = False
    readable: bool = False  # a manifest is there
    problems: list[str] = field(default_factory=list)
    _records: dict[str, dict[str, Any]] | None = None

    def key(self, name: str) -> str:
        """The store key of a bundle file."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def read(self, name: str) -> bytes | None:
        """A bundle file's bytes, None when it is not there."""
        try:
            if not self.store.exists(self.key(name)):
                return None
            handle = self.store.open(self.key(name))
        except SoxtrailError as exc:
            self.problems.append(f"{name}: {exc}")
            return None
        try:
            return handle.read()
        finally:
            handle.close()

    def records(self) -> dict[str, dict[str, Any]]:
        """evidence.jsonl by evidence id (read once)."""
        if self._records is None:
            data = self.read("evidence.jsonl") or b""
            self._records = {}
            for line in data.decode("utf-8", "replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "id" in record:
                    self._records[str(record["id"])] = record
        return self._records

    @property
    def recorded_store(self) -> str | None:
        """The store the run wrote to, as the signed anchor records it."""
        origin = (self.anchor or {}).get("origin") or {}
        return str(origin["store"]) if origin.get("store") else None


def _json(data: bytes | None, name: str, problems: list[str]) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        problems.append(f"{name} is not JSON: {exc}")
        return None
    if not isinstance(doc, dict):
        problems.append(f"{name} is not a JSON object")
        return None
    return doc


def read_bundle(store: Store, prefix: str) -> SignedBundle:
    """Which run the bundle names, its anchor and its key (its hashes are checked elsewhere)."""
    prefix = prefix.strip("/")
    signed = SignedBundle(store, prefix, store.location(prefix or "."))
    signed.readable = signed.read(bundles.MANIFEST) is not None
    signed.signed = signed.read(bundles.SIGNATURE) is not None
    signed.anchor = _json(signed.read(ANCHOR), ANCHOR, signed.problems)
    run_doc = _json(signed.read("run.json"), "run.json", signed.problems) or {}
    run_row = run_doc.get("run") if isinstance(run_doc.get("run"), dict) else {}
    if signed.anchor is not None:
        signed.named_in = ANCHOR
        signed.run_id, signed.quarter = signed.anchor.get("run_id"), signed.anchor.get("quarter")
    elif run_row:
        signed.named_in = "run.json"
        signed.run_id, signed.quarter = run_row.get("id"), run_row.get("quarter")
    pem = signed.read(bundles.PUBLIC_KEY)
    if pem is not None:
        try:
            signed.fingerprint = signing.fingerprint(
                signing.load_public_key(pem, bundles.PUBLIC_KEY))
        except SoxtrailError:
            signed.fingerprint = None  # check_bundle reports the broken key
    return signed


def binding(run: runs.Run, signed: SignedBundle) -> Verdict | None:
    """Whether the bundle is this run's: FAIL (refused) when it names another run."""
    if not signed.readable:
        return None  # no bundle there: check_bundle says so
    if signed.run_id is None:
        why = "; ".join(signed.problems) or "neither anchor.json nor run.json names a run"
        return Verdict("FAIL", "bundle", "run", f"cannot tell which run this bundle is of: {why}")
    where = f"({signed.named_in} of {signed.location})"
    if str(signed.run_id) != run.id or str(signed.quarter) != run.quarter:
        return Verdict("FAIL", "bundle", "run",
                       f"refused: the bundle is of run {signed.run_id} ({signed.quarter}), "
                       f"not of run {run.id} ({run.quarter}) {where}")
    return Verdict("OK", "bundle", "run", f"the bundle is of run {run.id} ({run.quarter}) {where}")


def choose_store(given: Store | None, signed: SignedBundle, hint: Store) -> tuple[Store, str]:
    """The store to read objects from, and why: `--store`, else the store the signed anchor
    records, else the run row's `_store` (only for a bundle without an anchor)."""
    if given is not None:
        return given, "--store"
    recorded = signed.recorded_store
    if recorded is None:
        return hint, "sox_runs.config._store (not signed: no anchor; pass --store)"
    if recorded == hint.uri:
        return hint, "the signed anchor"
    try:
        return open_store(recorded, home() / "store"), "the signed anchor"
    except SoxtrailError as exc:
        return hint, f"sox_runs.config._store (the signed store {recorded} cannot be opened: {exc})"


def origin(signed: SignedBundle, now: dict[str, str | None], store: Store, source: str,
           hint: Store) -> Verdict:
    """Where the run was made against where verify reads: a difference is a NOTE."""
    reading = f"objects read from {store.uri} ({source})"
    recorded = (signed.anchor or {}).get("origin")
    if not isinstance(recorded, dict):
        return Verdict("NOTE", "bundle", "origin", f"the bundle does not record where the run "
                       f"was made; reading database {now.get('database')}, {reading}")
    notes = [f"{label} {recorded.get(key)!r}, now {now.get(key)!r}"
             for key, label in (("database", "made in database"),
                                ("system_identifier", "made on system identifier"))
             if recorded.get(key) != now.get(key)]
    if source != "--store" and hint.uri not in (store.uri, recorded.get("store")):
        notes.append(f"sox_runs.config._store names {hint.uri}, not the signed store (ignored)")
    if recorded.get("store") != store.uri:
        notes.append(f"made with store {recorded.get('store')}, {reading}")
    elif notes:
        notes.append(reading)
    if notes:
        return Verdict("NOTE", "bundle", "origin",
                       "; ".join(notes) + " (the hashes decide; a restored copy differs here)")
    return Verdict("OK", "bundle", "origin",
                   f"made in database {now.get('database')} (system identifier "
                   f"{now.get('system_identifier')}), {reading}")


def signature_note(signed: SignedBundle, public_key: object | None) -> Verdict | None:
    """Without `--public-key` a signature proves only that the bundle is self-consistent."""
    if public_key is not None or not signed.signed:
        return None
    return Verdict("NOTE", "bundle", "signature",
                   f"checked only with the key inside the bundle, fingerprint "
                   f"{signed.fingerprint or '(unreadable)'}: this proves the bundle is "
                   "self-consistent, not who wrote it. Compare that fingerprint with the one "
                   "the platform team gave you, or pass --public-key with your own copy")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 40 else text[:39] + "…"


class AnchorCheck:
    """The database's rows and links against the bundle's signed copy."""

    def __init__(self, signed: SignedBundle) -> None:
        """Index the anchor's links by evidence id (none: a bundle written before anchors)."""
        self.signed = signed
        anchor = signed.anchor
        links = anchor.get("links") if anchor is not None else None
        self.links: dict[str, dict[str, Any]] | None = (
            {str(link.get("evidence_id")): link for link in links if isinstance(link, dict)}
            if isinstance(links, list) else None)
        self.differing = 0

    def differences(self, row: dict[str, Any], link: dict[str, Any]) -> list[str]:
        """What differs between a database row (rows_with_links) and its signed copy."""
        found = []
        text_ok = evidence.chain_link(str(link.get("prev_hash")),
                                      str(row["row_text"])) == link.get("chain_hash")
        record = self.signed.records().get(str(row["id"]))
        if record is not None:
            now = json.loads(bundles.evidence_line({f: row[f] for f in FIELDS}))
            for name in FIELDS:
                if now.get(name) == record.get(name) or (text_ok and name in REDACTED_FIELDS):
                    continue  # redaction may differ; the anchored link vouches for the text
                found.append(name if name in REDACTED_FIELDS else
                             f"{name} (signed {_short(record.get(name))}, "
                             f"database {_short(now.get(name))})")
        if not text_ok and not found:
            found.append("the row's text (the field is not visible in the redacted copy)")
        if row["seq"] != link.get("seq"):
            found.append(f"seq (signed {link.get('seq')}, database {row['seq']})")
        found += [name for name in ("prev_hash", "chain_hash") if row[name] != link.get(name)]
        return found

    def row(self, verdict: Verdict, row: dict[str, Any]) -> Verdict:
        """A row's chain verdict, with the comparison against the anchor folded in."""
        if self.links is None:
            return verdict
        link = self.links.get(str(row["id"]))
        if link is None:
            status, detail = "EXTRA", f"not in the bundle's {ANCHOR}: added after the bundle"
        else:
            found = self.differences(row, link)
            if not found:
                if verdict.failed:
                    return verdict
                return Verdict(verdict.status, verdict.kind, verdict.subject,
                               f"{verdict.detail}, as anchored")
            status = "MISMATCH"
            detail = (f"differs from the bundle's signed copy (link {link.get('seq')}): "
                      + "; ".join(found))
        self.differing += 1
        if verdict.failed:
            return Verdict(verdict.status, verdict.kind, verdict.subject,
                           f"{verdict.detail}; also {detail}")
        return Verdict(status, verdict.kind, verdict.subject, detail)

    def run(self, conn: psycopg.Connection[Any], rows: list[dict[str, Any]]) -> list[Verdict]:
        """Anchored rows gone from the database, the link before the run, earlier runs."""
        anchor = self.signed.anchor
        if anchor is None or self.links is None:
            return [Verdict("NOTE", "chain", ANCHOR, NO_ANCHOR)] if self.signed.readable else []
        present = {str(row["id"]) for row in rows}
        verdicts = [Verdict("MISSING", "chain", evidence_id,
                            f"anchored at link {link.get('seq')} in the signed bundle, not in "
                            "the database (the row was deleted)")
                    for evidence_id, link in self.links.items() if evidence_id not in present]
        before = anchor.get("before") if isinstance(anchor.get("before"), dict) else None
        earlier = [e for e in anchor.get("earlier_runs") or [] if isinstance(e, dict)]
        seqs = [int(link["seq"]) for link in [*([before] if before else []), *earlier]]
        now = {int(link["seq"]): link for link in evidence.links_at(conn, seqs)}
        conn.commit()
        if before is not None:
            problem = _link_problem(before, now.get(int(before["seq"])))
            if problem:
                verdicts.append(Verdict("MISMATCH", "chain", ANCHOR,
                                        f"the link before the run, {before['seq']}: {problem}"))
        for run in earlier:
            problem = _link_problem(run, now.get(int(run["seq"])), run_id=str(run["run_id"]))
            if problem:
                verdicts.append(Verdict(
                    "FAIL", "chain", f"run {run['run_id']}",
                    f"({run.get('quarter')}) its latest link {run['seq']}, recorded in this "
                    f"bundle: {problem} (the run was deleted or rewritten)"))
        if not verdicts and not self.differing:
            verdicts.append(Verdict(
                "OK", "chain", ANCHOR,
                f"{len(self.links)} rows and links as anchored"
                + (f"; link {before['seq']} before the run" if before else "")
                + f"; {len(earlier)} earlier runs' latest links unchanged"))
        return verdicts


def _link_problem(recorded: dict[str, Any], now: dict[str, Any] | None, *,
                  run_id: str | None = None) -> str | None:
    """What is wrong with a link recorded in the anchor as the database holds it now."""
    if now is None:
        return "no such link in the database"
    if str(now["evidence_id"]) != str(recorded.get("evidence_id")):
        return f"now links evidence {now['evidence_id']}, not {recorded.get('evidence_id')}"
    if now["chain_hash"] != recorded.get("chain_hash"):
        return f"chain_hash {recorded.get('chain_hash')}, the database has {now['chain_hash']}"
    if now["row_text"] is None:
        return f"its evidence row {now['evidence_id']} is gone"
    if run_id is not None and now["run_id"] != run_id:
        return f"its evidence row now belongs to run {now['run_id']}"
    if evidence.chain_link(now["prev_hash"], now["row_text"]) != now["chain_hash"]:
        return f"its evidence row {now['evidence_id']} was changed"
    return None


def context_verdicts(conn: psycopg.Connection[Any], signed: SignedBundle, store: Store,
                     source: str, hint: Store, public_key: object | None) -> list[Verdict]:
    """Where the run was made against where verify reads, and what the signature proves."""
    now = evidence.chain_origin(conn)
    conn.commit()
    note = signature_note(signed, public_key)
    return [origin(signed, now, store, source, hint), *([note] if note else [])]
