"""Phase 5: the signed audit-log bundle in the evidence store, and its checker."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from render import signing
from render.signing import generate_signing_key
from render.workbook import (
    MARTS_SCHEMA,
    SUMMARY_TABLE,
    RenderError,
    control_marts,
    fetch_run,
)
from soxtrail.kernel import evidence, secrets
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.store import LocalStore, Store, check_key, sha256_file, sha256_object

__all__ = [
    "ANCHOR",
    "LOCKED",
    "BundleInputs",
    "BundleResult",
    "Check",
    "bundle_ok",
    "bundle_prefix",
    "check_bundle",
    "evidence_line",
    "generate_signing_key",
    "write_bundle",
]

MANIFEST = "MANIFEST.sha256"
SIGNATURE = "MANIFEST.sha256.sig"
PUBLIC_KEY = "signing-key.pub"
FINGERPRINT = "signing-key.fingerprint"
ANCHOR = "anchor.json"  # the run's chain links, pinned outside the database
ANCHOR_FORMAT = 1
UNSIGNED = "UNSIGNED"
# Files the manifest does not list (it cannot list itself or its signature).
OUTSIDE_MANIFEST = frozenset({MANIFEST, SIGNATURE})
# Written with lock=True: on a bucket with S3 Object Lock, in COMPLIANCE mode (nobody can
# delete or overwrite them before their retain-until date), before the run is completed.
# The anchor, and the manifest and signature that fix its hash and every other file's.
LOCKED = frozenset({ANCHOR, MANIFEST, SIGNATURE})
VERSIONED_PACKAGES = ("soxtrail", "dbt-core", "dbt-postgres", "dbt-adapters", "psycopg",
                      "xlsxwriter", "openpyxl", "jinja2", "cryptography", "boto3")
_MANIFEST_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._@+=-]+(/[A-Za-z0-9._@+=-]+)*$")

UNSIGNED_TEXT = """\
THIS BUNDLE IS NOT SIGNED.

It was written without a signing key (its run was started with --no-sign, or
before soxtrail signed by default), so MANIFEST.sha256 carries no signature.
`sha256sum -c MANIFEST.sha256` still detects a changed file, but nothing proves
who wrote the manifest: anyone with write access to the store could have
replaced both a file and its hash. `soxtrail verify` fails it unless given
--allow-unsigned.

