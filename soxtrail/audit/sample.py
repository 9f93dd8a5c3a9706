"""Draw, sign and record a sample of a control's population for re-performance
(`soxtrail sample`), and write the tester's workbook.

The population is the control's mart rows of the run (kernel/sampling.py has the method);
the record is a row of `soxtrail.sox_samples` plus the signed document beside the bundle
(kernel/samples.py). The signing key is the one a run signs with (render/signing.py:
`--key`, else $SOXTRAIL_SIGNING_KEY, else this machine's own key when it exists); with none
the sample is recorded unsigned, which verify notes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from render import signing
from render.sample_workbook import write_sample_workbook
from soxtrail.kernel import controls, runs, samples, sampling
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.store import Store, safe_name

# where the signing key came from, as the document's `signer_key.source` says
KEY_SOURCES = {signing.FROM_ARGUMENT: "--key", signing.FROM_ENV: signing.KEY_ENV,
               signing.FROM_LOCAL: "this machine's signing key"}


@dataclass(frozen=True)
class Recorded:
    """A recorded sample: its document, database row and where its file is."""

    doc: dict[str, Any]
    row: dict[str, Any]
    location: str


def control_model(control_id: str) -> tuple[str, str]:
    """(control id as registered, its mart) for `--control` (case-insensitive)."""
    found = {c.casefold(): (c, m) for c, m in controls.CONTROLS.items()}
    if control_id.casefold() not in found:
        raise ConfigError(f"--control {control_id!r}: expected one of "
                          f"{', '.join(controls.CONTROLS)}")
    return found[control_id.casefold()]


def _mart(model: str) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(controls.MARTS_SCHEMA), sql.Identifier(model))


def population(conn: psycopg.Connection[Any], run_id: str, model: str,
               stratify: str | None) -> list[tuple[str, str | None]]:
    """The control's items of the run: (item_key, the stratify column's value or None)."""
    if stratify is not None and stratify not in sampling.STRATIFY_COLUMNS:
        raise ConfigError(f"--stratify {stratify!r}: expected one of "
                          f"{', '.join(sampling.STRATIFY_COLUMNS)}")
    exists = conn.execute("select to_regclass(%s)",
                          (f"{controls.MARTS_SCHEMA}.{model}",)).fetchone()
    if exists is None or exists[0] is None:
        raise ConfigError(f"{controls.MARTS_SCHEMA}.{model} does not exist in this database")
    column = sql.Identifier(stratify) if stratify else sql.SQL("null::text")
    rows = conn.execute(sql.SQL("select item_key, {}::text from {} where run_id = %s").format(
        column, _mart(model)), (run_id,)).fetchall()
    return [(str(key), value) for key, value in rows]


def mart_rows(conn: psycopg.Connection[Any], run_id: str, model: str,
              keys: list[str]) -> tuple[dict[str, str], dict[str, list[Any]]]:
    """The mart's columns (name -> type) and the rows of `keys` (item_key -> values)."""
    columns = {str(name): str(udt) for name, udt in conn.execute(
        "select column_name, udt_name from information_schema.columns"
        " where table_schema = %s and table_name = %s order by ordinal_position",
        (controls.MARTS_SCHEMA, model)).fetchall()}
    with conn.cursor() as cur:
        cur.execute(sql.SQL("select * from {} where run_id = %s and item_key = any(%s)").format(
            _mart(model)), (run_id, keys))
        names = [d.name for d in cur.description or ()]
        index = names.index("item_key")
        rows = {str(row[index]): list(row) for row in cur.fetchall()}
    return columns, rows


def _key(given: Path | None) -> tuple[Any, dict[str, Any] | None]:
    path = signing.signing_key_path(given, local=True)
    if path is None:
        return None, None
    private = signing.load_private_key(path)
    source = (signing.FROM_ARGUMENT if given is not None
              else signing.FROM_LOCAL if signing.signing_key_path(None) is None
              else signing.FROM_ENV)
    return private, {"fingerprint": signing.fingerprint(private.public_key()),
                     "public_key_pem": signing.public_key_pem(private.public_key()).decode(),
                     "source": KEY_SOURCES[source]}


def run_key_fingerprint(run: runs.Run) -> str | None:
    """The fingerprint of the key the run's bundle is signed with (its config's `_signing`)."""
    record = run.config.get("_signing")
    return record.get("fingerprint") if isinstance(record, dict) else None


def record_sample(conn: psycopg.Connection[Any], run: runs.Run, store: Store, *,
                  control_id: str, size: int, seed: int, stratify: str | None,
                  requested_by: str, key: Path | None) -> Recorded:
    """Draw the sample from the run's mart rows, sign it, insert its row and write its file
    (before the commit: a failed write leaves no row without its file)."""
    if run.status != "completed":
        raise ConfigError(f"run {run.id} is {run.status}: only a completed run is sampled")
    if not requested_by.strip():
        raise ConfigError("--as: give the tester's name")
    control, model = control_model(control_id)
    sampling.check_seed(seed)
    private, signer_key = _key(key)
    conn.commit()
    with conn.transaction():
        previous = samples.begin_chain(conn)
        drawn = sampling.draw(population(conn, run.id, model, stratify), seed=seed, size=size,
                              stratify=stratify)
        ordinal = samples.next_ordinal(conn, run.id)
        doc = samples.document(
            sample_id=str(uuid.uuid4()), run_id=run.id, quarter=run.quarter, control_id=control,
            model=model, sample=drawn, requested_by=requested_by.strip(),
            requested_at=datetime.now(UTC), signer_key=signer_key,
            run_key_fingerprint=run_key_fingerprint(run), previous=previous)
        data = samples.document_bytes(doc)
        signature = private.sign(data) if private is not None else None
        store_key = samples.store_key(run.quarter, run.id, ordinal, control)
        row = samples.insert(conn, doc, signature, store_key, ordinal)
        store.put_bytes(store_key, data, lock=True)
        if signature is not None:
            store.put_bytes(store_key + samples.SIGNATURE_SUFFIX, signature, lock=True)
    return Recorded(doc=doc, row=row, location=store.location(store_key))


def workbook_name(doc: dict[str, Any], ordinal: int) -> str:
    """`sample-<run 8>-<control>-<n>.xlsx`."""
    return f"sample-{str(doc['run_id'])[:8]}-{safe_name(str(doc['control_id']))}-{ordinal}.xlsx"


def write_workbook(conn: psycopg.Connection[Any], recorded: Recorded, out: Path) -> Path:
    """The tester's workbook of a recorded sample in folder `out`."""
    doc = recorded.doc
    _, model = control_model(str(doc["control_id"]))
    columns, rows = mart_rows(conn, str(doc["run_id"]), model, samples.drawn_keys(doc))
    conn.commit()
    out.mkdir(parents=True, exist_ok=True)
    return write_sample_workbook(out / workbook_name(doc, int(recorded.row["ordinal"])),
                                 doc, columns, rows)

