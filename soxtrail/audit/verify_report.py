"""Re-derive the report: re-render the workbook and CSVs from the verified marts and compare
them byte for byte with the copies in every version of the run's bundle."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from soxtrail.audit.verdict import Verdict
from soxtrail.kernel import runs
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import Store, sha256_file, sha256_object

KIND = "bundle"  # the report is part of the bundle: its lines are bundle lines
REPORT = "report"
DEFAULT_TEMPLATE = "default"  # a bundle written before the template was recorded


def version_prefixes(store: Store, quarter: str, run_id: str) -> list[str]:
    """The run's bundle versions in the store: `bundle`, then `bundle-v2`, … while they exist."""
    from render.bundle import MANIFEST, bundle_prefix

    prefixes = [bundle_prefix(quarter, run_id)]
    version = 2
    while store.exists(f"{bundle_prefix(quarter, run_id, version)}/{MANIFEST}"):
        prefixes.append(bundle_prefix(quarter, run_id, version))
        version += 1
    return prefixes


def later_versions(store: Store, quarter: str, run_id: str,
                   public_key: Path | None) -> list[Verdict]:
    """Manifest and signature of every bundle version after the first (render.check_bundle)."""
    from render.bundle import check_bundle

    verdicts = []
    for prefix in version_prefixes(store, quarter, run_id)[1:]:
        name = prefix.rsplit("/", 1)[-1]
        try:
            checks = check_bundle(store, prefix, public_key=public_key)
        except SoxtrailError as exc:
            verdicts.append(Verdict("FAIL", KIND, name, str(exc)))
            continue
        verdicts += [Verdict(c.status, KIND, f"{name}/{c.path}", c.detail) for c in checks]
    return verdicts


