"""The terminal explains counts that read like losses where it prints them (issue 19)."""

from __future__ import annotations

import pytest

from soxtrail.cli.progress import TerminalProgress, explanations

pytestmark = pytest.mark.integration


def test_skipped_log_lines_are_said_to_be_non_audit_and_where_they_are_counted(
        capsys: pytest.CaptureFixture[str]) -> None:
    TerminalProgress()({"event": "phase_done", "phase": "load", "seconds": 1.5, "read": 9000,
                        "loaded": 3781, "rejected": 0, "skipped": 5219, "objects": 12})
    text = " ".join(capsys.readouterr().err.split())
    assert "skipped=5219" in text
    assert "skipped=5219: log lines that are not audit records" in text
    assert "soxtrail.sox_load_stats.records_skipped" in text


def test_an_unsigned_bundle_says_what_that_means_and_how_to_sign(
        capsys: pytest.CaptureFixture[str]) -> None:
    TerminalProgress()({"event": "phase_done", "phase": "bundle", "seconds": 0.4,
                        "bundle": "/store/2024Q3/x/bundle", "signed": False, "version": 1})
    text = " ".join(capsys.readouterr().err.split())
    assert "signed=False: the bundle's MANIFEST.sha256 carries no signature" in text
    assert "soxtrail keygen <path>" in text and "SOXTRAIL_SIGNING_KEY=<path>" in text


def test_nothing_is_added_when_nothing_reads_like_a_loss() -> None:
    assert explanations({"phase": "load", "skipped": 0, "read": 10}) == []
    assert explanations({"phase": "bundle", "signed": True}) == []
    assert explanations({"phase": "render", "files": 8}) == []