Start a new run without --no-sign (with SOXTRAIL_SIGNING_KEY set to the team's
key, or with this machine's own key) and give the auditors its fingerprint.
"""

README_TEXT = """\
soxtrail audit-log bundle
=========================

run {run_id}, quarter {quarter}

  run.json                  the run: config (secrets redacted), versions, git commit
  evidence.jsonl            every evidence row of the run, with its hash-chain link
  anchor.json               the run id and quarter, where the run was made, every
                            chain link of the run, the link before it and the
                            latest link of every earlier run
  queries/                  every extraction query file; queries/controls/ the
                            compiled SQL of each control
  dbt/                      dbt manifest.json and run_results.json
  log.jsonl                 the run's structured log
  report/                   the workbook and one CSV per control
  MANIFEST.sha256           SHA-256 of every other file
  MANIFEST.sha256.sig       Ed25519 signature of MANIFEST.sha256 (absent: see UNSIGNED)
  signing-key.pub           the public key; signing-key.fingerprint its SHA-256

Check it, in this folder:

  sha256sum -c MANIFEST.sha256
  openssl pkeyutl -verify -pubin -inkey signing-key.pub -rawin \\
      -in MANIFEST.sha256 -sigfile MANIFEST.sha256.sig
  openssl pkey -pubin -in signing-key.pub -outform DER | tail -c 32 | sha256sum
  soxtrail verify {run_id}
"""


def bundle_prefix(quarter: str, run_id: str, version: int = 1) -> str:
    """The bundle's store prefix: `<quarter>/<run_id>/bundle`; a later version of a completed
    run's bundle (`--new-version`) goes beside it, `<quarter>/<run_id>/bundle-v<N>`."""
    if version < 1:
        raise ConfigError(f"bundle version {version}: versions start at 1")
    suffix = "" if version == 1 else f"-v{version}"
    return check_key(f"{quarter}/{run_id}/bundle{suffix}")


@dataclass(frozen=True)
class BundleInputs:
    """Files the bundle copies in, produced by earlier phases.

    `query_files`: extraction query files, as paths (bundled as `queries/<name>`)
    or a mapping of bundle-relative name -> path.  `report_dir`: the folder
    render_workbook wrote (every file in it goes to `report/`); `report_files`
    adds single files.  A missing dbt artifact or log is recorded in run.json.
    `render` is how the report was rendered (template and its SHA-256: verify re-renders
    with it).  `version` > 1 is a new version of a completed run's bundle, by `created_by`
    because of `reason`; the first version is never rewritten.
    """

    query_files: Sequence[Path] | Mapping[str, Path] = ()
    manifest_json: Path | None = None
    run_results_json: Path | None = None
    log_jsonl: Path | None = None
    report_dir: Path | None = None
    report_files: Sequence[Path] = ()
    render: Mapping[str, Any] | None = None
    version: int = 1
    reason: str | None = None
    created_by: str | None = None


@dataclass
class BundleResult:
    """What write_bundle wrote."""

    prefix: str
    location: str
    keys: list[str]
    manifest_sha256: str
    signed: bool
    fingerprint: str | None
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One verdict of check_bundle: OK, MISMATCH, MISSING, EXTRA, FAIL or UNSIGNED."""

    status: str
    path: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True for OK; UNSIGNED is not OK but is not a defect of the files either."""
        return self.status == "OK"

    @property
    def problem(self) -> bool:
        """True when the bundle is damaged or does not verify."""
        return self.status in ("MISMATCH", "MISSING", "EXTRA", "FAIL")

    def __str__(self) -> str:
        return f"{self.status:<9} {self.path}{f'  ({self.detail})' if self.detail else ''}"


def bundle_ok(checks: Sequence[Check], *, require_signature: bool = False) -> bool:
    """True when no check is a problem (and, if asked, the bundle is signed)."""
    if any(c.problem for c in checks):
        return False
    return not (require_signature and any(c.status == "UNSIGNED" for c in checks))


# ---------------------------------------------------------------- writing


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _utc_text(value: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form of soxtrail.evidence_row_text()."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _dumps(value: Any, *, indent: int | None = None) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True, ensure_ascii=False,
                      indent=indent, separators=(",", ": ") if indent else (",", ":"))


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _copy_redacted(source: Path, dest: Path) -> None:
    """Copy a text file line by line through secrets.redact (constant memory per line)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with source.open("r", encoding="utf-8", newline="") as src, \
            dest.open("w", encoding="utf-8", newline="") as out:
        for line in src:
            out.write(secrets.redact(line))


def _write_text(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(text.encode("utf-8"))


def _run_json(run: dict[str, Any], versions: Mapping[str, str | None],
              summary: list[dict[str, Any]], missing: list[str], signed: bool,
              files: BundleInputs | None = None) -> str:
    row = dict(run)
    row["config"] = secrets.redact_value(row.get("config"))
    row = {k: secrets.redact_value(v) for k, v in row.items()}
    doc = {
        "bundle_format": 1,
        "run": row,
        "versions": dict(versions),
        "git_commit": run.get("git_commit"),
        "controls": summary,
        "missing_inputs": missing,
        "signed": signed,
    }
    if files is not None and files.render is not None:
        doc["report"] = dict(files.render)
    if files is not None and files.version > 1:
        doc["bundle_version"] = {
            "version": files.version, "created_by": files.created_by,
            "reason": secrets.redact(files.reason or ""), "created_at": datetime.now(UTC),
            "first_version": bundle_prefix(str(run["quarter"]), str(run["id"]))}
    return _dumps(doc, indent=2) + "\n"


def evidence_line(record: Mapping[str, Any]) -> str:
    """One `evidence.jsonl` line: a row with its link, query text and params redacted."""
    record = dict(record)
    for key in ("query_text", "query_params"):
        record[key] = secrets.redact_value(record[key])
    return _dumps(record) + "\n"


def _evidence_lines(conn: psycopg.Connection[Any], run_id: str) -> Iterator[str]:
    for record in evidence.stream_with_links(conn, run_id, "soxtrail_bundle_evidence"):
        yield evidence_line(record)


def _anchor_json(conn: psycopg.Connection[Any], run_id: str, quarter: str, store: Store) -> str:
    """anchor.json: the run, where it was made, its links, the link before it and the
    latest link of every earlier run (docs/auditor-guide.md, "The anchor")."""
    links = evidence.run_links(conn, run_id)
    before = evidence.link_before(conn, links[0][0]) if links else None
    doc = {
        "anchor_format": ANCHOR_FORMAT,
        "run_id": run_id,
        "quarter": quarter,
        "origin": {**evidence.chain_origin(conn), "store": secrets.redact(store.uri)},
        "before": None if before is None else
        {"seq": before[0], "evidence_id": before[1], "chain_hash": before[3]},
        "links": [{"seq": seq, "evidence_id": evidence_id, "prev_hash": prev_hash,
                   "chain_hash": chain_hash}
                  for seq, evidence_id, prev_hash, chain_hash in links],
        "earlier_runs": evidence.earlier_runs_latest_links(conn, run_id),
    }
    return _dumps(doc, indent=1) + "\n"


def summary_rows(conn: psycopg.Connection[Any], run_id: str,
                 schema: str = MARTS_SCHEMA) -> list[dict[str, Any]]:
    """The run's summary mart rows (without run_id), by control id: run.json's `controls`."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL('select * from {}.{} where run_id = %s '
                            'order by control_id collate "C"').format(
            sql.Identifier(schema), sql.Identifier(SUMMARY_TABLE)), (run_id,))
        names = [d.name for d in cur.description or ()]
        summary = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return [{k: v for k, v in row.items() if k != "run_id"} for row in summary]


