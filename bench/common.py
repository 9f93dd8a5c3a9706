"""What every part of the bench shares: the repository, the quarter, the phases, progress lines."""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUARTER = "2024Q3"
PHASES = ("snapshot", "load", "reconcile", "render", "bundle")
LOAD_STREAMS = 2  # the loader's parallel COPY streams; the \copy limit uses as many
# `--engine spark`: the Spark masters each size also runs on, after PostgreSQL; the first is
# the side-by-side one, the others give the scaling
SPARK_MASTERS = ("local[2]", "local[1]")


def master_cores(master: str) -> int | None:
    """The cores of a local Spark master (`local`, `local[N]`, `local[*]`); None for others."""
    found = re.fullmatch(r"local(?:\[(\d+|\*)(?:,\d+)?\])?", master.strip())
    if found is None:
        return None
    if found.group(1) is None:
        return 1
    return (os.cpu_count() or 1) if found.group(1) == "*" else int(found.group(1))


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
