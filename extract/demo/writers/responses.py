"""The demo's management responses file, `responses/<quarter>.yml`."""

from __future__ import annotations

from pathlib import Path

import yaml

from extract.demo.plan_responses import Response


def write_responses(responses: list[Response], path: Path) -> int:
    """Write the responses file; the number of responses."""
    entries = []
    for response in responses:
        entry: dict[str, str] = {
            "control": response.control, "item": response.item,
            "root_cause": response.root_cause, "remediation": response.remediation,
            "owner": response.owner, "due": response.due.isoformat(), "status": response.status}
        if response.compensating_control:
            entry["compensating_control"] = response.compensating_control
        if response.approver:
            entry["approver"] = response.approver
        if response.expires:
            entry["expires"] = response.expires.isoformat()
        entries.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "# Management's responses to the quarter's exceptions (soxtrail respond writes it).\n"
    path.write_text(text + yaml.safe_dump({"responses": entries}, sort_keys=False, width=100),
                    encoding="utf-8")
    return len(entries)
