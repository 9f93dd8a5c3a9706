"""Re-derive the report: re-render the workbook and CSVs from the verified marts and compare
them byte for byte with the copies in every version of the run's bundle."""

from __future__ import annotations

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
