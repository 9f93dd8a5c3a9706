"""Connector names to their modules and specs: the one list of connectors."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from extract.connectors import (
    access_review,
    aws_backup,
    aws_cloudtrail,
    catalog_file,
    completeness,
    file,
    inclusion,
    jira,
    okta_system_log,
    pgaudit_log,
    pgbackrest_info,
    postgres_catalog,
    responses,
    servicenow,
)
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import COMPLETENESS_TABLE, INCLUDED_TABLE, ConnectorSpec, RawTable

CONNECTORS: dict[str, ModuleType] = {
    "pgaudit_log": pgaudit_log,
    "postgres_catalog": postgres_catalog,
    "aws_cloudtrail": aws_cloudtrail,
    "okta_system_log": okta_system_log,
    "jira": jira,
    "servicenow": servicenow,
    "pgbackrest_info": pgbackrest_info,
    "aws_backup": aws_backup,
    "file": file,
    "catalog_file": catalog_file,
    "responses": responses,
    "access_review": access_review,
}
# what a config's `connector:` may name (catalog_file serves the `catalogs:` files only,
# responses the `responses:` file, access_review the `access_review:` folder)
SPECS: dict[str, ConnectorSpec] = {name: module.SPEC for name, module in CONNECTORS.items()}
# the connectors of the config's own keys (`catalogs:`, `responses:`, `access_review:`)
INTERNAL = ("catalog_file", "responses", "access_review")


def connector_module(name: str, where: str = "") -> ModuleType:
    """The module implementing connector `name`."""
    if name not in CONNECTORS:
        known = ", ".join(sorted(k for k in CONNECTORS if k not in INTERNAL))
        raise ConfigError(f"{where}unknown connector {name!r} (known: {known})")
    return CONNECTORS[name]


def object_module(params: Mapping[str, Any]) -> ModuleType:
    """The module that counts and loads one captured object (its evidence row's params): a
    completeness statement's or an inclusion list's, whatever its connector, else its
    connector's."""
    if params.get("raw_table") == COMPLETENESS_TABLE:
        return completeness
    if params.get("raw_table") == INCLUDED_TABLE:
        return inclusion
    return connector_module(str(params.get("connector")))


def _raw_tables() -> dict[str, RawTable]:
    tables: dict[str, RawTable] = {**completeness.RAW_TABLES, **inclusion.RAW_TABLES}
    for name, spec in SPECS.items():
        for table, shape in spec.raw_tables.items():
            if tables.setdefault(table, shape) != shape:
                raise AssertionError(f"connector {name!r} declares {table} with another shape")
    return tables


# every raw table by name, as the connectors declare them
RAW_TABLES: dict[str, RawTable] = _raw_tables()
