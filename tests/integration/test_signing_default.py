"""Signing on by default (issue 20): the first run on a machine without SOXTRAIL_SIGNING_KEY
creates the machine's own key (0600) and signs with it, later runs reuse it; under CI the run
stops without SOXTRAIL_SIGNING_KEY unless --no-sign; `verify` fails an unsigned bundle
unless --allow-unsigned, and with --public-key refuses another key."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from extract.demo import generate
from render import signing
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.support.cli import Result, soxtrail

pytestmark = pytest.mark.integration

QUARTER = "2024Q3"
CLUSTER = "pg-fin-01"  # one cluster keeps the runs cheap


@dataclass
class Machine:
    root: Path
    home: Path
    config: Path
    db: Database

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return soxtrail(*args, home=self.home, database_url=self.db.dsn, env=env)

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return self.cli("run", "--quarter", QUARTER, "--config", str(self.config),
                        "--clusters", CLUSTER, "--quiet", *args, env=env)

    def runs(self) -> int:
        with self.db.connect() as conn:
            row = conn.execute("select count(*) from soxtrail.sox_runs").fetchone()
        assert row is not None
        return int(row[0])

    def signing(self, run_id: str) -> Any:
        with self.db.connect() as conn:
            row = conn.execute("select config -> '_signing' from soxtrail.sox_runs "
                               "where id = %s", (run_id,)).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture(scope="module")
def machine(pg_database: Database, tmp_path_factory: pytest.TempPathFactory) -> Machine:
    root = tmp_path_factory.mktemp("signing")
    generate(root / "demo", Quarter.parse(QUARTER))
    return Machine(root, root / "home", root / "demo" / "soxtrail.yml", pg_database)


def _run_id(result: Result) -> str:
    assert result.code == 0, result.stdout + result.stderr
    return next(line.split()[-1] for line in result.stdout.splitlines()
                if line.startswith("run id:"))


@pytest.fixture(scope="module")
def auto_signed(machine: Machine) -> tuple[str, Result]:
    """The machine's first run: no SOXTRAIL_SIGNING_KEY, not in CI."""
    result = machine.run()
    return _run_id(result), result


def test_the_first_run_creates_the_machine_key_signs_with_it_and_says_so(
        machine: Machine, auto_signed: tuple[str, Result]) -> None:
    run_id, result = auto_signed
    key = machine.home / "keys" / "signing-key.pem"
    public = machine.home / "keys" / "signing-key.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    fingerprint = signing.fingerprint(signing.load_private_key(key).public_key())
    assert signing.fingerprint(signing.load_public_key(public.read_bytes(), "pub")) == fingerprint
    created = [line for line in result.stderr.splitlines() if "signing key" in line]
    assert len(created) == 1, result.stderr
    assert str(key) in result.stderr and str(public) in result.stderr
    assert fingerprint in result.stderr
    assert f"signing: Ed25519, key fingerprint {fingerprint}" in result.stdout
    assert machine.signing(run_id) == {"signed": True, "key": "local",
                                       "fingerprint": fingerprint}
    bundle = machine.home / "store" / QUARTER / run_id / "bundle"
    assert (bundle / "MANIFEST.sha256.sig").is_file() and not (bundle / "UNSIGNED").exists()
    assert (bundle / "signing-key.fingerprint").read_text().strip() == fingerprint


def test_a_later_run_reuses_the_key_even_under_ci_given_it_as_the_signing_key(
        machine: Machine, auto_signed: tuple[str, Result]) -> None:
    key = machine.home / "keys" / "signing-key.pem"
    pem = key.read_bytes()
    second = machine.run()
    assert "created this machine's signing key" not in second.stderr
    first_print = machine.signing(auto_signed[0])["fingerprint"]
    assert machine.signing(_run_id(second))["fingerprint"] == first_print
    in_ci = machine.run(env={"CI": "true", "SOXTRAIL_SIGNING_KEY": str(key)})
    assert machine.signing(_run_id(in_ci)) == {"signed": True, "key": "SOXTRAIL_SIGNING_KEY",
                                               "fingerprint": first_print}
    assert key.read_bytes() == pem


def test_verify_names_the_key_and_refuses_another_public_key(
        machine: Machine, auto_signed: tuple[str, Result]) -> None:
    run_id = auto_signed[0]
    fingerprint = machine.signing(run_id)["fingerprint"]
    pinned = machine.cli("verify", run_id, "--public-key",
                         str(machine.home / "keys" / "signing-key.pub"))
    assert pinned.code == 0, pinned.stdout + pinned.stderr
    assert f"Ed25519, key fingerprint {fingerprint}" in pinned.stdout
    unpinned = machine.cli("verify", run_id)
    assert unpinned.code == 0, unpinned.stdout + unpinned.stderr
    assert fingerprint in unpinned.stderr  # the WARNING names the bundle's own key
    other = machine.root / "other.pem"
    other_print = signing.generate_signing_key(other)
    other_pub = machine.root / "other.pub"
    other_pub.write_bytes(signing.public_key_pem(signing.load_private_key(other).public_key()))
    refused = machine.cli("verify", run_id, "--public-key", str(other_pub), "--json")
    assert refused.code == 1, refused.stdout + refused.stderr
    failed = [c for c in refused.json()["checks"] if c["status"] == "FAIL"]
    assert any(c["subject"] == "signing-key.pub" and fingerprint in c["detail"]
               and other_print in c["detail"] for c in failed), failed


def test_under_ci_without_a_key_the_run_stops_before_doing_anything(
        machine: Machine, tmp_path: Path) -> None:
    fresh = Machine(tmp_path, tmp_path / "home", machine.config, machine.db)
    before = fresh.runs()
    for value in ("true", "1"):
        result = fresh.run(env={"CI": value})
        assert result.code == 2, result.stdout + result.stderr
        assert "SOXTRAIL_SIGNING_KEY" in result.stderr and "--no-sign" in result.stderr
    assert fresh.runs() == before
    assert not (fresh.home / "keys").exists()


def test_no_sign_runs_unsigned_under_ci_and_verify_fails_it_unless_allowed(
        machine: Machine, tmp_path: Path) -> None:
    fresh = Machine(tmp_path, tmp_path / "home", machine.config, machine.db)
    result = fresh.run("--no-sign", env={"CI": "true"})
    run_id = _run_id(result)
    assert not (fresh.home / "keys").exists()
    assert fresh.signing(run_id) == {"signed": False, "fingerprint": None, "key": "--no-sign"}
    assert "signing: unsigned (--no-sign)" in result.stdout
    bundle = fresh.home / "store" / QUARTER / run_id / "bundle"
    assert (bundle / "UNSIGNED").is_file() and not (bundle / "MANIFEST.sha256.sig").exists()
    failed = fresh.cli("verify", run_id, "--json")
    assert failed.code == 1, failed.stdout + failed.stderr
    doc = failed.json()
    assert not doc["passed"]
    assert [(c["status"], c["subject"]) for c in doc["checks"]
            if c["status"] not in ("OK", "NOTE")] == [("UNSIGNED", "MANIFEST.sha256.sig")]
    allowed = fresh.cli("verify", run_id, "--allow-unsigned")
    assert allowed.code == 0, allowed.stdout + allowed.stderr
    assert any(line.startswith("UNSIGNED") for line in allowed.stdout.splitlines())
    assert "PASSED" in allowed.stdout.splitlines()[-1]
    required = fresh.cli("verify", run_id, "--require-signature")  # still accepted
    assert required.code == 1
    both = fresh.cli("verify", run_id, "--allow-unsigned", "--require-signature")
    assert both.code == 2 and "contradict" in both.stderr
