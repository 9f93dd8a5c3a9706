"""Connector names to their modules (imported on first use)."""

from __future__ import annotations

import importlib
from types import ModuleType

from soxtrail.kernel.errors import ConfigError

CONNECTORS: dict[str, str] = {
    "pgaudit_log": "extract.connectors.pgaudit_log",
    "postgres_catalog": "extract.connectors.postgres_catalog",
    "aws_cloudtrail": "extract.connectors.aws_cloudtrail",
    "okta_system_log": "extract.connectors.okta_system_log",
    "jira": "extract.connectors.jira",
    "servicenow": "extract.connectors.servicenow",
    "pgbackrest_info": "extract.connectors.pgbackrest_info",
    "aws_backup": "extract.connectors.aws_backup",
    "file": "extract.connectors.file",
    "catalog_file": "extract.connectors.catalog_file",
}


def connector_module(name: str, where: str = "") -> ModuleType:
    """The module implementing connector `name`."""
    if name not in CONNECTORS:
        known = ", ".join(sorted(k for k in CONNECTORS if k != "catalog_file"))
        raise ConfigError(f"{where}unknown connector {name!r} (known: {known})")
    return importlib.import_module(CONNECTORS[name])
