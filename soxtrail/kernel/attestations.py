"""Management sign-off: attestations of a run (`soxtrail signoff`), the signers file
(`signers.yml`), segregation of duties, and the official run of a quarter.

An attestation is a JSON document (`document_bytes`) that names the run, the bundle version
and the SHA-256 of the `MANIFEST.sha256` the signer saw, signed with the signer's Ed25519
key. It is kept twice: a row of `soxtrail.sox_attestations` (append-only, hash-chained by
the owner's trigger, platform.sql) and a file beside the bundle in the evidence store
(`<quarter>/<run>/attestations/<n>-<role>-<name>.json` and `.sig`), never inside the bundle
whose manifest it attests.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg.rows import dict_row

from soxtrail.kernel import keys
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.keys import fingerprint
from soxtrail.kernel.keys import verify as verify_signature  # noqa: F401
from soxtrail.kernel.store import check_key, safe_name

ROLES = ("preparer", "reviewer")
PREPARER, REVIEWER = ROLES
FORMAT = 1
KEY_ENV = "SOXTRAIL_SIGNOFF_KEY"
PASSWORD_ENV = "SOXTRAIL_SIGNOFF_KEY_PASSWORD"
GENESIS = "0" * 64
SIGNATURE_SUFFIX = ".sig"
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_SIGNER_KEYS = frozenset({"public_key", "fingerprint", "logins"})


# ---------------------------------------------------------------- keys


def public_pem(key: Ed25519PublicKey) -> str:
    """The public key as PEM text (SubjectPublicKeyInfo), what `openssl pkeyutl -pubin` reads."""
    return keys.public_key_pem(key).decode("ascii")


def load_public(pem: str | bytes, where: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; `where` names it in errors."""
    return keys.load_public(pem.encode("ascii", "replace") if isinstance(pem, str) else pem,
                            where)


def signoff_key_path(given: Path | None) -> Path | None:
    """The signer's private key: `--key`, else `$SOXTRAIL_SIGNOFF_KEY`, else None."""
    if given is not None:
        return given
    value = os.environ.get(KEY_ENV, "").strip()
    return Path(value).expanduser() if value else None


def load_private(path: Path) -> Ed25519PrivateKey:
    """The signer's Ed25519 private key (PEM; password from $SOXTRAIL_SIGNOFF_KEY_PASSWORD)."""
    return keys.load_private(path, what="sign-off key", password_env=PASSWORD_ENV)


# ---------------------------------------------------------------- signers.yml


@dataclass(frozen=True)
class Signer:
    """One person of signers.yml: their key's fingerprint (and PEM, when given), logins."""

    name: str
    fingerprint: str
    public_key_pem: str | None
    logins: tuple[str, ...]

    def is_login(self, login: str) -> bool:
        """Whether `login` (a sox_runs.triggered_by or sox_evidence.executed_by) is this person."""
        folded = login.strip().casefold()
        return folded == self.name.casefold() or folded in (x.casefold() for x in self.logins)


@dataclass(frozen=True)
class Signers:
    """The parsed signers file."""

    path: Path
    sha256: str
    people: dict[str, Signer] = field(default_factory=dict)

    def get(self, name: str) -> Signer | None:
        """The person named `name` (exact, else case-insensitive)."""
        if name in self.people:
            return self.people[name]
        return next((p for n, p in self.people.items() if n.casefold() == name.casefold()), None)

    def of_login(self, login: str) -> list[Signer]:
        """The people a login belongs to."""
        return [p for p in self.people.values() if p.is_login(login)]


