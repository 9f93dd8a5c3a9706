"""Types of the compiled pgaudit_log scanner (extract/connectors/_pgaudit_scan.pyx)."""

from typing import Any

from soxtrail.kernel.sources import CopyRows

class Scanner:
    def __init__(self, fmt: str, head: bytes, name: bytes, max_record: int,
                 reject_bytes: int, problem_too_long: str, problem_unterminated: str,
                 program: tuple[tuple[int, bytes, int, bool], ...] | None = None,
                 port_in_host: bool = False) -> None: ...
    def scan(self, block: bytes, first_line: int, final: bool
             ) -> tuple[int, int, int, list[CopyRows | tuple[int, Any, str | None]]]: ...

class LineCounter:
    def __init__(self, fmt: str, max_record: int) -> None: ...
    def feed(self, chunk: bytes) -> None: ...
    def total(self) -> int | None: ...