def _read_json(store: Store, key: str) -> dict[str, Any] | None:
    if not store.exists(key):
        return None
    handle = store.open(key)
    try:
        doc = json.loads(handle.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    finally:
        handle.close()
    return doc if isinstance(doc, dict) else None


def _bundled_reports(store: Store, prefix: str) -> dict[str, str]:
    """Report file name (relative to report/) -> store key, of one bundle."""
    base = f"{prefix}/{REPORT}/" if prefix else f"{REPORT}/"
    return {key[len(base):]: key for key in store.list(base.rstrip("/")) if key.startswith(base)}


def _template(recorded: dict[str, Any] | None) -> tuple[str, str | None]:
    """The template the bundle records and its SHA-256 (none recorded: the default)."""
    report = (recorded or {}).get(REPORT)
    if not isinstance(report, dict) or not report.get("template"):
        return DEFAULT_TEMPLATE, None
    return str(report["template"]), report.get("template_sha256")


def _render(conn: psycopg.Connection[Any], run_id: str, template: str,
            out: Path) -> dict[str, Path] | str:
    """Render the run's report into `out`; the files by name, or why it could not be."""
    from render.workbook import render_workbook

    try:
        result = render_workbook(conn, run_id=run_id, template=template, out=out)
        conn.commit()
    except (psycopg.Error, SoxtrailError) as exc:
        conn.rollback()
        return " ".join(str(exc).split())[:300] or exc.__class__.__name__
    files = [result.xlsx, *result.csvs.values()]
    return {path.name: path for path in files}


def _compare(store: Store, label: str, bundled: dict[str, str],
             rendered: dict[str, Path]) -> Iterator[Verdict]:
    for name in sorted(set(bundled) | set(rendered)):
        subject = f"{label}/{REPORT}/{name}"
        if name not in bundled:
            yield Verdict("MISSING", KIND, subject, "re-rendered from the marts, not in the bundle")
        elif name not in rendered:
            yield Verdict("EXTRA", KIND, subject, "in the bundle's report, not produced by a "
                                                  "re-render from the marts")
        else:
            expected, size = sha256_file(rendered[name])
            actual = sha256_object(store, bundled[name])
            if actual == expected:
                yield Verdict("OK", KIND, subject,
                              f"re-rendered from the verified marts: identical, {size} bytes")
            else:
                yield Verdict("MISMATCH", KIND, subject,
                              f"differs from a re-render of the verified marts (bundle sha256 "
                              f"{actual[:16]}…, re-render {expected[:16]}…)")


def check_report(conn: psycopg.Connection[Any], run: runs.Run,
                 bundles: list[tuple[str, Store, str]], *,
                 unverified: Sequence[str] = ()) -> list[Verdict]:
    """Re-render the run's report and compare it with the report of each bundle.

    `bundles` is (label, store, prefix) per bundle version. `unverified` names the failed
    checks of what the report is rendered from (a mart, an evidence row): a re-render from
    them would prove nothing, so the report is then not re-derived (a NOTE; those checks
    fail the run already).
    """
    from render.workbook import template_path

    verdicts: list[Verdict] = []
    with tempfile.TemporaryDirectory(prefix="soxtrail-verify-report-") as scratch:
        renders: dict[str, dict[str, Path] | str] = {}
        for label, store, prefix in bundles:
            bundled = _bundled_reports(store, prefix)
            if unverified:
                shown = "; ".join(unverified[:3]) + ("; …" if len(unverified) > 3 else "")
                verdicts.append(Verdict("NOTE", KIND, f"{label}/{REPORT}",
                                        f"{len(bundled)} files not re-derived: what they are "
                                        f"rendered from does not verify ({shown})"))
                continue
            run_json = _read_json(store, f"{prefix}/run.json" if prefix else "run.json")
            template, recorded_sha = _template(run_json)
            try:
                current_sha = sha256_file(template_path(template))[0]
            except (OSError, SoxtrailError) as exc:
                verdicts.append(Verdict("FAIL", KIND, f"{label}/{REPORT}",
                                        f"cannot re-render with template {template!r}: {exc}"))
                continue
            if recorded_sha is not None and recorded_sha != current_sha:
                verdicts.append(Verdict(
                    "FAIL", KIND, f"{label}/{REPORT}",
                    f"template {template!r} is not the one the report was rendered with "
                    f"(recorded sha256 {str(recorded_sha)[:16]}…, now {current_sha[:16]}…): "
                    "verify with the release that produced the run"))
                continue
            if recorded_sha is None:
                verdicts.append(Verdict("NOTE", KIND, f"{label}/{REPORT}",
                                        f"the bundle records no template: re-rendered with "
                                        f"{template!r}"))
            if template not in renders:
                renders[template] = _render(conn, run.id, template,
                                            Path(scratch) / f"t{len(renders)}")
            rendered = renders[template]
            if isinstance(rendered, str):
                verdicts.append(Verdict("FAIL", KIND, f"{label}/{REPORT}",
                                        f"cannot re-render the report: {rendered}"))
                continue
            verdicts += list(_compare(store, label, bundled, rendered))
    return verdicts


def _first_difference(bundled: Any, derived: Any, path: str = "") -> str:
    """Where two JSON values first differ, e.g. `controls[0].exceptions (bundle 0, derived 3)`."""
    if isinstance(bundled, dict) and isinstance(derived, dict):
        for key in sorted(set(bundled) | set(derived)):
            if bundled.get(key) != derived.get(key):
                return _first_difference(bundled.get(key), derived.get(key), f"{path}.{key}")
    if isinstance(bundled, list) and isinstance(derived, list) and len(bundled) == len(derived):
        for n, (left, right) in enumerate(zip(bundled, derived, strict=True)):
            if left != right:
                return _first_difference(left, right, f"{path}[{n}]")
    shown = [json.dumps(v, sort_keys=True, default=str)[:80] for v in (bundled, derived)]
    return f"{path.lstrip('.') or 'the document'} (bundle {shown[0]}, derived {shown[1]})"


def check_run_files(conn: psycopg.Connection[Any], run: runs.Run,
                    bundles: list[tuple[str, Store, str]]) -> list[Verdict]:
    """What else a bundle derives from the database, re-derived and compared: run.json's run
    identity and control summary (from the verified summary mart) and the compiled SQL of
    each control under queries/controls/ (from the anchored evidence rows). A signature
    proves who wrote a file, not that it says what the run found: a key holder could
    re-sign an edited one."""
    from render.bundle import control_sql_files, json_value, run_identity, summary_rows
    from render.workbook import fetch_run

    row = fetch_run(conn, run.id)
    summary = summary_rows(conn, run.id)
    sql_files = control_sql_files(conn, row, summary)
    conn.commit()
    identity, controls_doc = run_identity(row), json_value(summary)
    verdicts: list[Verdict] = []
    for label, store, prefix in bundles:
        base = f"{prefix}/" if prefix else ""
        doc = _read_json(store, f"{base}run.json")
        if doc is None:
            verdicts.append(Verdict("FAIL", KIND, f"{label}/run.json", "missing or not JSON"))
        else:
            run_doc = doc.get("run")
            recorded = {k: run_doc.get(k) if isinstance(run_doc, dict) else None
                        for k in identity}
            if recorded != identity:
                verdicts.append(Verdict("MISMATCH", KIND, f"{label}/run.json run",
                                        "differs from the run in the database: "
                                        + _first_difference(recorded, identity)))
            elif doc.get("controls") != controls_doc:
                verdicts.append(Verdict(
                    "MISMATCH", KIND, f"{label}/run.json controls",
                    "differs from the verified summary mart: "
                    + _first_difference(doc.get("controls"), controls_doc, "controls")))
            else:
                verdicts.append(Verdict("OK", KIND, f"{label}/run.json",
                                        f"run and {len(summary)} summary rows as the database "
                                        "derives them"))
        folder = f"{base}queries/controls/"
        bundled = {key[len(folder):]: key for key in store.list(folder.rstrip("/"))
                   if key.startswith(folder)}
        for name in sorted(set(bundled) | set(sql_files)):
            subject = f"{label}/queries/controls/{name}"
            if name not in bundled:
                verdicts.append(Verdict("MISSING", KIND, subject, "derived from the control "
                                        "evidence rows, not in the bundle"))
            elif name not in sql_files:
                verdicts.append(Verdict("EXTRA", KIND, subject, "in the bundle, not derived "
                                        "from any control evidence row of the run"))
            else:
                expected = hashlib.sha256(sql_files[name].encode("utf-8")).hexdigest()
                actual = sha256_object(store, bundled[name])
                verdicts.append(
                    Verdict("OK", KIND, subject, "the control evidence row's SQL, identical")
                    if actual == expected else
                    Verdict("MISMATCH", KIND, subject,
                            "differs from the SQL in the control's evidence row (the SQL "
                            f"the chain pins): bundle sha256 {actual[:16]}…, "
                            f"derived {expected[:16]}…"))
    return verdicts
