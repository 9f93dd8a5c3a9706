"""A run's working context: the Pipeline object, its event log, its observers, and the
run's sources and recorded config."""

from __future__ import annotations

import json
import resource
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import psycopg

from extract.connectors.registry import SPECS
from soxtrail.kernel import runs, secrets
from soxtrail.kernel.config import CATALOG_KEYS, Config, parse_config, redacted_literals
from soxtrail.kernel.database import Database, home
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import Quarter
from soxtrail.kernel.sources import Source
from soxtrail.kernel.store import Store

SNAPSHOT_CONCURRENCY = 4
SNAPSHOT_COUNT_WORKERS = 2

Echo = Callable[[dict[str, Any]], None]


class Observer:
    """Watches the runs this process executes: an extension point for metrics, tracing or
    fault injection. Every method does nothing unless a subclass overrides it."""

    def opened(self, p: Pipeline) -> None:
        """A pipeline was opened for a run; may wrap `p.store`, which every phase writes to."""

    def checkpoint(self, p: Pipeline, phase: str, point: str) -> None:
        """`phase` reached `point`: `start`, `done`, `object<N>` (the Nth object loaded and
        committed) or `control<N>` (the Nth control's evidence row written)."""


# observers of every pipeline this process opens (unless open_pipeline is given its own)
OBSERVERS: list[Observer] = []


