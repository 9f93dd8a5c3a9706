"""Reading the rows connectors hand the loader."""

from __future__ import annotations

import json
from typing import Any


def doc(row: Any) -> Any:
    """A JSON row's doc as a Python object, whether the connector gave it decoded or as its
    own JSON text (stored as jsonb as it is)."""
    value = row.values[0]
    return json.loads(value) if isinstance(value, str) else value
