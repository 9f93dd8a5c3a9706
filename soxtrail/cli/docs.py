"""`soxtrail docs`: the dbt docs site of a completed run, built in-process and served offline."""

from __future__ import annotations

import functools
import http.server
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from soxtrail.cli.common import err, handled, open_database, out
from soxtrail.kernel import evidence, runs
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import ConfigError, PipelineError
from soxtrail.reconcile import dbt

docs_app = typer.Typer(
    help="The dbt docs site: every model and column described, lineage back to the raw sources.",
    no_args_is_help=True,
)

SITE_FILES = ("index.html", "manifest.json", "catalog.json")
STATIC_FILE = "static_index.html"

# The site may load only what it is served with: inline code, data: URIs and its own JSON.
CONTENT_SECURITY_POLICY = (
    "default-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:; "
    "connect-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; "
    "form-action 'none'; base-uri 'none'"
)
_LOCAL_HOSTS = r"(?:127\.0\.0\.1|localhost|\[::1\])"
# src="//cdn…/x.js", href='https://fonts…' in markup or in scripts that build elements
_REMOTE_ATTRIBUTE = re.compile(
    r"""\b(src|href)(\s*=\s*)(["'])(?:https?:)?//(?!""" + _LOCAL_HOSTS + r"""[:/"'])[^"'\s]*\3""")
# url(https://…) and @import "https://…" in stylesheets
_REMOTE_CSS_URL = re.compile(
    r"""url\(\s*(["']?)(?:https?:)?//(?!""" + _LOCAL_HOSTS + r""")[^"')\s]*\1\s*\)""")
_REMOTE_CSS_IMPORT = re.compile(
    r"""@import\s+(?:url\()?\s*["']?(?:https?:)?//[^;]*;""")
# dbt's build leaves a webpack placeholder as the favicon: a request that can only 404
_FAVICON_PLACEHOLDER = re.compile(r"""href="\$\{require\([^)]*\)\}\"""")
# dbt-docs loads its analytics script when the manifest says `track`; never here
_TRACKING_SWITCH = "!0===e.track&&r.turn_on_tracking()"


def docs_dir() -> Path:
    """Where the site is written and served from: `<SOXTRAIL_HOME>/docs`."""
    return home() / "docs"


def offline_html(html: str) -> str:
    """The dbt docs page with every reference to another host removed and a CSP pinning it local.

    dbt's page is self-contained except for its analytics loader (a script from a CDN when
    usage stats are on); scripts, stylesheets and fonts from other hosts are replaced by
    empty `data:` URIs, and a Content-Security-Policy makes the browser refuse anything that
    is still aimed elsewhere.
    """
    html = html.replace(_TRACKING_SWITCH, "!1")
    html = _REMOTE_ATTRIBUTE.sub(lambda m: f"{m[1]}{m[2]}{m[3]}data:,{m[3]}", html)
    html = _REMOTE_CSS_IMPORT.sub("", html)
    html = _REMOTE_CSS_URL.sub("url(data:,)", html)
    html = _FAVICON_PLACEHOLDER.sub('href="data:,"', html)
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
    if meta not in html:
        # right after <meta charset> (which must come first), else right after <head>
        anchor = re.search(r"<meta charset=[^>]*>", html, re.IGNORECASE) or re.search(
            r"<head[^>]*>", html, re.IGNORECASE)
        if anchor is None:
            raise PipelineError("dbt docs index.html has no <head>: cannot pin it offline")
        html = html[:anchor.end()] + meta + html[anchor.end():]
    return html


def remote_references(html: str) -> list[str]:
    """References in a page that would make a browser contact another host (empty when none)."""
    found = [m[0] for m in _REMOTE_ATTRIBUTE.finditer(html)]
    found += [m[0] for m in _REMOTE_CSS_URL.finditer(html)]
    found += [m[0] for m in _REMOTE_CSS_IMPORT.finditer(html)]
    if _TRACKING_SWITCH in html:
        found.append(_TRACKING_SWITCH)
    return found


