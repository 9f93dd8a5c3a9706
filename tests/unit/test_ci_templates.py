"""The CI templates (Jenkinsfile, GitHub Actions) only call Makefile targets that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "soxtrail-quarter.yml"
JENKINSFILE = REPO / "Jenkinsfile"
MAKE_CALL = re.compile(r"(?<![\w./-])make\s+([a-z][a-z0-9-]*)")
SECRET_VARS = ("SOXTRAIL_DATABASE_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
               "SOXTRAIL_SIGNING_KEY")


def makefile_targets() -> set[str]:
    """Targets GNU make knows (`make -qp`), or the Makefile's `name:` rules without make."""
    if shutil.which("make"):
        proc = subprocess.run(["make", "-qp", "-f", "Makefile", "__no_such_target__"], cwd=REPO,
                              capture_output=True, text=True, timeout=60, check=False)
        targets = set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", proc.stdout, re.MULTILINE))
        if targets:
            return targets
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.MULTILINE))


def make_calls(text: str) -> list[str]:
    """The target of every `make X` in a script."""
    return MAKE_CALL.findall(text)


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def jenkinsfile() -> str:
    return JENKINSFILE.read_text(encoding="utf-8")


def _steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_the_makefile_targets_are_found() -> None:
    assert {"quarter", "test", "docs", "help"} <= makefile_targets()


