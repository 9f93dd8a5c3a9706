"""CSV cells that a spreadsheet would read as a formula (OWASP: CSV injection): the one rule
the report's CSV writer applies and the one inverse that reading a returned file applies."""

from __future__ import annotations

# a CSV cell starting with one of these is a formula to a spreadsheet
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(text: str) -> str:
    """A text cell that a spreadsheet would read as a formula, prefixed with `'` (and one that
    already looks neutralised, so that `unneutralise` gives back exactly this text)."""
    return "'" + text if text.lstrip("'").startswith(FORMULA_START) else text


def unneutralise(text: str) -> str:
    """The text `neutralise` was given: the `'` it added dropped again (a returned file's cell
    read back); any other text unchanged."""
    return text[1:] if text.startswith("'") and text.lstrip("'").startswith(FORMULA_START) else text
