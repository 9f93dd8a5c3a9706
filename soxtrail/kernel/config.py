"""`soxtrail.yml`: loading, validation (errors name the key and file) and redaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from soxtrail.kernel import secrets
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.quarter import (
    DEFAULT_FISCAL_YEAR_START_MONTH,
    DEFAULT_TIMEZONE,
    Quarter,
    check_fiscal_year_start_month,
    zone,
)
from soxtrail.kernel.sources import COMMON_KEYS, SYSTEMS, ConnectorSpec, Source
from soxtrail.kernel.store import local_path, safe_name

TOP_LEVEL_KEYS = frozenset({"version", "store", "sources", "catalogs", "policy", "clusters",
                            "fiscal_year_start_month", "timezone", "responses",
                            "signers", "access_review", "engine", "spark"})
ENGINES = ("postgres", "spark")
ENGINE_ENV = "SOXTRAIL_ENGINE"  # overrides the config's `engine:` (recorded with the run)
SPARK_KEYS = frozenset({"master", "warehouse", "conf"})
CATALOG_KEYS = ("role_catalog", "applications", "identity_map")
POLICY_KEYS = frozenset({
    "revocation_sla_hours", "approval_validity_days", "approved_statuses",
    "default_backup_policy", "ticket_key_pattern", "catalog_capture_tolerance_hours",
    "lg01_restart_resets_settings", "lg01_silence_limit_hours",
    "access_review_deadline", "access_review_due_days", "access_review_removal_grace_days",
})
BACKUP_POLICIES = ("daily", "weekly")  # what BK-01 (fct_control_bk01) knows
REPO_ROOT = Path(__file__).resolve().parents[2]
SEEDS_DIR = REPO_ROOT / "seeds"


@dataclass
class Config:
    """A validated configuration, as written (`raw`) and with paths resolved."""

    path: Path | None
    raw: dict[str, Any]
    sources: list[Source]
    catalogs: dict[str, Path]
    policy: dict[str, Any]
    store: str | None = None
    clusters: tuple[str, ...] | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    # the reporting period: a quarter's months and the zone of its days (Quarter)
    fiscal_year_start_month: int = DEFAULT_FISCAL_YEAR_START_MONTH
    timezone: str = DEFAULT_TIMEZONE
    # management's responses to exceptions: the file per quarter (`{quarter}` in the path)
    responses: str | None = None
    # the user access review behind AC-03: the folder of returned review files per quarter
    access_review: str | None = None
    # where the raw tables and marts live and run (docs/configuration.md `engine:`)
    engine: str = "postgres"
    # engine: spark: `master` (local[*] by default), `warehouse` (folder), `conf` (Spark conf)
    spark: dict[str, Any] = field(default_factory=dict)
    # the connectors' specs the config was validated against (extract.connectors.registry)
    specs: Mapping[str, ConnectorSpec] = field(default_factory=dict, repr=False)

    def redacted(self) -> dict[str, Any]:
        """The config as recorded in the run: `${NAME}` references kept, literal secrets removed."""
        sources = []
        for source, entry in zip(self.sources, self.raw.get("sources", []), strict=True):
            spec = self.specs[source.connector]
            clean = {}
            for key, value in entry.items():
                if key in spec.secret:
                    clean[key] = _secret_literals(value)
                else:
                    clean[key] = secrets.redact_value(value)
            sources.append(clean)
        recorded = {k: secrets.redact_value(v) for k, v in self.raw.items() if k != "sources"}
        recorded["sources"] = sources
        recorded["_base_dir"] = str(self.base_dir)
        recorded["_catalogs"] = {k: str(v) for k, v in self.catalogs.items()}
        return recorded

    def quarter(self, label: str) -> Quarter:
        """The quarter `label` of this config's fiscal year, bounded in its reporting zone."""
        return Quarter.parse(label, fiscal_year_start_month=self.fiscal_year_start_month,
                             timezone=self.timezone)

    def hash(self) -> str:
        """SHA-256 of the recorded config (stable key order)."""
        text = json.dumps(self.redacted(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _secret_literals(value: Any, where: str = "<config>") -> Any:
    """A secret-key value with its literal secrets replaced (`${NAME}` references kept).

    Each literal is registered for redaction; one too short to redact is a ConfigError.
    """
    if isinstance(value, dict):
        return {k: v if k in secrets.NOT_SECRET_INSIDE else _secret_literals(v, f"{where}.{k}")
                for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_literals(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or value == secrets.REDACTED:  # a recorded config: redacted already
        return value
    text = str(value)
    password = secrets.embedded_password(text)
    if password is not None and password != secrets.REDACTED \
            and not secrets.has_env_ref(password):
        secrets.check_length(password, f"{where}: the password")
        secrets.remember(password)
    if secrets.has_env_ref(value):
        return value
    secrets.check_length(text, f"{where}: the secret")
    secrets.remember(text)
    return secrets.REDACTED


def redacted_literals(recorded: Mapping[str, Any]) -> list[str]:
    """The source keys of a recorded config whose values were redacted (literal secrets,
    which a run never records): `sources[2] (okta).token`."""
    lost = []
    for index, entry in enumerate(recorded.get("sources") or []):
        for key, value in entry.items():
            if secrets.REDACTED in json.dumps(value):
                lost.append(f"sources[{index}] ({entry.get('name')}).{key}")
    return lost


def _where(path: Path | None, key: str) -> str:
    return f"{path or '<config>'}: {key}"


def period_settings(data: Mapping[str, Any], path: Path | None = None) -> tuple[int, str]:
    """`fiscal_year_start_month` and `timezone` of a config mapping (as written, or as a run
    recorded it), defaults filled in; a ConfigError names the key and the file."""
    month = data.get("fiscal_year_start_month", DEFAULT_FISCAL_YEAR_START_MONTH)
    name = data.get("timezone", DEFAULT_TIMEZONE)
    try:
        check_fiscal_year_start_month(month)
        zone(name)
    except ConfigError as exc:  # the message starts with the key
        raise ConfigError(f"{path or '<config>'}: {exc}") from exc
    return month, name


def quarter_of(recorded: Mapping[str, Any], label: str) -> Quarter:
    """The quarter `label` under a recorded config's fiscal year and reporting zone (a run's
    `sox_runs.config`): what the run itself used."""
    month, name = period_settings(recorded)
    return Quarter.parse(label, fiscal_year_start_month=month, timezone=name)


def _spec(specs: Mapping[str, ConnectorSpec], name: str, where: str) -> ConnectorSpec:
    if name not in specs or name == "catalog_file":
        known = ", ".join(sorted(k for k in specs if k != "catalog_file"))
        raise ConfigError(f"{where}unknown connector {name!r} (known: {known})")
    return specs[name]


def _validate_source(entry: Any, index: int, path: Path | None, base_dir: Path,
                     resolve_secrets: bool, specs: Mapping[str, ConnectorSpec]) -> Source:
    where = _where(path, f"sources[{index}]")
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping with name, system, connector")
    for key in ("name", "system", "connector"):
        if not entry.get(key):
            raise ConfigError(f"{where}: missing required key '{key}'")
    name = str(entry["name"])
    where = _where(path, f"sources[{index}] ({name})")
    system, connector = str(entry["system"]), str(entry["connector"])
    if system not in SYSTEMS:
        raise ConfigError(f"{where}.system: unknown system {system!r} "
                          f"(known: {', '.join(sorted(SYSTEMS))})")
    spec = _spec(specs, connector, f"{where}.connector: ")
    if system not in spec.systems:
        raise ConfigError(f"{where}: connector {connector!r} does not serve system {system!r} "
                          f"(it serves: {', '.join(sorted(spec.systems))})")
    allowed = COMMON_KEYS | spec.required | spec.optional | frozenset().union(*spec.one_of)
    for key in entry:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key '{key}' for connector {connector!r} "
                              f"(allowed: {', '.join(sorted(allowed - COMMON_KEYS))})")
    for key in spec.required:
        if key not in entry or entry[key] in (None, ""):
            raise ConfigError(f"{where}: missing required key '{key}' for connector {connector!r}")
    if spec.one_of and not any(group <= entry.keys() for group in spec.one_of):
        options = " or ".join("+".join(sorted(g)) for g in spec.one_of)
        raise ConfigError(f"{where}: connector {connector!r} needs {options}")
    values = {k: v for k, v in entry.items() if k not in COMMON_KEYS}
    for key, value in values.items():
        if key in spec.secret:
            _secret_literals(value, f"{where}.{key}")  # registers every literal for redaction
    if resolve_secrets:
        values = {k: secrets.resolve(v, f"{where}.{k}", secret=k in spec.secret)
                  for k, v in values.items()}
    return Source(name=name, system=system, connector=connector, values=values,
                  raw=dict(entry), base_dir=base_dir)


def parse_config(data: Any, *, path: Path | None, base_dir: Path,
                 specs: Mapping[str, ConnectorSpec], resolve_secrets: bool = True) -> Config:
    """Validate a config mapping against the connectors' `specs`; every error names the key
    and the file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<config>'}: expected a mapping at the top level")
    for key in data:
        if key.startswith("_"):
            continue  # recorded-run bookkeeping
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(f"{_where(path, key)}: unknown key "
                              f"(allowed: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    entries = data.get("sources") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{_where(path, 'sources')}: expected a list")
    sources = [_validate_source(e, i, path, base_dir, resolve_secrets, specs)
               for i, e in enumerate(entries)]
    seen: dict[str, str] = {}
    for source in sources:
        if source.name in seen:
            raise ConfigError(f"{_where(path, 'sources')}: duplicate source name {source.name!r}")
        # the source's folder in the store: two sources must never write the same objects
        key = safe_name(source.name)
        if key in seen.values():
            other = next(name for name, k in seen.items() if k == key)
            raise ConfigError(f"{_where(path, 'sources')}: sources {other!r} and {source.name!r} "
                              f"would store their objects under the same name {key!r}; "
                              "rename one")
        seen[source.name] = key
    catalogs_in = data.get("catalogs") or {}
    if not isinstance(catalogs_in, dict):
        raise ConfigError(f"{_where(path, 'catalogs')}: expected a mapping")
    catalogs: dict[str, Path] = {}
    for key in catalogs_in:
        if key not in CATALOG_KEYS:
            raise ConfigError(f"{_where(path, 'catalogs.' + str(key))}: unknown catalog "
                              f"(allowed: {', '.join(CATALOG_KEYS)})")
    for key in CATALOG_KEYS:
        given = catalogs_in.get(key)
        file = Path(given) if given else SEEDS_DIR / f"{key}.csv"
        if given and not file.is_absolute():
            file = base_dir / file
        catalogs[key] = file
    policy = data.get("policy") or {}
    if not isinstance(policy, dict):
        raise ConfigError(f"{_where(path, 'policy')}: expected a mapping")
    for key, value in policy.items():
        if key not in POLICY_KEYS:
            raise ConfigError(f"{_where(path, 'policy.' + str(key))}: unknown policy "
                              f"(allowed: {', '.join(sorted(POLICY_KEYS))})")
        _check_policy(key, value, _where(path, f"policy.{key}"))
        if key == "access_review_deadline" and value is not None:
            policy[key] = str(value)  # a YAML date, as the ISO text dbt's var takes
    clusters = data.get("clusters")
    if clusters is not None and not (isinstance(clusters, list)
                                     and all(isinstance(c, str) for c in clusters)):
        raise ConfigError(f"{_where(path, 'clusters')}: expected a list of cluster names")
    fiscal_year_start_month, timezone = period_settings(data, path)
    responses = data.get("responses")
    if responses is not None and not (isinstance(responses, str) and responses.strip()):
        raise ConfigError(f"{_where(path, 'responses')}: expected a file path "
                          "(e.g. responses/{quarter}.yml)")
    access_review = data.get("access_review")
    if access_review is not None and not (isinstance(access_review, str)
                                          and access_review.strip()):
        raise ConfigError(f"{_where(path, 'access_review')}: expected a folder path "
                          "(e.g. reviews/{quarter})")
    signers = data.get("signers")  # signers.yml: who may sign off, their keys
    if signers is not None and not (isinstance(signers, str) and signers.strip()):
        raise ConfigError(f"{_where(path, 'signers')}: expected a file path (e.g. signers.yml)")
    engine, spark = engine_settings(data, path, base_dir)
    store = data.get("store")
    if store is not None and not isinstance(store, str):
        raise ConfigError(f"{_where(path, 'store')}: expected a path or s3://bucket/prefix")
    if store:
        try:
            folder = local_path(store)
        except ConfigError as exc:
            raise ConfigError(f"{_where(path, 'store')}: {exc}") from exc
        if folder is not None:
            store = str(folder if folder.is_absolute() else base_dir / folder)
    return Config(path=path, raw=data, sources=sources, catalogs=catalogs, policy=policy,
                  store=store, clusters=tuple(clusters) if clusters else None,
                  responses=responses, access_review=access_review,
                  base_dir=base_dir, specs=specs, engine=engine, spark=spark,
                  fiscal_year_start_month=fiscal_year_start_month, timezone=timezone)


def engine_settings(data: Mapping[str, Any], path: Path | None,
                    base_dir: Path) -> tuple[str, dict[str, Any]]:
    """The engine (SOXTRAIL_ENGINE, else `engine:`, else postgres) and its `spark:` settings,
    the warehouse folder made absolute."""
    engine = os.environ.get(ENGINE_ENV) or data.get("engine") or "postgres"
    if engine not in ENGINES:
        where = ENGINE_ENV if os.environ.get(ENGINE_ENV) else _where(path, "engine")
        raise ConfigError(f"{where}: {engine!r} is not an engine (allowed: {', '.join(ENGINES)})")
    spark = data.get("spark") or {}
    if not isinstance(spark, dict):
        raise ConfigError(f"{_where(path, 'spark')}: expected a mapping")
    for key in spark:
        if key not in SPARK_KEYS:
            raise ConfigError(f"{_where(path, 'spark.' + str(key))}: unknown key "
                              f"(allowed: {', '.join(sorted(SPARK_KEYS))})")
    spark = dict(spark)
    for key in ("master", "warehouse"):
        if key in spark and not (isinstance(spark[key], str) and spark[key].strip()):
            raise ConfigError(f"{_where(path, 'spark.' + key)}: expected text")
    if "conf" in spark and not (isinstance(spark["conf"], dict) and all(
            isinstance(k, str) for k in spark["conf"])):
        raise ConfigError(f"{_where(path, 'spark.conf')}: expected a mapping of Spark settings")
    if spark.get("warehouse") and not Path(spark["warehouse"]).is_absolute():
        spark["warehouse"] = str(base_dir / spark["warehouse"])
    return str(engine), spark


def policy_value(recorded: Mapping[str, Any], key: str) -> Any:
    """A policy key's value for a run's recorded config: its `policy:` value, else the
    default, which lives in one place, dbt_project.yml's `vars:` (what dbt applies)."""
    policy = recorded.get("policy") or {}
    if key in policy:
        return policy[key]
    project = yaml.safe_load((REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8"))
    return (project.get("vars") or {}).get(key)


def _check_policy(key: str, value: Any, where: str) -> None:
    """A policy value of the right type (each reaches the controls' SQL as a dbt var, and
    the connectors as the snapshot context's `policy`)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key in ("revocation_sla_hours", "catalog_capture_tolerance_hours") and not (
            number and math.isfinite(value) and value > 0):
        raise ConfigError(f"{where}: expected a number of hours > 0, got {value!r}")
    if key == "lg01_silence_limit_hours" and not (
            value is None or (number and math.isfinite(value) and value > 0)):
        raise ConfigError(f"{where}: expected a number of hours > 0 (or null: off), "
                          f"got {value!r}")
    if key == "lg01_restart_resets_settings" and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if key == "approval_validity_days" and not (number and isinstance(value, int) and value > 0):
        raise ConfigError(f"{where}: expected a whole number of days > 0, got {value!r}")
    if key == "approved_statuses" and not (
            isinstance(value, list) and value
            and all(isinstance(v, str) and v.strip() for v in value)):
        raise ConfigError(f"{where}: expected a non-empty list of status names, got {value!r}")
    if key == "default_backup_policy" and value not in BACKUP_POLICIES:
        raise ConfigError(f"{where}: expected one of {', '.join(BACKUP_POLICIES)}, "
                          f"got {value!r}")
    if key == "access_review_deadline" and value is not None:
        try:
            dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{where}: expected a date (YYYY-MM-DD, or null: "
                              f"access_review_due_days after the quarter's last day), "
                              f"got {value!r}") from None
    if key in ("access_review_removal_grace_days", "access_review_due_days") and not (
            number and isinstance(value, int) and value >= 0):
        raise ConfigError(f"{where}: expected a whole number of days >= 0, got {value!r}")
    if key == "ticket_key_pattern":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a regular expression, got {value!r}")
        try:
            re.compile(value)
        except re.error as exc:
            raise ConfigError(f"{where}: not a valid regular expression: {exc}") from exc


class _DuplicateKey(Exception):
    def __init__(self, key: Any, first: int, second: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {first} and line {second}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, refusing a mapping that repeats a key (YAML keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` merges, and explicit keys may override it
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in lines:
                    raise _DuplicateKey(key, lines[key], line)
                lines[key] = line
            except TypeError:
                continue  # an unhashable key: SafeLoader's own error follows
        return super().construct_mapping(node, deep=deep)


def load_config(path: Path, *, specs: Mapping[str, ConnectorSpec],
                resolve_secrets: bool = True) -> Config:
    """Read and validate `soxtrail.yml` against the connectors' `specs`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    return parse_config(data, path=path.resolve(), base_dir=path.resolve().parent,
                        specs=specs, resolve_secrets=resolve_secrets)

