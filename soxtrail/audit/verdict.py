"""One check of `verify` (its own module, so every verify_* module can import it)."""

from __future__ import annotations

from dataclasses import dataclass

# Statuses that make the run fail verification; UNSIGNED too unless --allow-unsigned.
FAILING = frozenset({"MISMATCH", "MISSING", "EXTRA", "FAIL"})


@dataclass(frozen=True)
class Verdict:
    """One check: its status, what kind of thing it checked, which one, and what differs."""

    status: str  # OK | MISMATCH | MISSING | EXTRA | FAIL | UNSIGNED | NOTE
    kind: str  # object | chain | control | mart | bundle | links
    subject: str  # evidence id and key, control id, bundle file, mart
    detail: str = ""

    @property
    def failed(self) -> bool:
        """True when this check did not pass."""
        return self.status in FAILING

    def line(self) -> str:
        """`STATUS kind subject  detail` on one line."""
        text = f"{self.status:<8} {self.kind:<7} {self.subject}"
        return f"{text}  {self.detail}" if self.detail else text

    def as_dict(self) -> dict[str, str]:
        """The verdict as a JSON-ready dict."""
        return {"status": self.status, "kind": self.kind, "subject": self.subject,
                "detail": self.detail}
