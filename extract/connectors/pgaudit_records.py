"""pgaudit_log records: a log split into records, or counted while its bytes stream past."""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from typing import Any

from extract.connectors.formats import (
    GZIP_MAGIC,
    MAX_RECORD_BYTES,
    READ_ERRORS,
    split_csv_records,
)
from soxtrail.kernel.errors import ConfigError
from soxtrail.kernel.sources import RowCounter

# ---------------------------------------------------------------------------
# Records: split a file into records (shared by count_rows and load)
# ---------------------------------------------------------------------------


def _split_lines(handle: Iterable[bytes], first_line: int = 1
                 ) -> Iterator[tuple[int, bytes, str | None]]:
    """jsonlog: every non-blank line is a record."""
    line_no = first_line - 1
    try:
        for raw in handle:
            line_no += 1
            if raw != b"\n" and raw != b"\r\n":
                yield line_no, raw, None
    except READ_ERRORS as exc:
        yield line_no + 1, b"", f"unreadable file after line {line_no}: {exc}"


def _split_stderr(handle: Iterable[bytes], first_line: int = 1
                  ) -> Iterator[tuple[int, list[bytes], str | None]]:
    """stderr: an entry is a line plus the tab-led continuation lines after it."""
    line_no = first_line - 1
    start = 0
    lines: list[bytes] = []
    try:
        for raw in handle:
            line_no += 1
            if raw[:1] == b"\t" and lines:
                lines.append(raw)
                continue
            if lines:
                yield start, lines, None
                lines = []
            if raw != b"\n" and raw != b"\r\n":
                start, lines = line_no, [raw]
    except READ_ERRORS as exc:
        if lines:
            yield start, lines, None
        yield line_no + 1, [], f"unreadable file after line {line_no}: {exc}"
        return
    if lines:
        yield start, lines, None


def split_records(fmt: str, handle: Iterable[bytes], first_line: int = 1
                  ) -> Iterator[tuple[int, Any, str | None]]:
    """The records of a log in format `fmt`: (first line number, the record, problem or None)."""
    if fmt == "csvlog":
        return split_csv_records(handle, first_line)
    if fmt == "jsonlog":
        return _split_lines(handle, first_line)
    if fmt == "stderr":
        return _split_stderr(handle, first_line)
    raise ConfigError(f"pgaudit_log: format {fmt!r} unknown (expected csvlog, jsonlog or stderr)")


# ---------------------------------------------------------------------------
# Counting while the bytes stream past (snapshot): the same number as count_rows
# ---------------------------------------------------------------------------


class _StreamCounter(abc.ABC):
    """A RowCounter splitting the stream into lines (on b"\\n", as file iteration does).

    Subclasses count complete lines (`_lines`, each without its b"\\n") and the last line
    when it has no newline (`_last`). Gzip data is not counted (None: count_rows reads it).
    """

    def __init__(self) -> None:
        self.rows = 0
        self._carry: list[bytes] = []
        self._head = b""  # the first bytes, until the gzip magic can be ruled out
        self._gzip: bool | None = None

    def feed(self, chunk: bytes) -> None:
        """Count the complete lines of `carry + chunk`; keep the partial last line."""
        if self._gzip is None:
            self._head += chunk
            if len(self._head) < len(GZIP_MAGIC):
                return
            self._gzip = self._head.startswith(GZIP_MAGIC)
            chunk, self._head = self._head, b""
        if self._gzip or not chunk:
            return
        if b"\n" not in chunk:
            self._carry.append(chunk)
            return
        if self._carry:
            self._carry.append(chunk)
            chunk = b"".join(self._carry)
        lines = chunk.split(b"\n")
        tail = lines.pop()
        self._carry = [tail] if tail else []
        self._lines(lines)

    def total(self) -> int | None:
        """The record count (after the last chunk), or None for gzip data."""
        if self._gzip is None:  # fewer bytes than the magic: a plain (tiny) file
            self._gzip = False
            head, self._head = self._head, b""
            self.feed(head)
        if self._gzip:
            return None
        if self._carry:
            last = b"".join(self._carry)
            self._carry = []
            self._last(last)
        self._end()
        return self.rows

    @abc.abstractmethod
    def _lines(self, lines: list[bytes]) -> None:
        """Count complete lines (each without its newline)."""

    @abc.abstractmethod
    def _last(self, line: bytes) -> None:
        """Count the final line that has no newline."""

    def _end(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Called once after the last line."""


class _JsonlogCounter(_StreamCounter):
    """As _split_lines: every line but b"\\n" and b"\\r\\n" is a record."""

    def _lines(self, lines: list[bytes]) -> None:
        self.rows += len(lines) - lines.count(b"") - lines.count(b"\r")

    def _last(self, line: bytes) -> None:
        self.rows += 1  # not empty, and no newline: never blank


class _StderrCounter(_StreamCounter):
    """As _split_stderr: a non-blank line starts an entry unless it is a tab-led line
    continuing one (the line before it not blank)."""

    def __init__(self) -> None:
        super().__init__()
        self._open = False  # an entry is open: the previous line was not blank

    def _lines(self, lines: list[bytes]) -> None:
        rows = self.rows
        open_ = self._open
        for line in lines:
            if not line or line == b"\r":
                open_ = False
            elif not open_ or line[:1] != b"\t":
                rows += 1
                open_ = True
        self.rows, self._open = rows, open_

    def _last(self, line: bytes) -> None:
        if not self._open or line[:1] != b"\t":
            self.rows += 1


class _CsvlogCounter(_StreamCounter):
    """As split_csv_records: a record ends at a newline with an even number of quotes
    since its start (or once an unterminated record passes MAX_RECORD_BYTES)."""

    def __init__(self) -> None:
        super().__init__()
        self._quoted = False  # inside a record whose quote is still open
        self._size = 0

    def _lines(self, lines: list[bytes]) -> None:
        self._scan(lines, 1)

    def _scan(self, lines: list[bytes], newline: int) -> None:
        rows, quoted, size = self.rows, self._quoted, self._size
        for line in lines:
            odd = line.count(b'"') & 1
            if not quoted:
                if not odd:
                    if line and line != b"\r":
                        rows += 1
                else:
                    quoted, size = True, len(line) + newline
                continue
            size += len(line) + newline
            if odd or size > MAX_RECORD_BYTES:
                rows += 1
                quoted = False
        self.rows, self._quoted, self._size = rows, quoted, size

    def _last(self, line: bytes) -> None:
        # the last line has no newline: never blank (even b"\r" is a record there)
        if not self._quoted and not line.count(b'"') & 1:
            self.rows += 1
        else:
            self._scan([line], 0)

    def _end(self) -> None:
        if self._quoted:  # an unterminated quoted field at the end of the file: one record
            self.rows += 1
            self._quoted = False


def python_counter(fmt: str) -> RowCounter | None:
    """The Python RowCounter of a format (the C one's reference)."""
    if fmt == "csvlog":
        return _CsvlogCounter()
    if fmt == "jsonlog":
        return _JsonlogCounter()
    if fmt == "stderr":
        return _StderrCounter()
    return None
