"""Sign-off and the official run: `soxtrail signoff` on real demo runs (real CLI, real
PostgreSQL, keys from render.signing.generate_signing_key), segregation of duties, the
official run in `soxtrail runs`, and `verify` failing a forged, an out-of-date and a
self-reviewed attestation.

The whole cycle runs once in a module fixture (each step depends on the one before: the
official run moves as reviewers sign); the tests read what it recorded."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from trestle.oscal.assessment_results import AssessmentResults

from extract.demo import generate
from render.signing import generate_signing_key
from soxtrail.audit import oscal, verify
from soxtrail.kernel.database import Database
from soxtrail.kernel.quarter import Quarter
from tests.support.cli import Result, soxtrail
from tests.support.tamper import append_only_off

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

RUNNER = "ci-runner"  # the pipeline's login (sox_runs.triggered_by, sox_evidence.executed_by)
PEOPLE = ("alice", "bob", "carol", "dave")


def _attest_verdicts(db: Database, run_id: str) -> list[verify.Verdict]:
    with verify.connect_read_only(db) as conn:
        return verify.verify_run(conn, run_id, kinds=("attest",)).verdicts


def _failed(verdicts: list[verify.Verdict]) -> list[str]:
    return [v.line() for v in verdicts if v.failed]


@pytest.fixture(scope="module")
def cycle(pg_database: Database, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    estate = tmp_path_factory.mktemp("estate")
    generate(estate, Quarter.parse("2024Q3"))
    keys = tmp_path_factory.mktemp("keys")
    fingerprints = {p: generate_signing_key(keys / f"{p}.pem") for p in PEOPLE}
    for person in PEOPLE:  # the public halves, as a person hands them in
        pub = subprocess.run(["openssl", "pkey", "-in", str(keys / f"{person}.pem"), "-pubout"],
                             capture_output=True, check=True).stdout
        (estate / f"{person}.pub").write_bytes(pub)
    signers = ("version: 1\nsigners:\n"
               "  alice: {public_key: alice.pub}\n"
               f"  bob: {{fingerprint: {fingerprints['bob']}}}\n"
               "  carol: {public_key: carol.pub}\n"
               f"  dave: {{public_key: dave.pub, logins: [{RUNNER}]}}\n")
    (estate / "signers.yml").write_text(signers)
    config = estate / "soxtrail.yml"  # the demo's names signers.yml: now these people
    assert "\nsigners: signers.yml\n" in config.read_text()
    plain = estate / "soxtrail-unsigned-off.yml"  # the same estate without signers.yml
    plain.write_text(config.read_text().replace("\nsigners: signers.yml\n", "\n"))
    home = tmp_path_factory.mktemp("home")
    env = {"BUILD_USER_ID": RUNNER}

    def cli(*args: str) -> Result:
        return soxtrail(*args, home=home, database_url=pg_database.dsn, env=env)

    def key(person: str) -> str:
        return str(keys / f"{person}.pem")

    got: dict[str, Any] = {"fingerprints": fingerprints, "estate": estate}
    first = cli("run", "--quarter", "2024Q3", "--config", str(config), "--json")
    assert first.code == 0, first.stderr
    run1 = got["run1"] = first.json()["run_id"]
    got["runs_before"] = cli("runs", "--json").json()

    got["prepare"] = cli("signoff", run1, "--as", "alice", "--role", "preparer",
                         "--comment", "prepared, exceptions explained", "--key", key("alice"),
                         "--json")
    got["self_review_preparer"] = cli("signoff", run1, "--as", "alice", "--role", "reviewer",
                                      "--key", key("alice"))
    got["self_review_runner"] = cli("signoff", run1, "--as", "dave", "--role", "reviewer",
                                    "--key", key("dave"))
    got["wrong_key"] = cli("signoff", run1, "--as", "bob", "--role", "reviewer",
                           "--key", key("carol"))
    got["not_listed"] = cli("signoff", run1, "--as", "mallory", "--role", "reviewer",
                            "--key", key("carol"))
    got["wrong_manifest"] = cli("signoff", run1, "--as", "bob", "--role", "reviewer",
                                "--key", key("bob"), "--manifest-sha256", "0" * 64)
    with verify.connect_read_only(pg_database) as conn:
        run = verify.runs.get_run(conn, run1)
        conn.commit()
    manifest = Path(verify.run_store(run).location(f"2024Q3/{run1}/bundle/MANIFEST.sha256"))
    got["manifest1"] = hashlib.sha256(manifest.read_bytes()).hexdigest()
    got["review"] = cli("signoff", run1, "--as", "bob", "--role", "reviewer", "--key", key("bob"),
                        "--manifest-sha256", got["manifest1"], "--json")
    got["runs_reviewed"] = cli("runs", "--json").json()
    got["verify_ok"] = _attest_verdicts(pg_database, run1)
    got["verify_cli"] = cli("verify", run1, "--allow-unsigned", "--json")
    with pg_database.connect() as conn:
        got["oscal"] = oscal.assessment_results(conn, run1)

    # tampering, each undone before the next
    review = got["review"].json()
    with append_only_off(pg_database, "soxtrail.sox_attestations") as conn:
        conn.execute("update soxtrail.sox_attestations set signer = 'carol' where id = %s",
                     (review["attestation_id"],))
        got["forged_row"] = _attest_verdicts(pg_database, run1)
        conn.execute("update soxtrail.sox_attestations set signer = 'bob' where id = %s",
                     (review["attestation_id"],))
    path = Path(review["file"])
    original = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original.replace(b'"signer": "bob"', b'"signer": "carol"'))
    got["forged_file"] = _attest_verdicts(pg_database, run1)
    path.write_bytes(original)
    got["restored"] = _attest_verdicts(pg_database, run1)
    # bob turns out to be the pipeline's login: his review is a self-review
    (estate / "signers.yml").write_text(signers.replace(
        f"  bob: {{fingerprint: {fingerprints['bob']}}}",
        f"  bob: {{fingerprint: {fingerprints['bob']}, logins: [{RUNNER}]}}"))
    got["self_review_found"] = _attest_verdicts(pg_database, run1)
    (estate / "signers.yml").write_text(signers)

    # a second run of the quarter, without signers.yml: a draft until signed off
    second = cli("run", "--quarter", "2024Q3", "--config", str(plain), "--json")
    assert second.code == 0, second.stderr
    run2 = got["run2"] = second.json()["run_id"]
    got["runs_second"] = cli("runs", "--json").json()
    got["unauth_runner"] = cli("signoff", run2, "--as", RUNNER, "--role", "reviewer")
    got["supersede"] = cli("signoff", run2, "--as", "carol", "--role", "reviewer", "--json")
    got["runs_superseded"] = cli("runs", "--json").json()
    got["verify_unauth"] = _attest_verdicts(pg_database, run2)
    # a new bundle version after the sign-off: the attestation is out of date
    new_version = cli("bundle", "--run", run2, "--new-version", "--reason", "typo fixed")
    assert new_version.code == 0, new_version.stderr
    got["verify_stale"] = _attest_verdicts(pg_database, run2)
    got["stale_pin"] = cli("signoff", run2, "--as", "carol", "--role", "reviewer",
                           "--manifest-sha256", got["supersede"].json()["manifest_sha256"])
    return got


def _by_id(listing: list[dict[str, Any]]) -> dict[str, str | None]:
    return {r["run_id"]: r["signoff"] for r in listing}


def test_preparer_signoff_is_signed_chained_and_stored_beside_the_bundle(
        cycle: dict[str, Any], pg_database: Database) -> None:
    result = cycle["prepare"]
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["authenticated"] is True
    assert doc["key_fingerprint"] == cycle["fingerprints"]["alice"]
    assert doc["manifest_sha256"] == cycle["manifest1"]
    stored = Path(doc["file"])
    assert stored.name == "1-preparer-alice.json"
    assert stored.parent.name == "attestations" and stored.parent.parent.name == cycle["run1"]
    assert not (stored.parent.parent / "bundle" / "attestations").exists()  # never in the bundle
    body = json.loads(stored.read_bytes())
    assert body["comment"] == "prepared, exceptions explained"
    assert body["manifest_sha256"] == cycle["manifest1"]
    # the auditor's offline check: openssl, the signer's own public key from signers.yml
    check = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                            str(cycle["estate"] / "alice.pub"), "-rawin", "-in", str(stored),
                            "-sigfile", f"{stored}.sig"], capture_output=True, text=True)
    assert check.returncode == 0 and "Signature Verified Successfully" in check.stdout
    wrong = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey",
                            str(cycle["estate"] / "bob.pub"), "-rawin", "-in", str(stored),
                            "-sigfile", f"{stored}.sig"], capture_output=True, text=True)
    assert wrong.returncode != 0
    with pg_database.connect() as conn:
        rows = conn.execute("select prev_hash, chain_hash, document from "
                            "soxtrail.sox_attestations order by seq").fetchall()
    assert rows[0][0] == "0" * 64
    assert rows[0][1] == hashlib.sha256(f"{rows[0][0]}|{rows[0][2]}".encode()).hexdigest()
    assert rows[1][0] == rows[0][1]


@pytest.mark.parametrize("step, words", [
    ("self_review_preparer", "is alice's, who prepared it"),
    ("self_review_runner", f"as login {RUNNER}"),
    ("wrong_key", "not bob's key"),
    ("not_listed", "mallory is not in"),
    ("wrong_manifest", "you reviewed MANIFEST.sha256 " + "0" * 64),
])
def test_signoff_refuses(cycle: dict[str, Any], step: str, words: str) -> None:
    result = cycle[step]
    assert result.code == 2, (result.stdout, result.stderr)
    assert words in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


def test_refused_signoffs_record_nothing(cycle: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        rows = conn.execute("select run_id::text, role, signer from soxtrail.sox_attestations"
                            " order by seq").fetchall()
    assert rows == [(cycle["run1"], "preparer", "alice"), (cycle["run1"], "reviewer", "bob"),
                    (cycle["run2"], "reviewer", "carol")]


def test_the_reviewed_run_is_official_and_a_later_run_a_draft(cycle: dict[str, Any]) -> None:
    run1, run2 = cycle["run1"], cycle["run2"]
    assert _by_id(cycle["runs_before"])[run1] == "draft"
    assert _by_id(cycle["runs_reviewed"])[run1] == "official"
    assert _by_id(cycle["runs_second"]) == {run1: "official", run2: "draft"}
    assert _by_id(cycle["runs_superseded"]) == {run1: "draft", run2: "official"}


def test_a_later_review_supersedes_and_says_so(cycle: dict[str, Any]) -> None:
    result = cycle["supersede"]
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["supersedes"]["run_id"] == cycle["run1"]
    assert doc["supersedes"]["attestation_id"] == cycle["review"].json()["attestation_id"]
    assert doc["authenticated"] is False  # no signers.yml in run 2's config


def test_unauthenticated_signoff_still_compares_names(cycle: dict[str, Any]) -> None:
    result = cycle["unauth_runner"]
    assert result.code == 2
    assert "ran the pipeline" in result.stderr
    lines = [v.line() for v in cycle["verify_unauth"]]
    assert not _failed(cycle["verify_unauth"]), lines
    assert any("unauthenticated" in line for line in lines), lines


def test_verify_passes_a_good_signoff(cycle: dict[str, Any]) -> None:
    verdicts = cycle["verify_ok"]
    assert not _failed(verdicts), [v.line() for v in verdicts]
    oks = [v.line() for v in verdicts if v.status == "OK"]
    assert any("Ed25519 signature by bob" in line for line in oks)
    assert any("the key is bob's" in line for line in oks)
    assert any("segregation of duties" in line for line in oks)
    assert any("the newest bundle version" in line for line in oks)
    assert not _failed(cycle["restored"])
    report = cycle["verify_cli"].json()
    attest = [c for c in report["checks"] if c["kind"] == "attest"]
    assert attest and all(c["status"] in ("OK", "NOTE") for c in attest), attest


def test_verify_fails_a_forged_row(cycle: dict[str, Any]) -> None:
    failed = " ".join(_failed(cycle["forged_row"]))
    assert "the row differs from its signed document: signer" in failed


def test_verify_fails_a_forged_file(cycle: dict[str, Any]) -> None:
    failed = " ".join(_failed(cycle["forged_file"]))
    assert "differs from the database's document" in failed


def test_verify_fails_a_self_review(cycle: dict[str, Any]) -> None:
    failed = " ".join(_failed(cycle["self_review_found"]))
    assert "self-review" in failed and f"login {RUNNER}" in failed


def test_verify_fails_an_out_of_date_attestation(cycle: dict[str, Any]) -> None:
    failed = " ".join(_failed(cycle["verify_stale"]))
    assert "out of date: attests bundle version 1, the run's newest is 2" in failed
    assert cycle["stale_pin"].code == 2
    assert "bundle-v2" in cycle["stale_pin"].stderr


def test_oscal_carries_the_attestations(cycle: dict[str, Any], tmp_path: Path) -> None:
    document = cycle["oscal"]["assessment-results"]
    attestations = document["results"][0]["attestations"]
    roles = sorted(a["responsible-parties"][0]["role-id"] for a in attestations)
    assert roles == ["preparer", "reviewer"]
    parties = {p["uuid"]: p["name"] for p in document["metadata"]["parties"]}
    names = sorted(parties[a["responsible-parties"][0]["party-uuids"][0]] for a in attestations)
    assert names == ["alice", "bob"]
    props = {p["name"]: p["value"] for a in attestations for p in a["parts"][0]["props"]}
    assert props["manifest-sha256"] == cycle["manifest1"]
    path = tmp_path / "assessment-results.json"
    path.write_text(oscal.to_json(cycle["oscal"]))
    model = AssessmentResults.oscal_read(path)  # validates the attestations and parties
    assert isinstance(model, AssessmentResults)
    assert len(model.results[0].attestations or []) == 2


@pytest.mark.parametrize("statement", [
    "update soxtrail.sox_attestations set comment = 'edited'",
    "delete from soxtrail.sox_attestations",
    "truncate soxtrail.sox_attestations",
])
def test_attestations_are_append_only(cycle: dict[str, Any], pg_database: Database,
                                      statement: str) -> None:
    with pg_database.connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege,
                                                      match="append-only"):
        conn.execute(statement)  # type: ignore[arg-type]


def test_the_chain_trigger_refuses_a_row_that_is_not_its_document(
        cycle: dict[str, Any], pg_database: Database) -> None:
    with pg_database.connect() as conn:
        row = conn.execute("select * from soxtrail.sox_attestations order by seq limit 1"
                           ).fetchone()
        assert row is not None
        doc = json.loads(conn.execute("select document from soxtrail.sox_attestations"
                                      " order by seq limit 1").fetchone()[0])  # type: ignore[index]
        doc["id"] = "00000000-0000-4000-8000-000000000001"
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="differ from its document"):
            conn.execute(
                "insert into soxtrail.sox_attestations (id, run_id, quarter, ordinal, role,"
                " signer, signed_at, manifest_sha256, bundle_version, authenticated, document,"
                " store_key) values (%s, %s, '2024Q3', 99, 'reviewer', 'bob', now(), %s, 1,"
                " true, %s, 'x')",
                (doc["id"], cycle["run1"], doc["manifest_sha256"], json.dumps(doc)))
