"""Run the real `soxtrail` CLI in a subprocess, as a user or CI would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOXTRAIL = ("-m", "soxtrail")  # `python SOXTRAIL ARGS…`: the CLI as installed
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    """Exit code and output of one CLI call."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def importable(env: dict[str, str], launcher: Sequence[str]) -> dict[str, str]:
    """`env`, with the repo root on PYTHONPATH when the launcher is a module of the tests."""
    if tuple(launcher) == SOXTRAIL:
        return env
    paths = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(paths)}


def soxtrail(*args: str, home: Path, database_url: str | None, env: dict[str, str] | None = None,
             timeout: float = 600, launcher: Sequence[str] = SOXTRAIL) -> Result:
    """`python -m soxtrail ARGS` with SOXTRAIL_HOME (and SOXTRAIL_DATABASE_URL) set.

    `CI` is not passed on unless `env` sets it: on a CI machine (CI=true) a run without
    SOXTRAIL_SIGNING_KEY stops (render.signing.check_ci), and the suite must behave the
    same there as on a laptop; without a key, a run signs with the key it creates under
    `home` (keys/), one per test home.
    `launcher` runs something else in its place, e.g. tests.support.faults.FAULTY_CLI.
    """
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("SOXTRAIL_DATABASE_URL", "SOXTRAIL_STORE", "CI")}
    full_env["SOXTRAIL_HOME"] = str(home)
    if database_url:
        full_env["SOXTRAIL_DATABASE_URL"] = database_url
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, *launcher, *args], env=importable(full_env, launcher),
                          capture_output=True, text=True, timeout=timeout)
    _log_time(args, time.monotonic() - started)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def _log_time(args: Sequence[str], seconds: float) -> None:
    """With SOXTRAIL_TEST_CLI_TIMES=<file>: one JSON line per CLI call (its command, wall
    seconds, the test), to see where the suite's time goes (`make test` leaves it unset)."""
    path = os.environ.get("SOXTRAIL_TEST_CLI_TIMES")
    if not path:
        return
    groups = ("db", "docs", "review")  # commands whose second word is a subcommand
    words = list(args[:2]) if args[:1] and args[0] in groups else list(args[:1])
    line = {"command": " ".join(words),
            "seconds": round(seconds, 3), "test": os.environ.get("PYTEST_CURRENT_TEST", "")}
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")


def stop_embedded(home: Path, timeout: float = 30) -> None:
    """Stop the embedded PostgreSQL a test started under `home` (it outlives soxtrail by design)."""
    import signal
    import time

    pid_file = home / "pg" / "postmaster.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text().splitlines()[0])
    try:
        os.kill(pid, signal.SIGINT)  # fast shutdown
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