def load_signers(path: Path) -> Signers:
    """Read and validate signers.yml (docs/configuration.md, "signers"); errors name the key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"signers file {path}: cannot read it ({exc.strerror})") from exc
    try:
        doc = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("signers"), dict) \
            or not doc["signers"]:
        raise ConfigError(f"{path}: expected a mapping `signers:` of person -> key")
    unknown = set(doc) - {"version", "signers"}
    if unknown:
        raise ConfigError(f"{path}: {sorted(unknown)[0]}: unknown key (allowed: signers, version)")
    people: dict[str, Signer] = {}
    seen: dict[str, str] = {}
    for name, entry in doc["signers"].items():
        where = f"{path}: signers.{name}"
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{path}: signers: a person's name must be a non-empty string")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping with public_key or fingerprint")
        extra = set(entry) - _SIGNER_KEYS
        if extra:
            raise ConfigError(f"{where}.{sorted(extra)[0]}: unknown key "
                              f"(allowed: {', '.join(sorted(_SIGNER_KEYS))})")
        pem = _signer_pem(entry.get("public_key"), path.parent, f"{where}.public_key")
        given = entry.get("fingerprint")
        if given is not None and not (isinstance(given, str) and _FINGERPRINT.match(given)):
            raise ConfigError(f"{where}.fingerprint: expected 64 lower-case hex digits "
                              "(SHA-256 of the raw public key, as `soxtrail keygen` prints)")
        if pem is None and given is None:
            raise ConfigError(f"{where}: give public_key (PEM) or fingerprint")
        fp = fingerprint(load_public(pem, f"{where}.public_key")) if pem else str(given)
        if pem is not None and given is not None and fp != given:
            raise ConfigError(f"{where}: fingerprint {given} is not that of public_key ({fp})")
        if fp in seen:
            raise ConfigError(f"{where}: the same key as {seen[fp]}: each person has their own")
        seen[fp] = name
        logins = entry.get("logins") or []
        if not isinstance(logins, list) or not all(isinstance(x, str) and x for x in logins):
            raise ConfigError(f"{where}.logins: expected a list of login names")
        people[name] = Signer(name=name, fingerprint=fp, public_key_pem=pem,
                              logins=tuple(logins))
    return Signers(path=path, sha256=hashlib.sha256(data).hexdigest(), people=people)


def _signer_pem(value: Any, base: Path, where: str) -> str | None:
    """A public key as PEM text: inline, or a file relative to signers.yml."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected PEM text or a file name")
    if "-----BEGIN" in value:
        return value.strip() + "\n"
    file = Path(value).expanduser()
    file = file if file.is_absolute() else base / file
    try:
        return file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot read {file} ({exc})") from exc


def signers_path(recorded: Mapping[str, Any]) -> Path | None:
    """The signers file a config names (`signers:`), resolved against its folder (a run's
    recorded config keeps `_base_dir`)."""
    given = recorded.get("signers")
    if not given:
        return None
    file = Path(str(given)).expanduser()
    base = Path(str(recorded.get("_base_dir") or "."))
    return file if file.is_absolute() else base / file


# ---------------------------------------------------------------- segregation of duties


@dataclass(frozen=True)
class Party:
    """Someone who did something to the run: a name and, when known, their key."""

    name: str
    what: str  # "ran the pipeline (sox_runs.triggered_by)", "prepared it (attestation …)"
    fingerprint: str | None = None


def pipeline_parties(triggered_by: str, executed_by: Iterable[str],
                     signers: Signers | None) -> list[Party]:
    """Whoever ran the pipeline, as people of signers.yml when a login maps to one."""
    logins = [(triggered_by, "ran the pipeline (sox_runs.triggered_by)")]
    logins += [(x, "executed its evidence (sox_evidence.executed_by)")
               for x in sorted(set(executed_by)) if x != triggered_by]
    parties = []
    for login, what in logins:
        people = signers.of_login(login) if signers is not None else []
        parties += [Party(p.name, f"{what} as login {login}", p.fingerprint) for p in people]
        if not people:
            parties.append(Party(login, what))
    return parties


def self_review(signer: str, fp: str | None, others: Iterable[Party]) -> list[str]:
    """Why a reviewer `signer` (key `fp`) may not review: the same name or the same key as a
    preparer or whoever ran the pipeline (empty: segregation of duties holds)."""
    reasons = []
    for other in others:
        if fp is not None and other.fingerprint == fp:
            reasons.append(f"the reviewer's key {fp[:16]}… is {other.name}'s, who {other.what}")
        elif other.name.strip().casefold() == signer.strip().casefold():
            reasons.append(f"{signer} {other.what}")
    return reasons


# ---------------------------------------------------------------- documents and rows


