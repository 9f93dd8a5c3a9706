"""The settings capture of each demo catalog export (LG-01's known point): `settings.csv`, the
output of extract/connectors/queries/catalog_settings.sql as psql `--csv` writes it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from extract.demo.plan_completeness import catalog_captured_at
from extract.demo.writers.catalogs import csv_text

if TYPE_CHECKING:
    from extract.demo.plan import Plan

_FILENAME = "postgresql-%Y-%m-%d_%H%M%S.log"


def write_server_settings(plan: Plan, folder: Path) -> None:
    """Per cluster, `catalog/<cluster>/settings.csv`, taken with the catalog export."""
    for c in plan.clusters:
        taken = catalog_captured_at(plan, c.name).strftime("%Y-%m-%d %H:%M:%S.000000+00")
        rotation = plan.log_rotation_days.get(c.name, 7) * 1440
        rows = [  # (name, setting, unit, source), in the query's order (by name)
            ("log_destination", c.fmt, None, "configuration file"),
            ("log_filename", _FILENAME, None, "configuration file"),
            ("log_line_prefix", c.prefix or "%m [%p] ", None,
             "configuration file" if c.prefix else "default"),
            ("log_min_messages", "warning", None, "default"),
            ("log_rotation_age", str(rotation), "min", "configuration file"),
            ("log_timezone", "UTC", None, "configuration file"),
            ("logging_collector", "on", None, "configuration file"),
            ("pgaudit.log", plan.pgaudit_log, None, "configuration file"),
            ("pgaudit.log_level", "log", None, "default"),
            ("pgaudit.log_parameter", "off", None, "default"),
            ("pgaudit.log_relation", "off", None, "default"),
            ("shared_preload_libraries", "pgaudit", None, "configuration file"),
        ]
        sub = folder / c.name
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "settings.csv").write_text(csv_text(
            ["captured_at", "name", "setting", "unit", "source", "pending_restart"],
            ((taken, name, setting, unit or "", source, "f")
             for name, setting, unit, source in rows)))
