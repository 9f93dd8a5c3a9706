from __future__ import annotations

from pathlib import Path

import pytest

from extract.connectors.registry import SPECS
from soxtrail.kernel.config import load_config
from soxtrail.kernel.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "soxtrail.yml"
    path.write_text(text)
    return path


def test_an_unknown_top_level_key_names_the_key_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "sorces: []\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, specs=SPECS)
    assert "sorces" in str(info.value) and str(path) in str(info.value)


def test_an_unknown_connector_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "sources:\n  - {name: x, system: iam, connector: ldap}\n")
    with pytest.raises(ConfigError,
                       match=r"sources\[0\] \(x\)\.connector: unknown connector 'ldap'"):
        load_config(path, specs=SPECS)


def test_an_unknown_policy_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "policy:\n  revocation_sla_hourz: 4\n")
    with pytest.raises(ConfigError, match=r"policy\.revocation_sla_hourz"):
        load_config(path, specs=SPECS)


def test_invalid_yaml_is_a_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "sources: [\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path, specs=SPECS)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml", specs=SPECS)


def test_catalogs_default_to_the_shipped_seeds_and_resolve_relative_paths(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "catalogs:\n  role_catalog: mine/roles.csv\n"),
                         specs=SPECS)
    assert config.catalogs["role_catalog"] == tmp_path / "mine" / "roles.csv"
    assert config.catalogs["applications"].name == "applications.csv"
    assert config.catalogs["applications"].parent.name == "seeds"
