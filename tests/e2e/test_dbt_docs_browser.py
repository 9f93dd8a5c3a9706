"""The dbt docs site of a demo run, in headless Chromium: every control documented, offline."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from soxtrail.cli.docs import make_server, offline_html, remote_references
from soxtrail.kernel.controls import CONTROLS
from soxtrail.kernel.database import Database
from tests.support.cli import soxtrail
from tests.support.debian import ensure_packages, free_port
from tests.support.demo_quarter import DemoRun

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
# the flags the machine needs: no sandbox as root, and no background calls to Google's hosts
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
# collects Content-Security-Policy refusals: anything the page tried to load from elsewhere
RECORD_CSP_VIOLATIONS = """
window.__blocked = [];
document.addEventListener('securitypolicyviolation', e => window.__blocked.push(e.blockedURI));
"""
PAGE_TITLE = ".app-scroll .app-title h1 span.break"
REFERENCE_KINDS = ("model", "source", "seed", "snapshot")


# ------------------------------------------------------------------ the run and the site


@pytest.fixture(scope="module")
def pg_database(demo_run: DemoRun) -> Database:
    """The database of this module's demo run (tests/support/demo_quarter.py)."""
    return demo_run.db


@pytest.fixture(scope="module")
def docs_home(pg_database: Database, demo_run: DemoRun) -> Path:
    """SOXTRAIL_HOME after a demo run and `soxtrail docs generate --static`."""
    home = demo_run.home
    docs = soxtrail("docs", "generate", "--static", home=home, database_url=pg_database.dsn)
    assert docs.code == 0, docs.stderr
    about = json.loads((home / "docs" / "run.json").read_text())
    assert about["run_id"] == demo_run.run_id
    return home


