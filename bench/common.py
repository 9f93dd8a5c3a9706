"""What every part of the bench shares: the repository, the quarter, the phases, progress lines."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUARTER = "2024Q3"
PHASES = ("snapshot", "load", "reconcile", "render", "bundle")
LOAD_STREAMS = 2  # the loader's parallel COPY streams; the \copy limit uses as many


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
