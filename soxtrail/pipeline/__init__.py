"""Orchestration, imported by the CLI only: a run's context (`context`), its five phases
(`phases`: snapshot → load → reconcile → render → bundle) and starting, resuming and
finishing runs (`runs`), and mid-quarter captures (`runs.start_capture`)."""

from __future__ import annotations

from soxtrail.pipeline.context import (
           CAPTURE_SOURCES_KEY,
           OBSERVERS,
           Observer,
           Pipeline,
           capture_order,
)
from soxtrail.pipeline.runs import Outcome, resume_run, run_one_phase, start_capture, start_run

__all__ = ["CAPTURE_SOURCES_KEY", "OBSERVERS", "Observer", "Outcome", "Pipeline", "capture_order",
           "resume_run", "run_one_phase", "start_capture", "start_run"]