def json_value(value: Any) -> Any:
    """`value` as the bundle's JSON files hold it (what run.json's readers compare)."""
    return json.loads(_dumps(value))


# run.json's run fields that never change once the run exists (sox_runs forward_only)
RUN_IDENTITY = ("id", "quarter", "clusters", "config", "config_hash", "tool_version",
                "git_commit", "triggered_by", "started_at")


def run_identity(run: Mapping[str, Any]) -> dict[str, Any]:
    """The immutable fields of a sox_runs row as run.json records them (redacted)."""
    row = dict(run)
    row["config"] = secrets.redact_value(row.get("config"))
    return {k: json_value(secrets.redact_value(row.get(k))) for k in RUN_IDENTITY}


def control_sql_files(conn: psycopg.Connection[Any], run: dict[str, Any],
                      summary: list[dict[str, Any]],
                      schema: str = MARTS_SCHEMA) -> dict[str, str]:
    """`queries/controls/<file>` -> text: each control's compiled SQL as the bundle holds it."""
    return dict(_control_sql_files(conn, run, summary, schema))


def _control_sql_files(conn: psycopg.Connection[Any], run: dict[str, Any],
                       summary: list[dict[str, Any]], schema: str) -> Iterator[tuple[str, str]]:
    """(file name, text) of each control's compiled SQL with its header comment."""
    by_evidence = {str(r.get("control_evidence_id")): r for r in summary}
    marts = {table: control for control, table in control_marts().items()}
    used: set[str] = set()
    for row in evidence.control_rows(conn, str(run["id"])):
        evidence_id, query_name, query_text = row["id"], row["query_name"], row["query_text"]
        params, row_count, result_hash = (row["query_params"], row["result_row_count"],
                                          row["result_hash"])
        model = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(query_name).rsplit(".", 1)[-1]) or "model"
        name = model
        n = 2
        while name in used:
            name, n = f"{model}_{n}", n + 1
        used.add(name)
        control = by_evidence.get(str(evidence_id)) or {}
        control_id = (control.get("control_id") or marts.get(model)
                      or str((params or {}).get("control_id") or "-"))
        description = " ".join(str(control.get("description") or "").split())
        # on Spark, the intermediate tables' SQL goes before the control's, not in the header
        shown = {k: v for k, v in params.items() if k != evidence.STAGES_KEY} \
            if params and evidence.STAGES_KEY in params else params
        vars_text = _dumps(secrets.redact_value(shown))
        header = "\n".join([
            f"-- soxtrail control {control_id}: {control.get('control_name') or model}",
            f"-- description: {description or '-'}",
            f"-- model:       {query_name}",
            f"-- run:         {run['id']} ({run['quarter']})",
            f"-- evidence id: {evidence_id}",
            f"-- result:      {row_count} rows, canonical SHA-256 {result_hash}",
            f"-- vars:        {vars_text}",
        ])
        yield f"{name}.sql", (secrets.redact(header) + "\n\n"
                              + secrets.redact(evidence.control_sql(params, query_text)) + "\n")