def utc_text(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def document_bytes(doc: Mapping[str, Any]) -> bytes:
    """The exact bytes signed and stored (sorted keys, UTF-8, one trailing newline)."""
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def chain_link(previous: str, document: str) -> str:
    """The chain hash of an attestation: SHA-256 of `previous|document` (platform.sql)."""
    return hashlib.sha256(f"{previous}|{document}".encode()).hexdigest()


def store_key(quarter: str, run_id: str, ordinal: int, role: str, signer: str) -> str:
    """`<quarter>/<run>/attestations/<n>-<role>-<name>.json`."""
    return check_key(f"{quarter}/{run_id}/attestations/{ordinal}-{role}-{safe_name(signer)}.json")


def list_attestations(conn: psycopg.Connection[Any], run_id: str | None = None,
                      ) -> list[dict[str, Any]]:
    """Attestation rows in chain order (of one run, or all)."""
    with conn.cursor(row_factory=dict_row) as cur:
        if run_id is None:
            cur.execute("select * from soxtrail.sox_attestations order by seq")
        else:
            cur.execute("select * from soxtrail.sox_attestations where run_id = %s order by seq",
                        (run_id,))
        return list(cur.fetchall())


def official_runs(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    """Quarter -> the newest reviewer attestation (its run is the quarter's official run)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("select distinct on (quarter) quarter, run_id::text as run_id, id::text as id,"
                    " signer, signed_at from soxtrail.sox_attestations where role = %s"
                    " order by quarter, seq desc", (REVIEWER,))
        return {str(r["quarter"]): dict(r) for r in cur.fetchall()}


def begin_chain(conn: psycopg.Connection[Any]) -> str:
    """Inside the insert's transaction: lock the chain, return the latest chain hash (the
    new document's `previous`, which the trigger checks)."""
    conn.execute("select pg_advisory_xact_lock(hashtext('soxtrail.sox_attestations'))")
    row = conn.execute("select chain_hash from soxtrail.sox_attestations"
                       " order by seq desc limit 1").fetchone()
    return str(row[0]) if row else GENESIS


def next_ordinal(conn: psycopg.Connection[Any], run_id: str) -> int:
    """The run's next attestation number (1, 2, …), under begin_chain's lock."""
    row = conn.execute("select count(*) from soxtrail.sox_attestations where run_id = %s",
                       (run_id,)).fetchone()
    return int(row[0] if row else 0) + 1


def insert(conn: psycopg.Connection[Any], doc: Mapping[str, Any], signature: bytes | None,
           key: str, ordinal: int) -> dict[str, Any]:
    """Insert the attestation row (the trigger chains it and checks it against `doc`)."""
    text = document_bytes(doc).decode("utf-8")
    supersedes = (doc.get("supersedes") or {}).get("run_id")
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "insert into soxtrail.sox_attestations (id, run_id, quarter, ordinal, role, signer,"
            " signed_at, comment, manifest_sha256, bundle_version, authenticated,"
            " key_fingerprint, supersedes_run, document, signature, store_key)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " returning *",
            (doc["id"], doc["run_id"], doc["quarter"], ordinal, doc["role"], doc["signer"],
             doc["signed_at"], doc.get("comment"), doc["manifest_sha256"], doc["bundle_version"],
             doc["authenticated"], (doc.get("signer_key") or {}).get("fingerprint"), supersedes,
             text, signature.hex() if signature is not None else None, key))
        row = cur.fetchone()
    assert row is not None
    return dict(row)


# The row columns each document field must equal (verify; the insert trigger checks some).
ROW_FIELDS = ("id", "run_id", "quarter", "role", "signer", "signed_at", "comment",
              "manifest_sha256", "bundle_version", "authenticated")


def row_differences(row: Mapping[str, Any], doc: Mapping[str, Any]) -> list[str]:
    """Which of the row's columns differ from its signed document."""
    found = []
    for name in ROW_FIELDS:
        value = row.get(name)
        now = utc_text(value) if isinstance(value, datetime) else value
        now = str(now) if name in ("id", "run_id") else now
        if now != doc.get(name):
            found.append(f"{name} (row {now!r}, document {doc.get(name)!r})")
    fp = (doc.get("signer_key") or {}).get("fingerprint")
    if row.get("key_fingerprint") != fp:
        found.append(f"key_fingerprint (row {row.get('key_fingerprint')!r}, document {fp!r})")
    supersedes = (doc.get("supersedes") or {}).get("run_id")
    if (str(row["supersedes_run"]) if row.get("supersedes_run") else None) != supersedes:
        found.append("supersedes_run")
    if row.get("prev_hash") != doc.get("previous"):
        found.append(f"prev_hash (row {row.get('prev_hash')}, document {doc.get('previous')})")
    return found
