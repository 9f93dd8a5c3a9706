"""What the terminal shows of a run's events: human progress or one JSON line per event."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any

from soxtrail.cli.common import err


class TerminalProgress:
    """Human progress on stderr: phases, sources, a bar for loading, dbt nodes."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self._columns = (TextColumn("  load"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[rows]} rows"))
        self._progress_type = Progress
        self._bar: Any = None
        self._task: Any = None
        self._rows = 0

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "phase_start":
            err.print(f"[cyan]▶ {event['phase']}[/]")
        elif kind == "phase_done":
            self._stop_bar()
            details = ", ".join(f"{k}={v}" for k, v in event.items()
                                if k not in ("ts", "event", "phase"))
            err.print(f"[green]✔ {event['phase']}[/] {details}")
            for line in explanations(event):
                err.print(f"    {line}", markup=False, highlight=False)
        elif kind == "phase_failed":
            self._stop_bar()
            err.print(f"[red]✘ {event['phase']}[/] {event['error']}")
        elif kind == "source_done":
            err.print(f"  · {event['source']}: {event['objects']} objects, "
                      f"{event.get('rows', 0)} rows ({event.get('seconds', 0)} s)")
        elif kind == "load_plan" and event.get("objects") and err.is_terminal:
            self._rows = 0
            self._bar = self._progress_type(*self._columns, console=err, transient=True)
            self._task = self._bar.add_task("load", total=event["objects"], rows=0)
            self._bar.start()
        elif kind == "loaded" and self._bar is not None:
            self._rows += int(event.get("read", 0))
            self._bar.update(self._task, advance=1, rows=self._rows)
        elif kind == "node_done":
            node = str(event["node"])
            status = str(event["status"])
            if node.startswith(("model.", "snapshot.")) or status not in ("pass", "success"):
                colour = "green" if status in ("pass", "success") else "red"
                err.print(f"  · {node.split('.', 1)[1]}: [{colour}]{status}[/] "
                          f"({event['seconds']} s)")


def explanations(event: dict[str, Any]) -> list[str]:
    """What a finished phase's counts mean where they could read as a loss or a failure:
    lines printed under its `✔` line."""
    phase, lines = event.get("phase"), []
    skipped = event.get("skipped")
    if phase == "load" and isinstance(skipped, int) and skipped:
        lines.append(f"skipped={skipped}: log lines that are not audit records (connections, "
                     "checkpoints, ...), filtered by design, not lost; counted per object "
                     "in soxtrail.sox_load_stats.records_skipped (read = loaded + rejected "
                     "+ skipped is checked)")
    if phase == "bundle" and event.get("signed") is False:
        lines.append("signed=False: the bundle's MANIFEST.sha256 carries no signature "
                     "(the run was started with --no-sign), so nothing proves who wrote it; "
                     "its UNSIGNED file says so and `soxtrail verify` fails it unless "
                     "--allow-unsigned. To sign: run without --no-sign (this machine's own "
                     "key), or `soxtrail keygen <path>` once and export "
                     "SOXTRAIL_SIGNING_KEY=<path> (a run is bundled as it started, signed or "
                     "not: its workbook says which)")
    return lines


def echo_events(quiet: bool, log_format: str = "text") -> Callable[[dict[str, Any]], None] | None:
    """What the terminal shows of a run's events: nothing, human progress, or JSON lines."""
    if log_format == "json":
        lock = threading.Lock()  # events come from the snapshot's threads too

        def emit_json(event: dict[str, Any]) -> None:
            line = json.dumps(event, sort_keys=True) + "\n"
            with lock:
                sys.stderr.write(line)
                sys.stderr.flush()

        return emit_json
    if quiet:
        return None
    return TerminalProgress()
