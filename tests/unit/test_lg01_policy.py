"""LG-01's policy keys: checked at load, handed to the models as typed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from extract.connectors.registry import SPECS
from soxtrail.kernel.config import parse_config
from soxtrail.kernel.errors import ConfigError


def _load(tmp_path: Path, policy: dict[str, Any]) -> dict[str, Any]:
    return parse_config({"policy": policy}, path=tmp_path / "soxtrail.yml", base_dir=tmp_path,
                        specs=SPECS).policy


def test_lg01_policy_loads_as_written(tmp_path: Path) -> None:
    policy = {"lg01_restart_resets_settings": True, "lg01_silence_limit_hours": 36.5}
    assert _load(tmp_path, policy) == policy
    assert _load(tmp_path, {"lg01_silence_limit_hours": None}) == {
        "lg01_silence_limit_hours": None}  # null: the rule is off


@pytest.mark.parametrize("value", [0, -2, "48", True, float("nan"), float("inf")])
def test_a_silence_limit_that_is_not_a_positive_number_is_refused(
        tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"policy\.lg01_silence_limit_hours: expected a "
                                          r"number of hours > 0"):
        _load(tmp_path, {"lg01_silence_limit_hours": value})


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_restart_resets_settings_must_be_a_boolean(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigError, match=r"policy\.lg01_restart_resets_settings: expected "
                                          r"true or false"):
        _load(tmp_path, {"lg01_restart_resets_settings": value})
