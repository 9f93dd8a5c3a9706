"""pgaudit_log stderr: the `log_line_prefix` compiled to a regex and to the C scanner's steps."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "%m [%p] %q%u@%d "

# a regex: each escape's column and pattern
_TIME_PATTERN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [^ ]+)?"
# escape -> (raw table column, pattern); other escapes match anything (non-greedy)
_ESCAPES: dict[str, tuple[str, str]] = {
    "m": ("log_time", _TIME_PATTERN),
    "t": ("log_time", _TIME_PATTERN),
    "u": ("user_name", ".*?"),
    "d": ("database_name", ".*?"),
    "p": ("process_id", r"\d+"),
    "c": ("session_id", r"[0-9a-fA-F]+\.[0-9a-fA-F]+"),
    "l": ("session_line_num", r"\d+"),
    "a": ("application_name", ".*?"),
    "h": ("remote_host", ".*?"),
    "r": ("remote_host", ".*?"),
}
_PREFIX_TOKEN = re.compile(r"%(-?\d+)?(.)|[^%]+|%$", re.DOTALL)
STDERR_FIELDS = ("log_time", "user_name", "database_name", "process_id", "session_id",
                 "session_line_num", "application_name", "remote_host")

# the steps of a log_line_prefix for the C scanner (extract/connectors/_pgaudit_scan.pyx), each the
# same pattern as the regex's part: a literal, `.*?`, `\d+`, %c's pattern, _TIME_PATTERN,
# and the %q group (optional, to the end of the prefix)
STEP_LITERAL, STEP_LAZY, STEP_DIGITS, STEP_SESSION, STEP_TIME, STEP_OPTIONAL = range(6)
_STEP_KINDS = {".*?": STEP_LAZY, r"\d+": STEP_DIGITS, _ESCAPES["c"][1]: STEP_SESSION,
               _TIME_PATTERN: STEP_TIME}


@dataclass(frozen=True)
class PrefixParser:
    """A compiled log_line_prefix: which fields it names and the regex of an entry's first line.

    `program` is the same pattern as steps for the C scanner: (kind, literal, index in
    STDERR_FIELDS or -1, padded).
    """

    prefix: str
    regex: re.Pattern[str]
    fields: tuple[str, ...]
    padded: frozenset[str]
    port_in_host: bool
    program: tuple[tuple[int, bytes, int, bool], ...] = ()

    @property
    def has_time(self) -> bool:
        return "log_time" in self.fields


def compile_prefix(prefix: str) -> PrefixParser:
    """Turn a log_line_prefix into a regex for `<prefix><SEVERITY>:  <message>`.

    Named escapes capture their raw-table column; `%q` makes the rest optional (non-session
    processes stop the prefix there); unknown escapes match anything, non-greedily.
    """
    parts: list[str] = []
    program: list[tuple[int, bytes, int, bool]] = []  # one step per part
    fields: list[str] = []
    padded: set[str] = set()
    port_in_host = False
    optional_from: int | None = None
    for match in _PREFIX_TOKEN.finditer(prefix):
        token = match.group(0)
        if not token.startswith("%"):
            parts.append(re.escape(token))
            program.append((STEP_LITERAL, token.encode("utf-8"), -1, False))
            continue
        escape = match.group(2)
        if escape is None or escape == "%":
            parts.append("%")
            program.append((STEP_LITERAL, b"%", -1, False))
        elif escape == "q":
            if optional_from is None:
                optional_from = len(parts)
        elif escape in _ESCAPES and _ESCAPES[escape][0] not in fields:
            column, pattern = _ESCAPES[escape]
            fields.append(column)
            if match.group(1):
                padded.add(column)
                pattern = ".*?"
            port_in_host = port_in_host or escape == "r"
            parts.append(f"(?P<{column}>{pattern})")
            program.append((_STEP_KINDS[pattern], b"", STDERR_FIELDS.index(column),
                            column in padded))
        else:
            parts.append(".*?")
            program.append((STEP_LAZY, b"", -1, False))
    if optional_from is not None:
        parts[optional_from:] = ["(?:" + "".join(parts[optional_from:]) + ")?"]
        program.insert(optional_from, (STEP_OPTIONAL, b"", -1, False))
    body = ("".join(parts) + r"(?P<error_severity>[A-Z][A-Z0-9]*):  "
            r"(?:[0-9A-Z]{5}: (?=AUDIT: ))?(?P<message>.*)")
    return PrefixParser(prefix, re.compile(body, re.DOTALL), tuple(fields), frozenset(padded),
                        port_in_host, tuple(program))
