"""Connector names to their modules (imported on first use)."""

from __future__ import annotations

import importlib
from types import ModuleType

from soxtrail.errors import ConfigError

CONNECTORS: dict[str, str] = {
    "pgaudit_log": "extract.pgaudit_log",
    "postgres_catalog": "extract.postgres_catalog",
    "aws_cloudtrail": "extract.aws_cloudtrail",
    "okta_system_log": "extract.okta_system_log",
    "jira": "extract.jira",
    "servicenow": "extract.servicenow",
    "pgbackrest_info": "extract.pgbackrest_info",
    "aws_backup": "extract.aws_backup",
    "file": "extract.file",
    "catalog_file": "extract.catalog_file",
}


def connector_module(name: str, where: str = "") -> ModuleType:
    """The module implementing connector `name`."""
    if name not in CONNECTORS:
        known = ", ".join(sorted(k for k in CONNECTORS if k != "catalog_file"))
        raise ConfigError(f"{where}unknown connector {name!r} (known: {known})")
    return importlib.import_module(CONNECTORS[name])
