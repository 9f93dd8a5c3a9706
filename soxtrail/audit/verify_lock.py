"""verify: the bundle's anchor under S3 Object Lock.

On a bucket with Object Lock the bundle phase writes `anchor.json`, `MANIFEST.sha256` and
its signature in COMPLIANCE mode before the run is marked completed (render.bundle.LOCKED,
Store.put_file(lock=True)): nobody, the bucket owner and the root account included, can
delete or overwrite those object versions before their retain-until date. What the lock
cannot stop is a new version placed on top (a delete marker, then a put): the reader then
gets the new one while the locked one stays underneath. So each of those files must be, as
a reader gets it now, locked in COMPLIANCE mode, and the only version of its key.

On a store without Object Lock (a folder, a bucket without it) one NOTE says so: whoever
can write the store can replace the anchor, and what decides is the signature checked with
the auditor's pinned key and the next run's record of this run's latest link.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from render import bundle as bundles
from soxtrail.audit.verdict import Verdict
from soxtrail.kernel.errors import SoxtrailError
from soxtrail.kernel.store import LOCK_MODE, LocalStore, Retention, Store

KIND = "bundle"
# In the order they are reported: the anchor first (the NOTE of an unlocked store names it).
LOCKED = tuple(sorted(bundles.LOCKED, key=lambda name: name != bundles.ANCHOR))
NO_LOCK = ("{where} has no Object Lock: the anchor is not write-protected by the store (whoever "
           "can write there can replace it). What decides is the signature checked with your "
           "pinned key (--public-key) and the next run's record of this run's latest link")


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "no retain-until date"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _lock_text(retention: Retention) -> str:
    if retention.mode is None:
        return "not locked"
    return f"{retention.mode} until {_when(retention.retain_until)}"


def lock_verdict(subject: str, retention: Retention, now: datetime) -> Verdict:
    """One locked file's verdict on a bucket with Object Lock."""
    version = f"version {retention.version_id}" if retention.version_id else "current version"
    if retention.versions is not None and retention.versions > 1:
        return Verdict("FAIL", KIND, subject,
                       f"the key has {retention.versions} versions (delete markers included) but "
                       "soxtrail writes it once: it was deleted or overwritten after the bundle "
                       f"was written; the {version} a reader gets is {_lock_text(retention)}, "
                       "the version written first is still in the bucket "
                       "(aws s3api list-object-versions)")
    if retention.mode != LOCK_MODE:
        return Verdict("FAIL", KIND, subject,
                       f"{version} is {_lock_text(retention)}, not {LOCK_MODE}, on a bucket with "
                       f"Object Lock: soxtrail writes it in {LOCK_MODE} mode, so it was deleted "
                       "and written again, or written by a release that did not lock it (or you "
                       "lack s3:GetObjectRetention, without which S3 leaves the lock out of "
                       "HEAD)")
    if not retention.compliance_until(now):
        return Verdict("NOTE", KIND, subject,
                       f"{version} was locked in {LOCK_MODE} mode until "
                       f"{_when(retention.retain_until)}: the retention has ended, it is no "
                       "longer write-protected")
    unknown = ("; its versions could not be listed (s3:ListBucketVersions), so a version "
               "placed on top would not show here" if retention.versions is None else "")
    return Verdict("OK", KIND, subject,
                   f"Object Lock {LOCK_MODE} until {_when(retention.retain_until)} ({version}): "
                   f"nobody, the bucket owner included, can delete or overwrite it before "
                   f"then{unknown}")


def _subject(prefixes: Sequence[str], prefix: str, name: str) -> str:
    version = "" if prefix == prefixes[0] else prefix.rsplit("/", 1)[-1] + "/"
    return f"{version}{name} lock"


def check_locks(store: Store, prefixes: Sequence[str], *,
                now: datetime | None = None) -> list[Verdict]:
    """The Object Lock of each bundle version's anchor, manifest and signature (`prefixes`:
    the bundle folders in `store`, the first version first); a bundle without an anchor is
    left to the chain check's NOTE."""
    now = now or datetime.now(UTC)
    verdicts: list[Verdict] = []
    for prefix in prefixes:
        def key(name: str, prefix: str = prefix) -> str:
            return f"{prefix}/{name}" if prefix else name

        try:
            present = [name for name in LOCKED if store.exists(key(name))]
            if bundles.ANCHOR not in present:
                continue
            for name in present:
                subject = _subject(prefixes, prefix, name)
                retention = store.retention(key(name))
                if retention is None:
                    where = (f"the folder {store.location(prefix or '.')}"
                             if isinstance(store, LocalStore) else store.location(prefix or "."))
                    return [*verdicts, Verdict("NOTE", KIND, subject, NO_LOCK.format(where=where))]
                verdicts.append(lock_verdict(subject, retention, now))
        except SoxtrailError as exc:
            verdicts.append(Verdict("FAIL", KIND, _subject(prefixes, prefix, bundles.ANCHOR),
                                    f"cannot read the Object Lock: {exc}"))
    return verdicts