def test_the_workflow_is_dispatched_with_a_quarter_and_clusters(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the bare key `on` as the boolean true (YAML 1.1)
    triggers = workflow.get("on", workflow.get(True))
    inputs = triggers["workflow_dispatch"]["inputs"]
    assert inputs["quarter"]["required"] is True
    assert "clusters" in inputs
    assert inputs["clusters"].get("required", False) is False


def test_the_workflow_runs_against_a_postgres_15_service(workflow: dict[Any, Any]) -> None:
    job = workflow["jobs"]["quarter"]
    service = job["services"]["postgres"]
    assert service["image"] == "postgres:15"
    assert "5432:5432" in service["ports"]
    assert "pg_isready" in service["options"]
    assert "127.0.0.1:5432" in job["env"]["SOXTRAIL_DATABASE_URL"]


def test_the_workflow_runs_the_quarter_and_uploads_its_artifacts(
        workflow: dict[Any, Any]) -> None:
    steps = _steps(workflow)
    commands = [step["run"] for step in steps if "run" in step]
    assert any(re.search(r'make quarter Q="\$QUARTER" CLUSTERS="\$CLUSTERS"', c)
               for c in commands)
    uploads = [step for step in steps if str(step.get("uses", "")).startswith(
        "actions/upload-artifact@")]
    assert len(uploads) == 1
    assert uploads[0]["if"] == "always()"
    assert ".soxtrail/store/" in uploads[0]["with"]["path"]


def test_the_workflow_does_its_work_only_through_make(workflow: dict[Any, Any]) -> None:
    for step in _steps(workflow):
        if "uses" in step:
            assert step["uses"].split("@")[0] in (
                "actions/checkout", "actions/setup-python", "actions/upload-artifact"), step
            continue
        script = step["run"]
        if step.get("name") == "Signing key":  # a secret text written to a file, nothing run
            assert not re.search(r"\b(soxtrail|python|dbt|pip|make)\b", script)
            continue
        assert script.strip().startswith("make "), step
        assert len(make_calls(script)) == 1, step
        # inputs reach the shell through env, never spliced into the script by the runner
        assert "${{" not in script, step


def test_the_jenkinsfile_declares_quarter_and_clusters(jenkinsfile: str) -> None:
    assert re.search(r"^pipeline \{", jenkinsfile, re.MULTILINE)
    assert re.search(r"string\(name: 'QUARTER'", jenkinsfile)
    assert re.search(r"string\(name: 'CLUSTERS'", jenkinsfile)


def test_the_jenkinsfile_stages_run_the_quarter_and_optionally_the_tests(jenkinsfile: str) -> None:
    stages = re.findall(r"stage\('([^']+)'\)", jenkinsfile)
    assert {"Test", "Quarter"} <= set(stages)
    assert 'make quarter Q="$QUARTER" CLUSTERS="$CLUSTERS"' in jenkinsfile
    test_stage = jenkinsfile[jenkinsfile.index("stage('Test')"):jenkinsfile.index(
        "stage('Quarter')")]
    assert "when {" in test_stage and "make test" in test_stage


def test_the_jenkinsfile_binds_every_secret_from_the_credential_store(jenkinsfile: str) -> None:
    for variable in SECRET_VARS:
        assert re.search(rf"[vV]ariable: '{variable}'", jenkinsfile), variable
    assert re.search(r"file\(credentialsId: '[^']+', variable: 'SOXTRAIL_SIGNING_KEY'\)",
                     jenkinsfile)
    # never a literal secret or a Groovy-interpolated one
    assert 'sh "' not in jenkinsfile


def test_the_jenkinsfile_only_runs_make(jenkinsfile: str) -> None:
    shell_steps = re.findall(r"\bsh\s+'([^']*)'", jenkinsfile)
    assert shell_steps
    for script in shell_steps:
        assert script.startswith("make "), script


def test_the_jenkinsfile_archives_the_report_and_docs(jenkinsfile: str) -> None:
    archived = re.search(r"archiveArtifacts artifacts: '([^']+)'", jenkinsfile)
    assert archived is not None
    assert "report" in archived[1] and ".soxtrail/docs/" in archived[1]


def test_every_make_target_the_templates_call_exists(workflow: dict[Any, Any],
                                                     jenkinsfile: str) -> None:
    called = set(make_calls(jenkinsfile))
    for step in _steps(workflow):
        called |= set(make_calls(step.get("run", "")))
    assert {"quarter", "test", "docs"} <= called
    unknown = called - makefile_targets()
    assert not unknown, f"the CI templates call Makefile targets that do not exist: {unknown}"


def test_make_calls_finds_targets_and_ignores_other_words() -> None:
    assert make_calls('make quarter Q="$Q"\ncmake --build .\nmake docs') == ["quarter", "docs"]
    assert make_calls("remake it") == []


CAPTURE_WORKFLOW = REPO / ".github" / "workflows" / "soxtrail-capture.yml"


def test_the_capture_workflow_runs_twice_a_month_on_the_long_lived_database() -> None:
    """AWS Backup lists ~30 days of jobs: captures at most ~16 days apart cover it; the
    quarter's run finds them only in the same database (no throwaway service)."""
    loaded = yaml.safe_load(CAPTURE_WORKFLOW.read_text(encoding="utf-8"))
    triggers = loaded.get("on", loaded.get(True))
    (cron,) = [entry["cron"] for entry in triggers["schedule"]]
    days = cron.split()[2]
    assert [int(d) for d in days.split(",")] == [1, 16]
    job = loaded["jobs"]["capture"]
    assert "services" not in job
    assert job["env"]["SOXTRAIL_DATABASE_URL"] == "${{ secrets.SOXTRAIL_DATABASE_URL }}"
    scripts = [step["run"] for step in job["steps"] if "run" in step]
    assert scripts == ['make capture Q="$QUARTER" CONFIG="$CONFIG" SOURCES="$SOURCES"']
    assert set(make_calls(scripts[0])) <= makefile_targets()


def test_the_signing_key_is_required_under_ci(workflow: dict[Any, Any], jenkinsfile: str) -> None:
    """Bundles are signed by default and a CI run never creates a key (render.signing.check_ci):
    both templates take the key from the CI's secret store, and say it is required."""
    step = next(s for s in _steps(workflow) if s.get("name") == "Signing key")
    assert step["env"]["SIGNING_KEY_PEM"] == "${{ secrets.SOXTRAIL_SIGNING_KEY }}"
    script = step["run"]
    assert re.search(r'if \[ -z "\$SIGNING_KEY_PEM" \]; then.*?exit 2', script, re.DOTALL)
    assert 'echo "SOXTRAIL_SIGNING_KEY=$RUNNER_TEMP/signing.pem" >> "$GITHUB_ENV"' in script
    assert "SOXTRAIL_SIGNING_KEY" in WORKFLOW.read_text().split("\nname:")[0]  # the header
    assert re.search(r"environment \{[^}]*\bCI = 'true'", jenkinsfile)  # Jenkins sets no CI
    header = jenkinsfile.split("pipeline {")[0]
    assert "soxtrail-signing-key" in header and "required" in header
