"""Shared format helpers of the file-reading connectors: plain or gzip files, CSV records,
JSON values (and their jsonb checks), JSON pages split with msgspec, JSONL lines.

Used by `file`, `catalog_file`, `postgres_catalog`, `pgbackrest_info`, `aws_cloudtrail`, the
pgaudit modules, :mod:`extract.connectors.pages` and the loader (`jsonb_problem`).
"""

from __future__ import annotations

import csv
import functools
import gzip
import json
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

GZIP_MAGIC = b"\x1f\x8b"
MAX_RECORD_BYTES = 128 << 20  # a record (e.g. one quoted statement) larger than this is rejected
REJECT_TEXT_BYTES = 10_000  # the loader keeps 10,000 characters of a reject's raw text
READ_ERRORS = (EOFError, OSError, zlib.error)
RECORD_TOO_LONG = f"unterminated quoted field: record exceeds {MAX_RECORD_BYTES >> 20} MiB"
UNTERMINATED_AT_END = "unterminated quoted field at end of file"

csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))


def open_bytes(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently gunzipping it when it is gzip data."""
    handle = path.open("rb")
    if handle.read(2) == GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def preview(data: bytes) -> str:
    """A reject's raw text: the first bytes of a record, invalid UTF-8 shown as \\xNN."""
    return data[:REJECT_TEXT_BYTES].decode("utf-8", "backslashreplace")


def decode_problem(exc: UnicodeDecodeError) -> str:
    """The reject reason for a record that is not UTF-8."""
    return f"invalid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"


def split_csv_records(handle: Iterable[bytes], first_line: int = 1
                      ) -> Iterator[tuple[int, bytes, str | None]]:
    """Split CSV bytes into records: (line where it starts, its bytes, problem or None).

    A record ends at the first newline outside double quotes (quote parity, exact for
    valid CSV), so quoted newlines never split a record. Blank lines are no record.
    An unterminated quote is reported once it passes MAX_RECORD_BYTES or at the end of
    the file; a truncated or corrupt gzip stream ends the file with one problem record.
    `handle` yields lines; the first is line `first_line`.
    """
    line_no = first_line - 1
    start = 0
    parts: list[bytes] = []
    size = 0
    try:
        for raw in handle:
            line_no += 1
            odd = raw.count(b'"') & 1
            if not parts:
                if not odd:
                    if raw != b"\n" and raw != b"\r\n":
                        yield line_no, raw, None
                    continue
                start, parts, size = line_no, [raw], len(raw)
                continue
            parts.append(raw)
            size += len(raw)
            if odd:
                yield start, b"".join(parts), None
                parts = []
            elif size > MAX_RECORD_BYTES:
                yield start, parts[0][:REJECT_TEXT_BYTES], RECORD_TOO_LONG
                parts = []
    except READ_ERRORS as exc:
        data = b"".join(parts)[:REJECT_TEXT_BYTES] if parts else b""
        problem = f"unreadable file after line {line_no}: {exc}"
        yield (start if parts else line_no + 1), data, problem
        return
    if parts:
        yield start, b"".join(parts)[:REJECT_TEXT_BYTES], UNTERMINATED_AT_END


class _Feed:
    """An iterator handing the csv reader one record text at a time."""

    __slots__ = ("text",)

    def __init__(self) -> None:
        self.text: str | None = None

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        text = self.text
        if text is None:
            raise StopIteration
        self.text = None
        return text


class CsvRecordParser:
    """Parse one CSV record text at a time with a persistent (C, strict) csv reader."""

    def __init__(self) -> None:
        self._feed = _Feed()
        self._reader = csv.reader(self._feed, strict=True)

    def parse(self, text: str) -> list[str]:
        """The fields of one record; raises csv.Error on broken quoting."""
        self._feed.text = text
        try:
            return next(self._reader)
        except StopIteration:
            raise csv.Error("unexpected end of data") from None


def csv_rows(handle: IO[bytes]) -> Iterator[tuple[int, list[str] | None, str | None, bytes]]:
    """(start line, fields or None, problem or None, raw bytes) for every CSV record."""
    parser = CsvRecordParser()
    for line, data, problem in split_csv_records(handle):
        if problem is not None:
            yield line, None, problem, data
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield line, None, decode_problem(exc), data
            continue
        try:
            yield line, parser.parse(text), None, data
        except csv.Error as exc:
            yield line, None, f"broken CSV quoting: {exc}", data


def header_names(fields: list[str]) -> list[str]:
    """Header names as written, without a UTF-8 byte order mark on the first."""
    names = list(fields)
    if names and names[0].startswith("\ufeff"):
        names[0] = names[0][1:]
    return names


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_json(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity (jsonb cannot hold them)."""
    if type(text) is str and not text.startswith("\ufeff"):
        return _DECODER.decode(text)  # json.loads without building a decoder per call
    return json.loads(text, parse_constant=_no_constant)


def _bad_string(value: str) -> str | None:
    if "\x00" in value:
        return "NUL character (jsonb cannot store \\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "unpaired surrogate escape (not valid Unicode)"
    return None


def jsonb_problem(value: Any) -> str | None:
    """Why a parsed JSON value cannot be stored as jsonb (NUL, lone surrogates), or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            problem = _bad_string(item)
            if problem:
                return problem
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _bad_string(key)
                if problem:
                    return problem
                stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)
    return None


def json_needs_check(text: str | bytes) -> bool:
    """Whether a JSON text may decode to NUL or surrogates (only via \\u escapes)."""
    return ("\\u" in text) if isinstance(text, str) else (b"\\u" in text)


# An item's own JSON text is stored as jsonb when jsonb reads it as it reads the item
# re-serialised by Python: no \u escape (it may be NUL or a lone surrogate, which jsonb
# refuses), no exponent of five digits or more (numeric overflow) and at most 16 KiB (no
# number long enough to overflow numeric without one). Numbers then stay as the source
# wrote them (Python would re-print `1.10` as `1.1`).
RAW_TEXT_BYTES = 16 << 10
# `[eE][-+]?[0-9]{5}` as three substring searches after mapping E to e and digits to 0
# (a regex with a character class first scans at ~130 MB/s; this at several GB/s)
_EXPONENT_DIGITS = bytes.maketrans(b"E123456789", b"e000000000")


def has_long_exponent(data: bytes) -> bool:
    """Whether `[eE][-+]?[0-9]{5}` occurs in `data` (it may be a number numeric refuses)."""
    mapped = data.translate(_EXPONENT_DIGITS)
    return b"e00000" in mapped or b"e+00000" in mapped or b"e-00000" in mapped


@functools.cache
def _page_decoder(key: str | None) -> msgspec.json.Decoder[Any]:
    if key is None:
        return msgspec.json.Decoder(list[msgspec.Raw])
    return msgspec.json.Decoder(msgspec.defstruct("Page", [(key, list[msgspec.Raw])]))


def raw_json_items(data: bytes, key: str | None) -> list[msgspec.Raw] | None:
    """The items of a JSON page, each as its own bytes (the list under `key` in the top
    object, or the top array when `key` is None), without decoding them into Python objects.

    None when only the json module can say exactly what the page holds: not UTF-8, not
    strict JSON (msgspec refuses NaN, control characters and bad escapes, as jsonb does),
    or not that shape. The caller then takes its json path, with its own error messages.
    """
    if not data.isascii():  # msgspec does not check UTF-8 inside the values it skips
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        page = _page_decoder(key).decode(data)
    except msgspec.DecodeError:  # malformed JSON, or not the expected shape
        return None
    items: list[msgspec.Raw] = page if key is None else getattr(page, key)
    return items


def raw_json_text(item: msgspec.Raw) -> str | None:
    """An object item's own JSON text when it can be stored as jsonb as it is, else None
    (the caller decodes it and checks it with jsonb_problem)."""
    data = bytes(item)
    if data[:1] != b"{" or len(data) > RAW_TEXT_BYTES or b"\\u" in data \
            or has_long_exponent(data):
        return None
    return data.decode("utf-8")


def jsonl_records(handle: IO[bytes]) -> Iterator[tuple[int, Any, str | None, bytes]]:
    """(line, parsed object or None, problem or None, raw bytes) for every non-blank line."""
    line_no = 0
    try:
        for raw in handle:
            line_no += 1
            data = raw.rstrip(b"\r\n")
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield line_no, None, decode_problem(exc), data
                continue
            try:
                doc = parse_json(text)
            except ValueError as exc:
                yield line_no, None, f"invalid JSON: {exc}", data
                continue
            if not isinstance(doc, dict):
                yield line_no, None, "not a JSON object", data
                continue
            problem = jsonb_problem(doc) if json_needs_check(text) else None
            yield line_no, (None if problem else doc), problem, data
    except READ_ERRORS as exc:
        yield line_no + 1, None, f"unreadable file after line {line_no}: {exc}", b""