def _query_file_names(files: Sequence[Path] | Mapping[str, Path]) -> list[tuple[str, Path]]:
    if isinstance(files, Mapping):
        pairs = [(str(k), Path(v)) for k, v in files.items()]
    else:
        pairs = [(Path(p).name, Path(p)) for p in files]
    return sorted(pairs)


def _manifest_text(root: Path, names: Sequence[str]) -> str:
    lines = []
    for name in sorted(names, key=lambda n: n.encode("utf-8")):
        digest, _ = sha256_file(root / name)
        lines.append(f"{digest}  {name}\n")
    return "".join(lines)


def write_bundle(conn: psycopg.Connection[Any], store: Store, *, run_id: str, quarter: str,
                 files: BundleInputs, signing_key: Path | None = None,
                 unsigned: bool = False, schema: str = MARTS_SCHEMA) -> BundleResult:
    """Write the run's audit-log bundle to `<quarter>/<run_id>/bundle/` in the store.

    The manifest is signed with the Ed25519 key at `signing_key` or
    `$SOXTRAIL_SIGNING_KEY`; without one (or with `unsigned`: a run started with
    `--no-sign`) an `UNSIGNED` file says so and `signed` is False.  Everything
    written from the run config is redacted.
    """
    run_id = str(uuid.UUID(str(run_id)))
    key_path = None if unsigned else signing.signing_key_path(signing_key)
    private_key = signing.load_private_key(key_path) if key_path is not None else None
    prefix = bundle_prefix(quarter, run_id, files.version)
    if files.version > 1 and not (files.reason or "").strip():
        raise ConfigError("a new bundle version needs a reason")
    with conn.transaction():
        run = fetch_run(conn, run_id)
        if run["quarter"] != quarter:
            raise ConfigError(f"run {run_id} is for quarter {run['quarter']}, not {quarter}")
        summary = summary_rows(conn, run_id, schema)
        if not summary:
            raise RenderError(f"{schema}.{SUMMARY_TABLE} has no rows for run {run_id}")

        with tempfile.TemporaryDirectory(prefix="soxtrail-bundle-") as tmp:
            root = Path(tmp)
            missing: list[str] = []
            with (root / "evidence.jsonl").open("w", encoding="utf-8", newline="") as out:
                for line in _evidence_lines(conn, run_id):
                    out.write(line)
            _write_text(root / ANCHOR, _anchor_json(conn, run_id, quarter, store))
            for name, text in _control_sql_files(conn, run, summary, schema):
                _write_text(root / "queries" / "controls" / name, text)
            for name, path in _query_file_names(files.query_files):
                if not path.is_file():
                    raise ConfigError(f"query file {path} does not exist")
                dest = f"queries/{name}"
                if not _SAFE_PATH.match(dest) or dest.startswith("queries/controls/"):
                    raise ConfigError(f"query file name {name!r}: not a safe bundle path")
                _copy_redacted(path, root / dest)
            for dest, source in (("dbt/manifest.json", files.manifest_json),
                                 ("dbt/run_results.json", files.run_results_json),
                                 ("log.jsonl", files.log_jsonl)):
                if source is not None and source.is_file():
                    _copy_redacted(source, root / dest)
                else:
                    missing.append(dest)
            reports: list[tuple[str, Path]] = []
            if files.report_dir is not None and files.report_dir.is_dir():
                reports += [(p.relative_to(files.report_dir).as_posix(), p)
                            for p in sorted(files.report_dir.rglob("*"))
                            if p.is_file() and not p.name.endswith(".partial")]
            reports += [(p.name, p) for p in files.report_files]
            if not reports:
                missing.append("report/")
            for name, path in sorted(dict(reports).items()):
                (root / "report" / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, root / "report" / name)

            _write_text(root / "run.json",
                        _run_json(run, _versions(), summary, missing, private_key is not None,
                                  files))
            _write_text(root / "README.txt", README_TEXT.format(run_id=run_id, quarter=quarter))
            fingerprint = None
            if private_key is not None:
                public = private_key.public_key()
                fingerprint = signing.fingerprint(public)
                (root / PUBLIC_KEY).write_bytes(signing.public_key_pem(public))
                _write_text(root / FINGERPRINT, fingerprint + "\n")
            else:
                _write_text(root / UNSIGNED, UNSIGNED_TEXT)

            names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            for name in names:
                if not _SAFE_PATH.match(name):
                    raise ConfigError(f"bundle file name {name!r} is not manifest-safe")
            manifest = _manifest_text(root, names).encode("utf-8")
            (root / MANIFEST).write_bytes(manifest)
            if private_key is not None:
                (root / SIGNATURE).write_bytes(signing.sign(private_key, manifest))

            written = [*names, MANIFEST] + ([SIGNATURE] if private_key is not None else [])
            stale = sorted(set(_relative(store.list(prefix), prefix)) - set(written))
            keys = []
            for name in written:  # manifest and signature last: a reader never sees them early
                key = f"{prefix}/{name}"
                store.put_file(key, root / name, lock=name in LOCKED)
                keys.append(key)
    return BundleResult(prefix=prefix, location=store.location(prefix), keys=keys,
                        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                        signed=private_key is not None, fingerprint=fingerprint,
                        missing=missing, stale=stale)


