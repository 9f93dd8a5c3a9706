"""Orchestration, imported by the CLI only: a run's context (`context`), its five phases
(`phases`: snapshot → load → reconcile → render → bundle) and starting, resuming and
finishing runs (`runs`)."""

from __future__ import annotations

from soxtrail.pipeline.context import OBSERVERS, Observer, Pipeline, capture_order
from soxtrail.pipeline.runs import Outcome, resume_run, run_one_phase, start_run

__all__ = ["OBSERVERS", "Observer", "Outcome", "Pipeline", "capture_order", "resume_run",
           "run_one_phase", "start_run"]
