"""The oracle of BK-01: whether a day is covered by a completed backup."""

from __future__ import annotations

from datetime import date, timedelta


def backup_reasons(policy: str, day: date, done: set[date]) -> list[str]:
    """BK-01 reasons for `day`: a daily policy needs a backup that day, weekly one in 7 days."""
    if policy == "weekly":
        ok = any(day - timedelta(days=k) in done for k in range(7))
    else:
        ok = day in done
    return [] if ok else ["NO_BACKUP"]
