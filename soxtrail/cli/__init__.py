"""The command line: a thin typer tree over the pipeline and the auditor tools."""

from __future__ import annotations

from soxtrail.cli.main import main

__all__ = ["main"]