@pytest.fixture(scope="module")
def site_url(docs_home: Path) -> Iterator[str]:
    """`soxtrail docs serve` on a free port, as `make docs-serve` runs it."""
    port = free_port()
    env = {**os.environ, "SOXTRAIL_HOME": str(docs_home)}
    env.pop("SOXTRAIL_DATABASE_URL", None)  # serving needs no database
    proc = subprocess.Popen([sys.executable, "-m", "soxtrail", "docs", "serve", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"`soxtrail docs serve` exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    pytest.fail(f"`soxtrail docs serve` did not listen on 127.0.0.1:{port}")


@pytest.fixture(scope="module")
def manifest(docs_home: Path) -> dict[str, Any]:
    return json.loads((docs_home / "docs" / "manifest.json").read_text())


# ------------------------------------------------------------------ the browser


class Recorder:
    """Every request a page makes, by URL."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def __call__(self, request: Any) -> None:
        self.urls.append(request.url)

    def elsewhere(self, origin: str) -> list[str]:
        """Requests that did not go to `origin` (data:/blob:/about: URIs never leave the page)."""
        return sorted({url for url in self.urls
                       if not url.startswith(origin)
                       and urlsplit(url).scheme not in ("data", "blob", "about")})


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium (installed when missing and root), driven by Playwright."""
    ensure_packages("chromium")
    assert Path(CHROMIUM).exists(), "Debian's chromium did not install /usr/bin/chromium"
    from playwright.sync_api import sync_playwright  # the test extra; never `playwright install`

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def site(browser: Any, site_url: str) -> Iterator[tuple[Any, Recorder]]:
    """One page on the served site, with every request it makes recorded."""
    context = browser.new_context()
    page = context.new_page()
    recorder = Recorder()
    page.on("request", recorder)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.set_default_timeout(15_000)
    page.goto(site_url, wait_until="networkidle")
    yield page, recorder
    context.close()


@pytest.fixture(scope="module")
def visited() -> dict[str, set[str]]:
    """Depends-On lists read so far, by node (shared by the lineage tests)."""
    return {}


def open_node(page: Any, site_url: str, unique_id: str) -> None:
    """Navigate the single-page app to a node and wait for its page to render."""
    kind = unique_id.split(".")[0]
    page.goto(f"{site_url}#!/{kind}/{unique_id}")
    title = unique_id.split(".", 2)[2]  # model: name; source: source_name.table_name
    page.wait_for_function(
        "([selector, title]) => [...document.querySelectorAll(selector)]"
        ".some(e => e.textContent.trim() === title)", arg=[PAGE_TITLE, title])


def depends_on(page: Any) -> set[str]:
    """Unique ids listed under the page's "Depends On" section, every tab but macros."""
    section = page.locator("section:has(> #depends_on)")
    if section.count() == 0:
        return set()
    found: set[str] = set()
    tabs = section.locator("ul.nav-tabs a")
    for index in range(tabs.count()):
        tab = tabs.nth(index)
        if tab.inner_text().strip().lower() == "macros":
            continue
        tab.click()
        hrefs = section.locator("ul.list-unstyled a").evaluate_all(
            "links => links.map(a => a.getAttribute('href'))")
        for href in hrefs:
            kind, _, unique_id = href.removeprefix("#!/").partition("/")
            if kind in REFERENCE_KINDS:
                found.add(unique_id)
    return found


def lineage_in_the_browser(page: Any, site_url: str, start: str,
                           pages: dict[str, set[str]]) -> set[str]:
    """Every ancestor of a node reached by following "Depends On" links page by page.

    `pages` remembers what each visited page listed, so shared ancestors are read once.
    """
    seen: set[str] = set()
    queue = [start]
    while queue:
        node = queue.pop()
        if node not in pages:
            open_node(page, site_url, node)
            pages[node] = depends_on(page)
        for parent in pages[node] - seen:
            seen.add(parent)
            queue.append(parent)
    return seen


def raw_sources(manifest: dict[str, Any]) -> set[str]:
    """Sources that are raw snapshot tables (schema `raw`)."""
    return {uid for uid, source in manifest["sources"].items() if source["schema"] == "raw"}


def mart_columns(db: Database, model: str) -> list[str]:
    with db.connect() as conn:
        rows = conn.execute("select column_name from information_schema.columns"
                            " where table_schema = 'marts' and table_name = %s"
                            " order by ordinal_position", (model,)).fetchall()
    return [r[0] for r in rows]


def column_rows(page: Any) -> dict[str, tuple[str, str]]:
    """The page's column table: name → (type, description)."""
    rows = page.locator("section:has(> #columns) tbody tr").evaluate_all(
        "rows => rows.filter(r => r.querySelectorAll('td').length >= 3)"
        ".map(r => [...r.querySelectorAll('td')].slice(0, 3).map(td => td.innerText.trim()))")
    return {name.split("\n")[0].strip(): (kind, description)
            for name, kind, description in rows}


# ------------------------------------------------------------------ the tests

CONTROL_MODELS = sorted(CONTROLS.values())


@pytest.mark.parametrize("model", CONTROL_MODELS)
def test_each_control_page_shows_its_description(site: tuple[Any, Recorder], site_url: str,
                                                 model: str) -> None:
    page, _ = site
    open_node(page, site_url, f"model.soxtrail.{model}")
    description = page.locator("section:has(> #description) .panel-body").inner_text().strip()
    assert description, f"{model}: empty description"
    assert "not currently documented" not in description, f"{model}: no description"


@pytest.mark.parametrize("model", CONTROL_MODELS)
def test_each_control_page_lists_the_real_columns_with_their_types(
        site: tuple[Any, Recorder], site_url: str, pg_database: Database, model: str) -> None:
    page, _ = site
    open_node(page, site_url, f"model.soxtrail.{model}")
    shown = column_rows(page)
    in_database = mart_columns(pg_database, model)
    assert {"run_id", "item_key", "result", "exception_reasons", "evidence_id"} <= set(
        in_database), f"{model}: mart not built with the common columns"
    missing = [c for c in in_database if c not in shown]
    assert not missing, f"{model}: columns of the table not on its docs page: {missing}"
    untyped = [c for c in in_database if not shown[c][0]]
    assert not untyped, f"{model}: no type from the catalog for {untyped}"


@pytest.mark.parametrize("model", CONTROL_MODELS)
def test_each_control_column_is_described(site: tuple[Any, Recorder], site_url: str,
                                          model: str) -> None:
    page, _ = site
    open_node(page, site_url, f"model.soxtrail.{model}")
    undescribed = sorted(name for name, (_, description) in column_rows(page).items()
                         if not description)
    assert not undescribed, f"{model}: columns without a description: {undescribed}"


@pytest.mark.parametrize("model", CONTROL_MODELS)
def test_each_control_traces_back_to_the_raw_sources(
        site: tuple[Any, Recorder], site_url: str, manifest: dict[str, Any],
        visited: dict[str, set[str]], model: str) -> None:
    page, _ = site
    unique_id = f"model.soxtrail.{model}"
    ancestors = lineage_in_the_browser(page, site_url, unique_id, visited)
    reached = ancestors & raw_sources(manifest)
    assert reached, f"{model}: lineage never reaches a raw source ({sorted(ancestors)})"
    # the served manifest agrees with what the pages show
    parents = manifest["parent_map"]
    closure: set[str] = set()
    stack = list(parents[unique_id])
    while stack:
        node = stack.pop()
        if node not in closure:
            closure.add(node)
            stack.extend(parents.get(node, []))
    assert {n for n in closure if n.split(".")[0] in REFERENCE_KINDS} == ancestors


def test_the_ac01_control_reads_the_audit_log_and_the_tickets(
        site: tuple[Any, Recorder], site_url: str, manifest: dict[str, Any],
        visited: dict[str, set[str]]) -> None:
    page, _ = site
    ancestors = lineage_in_the_browser(
        page, site_url, "model.soxtrail.fct_control_ac01__privileged_access_approved", visited)
    tables = {manifest["sources"][s]["identifier"] for s in ancestors & raw_sources(manifest)}
    assert {"pgaudit_csvlog", "tickets", "role_catalog"} <= tables


def test_the_site_loads_nothing_from_any_other_host(site: tuple[Any, Recorder],
                                                    site_url: str) -> None:
    page, recorder = site
    open_node(page, site_url, f"model.soxtrail.{CONTROL_MODELS[0]}")
    page.wait_for_load_state("networkidle")
    assert any(url.startswith(f"{site_url}manifest.json") for url in recorder.urls)
    assert recorder.elsewhere(site_url) == []
    assert page.evaluate("window.__blocked") == []


def test_the_single_file_variant_renders_offline(browser: Any, site_url: str,
                                                 docs_home: Path) -> None:
    assert remote_references((docs_home / "docs" / "static_index.html").read_text()) == []
    context = browser.new_context()
    page = context.new_page()
    recorder = Recorder()
    page.on("request", recorder)
    try:
        static_url = f"{site_url}static_index.html"
        page.goto(f"{static_url}#!/model/model.soxtrail.{CONTROL_MODELS[0]}")
        page.wait_for_selector(f"{PAGE_TITLE}:text-is('{CONTROL_MODELS[0]}')")
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert recorder.elsewhere(site_url) == []
    # one file: the manifest and catalog are inside it, nothing fetched
    assert not any("manifest.json" in url or "catalog.json" in url for url in recorder.urls)


# ------------------------------------------------------------------ the recorder can fail


@pytest.fixture()
def tracking_site(tmp_path: Path, docs_home: Path) -> Iterator[tuple[Path, str]]:
    """dbt's own index.html with usage tracking switched on, served locally."""
    import dbt.task.docs

    folder = tmp_path / "site"
    folder.mkdir()
    original = Path(dbt.task.docs.__file__).parent / "index.html"
    shutil.copyfile(original, folder / "index.html")
    shutil.copyfile(docs_home / "docs" / "catalog.json", folder / "catalog.json")
    manifest = json.loads((docs_home / "docs" / "manifest.json").read_text())
    manifest["metadata"]["send_anonymous_usage_stats"] = True
    (folder / "manifest.json").write_text(json.dumps(manifest))
    server = make_server(folder, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _requests_of(browser: Any, url: str) -> Recorder:
    context = browser.new_context()
    page = context.new_page()
    recorder = Recorder()
    page.on("request", recorder)
    try:
        page.goto(f"{url}#!/model/model.soxtrail.{CONTROL_MODELS[0]}")
        page.wait_for_selector(f"{PAGE_TITLE}:text-is('{CONTROL_MODELS[0]}')")
        page.wait_for_timeout(1500)  # the tracker loads asynchronously after the first view
    finally:
        context.close()
    return recorder


def test_dbts_own_page_would_call_out_and_the_offline_page_does_not(
        browser: Any, tracking_site: tuple[Path, str]) -> None:
    folder, url = tracking_site
    unpatched = _requests_of(browser, url)
    assert unpatched.elsewhere(url), "expected dbt's page to request its tracker"
    index = folder / "index.html"
    index.write_text(offline_html(index.read_text()))
    patched = _requests_of(browser, url)
    assert patched.elsewhere(url) == []
    assert any(u.startswith(f"{url}manifest.json") for u in patched.urls)


def test_every_mart_column_in_the_catalog_comes_from_the_database(
        docs_home: Path, pg_database: Database) -> None:
    catalog = json.loads((docs_home / "docs" / "catalog.json").read_text())
    for model in CONTROL_MODELS:
        node = catalog["nodes"].get(f"model.soxtrail.{model}")
        assert node is not None, f"{model}: not in catalog.json"
        in_catalog = sorted(node["columns"].values(), key=lambda column: column["index"])
        assert [c["name"].lower() for c in in_catalog] == [
            c.lower() for c in mart_columns(pg_database, model)], model



def test_serving_before_generating_says_what_to_run(tmp_path: Path) -> None:
    result = soxtrail("docs", "serve", "--port", str(free_port()), home=tmp_path / "empty",
                      database_url=None)
    assert result.code == 2
    assert "soxtrail docs generate" in result.stderr


@pytest.mark.parametrize("model", CONTROL_MODELS)
def test_the_docs_site_shows_the_compiled_sql_the_evidence_and_the_bundle_hold(
        model: str, manifest: dict[str, Any], docs_home: Path, pg_database: Database) -> None:
    """The auditor reads one text: docs site, evidence row (workbook Queries sheet), bundle."""
    run_id = json.loads((docs_home / "docs" / "run.json").read_text())["run_id"]
    in_docs = manifest["nodes"][f"model.soxtrail.{model}"]["compiled_code"]
    with psycopg.connect(pg_database.dsn) as conn:
        quarter, in_evidence = conn.execute(
            "select r.quarter, e.query_text from soxtrail.sox_evidence e"
            " join soxtrail.sox_runs r on r.id = e.run_id"
            " where e.run_id = %s and e.source_system = 'reconcile'"
            " and e.query_params ->> 'model' = %s", (run_id, model)).fetchone()
    assert in_docs.strip() == in_evidence.strip()
    # named <model>_<checksum>.sql: the version of the model that ran
    [bundle_file] = (docs_home / "store" / quarter / run_id / "bundle" / "queries"
                     / "controls").glob(f"{model}_*.sql")
    bundle_sql = bundle_file.read_text()
    assert in_evidence.strip() in bundle_sql
    assert bundle_sql.startswith("--")  # the header comment: control, run, vars, evidence id
    assert run_id in bundle_sql.split(in_evidence.strip())[0]
