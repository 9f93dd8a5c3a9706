"""`engine:` and `spark:` in soxtrail.yml, SOXTRAIL_ENGINE, and what a run records."""

from __future__ import annotations

from pathlib import Path

import pytest

from extract.connectors.registry import SPECS
from soxtrail.kernel.config import Config, load_config
from soxtrail.kernel.errors import ConfigError


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "soxtrail.yml"
    path.write_text("version: 1\n" + text, encoding="utf-8")
    return load_config(path, specs=SPECS)


def test_the_default_engine_is_postgres(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOXTRAIL_ENGINE", raising=False)
    config = _load(tmp_path, "")
    assert (config.engine, config.spark) == ("postgres", {})


def test_engine_spark_with_its_settings_the_warehouse_made_absolute(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOXTRAIL_ENGINE", raising=False)
    config = _load(tmp_path, "engine: spark\nspark:\n  master: spark://h:7077\n"
                             "  warehouse: wh\n  conf: {spark.executor.memory: 4g}\n")
    assert config.engine == "spark"
    assert config.spark == {"master": "spark://h:7077", "warehouse": str(tmp_path / "wh"),
                            "conf": {"spark.executor.memory": "4g"}}


def test_soxtrail_engine_overrides_the_file(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_ENGINE", "spark")
    assert _load(tmp_path, "engine: postgres\n").engine == "spark"


@pytest.mark.parametrize(("text", "message"), [
    ("engine: duckdb\n", r"soxtrail\.yml.*engine.*'duckdb' is not an engine"),
    ("spark: local\n", r"spark.*expected a mapping"),
    ("spark: {cores: 4}\n", r"spark\.cores.*unknown key.*conf, master, warehouse"),
    ("spark: {master: 4}\n", r"spark\.master.*expected text"),
    ("spark: {conf: [a]}\n", r"spark\.conf.*expected a mapping"),
])
def test_bad_engine_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       text: str, message: str) -> None:
    monkeypatch.delenv("SOXTRAIL_ENGINE", raising=False)
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_a_bad_soxtrail_engine_is_named(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOXTRAIL_ENGINE", "oracle")
    with pytest.raises(ConfigError, match=r"SOXTRAIL_ENGINE: 'oracle' is not an engine"):
        _load(tmp_path, "")