def _relative(keys: Iterator[str], prefix: str) -> Iterator[str]:
    base = prefix.strip("/") + "/" if prefix.strip("/") else ""
    for key in keys:
        if key.startswith(base):
            yield key[len(base):]


# ---------------------------------------------------------------- checking


def _read(store: Store, key: str) -> bytes:
    handle = store.open(key)
    try:
        return handle.read()
    finally:
        handle.close()


def parse_manifest(text: str) -> tuple[dict[str, str], list[str]]:
    """Path -> SHA-256 from `sha256sum` output; also the lines that could not be read."""
    entries: dict[str, str] = {}
    bad: list[str] = []
    for line in text.splitlines():
        match = _MANIFEST_LINE.match(line)
        if not match or match.group(2) in entries:
            bad.append(line)
            continue
        entries[match.group(2)] = match.group(1)
    return entries, bad


def check_bundle(store_or_path: Store | Path | str, prefix: str = "", *,
                 public_key: Path | None = None) -> list[Check]:
    """Re-hash every file of a bundle and check the manifest's signature.

    `store_or_path` is a Store, or a local folder (a downloaded copy); `prefix`
    is the bundle folder inside it (`<quarter>/<run_id>/bundle`, or "" when the
    folder is the bundle).  With `public_key` the signature must verify under
    that key, and the bundle's own key must be the same one.
    """
    store: Store = (LocalStore(Path(store_or_path)) if isinstance(store_or_path, str | Path)
                    else store_or_path)
    prefix = prefix.strip("/")

    def key(name: str) -> str:
        return f"{prefix}/{name}" if prefix else name

    present = set(_relative(store.list(prefix), prefix))
    checks: list[Check] = []
    if MANIFEST not in present:
        return [Check("FAIL", MANIFEST, f"no manifest in {store.location(prefix or '.')}")]
    manifest = _read(store, key(MANIFEST))
    try:
        entries, bad = parse_manifest(manifest.decode("utf-8"))
    except UnicodeDecodeError:
        entries, bad = {}, ["(not UTF-8)"]
    for line in bad:
        checks.append(Check("FAIL", MANIFEST, f"unreadable or duplicate line: {line[:120]!r}"))
    for name, expected in sorted(entries.items()):
        if name not in present:
            checks.append(Check("MISSING", name, "listed in the manifest, not in the bundle"))
            continue
        actual = sha256_object(store, key(name))
        if actual == expected:
            checks.append(Check("OK", name))
        else:
            checks.append(Check("MISMATCH", name, f"manifest {expected}, file {actual}"))
    for name in sorted(present - set(entries) - OUTSIDE_MANIFEST):
        checks.append(Check("EXTRA", name, "in the bundle, not in the manifest"))
    checks.extend(_signature_checks(store, key, present, manifest, public_key))
    return checks


