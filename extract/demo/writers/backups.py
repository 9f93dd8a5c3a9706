"""The backup source of the demo estate: a pgBackRest `info --output=json` document."""

from __future__ import annotations

import json
import random
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from extract.demo.oracle import ItemSink
from extract.demo.oracle_backups import backup_reasons
from extract.demo.plan_completeness import UNSCOPED_CLUSTER

if TYPE_CHECKING:
    from extract.demo.plan import Plan


def write_backups(plan: Plan, folder: Path, sink: ItemSink) -> int:
    """`pgbackrest-info.json`; BK-01 items go to `sink`. Returns the backups."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(plan.seed * 7919 + 3)
    days = plan.days
    natural = sum(len(days) + 7 if c.policy == "daily" else 15 for c in plan.clusters)
    extra_per_cluster_day = max(0, -(-(plan.scale.backup_records - natural)
                                     // (len(plan.clusters) * len(days))))
    total = 0
    with (folder / "pgbackrest-info.json").open("w", encoding="utf-8") as out:
        out.write("[")
        for ci, c in enumerate(plan.clusters):
            if ci:
                out.write(",")
            out.write('{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",'
                      '"max":"0000000100000A2F000000C4","min":"000000010000000000000001"}],'
                      '"backup":[')
            completed: list[date] = []
            first = True
            wal = 0x100 + ci * 0x40
            full_label = ""
            prior = ""
            refs: list[str] = []
            start_day = plan.quarter.first_day - timedelta(days=7)
            span = [start_day + timedelta(days=i) for i in range(7 + len(days))]
            for day in span:
                slots: list[tuple[int, str]] = []
                if c.policy == "weekly":
                    if day.weekday() == 6 and day not in plan.weekly_skip.get(c.name, set()):
                        slots.append((3 * 3600, "full"))
                else:
                    gap = day in plan.backup_gaps.get(c.name, set())
                    if day in plan.backup_late.get(c.name, set()):
                        slots.append((23 * 3600 + 40 * 60, "full" if day.weekday() == 6
                                      else "incr"))
                    elif not gap:
                        slots.append((3600, "full" if day.weekday() == 6 else "incr"))
                    if day >= plan.quarter.first_day:
                        slots += [(13 * 3600 + 600 * k, "incr")
                                  for k in range(min(extra_per_cluster_day, 60))]
                for offset, kind in slots:
                    if not full_label and kind != "full":
                        kind = "full"
                    begin = datetime.combine(day, time(0), tzinfo=UTC) + timedelta(
                        seconds=offset + rng.randrange(0, 900))
                    late = offset >= 23 * 3600
                    seconds = (35 * 60 + rng.randrange(0, 300)) if late else rng.randrange(
                        240, 2100)
                    end = begin + timedelta(seconds=seconds)
                    stamp = begin.strftime("%Y%m%d-%H%M%S")
                    if kind == "full":
                        label, full_label, refs = stamp + "F", stamp + "F", []
                    else:
                        label = f"{full_label}_{stamp}I"
                        refs = [*refs, prior]
                    error = day in plan.backup_errors.get(c.name, set()) and offset == 3600
                    size = 2_000_000_000 + rng.randrange(0, 500_000_000)
                    delta = size if kind == "full" else rng.randrange(5_000_000, 90_000_000)
                    backup = {
                        "archive": {"start": f"00000001{wal:016X}",
                                    "stop": f"00000001{wal + 1:016X}"},
                        "backrest": {"format": 5, "version": "2.51"},
                        "database": {"id": 1, "repo-key": 1},
                        "error": error,
                        "info": {"delta": delta, "repository": {
                            "delta": delta // 4, "size": size // 4}, "size": size},
                        "label": label,
                        "lsn": {"start": f"{wal >> 8:X}/{(wal & 0xFF) << 24 | 0x28:X}",
                                "stop": f"{wal >> 8:X}/{(wal & 0xFF) << 24 | 0x100:X}"},
                        "prior": prior or None if kind != "full" else None,
                        "reference": list(refs) if kind != "full" else None,
                        "timestamp": {"start": int(begin.timestamp()),
                                      "stop": int(end.timestamp())},
                        "type": kind,
                    }
                    wal += 2
                    prior = label
                    if not first:
                        out.write(",")
                    out.write(json.dumps(backup, separators=(",", ":")))
                    first = False
                    total += 1
                    if not error:
                        completed.append(end.date())
            out.write('],"cipher":"none","db":[{"id":1,"repo-key":1,'
                      f'"system-id":{7300000000000000000 + ci * 7919},"version":"15"}}],'
                      f'"name":{json.dumps(c.name)},'
                      '"repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],'
                      '"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}')
            if c.in_scope:
                done = set(completed)
                for day in days:
                    sink.add([c.name, day.isoformat()], backup_reasons(c.policy, day, done))
        total += _write_unscoped_stanza(plan, out, len(plan.clusters))
        out.write("]\n")
    return total


def _write_unscoped_stanza(plan: Plan, out: TextIO, ci: int) -> int:
    """The stanza of a cluster no application lists (plan_completeness.UNSCOPED_CLUSTER):
    a weekly full backup, from the week before the quarter on (its retention is whole);
    no control judges it. Returns its backups."""
    backups = []
    wal = 0x100 + ci * 0x40
    day = plan.quarter.first_day - timedelta(days=7)
    while day < plan.quarter.end_day:
        if day.weekday() == 6:
            begin = datetime.combine(day, time(2, 30), tzinfo=UTC)
            end = begin + timedelta(minutes=41)
            backups.append({
                "archive": {"start": f"00000001{wal:016X}", "stop": f"00000001{wal + 1:016X}"},
                "backrest": {"format": 5, "version": "2.51"},
                "database": {"id": 1, "repo-key": 1}, "error": False,
                "info": {"delta": 812_000_000, "repository": {
                    "delta": 203_000_000, "size": 203_000_000}, "size": 812_000_000},
                "label": begin.strftime("%Y%m%d-%H%M%S") + "F",
                "lsn": {"start": f"{wal >> 8:X}/{(wal & 0xFF) << 24 | 0x28:X}",
                        "stop": f"{wal >> 8:X}/{(wal & 0xFF) << 24 | 0x100:X}"},
                "prior": None, "reference": None,
                "timestamp": {"start": int(begin.timestamp()), "stop": int(end.timestamp())},
                "type": "full",
            })
            wal += 2
        day += timedelta(days=1)
    out.write(',{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1",'
              '"max":"0000000100000A2F000000C4","min":"000000010000000000000001"}],'
              f'"backup":{json.dumps(backups, separators=(",", ":"))},'
              '"cipher":"none","db":[{"id":1,"repo-key":1,'
              f'"system-id":{7300000000000000000 + ci * 7919},"version":"15"}}],'
              f'"name":{json.dumps(UNSCOPED_CLUSTER)},'
              '"repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],'
              '"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}')
    return len(backups)
