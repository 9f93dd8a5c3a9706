"""soxtrail: SOX IT-general-controls reports whose every number is cheap to verify."""

from __future__ import annotations

__version__ = "0.1.0"
