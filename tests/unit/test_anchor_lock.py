"""The anchor's Object Lock without S3: the retention chosen, verify's verdict on a lock, and
the NOTE on a store without Object Lock (tests/integration/test_anchor_object_lock.py: S3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from soxtrail.audit.verify_lock import check_locks, lock_verdict
from soxtrail.kernel.store import DEFAULT_LOCK_DAYS, LocalStore, Retention, lock_retain_until

NOW = datetime(2024, 10, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("configured", "rule", "until", "source"), [
    (30, {"Mode": "GOVERNANCE", "Days": 5}, NOW + timedelta(days=30),
     "SOXTRAIL_S3_RETENTION_DAYS=30"),
    (0, {"Mode": "GOVERNANCE", "Days": 5, "Years": 0}, NOW + timedelta(days=5),
     "the bucket's default retention, 5 days"),
    (0, {"Mode": "COMPLIANCE", "Years": 2}, datetime(2026, 10, 2, 12, 0, tzinfo=UTC),
     "the bucket's default retention, 2 years"),
    (0, None, NOW + timedelta(days=DEFAULT_LOCK_DAYS),
     f"the default retention, {DEFAULT_LOCK_DAYS} days (seven years)"),
    (0, {"Days": 0, "Years": 0}, NOW + timedelta(days=DEFAULT_LOCK_DAYS),
     f"the default retention, {DEFAULT_LOCK_DAYS} days (seven years)"),
    (-3, None, NOW + timedelta(days=DEFAULT_LOCK_DAYS),
     f"the default retention, {DEFAULT_LOCK_DAYS} days (seven years)"),
])
def test_the_retention_is_the_configured_days_else_the_buckets_rule_else_seven_years(
        configured: int, rule: dict[str, int] | None, until: datetime, source: str) -> None:
    assert lock_retain_until(NOW, configured, rule) == (until, source)


def test_a_year_of_a_default_rule_from_29_february_ends_on_1_march() -> None:
    leap = datetime(2024, 2, 29, tzinfo=UTC)
    assert lock_retain_until(leap, 0, {"Years": 1})[0] == datetime(2025, 3, 1, tzinfo=UTC)


def test_the_default_is_never_less_than_seven_calendar_years() -> None:
    for start in (datetime(2024, 2, 29, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC),
                  datetime(2027, 12, 31, tzinfo=UTC)):
        until, _ = lock_retain_until(start, 0, None)
        assert until >= lock_retain_until(start, 0, {"Years": 7})[0]


LATER = NOW + timedelta(days=DEFAULT_LOCK_DAYS)


def test_a_compliance_lock_in_the_future_on_the_only_version_is_ok() -> None:
    verdict = lock_verdict("anchor.json lock", Retention("COMPLIANCE", LATER, "v1", 1), NOW)
    assert (verdict.status, verdict.kind) == ("OK", "bundle")
    assert verdict.detail == ("Object Lock COMPLIANCE until 2031-10-03T12:00:00Z (version v1): "
                              "nobody, the bucket owner included, can delete or overwrite it "
                              "before then")


def test_versions_that_cannot_be_listed_are_said_so() -> None:
    verdict = lock_verdict("anchor.json lock", Retention("COMPLIANCE", LATER, "v1", None), NOW)
    assert verdict.status == "OK"
    assert "could not be listed (s3:ListBucketVersions)" in verdict.detail


@pytest.mark.parametrize(("retention", "words"), [
    (Retention(None, None, "v2", 1), "version v2 is not locked, not COMPLIANCE"),
    (Retention("GOVERNANCE", LATER, "v2", 1),
     "version v2 is GOVERNANCE until 2031-10-03T12:00:00Z, not COMPLIANCE"),
    (Retention("COMPLIANCE", LATER, "v3", 3),
     "the key has 3 versions (delete markers included) but soxtrail writes it once"),
    (Retention(None, None, "v3", 2), "the version v3 a reader gets is not locked"),
])
def test_an_anchor_not_locked_in_compliance_mode_or_written_over_fails(
        retention: Retention, words: str) -> None:
    verdict = lock_verdict("anchor.json lock", retention, NOW)
    assert verdict.status == "FAIL" and verdict.failed
    assert words in verdict.detail


def test_an_expired_lock_is_a_note() -> None:
    verdict = lock_verdict("anchor.json lock", Retention("COMPLIANCE", NOW, "v1", 1), NOW)
    assert verdict.status == "NOTE"
    assert "the retention has ended, it is no longer write-protected" in verdict.detail


def test_a_folder_has_no_object_lock_a_note_names_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert check_locks(store, ["q/r/bundle"]) == []  # no anchor: the chain check's NOTE
    for name in ("anchor.json", "MANIFEST.sha256"):
        store.put_bytes(f"q/r/bundle/{name}", b"{}\n", lock=True)
    [note] = check_locks(store, ["q/r/bundle"])
    assert (note.status, note.kind, note.subject) == ("NOTE", "bundle", "anchor.json lock")
    assert note.detail.startswith(f"the folder {tmp_path.resolve()}/q/r/bundle has no Object "
                                  "Lock: the anchor is not write-protected by the store")
    assert store.retention("q/r/bundle/anchor.json") is None
