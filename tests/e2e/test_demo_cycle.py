"""The demo's management cycle as `make quarter` runs it: after the run, the demo estate's
preparer and reviewer (its signers.yml, its DEMO keys) sign the run off (`make
demo-signoff`), which makes it the quarter's official run; verify checks both attestations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from soxtrail.audit import verify
from tests.support.cli import REPO, soxtrail
from tests.support.demo_quarter import DemoRun

pytestmark = pytest.mark.e2e


def _make(*args: str, run: DemoRun) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "SOXTRAIL_SIGNOFF_KEY")}
    env.update(SOXTRAIL_HOME=str(run.home), SOXTRAIL_DATABASE_URL=run.db.dsn)
    return subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args,
                           f"BIN={Path(sys.executable).parent}"],
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_demo_ships_its_signers_and_their_keys(demo_run: DemoRun) -> None:
    config = yaml.safe_load(demo_run.config.read_text())
    assert config["signers"] == "signers.yml"
    signers = yaml.safe_load((demo_run.demo / "signers.yml").read_text())["signers"]
    assert set(signers) == {"pat.preparer", "rita.reviewer"}
    for name in signers:
        key = demo_run.demo / "keys" / f"{name}.pem"
        assert key.stat().st_mode & 0o777 == 0o600
        assert (demo_run.demo / signers[name]["public_key"]).is_file()


def test_make_demo_signoff_makes_the_run_official_and_verify_checks_it(
        demo_run: DemoRun) -> None:
    before = soxtrail("runs", "--json", home=demo_run.home, database_url=demo_run.db.dsn)
    assert [r["signoff"] for r in before.json() if r["run_id"] == demo_run.run_id] == ["draft"]

    made = _make("demo-signoff", "Q=2024Q3", f"DEMO={demo_run.demo}", run=demo_run)
    assert made.returncode == 0, made.stderr + made.stdout
    # the commands are shown as a user would type them
    assert "signoff " + demo_run.run_id + " --as pat.preparer --role preparer" in made.stderr
    assert f"official: run {demo_run.run_id} is the official run of 2024Q3" in (
        made.stdout + made.stderr)

    after = soxtrail("runs", "--json", home=demo_run.home, database_url=demo_run.db.dsn)
    assert [r["signoff"] for r in after.json() if r["run_id"] == demo_run.run_id] == [
        "official"]
    with verify.connect_read_only(demo_run.db) as conn:
        report = verify.verify_run(conn, demo_run.run_id, kinds=("attest",))
    lines = [(v.status, v.subject, v.detail) for v in report.verdicts]
    assert not report.failures(), lines
    signed_by = {detail.split(" signature by ")[1].split(",")[0]
                 for status, _, detail in lines if status == "OK" and " signature by " in detail}
    assert signed_by == {"pat.preparer", "rita.reviewer"}
    assert any(status == "OK" and "segregation of duties" in detail
               for status, _, detail in lines)


def test_make_demo_signoff_without_a_run_of_the_quarter_says_so(demo_run: DemoRun) -> None:
    made = _make("demo-signoff", "Q=2023Q1", f"DEMO={demo_run.demo}", run=demo_run)
    assert made.returncode != 0
    assert "no completed run of 2023Q1 to sign off" in made.stderr
