"""The bundle phase signs as the run recorded when it started (phases.check_signing): the
machine's own key or SOXTRAIL_SIGNING_KEY when the run recorded that key's fingerprint,
nothing for a run started with --no-sign, and a clear refusal for another key or none."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from render import signing
from soxtrail.kernel.errors import PipelineError
from soxtrail.pipeline.context import Pipeline
from soxtrail.pipeline.phases import check_signing

RUN_ID = "6f1c1b8e-0000-4000-8000-000000000001"


def _pipeline(record: Any) -> Pipeline:
    run = SimpleNamespace(id=RUN_ID, config={} if record is None else {"_signing": record})
    return cast(Pipeline, SimpleNamespace(run=run))


@pytest.fixture()
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOXTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SOXTRAIL_SIGNING_KEY", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return tmp_path / "home"


def test_a_run_started_with_the_machine_key_is_bundled_with_it(machine: Path) -> None:
    record = signing.signing_record()
    assert check_signing(_pipeline(record)) == machine / "keys" / "signing-key.pem"


def test_a_run_started_with_no_sign_is_bundled_unsigned_whatever_the_keys(
        machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signing.ensure_local_key()
    signing.generate_signing_key(tmp_path / "team.pem")
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(tmp_path / "team.pem"))
    assert check_signing(_pipeline(signing.signing_record(no_sign=True))) is None


def test_another_key_is_refused_naming_both_fingerprints(
        machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = signing.signing_record()
    other = signing.generate_signing_key(tmp_path / "team.pem")
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(tmp_path / "team.pem"))
    with pytest.raises(PipelineError, match="point SOXTRAIL_SIGNING_KEY at the key") as caught:
        check_signing(_pipeline(record))
    assert record["fingerprint"] in str(caught.value) and other in str(caught.value)
    assert f"soxtrail resume {RUN_ID}" in str(caught.value)


def test_no_key_at_all_is_refused(machine: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    record = signing.signing_record()
    monkeypatch.setenv("SOXTRAIL_HOME", str(tmp_path / "elsewhere"))  # another machine
    with pytest.raises(PipelineError, match="SOXTRAIL_SIGNING_KEY is not set"):
        check_signing(_pipeline(record))


def test_a_run_from_before_the_record_signs_with_the_environment_key_only(
        machine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signing.ensure_local_key()
    assert check_signing(_pipeline(None)) is None
    monkeypatch.setenv("SOXTRAIL_SIGNING_KEY", str(tmp_path / "team.pem"))
    assert check_signing(_pipeline(None)) == tmp_path / "team.pem"