def _signature_checks(store: Store, key: Any, present: set[str], manifest: bytes,
                      public_key: Path | None) -> list[Check]:
    given = None
    if public_key is not None:
        try:
            given = signing.load_public_key(public_key.read_bytes(), str(public_key))
        except OSError as exc:
            return [Check("FAIL", SIGNATURE, f"cannot read public key {public_key}: {exc}")]
        except ConfigError as exc:
            return [Check("FAIL", SIGNATURE, str(exc))]
    if SIGNATURE not in present:
        if given is not None:
            return [Check("FAIL", SIGNATURE, "a public key was given but the bundle is not signed")]
        if UNSIGNED in present:
            return [Check("UNSIGNED", SIGNATURE, "the bundle says it was written without a key")]
        return [Check("FAIL", SIGNATURE, "no signature and no UNSIGNED marker")]
    checks: list[Check] = []
    if UNSIGNED in present:
        checks.append(Check("FAIL", UNSIGNED, "a signed bundle must not carry an UNSIGNED marker"))
    bundled = None
    if PUBLIC_KEY in present:
        try:
            bundled = signing.load_public_key(_read(store, key(PUBLIC_KEY)), PUBLIC_KEY)
        except ConfigError as exc:
            checks.append(Check("FAIL", PUBLIC_KEY, str(exc)))
    if bundled is not None and FINGERPRINT in present:
        recorded = _read(store, key(FINGERPRINT)).decode("utf-8", "replace").strip()
        if recorded != signing.fingerprint(bundled):
            checks.append(Check("FAIL", FINGERPRINT, "does not match signing-key.pub"))
    if given is not None and bundled is not None and \
            signing.raw_public_key(given) != signing.raw_public_key(bundled):
        checks.append(Check("FAIL", PUBLIC_KEY,
                            f"the bundle's key ({signing.fingerprint(bundled)}) is not the given "
                            f"key ({signing.fingerprint(given)})"))
    verifier = given or bundled
    if verifier is None:
        checks.append(Check("FAIL", SIGNATURE, "no public key to check the signature with"))
        return checks
    signature = _read(store, key(SIGNATURE))
    fp = signing.fingerprint(verifier)
    if signing.verify(verifier, manifest, signature):
        checks.append(Check("OK", SIGNATURE, f"Ed25519, key fingerprint {fp}"))
    else:
        checks.append(Check("FAIL", SIGNATURE, f"does not verify under key {fp}"))
    return checks
