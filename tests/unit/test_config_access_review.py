"""`access_review:` and the access review's policy vars in soxtrail.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from extract.connectors.registry import SPECS
from soxtrail.kernel.config import REPO_ROOT, Config, load_config, policy_value
from soxtrail.kernel.errors import ConfigError
from soxtrail.pipeline.context import access_review_sources


def _load(tmp_path: Path, text: str) -> Config:
    path = tmp_path / "soxtrail.yml"
    path.write_text("version: 1\n" + text, encoding="utf-8")
    return load_config(path, specs=SPECS)


def test_access_review_names_a_folder_that_becomes_the_runs_review_source(
        tmp_path: Path) -> None:
    config = _load(tmp_path, "access_review: reviews/{quarter}\n")
    (source,) = access_review_sources(config)
    assert (source.name, source.system, source.connector) == (
        "access_review", "access_review", "access_review")
    assert source.get("path") == "reviews/{quarter}"
    assert source.base_dir == tmp_path


def test_without_access_review_the_run_has_no_review_source(tmp_path: Path) -> None:
    assert access_review_sources(_load(tmp_path, "")) == []


def test_access_review_must_be_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"soxtrail\.yml.*access_review.*folder path"):
        _load(tmp_path, "access_review: [a, b]\n")


def test_the_review_deadline_is_a_date_kept_as_its_iso_text(tmp_path: Path) -> None:
    config = _load(tmp_path, "policy:\n  access_review_deadline: 2024-09-25\n")
    assert config.policy["access_review_deadline"] == "2024-09-25"
    config = _load(tmp_path, "policy:\n  access_review_deadline: null\n")
    assert config.policy["access_review_deadline"] is None


@pytest.mark.parametrize(("text", "message"), [
    ("access_review_deadline: 'next friday'", "expected a date"),
    ("access_review_deadline: 2024-09-25T10:00:00Z", "expected a date"),
    ("access_review_removal_grace_days: -1", "expected a whole number of days >= 0"),
    ("access_review_removal_grace_days: 1.5", "expected a whole number of days >= 0"),
    ("access_review_due_days: -3", "expected a whole number of days >= 0"),
    ("access_review_due_days: '30'", "expected a whole number of days >= 0"),
])
def test_bad_review_policy_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"policy\.{text.split(':')[0]}.*{message}"):
        _load(tmp_path, f"policy:\n  {text}\n")


def test_a_policy_default_is_read_from_the_one_place_dbt_applies_it(tmp_path: Path) -> None:
    project = yaml.safe_load((REPO_ROOT / "dbt_project.yml").read_text())["vars"]
    assert policy_value({}, "access_review_due_days") == project["access_review_due_days"] == 30
    assert policy_value({"policy": {"access_review_due_days": 0}}, "access_review_due_days") == 0
    config = _load(tmp_path, "policy:\n  access_review_due_days: 45\n")
    assert config.policy["access_review_due_days"] == 45