class EventLog:
    """Structured events of a run (`log.jsonl`), secrets redacted, also echoed to a callback."""

    def __init__(self, path: Path, echo: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.echo = echo
        self._handle: IO[str] | None = None
        self._lock = threading.Lock()  # phases emit from several threads

    def emit(self, event: str, **fields: Any) -> None:
        record = {"ts": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                  "event": event, **fields}
        line = secrets.redact(json.dumps(record, default=str, sort_keys=True))
        with self._lock:
            if self._handle is None or self._handle.closed:
                self._handle = self.path.open("a", encoding="utf-8")
            self._handle.write(line + "\n")
            self._handle.flush()  # whole lines, readable at once (bundle, bench, tail -f)
        if self.echo is not None:
            self.echo(json.loads(line))

    def close(self) -> None:
        """Close the log file (a later emit opens it again)."""
        with self._lock:
            if self._handle is not None:
                self._handle.close()


@dataclass
class Pipeline:
    """Everything a phase needs for one run."""

    db: Database
    conn: psycopg.Connection[Any]
    run: runs.Run
    config: Config
    store: Store
    events: EventLog
    template: str = "default"
    outputs: dict[str, Any] = field(default_factory=dict)
    observers: list[Observer] = field(default_factory=list)

    def checkpoint(self, phase: str, point: str) -> None:
        """Tell the observers that `phase` reached `point` (see Observer.checkpoint)."""
        for observer in self.observers:
            observer.checkpoint(self, phase, point)

    @property
    def quarter(self) -> Quarter:
        """The run's quarter under its recorded config's fiscal year and reporting zone."""
        return self.config.quarter(self.run.quarter)

    @property
    def workdir(self) -> Path:
        return run_workdir(self.run.id)


def run_workdir(run_id: str) -> Path:
    """Local working folder of a run (dbt artifacts, spool, rendered files, log)."""
    return home() / "runs" / run_id


def catalog_sources(config: Config) -> list[Source]:
    """The role catalog, applications and identity map as snapshot sources."""
    return [Source(name=f"catalog-{key}", system="role_catalog", connector="catalog_file",
                   values={"path": str(config.catalogs[key]), "catalog": key},
                   base_dir=config.base_dir)
            for key in CATALOG_KEYS]


# A capture run's config records the sources it takes (soxtrail capture --sources).
CAPTURE_SOURCES_KEY = "_capture_sources"
# How a run's bundle will be signed, recorded when the run starts (render.signing).
SIGNING_KEY = "_signing"


def sources_in_scope(config: Config, clusters: tuple[str, ...] | None) -> list[Source]:
    """Configured sources, minus cluster sources outside the run's `--clusters`."""
    chosen = []
    for source in config.sources:
        cluster = source.get("cluster")
        if clusters and cluster is not None and cluster not in clusters:
            continue
        chosen.append(source)
    return chosen


def run_sources(config: Config, run: runs.Run, *, catalogs: bool = True) -> list[Source]:
    """What the run snapshots and loads: a quarter run, its sources in scope (and the
    catalogs, with `catalogs`); a capture, the sources it was started with."""
    if run.kind == runs.CAPTURE:
        names = set(run.config.get(CAPTURE_SOURCES_KEY) or ())
        return [source for source in config.sources if source.name in names]
    return (sources_in_scope(config, run.clusters) + (catalog_sources(config) if catalogs else [])
            + responses_sources(config) + access_review_sources(config))


def responses_sources(config: Config) -> list[Source]:
    """Management's responses file (`responses:`), a source of every quarter run."""
    if not config.responses:
        return []
    return [Source(name="responses", system="responses", connector="responses",
                   values={"path": config.responses}, base_dir=config.base_dir)]


def access_review_sources(config: Config) -> list[Source]:
    """The user access review behind AC-03 (`access_review:`, a folder of returned review
    files per quarter), a source of every quarter run."""
    if not config.access_review:
        return []
    return [Source(name="access_review", system="access_review", connector="access_review",
                   values={"path": config.access_review}, base_dir=config.base_dir)]


def record_config(config: Config, store: Store, *, sign: bool = True,
                  announce: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The config as the run records it (redacted), with the store it writes to and how its
    bundle will be signed (`_signing`: whether, the key's fingerprint and where the key
    came from; the workbook states it, and the bundle phase refuses another key).

    With `sign` the key is SOXTRAIL_SIGNING_KEY, else the machine's own key (created now
    on the first run, `announce` told; refused under CI: render.signing.check_ci); without
    it (`--no-sign`, or a capture, which writes no bundle) `signed` is false."""
    from render.signing import signing_record

    recorded = config.redacted()
    recorded["_store"] = store.uri
    # the engine as the run used it (SOXTRAIL_ENGINE included), and where its Spark
    # warehouse is: resume and verify read them from here, whatever the environment says
    recorded["engine"] = config.engine
    if config.engine == "spark":
        from soxtrail.reconcile.engine import recorded_settings

        recorded["spark"] = recorded_settings(config)
    recorded[SIGNING_KEY] = signing_record(no_sign=not sign, announce=announce)
    return recorded


def config_for_run(run: runs.Run, *, resolve_secrets: bool) -> Config:
    """Rebuild the run's config from what it recorded (secrets from the environment if asked).

    A literal secret is never recorded: a run whose config had one cannot capture its
    sources again from the recorded config (its first process used the config file).
    """
    recorded = dict(run.config)
    lost = redacted_literals(recorded) if resolve_secrets else []
    if lost:
        raise ConfigError(
            f"run {run.id}: its config had literal secrets, which a run never records "
            f"({', '.join(lost)}), so its snapshot cannot be redone; write them as ${{ENV}} "
            "references and start a new run")
    config = parse_config(recorded, path=None, base_dir=Path(recorded.get("_base_dir", ".")),
                          specs=SPECS, resolve_secrets=resolve_secrets)
    config.catalogs = {k: Path(v) for k, v in recorded.get("_catalogs", {}).items()}
    config.engine = str(recorded.get("engine") or "postgres")  # not SOXTRAIL_ENGINE: recorded
    config.spark = dict(recorded.get("spark") or {})
    return config


# ---------------------------------------------------------------- phase 1


def cpu_seconds() -> float:
    """CPU seconds of this process and of its ended child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def capture_order(sources: list[Source]) -> list[Source]:
    """The order the capture threads take sources in: a connector serving the whole estate
    from one source (tickets, IAM, backups: thousands of pages) before the connectors with
    a source per cluster (small slices each), so that the long ones do not start last and
    run alone. Stable; evidence rows are sorted before they are written, whatever the order."""
    per_connector = Counter(source.connector for source in sources)
    return sorted(sources, key=lambda source: per_connector[source.connector])