def choose_run(conn: Any, run_id: str | None) -> runs.Run:
    """The run named, else the newest completed one."""
    if run_id:
        run = runs.get_run(conn, run_id)
    else:
        latest = runs.latest_completed_run(conn)
        if latest is None:
            raise ConfigError("no completed run yet: run `soxtrail run --quarter …` "
                              "(or `make quarter Q=…`) first")
        run = latest
    if run.status != "completed":
        raise ConfigError(f"run {run.id} is {run.status}, not completed: "
                          f"finish it with `soxtrail resume {run.id}`")
    return run


def recorded_vars(conn: Any, run: runs.Run) -> dict[str, Any]:
    """The dbt vars the run's reconcile phase used, as its control evidence rows recorded them."""
    recorded = [row["query_params"].get(evidence.VARS_KEY)
                for row in evidence.control_rows(conn, run.id)
                if evidence.VARS_KEY in (row["query_params"] or {})]
    conn.commit()
    if not recorded or not isinstance(recorded[0], dict):
        raise PipelineError(f"run {run.id} has no control evidence recording its dbt vars")
    return dict(recorded[0])


def generate_site(db: Database, run: runs.Run, variables: dict[str, Any], *, out_dir: Path,
                  static: bool = False) -> list[Path]:
    """`dbt docs generate` for the run against `db`; the offline site's files in `out_dir`."""
    workdir = home() / "runs" / run.id / "docs"
    args = ["docs", "generate"] + (["--static"] if static else [])
    result = dbt.invoke(db, args, workdir=workdir, vars=variables)
    if not result.success:
        raise PipelineError("dbt docs generate failed: "
                            + ("; ".join(dbt.failures(result)[:5]) or f"see {workdir / 'logs'}"))
    target = result.target_path
    names = [*SITE_FILES, STATIC_FILE] if static else list(SITE_FILES)
    missing = [name for name in names if not (target / name).is_file()]
    if missing:
        raise PipelineError(f"dbt docs generate wrote no {', '.join(missing)} in {target}")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    written = []
    for name in names:
        destination = out_dir / name
        if name.endswith(".html"):
            html = (target / name).read_text(encoding="utf-8")
            destination.write_text(offline_html(html), encoding="utf-8")
        else:
            shutil.copyfile(target / name, destination)
        written.append(destination)
    about = {"run_id": run.id, "quarter": run.quarter, "vars": variables,
             "generated_at": datetime.now(UTC).isoformat(timespec="seconds")}
    (out_dir / "run.json").write_text(json.dumps(about, indent=2, sort_keys=True) + "\n",
                                      encoding="utf-8")
    return written


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, one access line per request on stderr, never cached."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        err.print(f"{self.address_string()} {format % args}", markup=False)


def make_server(folder: Path, port: int) -> http.server.ThreadingHTTPServer:
    """An HTTP server for `folder` bound to 127.0.0.1 only (port 0 picks a free one)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


@docs_app.command("generate")
def generate(
    run_id: Annotated[str | None, typer.Option(
        "--run", help="The run whose vars to use (default: the newest completed run).")] = None,
    static: Annotated[bool, typer.Option(
        "--static", help=f"Also write {STATIC_FILE}, one file with manifest and catalog inside."
    )] = False,
) -> None:
    """Build the dbt docs site against the database of the last completed run."""
    with handled():
        db, conn = open_database()
        with conn:
            run = choose_run(conn, run_id)
            variables = recorded_vars(conn, run)
        err.print(f"dbt docs for run {run.id} ({run.quarter}) on {db.display}")
        written = generate_site(db, run, variables, out_dir=docs_dir(), static=static)
        for path in written:
            out.print(f"wrote {path}")
        out.print(f"serve it: soxtrail docs serve  (or make docs-serve) -> {docs_dir()}")


@docs_app.command("serve")
def serve(
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1.")] = 8080,
) -> None:
    """Serve the generated docs site on 127.0.0.1 (Ctrl-C stops it)."""
    with handled():
        folder = docs_dir()
        if not (folder / "index.html").is_file():
            raise ConfigError(f"no docs site in {folder}: run `soxtrail docs generate` first")
        try:
            server = make_server(folder, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from exc
        with server:
            out.print(f"serving {folder} on http://127.0.0.1:{server.server_address[1]}/")
            try:
                server.serve_forever()
            except KeyboardInterrupt:
                err.print("stopped")

