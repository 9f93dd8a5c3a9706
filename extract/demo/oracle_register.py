"""The demo's oracle for the exceptions register (docs/controls.md, "Exceptions register"):
per responded exception its status and waiver state, and how many exceptions have no response,
from the planted responses, never from the SQL."""

from __future__ import annotations

from datetime import date
from typing import Any

from extract.demo.plan_responses import Response


def waiver_state(response: Response, judged_on: date) -> str:
    """`none`, `waived until <date>` or `expired` (the expiry is before the day judged)."""
    if response.status != "accepted-risk" or response.expires is None:
        return "none"
    if response.expires < judged_on:
        return "expired"
    return f"waived until {response.expires.isoformat()}"


def register_status(state: str, response: Response) -> str:
    """A waived exception stays an exception: `EXCEPTION (waived until …)`."""
    if state == "none":
        return "EXCEPTION"
    if state == "expired":
        return f"EXCEPTION (waiver expired {response.expires})"
    return f"EXCEPTION ({state})"


def expected_register(responses: list[Response], exceptions: int,
                      judged_on: date) -> dict[str, Any]:
    """`expected.json`'s `register`: the responded rows (for a run after the quarter whose
    waivers are judged on or after `judged_on`), the exception count and how many of them
    have no response. Recurrence depends on earlier runs in the database: not stated."""
    rows = []
    for response in sorted(responses, key=lambda r: (r.control, r.item)):
        state = waiver_state(response, judged_on)
        rows.append({"control": response.control, "item": response.item,
                     "register_status": register_status(state, response),
                     "waiver_state": state, "owner": response.owner,
                     "response_status": response.status})
    return {"exceptions": exceptions, "without_response": exceptions - len(responses),
            "rows": rows}
