# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The pgaudit_log loader's hot path in C: split log bytes into records and turn each
simple, well-formed one into its COPY text line.

The rules live in `extract/pgaudit_log.py`; this module only takes the records it can
decide exactly as that code would, and hands every other one back to it:

* records are split exactly as ``split_csv_records`` (csvlog), ``_split_lines``
  (jsonlog) and ``_split_stderr`` (stderr) split them, problems included;
* a record is *loaded* here only when it is ASCII without NUL or CR, parses under a
  strict subset of the grammar (RFC 4180 CSV; a flat JSON object without whitespace,
  floats, ``\\u`` escapes or duplicate keys), has an audit message and a log time the
  strict subset of ``log_time_problem`` accepts;
* a record is *skipped* here only when the Python classifier would skip it on the
  same evidence (a non-audit message that fails ``SERVER_HINT``, the byte test every
  server event passes: a record that passes it is deferred, the server events being rare);
* anything else is *deferred*: it comes back as the tuple the splitter would have
  yielded, for the Python classifier to decide (rejects always come from there).

``tests/unit/extract/test_pgaudit_scan.py`` checks that the two paths give the same
COPY text, rejects and counts on generated edge cases.
"""

from libc.stdlib cimport free, realloc
from libc.string cimport memchr, memcmp, memcpy

from soxtrail.kernel.sources import CopyRows

cdef enum:
    CSVLOG_WIDTH = 26
    CSVLOG_PG13_WIDTH = 24
    CSVLOG_MESSAGE = 13
    MAX_KEYS = 64
    # a record longer than this is left to Python (far below csv's field size limit)
    FAST_RECORD_BYTES = 1 << 20
    # a jsonlog line longer than this is re-serialised by Python (PASS_THROUGH_CHARS)
    PASS_THROUGH_CHARS = 8192

cdef enum Format:
    CSVLOG
    JSONLOG
    STDERR

cdef enum Outcome:
    LOADED
    SKIPPED
    DEFERRED

# log_line_prefix steps (pgaudit_log.STEP_*)
cdef enum StepKind:
    STEP_LITERAL
    STEP_LAZY
    STEP_DIGITS
    STEP_SESSION
    STEP_TIME
    STEP_OPTIONAL

cdef enum:
    MAX_STEPS = 64
    STDERR_FIELDS = 8      # pgaudit_log.STDERR_FIELDS
    F_LOG_TIME = 0
    F_USER = 1
    F_DATABASE = 2
    F_APPLICATION = 6
    F_REMOTE_HOST = 7
    # steps tried per entry before it is left to Python's regex (same answer, slower)
    MATCH_BUDGET = 20000

cdef enum FieldFlag:
    DOUBLED = 1   # a quoted field holding "" pairs
    ESCAPE = 2    # holds a backslash, newline or tab: COPY escaping needed

cdef const unsigned char* AUDIT = b"AUDIT: "
cdef const unsigned char* MESSAGE_KEY = b"message"
cdef const unsigned char* TIMESTAMP_KEY = b"timestamp"
cdef const unsigned char* PGAUDIT_LOG = b"pgaudit.log"  # lower case; `.` | 32 is `.`


cdef int _format(str fmt) except -1:
    """The Format of a pgaudit_log format name."""
    if fmt == "csvlog":
        return CSVLOG
    if fmt == "jsonlog":
        return JSONLOG
    if fmt == "stderr":
        return STDERR
    raise ValueError(f"unknown log format {fmt!r}")


cdef struct Step:
    int kind
    const unsigned char* literal
    Py_ssize_t literal_length
    int field       # index in STDERR_FIELDS, or -1
    bint padded


cdef struct Buffer:
    char* data
    Py_ssize_t size
    Py_ssize_t capacity
    Py_ssize_t rows


cdef int reserve(Buffer* out, Py_ssize_t extra) except -1:
    cdef Py_ssize_t need = out.size + extra
    cdef Py_ssize_t capacity = out.capacity if out.capacity else 1 << 16
    cdef char* grown
    if need <= out.capacity:
        return 0
    while capacity < need:
        capacity *= 2
    grown = <char*> realloc(out.data, capacity)
    if grown == NULL:
        raise MemoryError()
    out.data = grown
    out.capacity = capacity
    return 0


cdef inline Py_ssize_t put_int(char* to, Py_ssize_t value) noexcept nogil:
    cdef char digits[24]
    cdef Py_ssize_t n = 0
    cdef Py_ssize_t i
    if value == 0:
        to[0] = 48
        return 1
    while value > 0:
        digits[n] = <char> (48 + value % 10)
        value //= 10
        n += 1
    for i in range(n):
        to[i] = digits[n - 1 - i]
    return n


cdef inline bint is_digit(unsigned char c) noexcept nogil:
    return 48 <= c <= 57


cdef inline bint is_alpha(unsigned char c) noexcept nogil:
    return 65 <= c <= 90 or 97 <= c <= 122


cdef inline int two(const unsigned char* p) noexcept nogil:
    return (p[0] - 48) * 10 + (p[1] - 48)


cdef bint log_time_ok(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """True only when `log_time_problem` certainly returns None for this ASCII value:
    `YYYY-MM-DD[ T]HH:MM:SS[.f{1,9}][ ]ZONE`, ZONE letters{1,6} or [+-]HH[[:]MM],
    a real calendar day, hour <= 23, minute and second <= 59."""
    cdef Py_ssize_t i, k
    cdef int year, month, day, days
    if n < 20:  # the shortest with a zone: 2024-07-05 10:00:00Z
        return False
    for i in range(19):
        if i != 4 and i != 7 and i != 10 and i != 13 and i != 16 and not is_digit(p[i]):
            return False
    if p[4] != 45 or p[7] != 45 or (p[10] != 32 and p[10] != 84) or p[13] != 58 \
            or p[16] != 58:
        return False
    if two(p + 11) > 23 or two(p + 14) > 59 or two(p + 17) > 59:
        return False
    year = two(p) * 100 + two(p + 2)
    month = two(p + 5)
    day = two(p + 8)
    if year < 1 or month < 1 or month > 12 or day < 1:
        return False
    if month == 2:
        days = 29 if (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)) else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        days = 30
    else:
        days = 31
    if day > days:
        return False
    i = 19
    if p[i] == 46:  # fraction: 1 to 9 digits
        k = i + 1
        while k < n and is_digit(p[k]):
            k += 1
        if k == i + 1 or k - i - 1 > 9:
            return False
        i = k
    if i < n and p[i] == 32:
        i += 1
    if i >= n:
        return False  # no zone
    if is_alpha(p[i]):
        k = i
        while k < n and is_alpha(p[k]):
            k += 1
        return k == n and k - i <= 6
    if p[i] == 43 or p[i] == 45:
        if n - i == 3:
            return is_digit(p[i + 1]) and is_digit(p[i + 2])
        if n - i == 5:
            return is_digit(p[i + 1]) and is_digit(p[i + 2]) and is_digit(p[i + 3]) \
                and is_digit(p[i + 4])
        if n - i == 6:
            return is_digit(p[i + 1]) and is_digit(p[i + 2]) and p[i + 3] == 58 \
                and is_digit(p[i + 4]) and is_digit(p[i + 5])
    return False


cdef inline Py_ssize_t line_end(const unsigned char* d, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """The index just past the newline ending the line at `pos`, or -1 (no newline)."""
    cdef const unsigned char* nl = <const unsigned char*> memchr(d + pos, 10, n - pos)
    if nl == NULL:
        return -1
    return nl - d + 1


cdef inline Py_ssize_t count_quotes(const unsigned char* d, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    cdef Py_ssize_t count = 0
    cdef const unsigned char* p = d + a
    cdef const unsigned char* end = d + b
    while p < end:
        p = <const unsigned char*> memchr(p, 34, end - p)
        if p == NULL:
            break
        count += 1
        p += 1
    return count


cdef inline bint is_blank(const unsigned char* d, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """b"\\n" or b"\\r\\n" (a blank line: no record)."""
    return (b - a == 1 and d[a] == 10) or (b - a == 2 and d[a] == 13 and d[a + 1] == 10)


cdef class Scanner:
    """Scans one log file's bytes, a block at a time (each block starts at a record
    boundary: the bytes a previous `scan` did not consume come first)."""

    cdef int fmt
    cdef bytes head
    cdef bytes name
    cdef Py_ssize_t max_record
    cdef Py_ssize_t reject_bytes
    cdef Buffer out
    cdef object problem_too_long
    cdef object problem_unterminated
    # csvlog field spans of the record being parsed
    cdef Py_ssize_t starts[CSVLOG_WIDTH]
    cdef Py_ssize_t ends[CSVLOG_WIDTH]
    cdef int flags[CSVLOG_WIDTH]
    # jsonlog key spans of the line being parsed
    cdef Py_ssize_t key_starts[MAX_KEYS]
    cdef Py_ssize_t key_lengths[MAX_KEYS]
    # stderr: the log_line_prefix as steps, and the spans the last match captured
    cdef Step steps[MAX_STEPS]
    cdef int step_count
    cdef bint match_prefix
    cdef bint port_in_host
    cdef list literals
    cdef Py_ssize_t captured_start[STDERR_FIELDS]
    cdef Py_ssize_t captured_end[STDERR_FIELDS]
    cdef bint padded[STDERR_FIELDS]
    cdef Py_ssize_t severity_start, severity_end, message_start
    cdef long budget

    def __cinit__(self, str fmt, bytes head, bytes name, Py_ssize_t max_record,
                  Py_ssize_t reject_bytes, str problem_too_long, str problem_unterminated,
                  object program=None, bint port_in_host=False):
        self.fmt = _format(fmt)
        self.head = head
        self.name = name
        self.max_record = max_record
        self.reject_bytes = reject_bytes
        self.problem_too_long = problem_too_long
        self.problem_unterminated = problem_unterminated
        self.out.data = NULL
        self.out.size = self.out.capacity = self.out.rows = 0
        self.step_count = 0
        self.match_prefix = False
        self.port_in_host = port_in_host
        self.literals = []
        cdef int i
        cdef bytes literal
        for i in range(STDERR_FIELDS):
            self.padded[i] = False
        if program is not None and len(program) <= MAX_STEPS:
            for kind, literal, field, padded in program:
                self.literals.append(literal)  # keeps the bytes the step points into
                self.steps[self.step_count].kind = kind
                self.steps[self.step_count].literal = literal
                self.steps[self.step_count].literal_length = len(literal)
                self.steps[self.step_count].field = field
                self.steps[self.step_count].padded = padded
                if field >= 0:
                    self.padded[field] = padded
                self.step_count += 1
            self.match_prefix = True

    def __dealloc__(self):
        free(self.out.data)

    cdef void defer(self, list items, tuple record):
        """Leave a record to Python: after the rows written before it, in file order."""
        self.flush(items)
        items.append(record)

    cdef void flush(self, list items):
        if self.out.rows:
            items.append(CopyRows(self.out.data[:self.out.size], self.out.rows))
        self.out.size = 0
        self.out.rows = 0

    cdef Py_ssize_t put_locator(self, Py_ssize_t line, Py_ssize_t extra) except -1:
        """Reserve room for a row of `extra` payload bytes; write head, `name:line` and a
        tab. Returns the write position."""
        cdef Py_ssize_t head_len = len(self.head)
        cdef Py_ssize_t name_len = len(self.name)
        cdef char* o
        cdef Py_ssize_t k
        reserve(&self.out, head_len + name_len + 32 + extra)
        o = self.out.data + self.out.size
        memcpy(o, <char*> self.head, head_len)
        k = head_len
        memcpy(o + k, <char*> self.name, name_len)
        k += name_len
        o[k] = 58
        k += 1
        k += put_int(o + k, line)
        o[k] = 9
        return k + 1

    cdef inline int end_row(self, Py_ssize_t k) noexcept:
        """End the row written at the buffer's end (`k` bytes so far) with its newline."""
        self.out.data[self.out.size + k] = 10
        self.out.size += k + 1
        self.out.rows += 1
        return LOADED

    def scan(self, bytes block, Py_ssize_t first_line, bint final):
        """Scan the complete records of `block` (its first line is `first_line`).

        Returns (bytes consumed, lines consumed, records skipped, items). Items, in file
        order: CopyRows (loaded rows, COPY text with every column) and tuples (a deferred
        record, as the Python splitter yields it). Without `final`, a record that may go
        on past the block is left unconsumed.
        """
        cdef list items = []
        cdef tuple done
        if self.fmt == CSVLOG:
            done = self.scan_csvlog(block, first_line, final, items)
        elif self.fmt == JSONLOG:
            done = self.scan_jsonlog(block, first_line, final, items)
        else:
            done = self.scan_stderr(block, first_line, final, items)
        self.flush(items)
        return (*done, items)

    # ------------------------------------------------------------------ csvlog

    cdef tuple scan_csvlog(self, bytes block, Py_ssize_t first_line, bint final, list items):
        cdef const unsigned char* d = block
        cdef Py_ssize_t n = len(block)
        cdef Py_ssize_t pos = 0, line = first_line, skipped = 0
        cdef Py_ssize_t end, start_line, record_start, first_end, size, p, e
        cdef int outcome
        cdef bint closed
        while pos < n:
            end = line_end(d, pos, n)
            if end < 0:
                if not final:
                    break
                end = n  # the last line, without a newline
            if is_blank(d, pos, end):
                pos = end
                line += 1
                continue
            if not (count_quotes(d, pos, end) & 1):
                outcome = self.csvlog_record(d, pos, end, line)
                if outcome == SKIPPED:
                    skipped += 1
                elif outcome == DEFERRED:
                    self.defer(items, (line, block[pos:end], None))
                pos = end
                line += 1
                continue
            # an open quote: the record goes on until a line with an odd number of quotes
            start_line = line
            record_start = pos
            first_end = end
            size = end - pos
            p = end
            e = line + 1
            closed = False
            while True:
                if p >= n:
                    break
                end = line_end(d, p, n)
                if end < 0:
                    if not final:
                        break
                    end = n
                size += end - p
                e += 1
                if count_quotes(d, p, end) & 1:
                    closed = True
                    p = end
                    break
                p = end
                if size > self.max_record:
                    break
            if not closed and size <= self.max_record and not final:
                break  # the record may go on in the next block
            if closed:
                outcome = self.csvlog_record(d, record_start, p, start_line)
                if outcome == SKIPPED:
                    skipped += 1
                elif outcome == DEFERRED:
                    self.defer(items, (start_line, block[record_start:p], None))
            elif size > self.max_record:
                self.defer(items, (start_line,
                                   block[record_start:min(first_end,
                                                          record_start + self.reject_bytes)],
                                   self.problem_too_long))
            else:  # the end of the file inside a quoted field
                self.defer(items, (start_line,
                                   block[record_start:min(p, record_start + self.reject_bytes)],
                                   self.problem_unterminated))
            pos = p
            line = e
        return pos, line - first_line, skipped

    cdef int csvlog_record(self, const unsigned char* d, Py_ssize_t a, Py_ssize_t b,
                           Py_ssize_t line) except -1:
        """Load or skip one csvlog record [a, b), or leave it to Python (DEFERRED)."""
        cdef Py_ssize_t end = b
        cdef Py_ssize_t p = a, q, width = 0, extra = 0, k, i, f, length
        cdef unsigned char c
        cdef int flag
        cdef char* o
        if b - a > FAST_RECORD_BYTES:
            return DEFERRED
        if end > a and d[end - 1] == 10:
            end -= 1
        while True:
            if width == CSVLOG_WIDTH:
                return DEFERRED
            flag = 0
            if p < end and d[p] == 34:
                q = p + 1
                self.starts[width] = q
                while True:
                    if q >= end:
                        return DEFERRED  # no closing quote
                    c = d[q]
                    if c == 34:
                        if q + 1 < end and d[q + 1] == 34:
                            flag |= DOUBLED
                            q += 2
                            continue
                        break
                    if c >= 128 or c == 0 or c == 13:
                        return DEFERRED
                    if c == 92 or c == 10 or c == 9:
                        flag |= ESCAPE
                        extra += 1
                    q += 1
                self.ends[width] = q
                p = q + 1
            else:
                q = p
                self.starts[width] = q
                while q < end:
                    c = d[q]
                    if c == 44:
                        break
                    if c == 34 or c >= 128 or c == 0 or c == 13 or c == 10:
                        return DEFERRED
                    if c == 92 or c == 9:
                        flag |= ESCAPE
                        extra += 1
                    q += 1
                self.ends[width] = q
                p = q
            self.flags[width] = flag
            width += 1
            if p == end:
                break
            if d[p] != 44:
                return DEFERRED  # after a closing quote: neither a comma nor the end
            p += 1
        if width != CSVLOG_WIDTH and width != CSVLOG_PG13_WIDTH:
            return DEFERRED
        length = self.ends[CSVLOG_MESSAGE] - self.starts[CSVLOG_MESSAGE]
        if length < 7 or memcmp(d + self.starts[CSVLOG_MESSAGE], AUDIT, 7) != 0:
            if length == 0 or _server_hint(d, self.starts[CSVLOG_MESSAGE],
                                           self.ends[CSVLOG_MESSAGE]):
                return DEFERRED  # no message (Python rejects), or maybe a server event
            return SKIPPED
        if self.flags[0] & DOUBLED or not log_time_ok(d + self.starts[0],
                                                      self.ends[0] - self.starts[0]):
            return DEFERRED
        k = self.put_locator(line, (b - a) + extra + 3 * CSVLOG_WIDTH)
        o = self.out.data + self.out.size
        for f in range(width):
            if f:
                o[k] = 9
                k += 1
            i = self.starts[f]
            q = self.ends[f]
            if i == q:
                o[k] = 92
                o[k + 1] = 78
                k += 2
                continue
            flag = self.flags[f]
            if not flag:
                memcpy(o + k, d + i, q - i)
                k += q - i
            elif not flag & DOUBLED:
                k = _put_escaped(o, k, d, i, q)
            else:
                while i < q:
                    if d[i] == 34:  # one of a "" pair (only pairs are left inside the quotes)
                        o[k] = 34
                        k += 1
                        i += 2
                    else:
                        k = _put_byte(o, k, d[i])
                        i += 1
        if width == CSVLOG_PG13_WIDTH:  # leader_pid and query_id: none before PG 14
            memcpy(o + k, b"\t\\N\t\\N", 6)
            k += 6
        return self.end_row(k)

    # ------------------------------------------------------------------ jsonlog

    cdef tuple scan_jsonlog(self, bytes block, Py_ssize_t first_line, bint final, list items):
        cdef const unsigned char* d = block
        cdef Py_ssize_t n = len(block)
        cdef Py_ssize_t pos = 0, line = first_line, skipped = 0, end
        cdef int outcome
        while pos < n:
            end = line_end(d, pos, n)
            if end < 0:
                if not final:
                    break
                end = n
            if not is_blank(d, pos, end):
                outcome = self.jsonlog_line(d, pos, end, line)
                if outcome == SKIPPED:
                    skipped += 1
                elif outcome == DEFERRED:
                    self.defer(items, (line, block[pos:end], None))
            pos = end
            line += 1
        return pos, line - first_line, skipped

    cdef int jsonlog_line(self, const unsigned char* d, Py_ssize_t a, Py_ssize_t b,
                          Py_ssize_t line) except -1:
        """Load or skip one jsonlog line [a, b), or leave it to Python (DEFERRED)."""
        cdef Py_ssize_t end = b, p, q, i, j, keys = 0, backslashes = 0, k
        cdef Py_ssize_t message = -1, message_end = -1, stamp = -1, stamp_end = -1
        cdef bint stamp_escaped = False, value_is_string, escaped
        cdef unsigned char c
        cdef char* o
        while end > a and (d[end - 1] == 10 or d[end - 1] == 13):
            end -= 1  # raw.rstrip(b"\r\n")
        if end - a < 2 or d[a] != 123 or d[end - 1] != 125:
            return DEFERRED
        if end - a < 7 or memchr(d + a, 65, end - a) == NULL or not _contains_audit(d, a, end):
            # a well-formed-looking non-audit line: Python skips it if it is ASCII and
            # fails SERVER_HINT
            for i in range(a, end):
                if d[i] >= 128:
                    return DEFERRED
            if _server_hint(d, a, end):
                return DEFERRED
            return SKIPPED
        if end - a > PASS_THROUGH_CHARS:
            return DEFERRED  # Python re-serialises it (_passes_through)
        p = a + 1
        if p < end - 1 or d[p] != 125:
            while True:
                # a key: a plain string
                if d[p] != 34:
                    return DEFERRED
                q = p + 1
                while q < end and d[q] != 34:
                    c = d[q]
                    if c == 92 or c < 32 or c >= 128:
                        return DEFERRED
                    q += 1
                if q >= end or keys == MAX_KEYS:
                    return DEFERRED
                for j in range(keys):
                    if self.key_lengths[j] == q - p - 1 and \
                            memcmp(d + self.key_starts[j], d + p + 1, q - p - 1) == 0:
                        return DEFERRED  # a duplicate key
                self.key_starts[keys] = p + 1
                self.key_lengths[keys] = q - p - 1
                keys += 1
                p = q + 1
                if p >= end or d[p] != 58:
                    return DEFERRED
                p += 1
                if p >= end:
                    return DEFERRED
                # the value: a string, an integer, true, false or null
                c = d[p]
                value_is_string = False
                escaped = False
                if c == 34:
                    value_is_string = True
                    q = p + 1
                    while True:
                        if q >= end:
                            return DEFERRED
                        c = d[q]
                        if c == 34:
                            break
                        if c < 32 or c >= 128:
                            return DEFERRED
                        if c == 92:
                            if q + 1 >= end:
                                return DEFERRED
                            c = d[q + 1]
                            if c != 34 and c != 92 and c != 47 and c != 98 and c != 102 \
                                    and c != 110 and c != 114 and c != 116:
                                return DEFERRED  # \u (NUL, surrogates) or invalid
                            escaped = True
                            backslashes += 2
                            q += 2
                            continue
                        q += 1
                    i = p + 1
                    j = q
                    q += 1
                elif c == 45 or is_digit(c):
                    q = p + 1 if c == 45 else p
                    if q >= end or not is_digit(d[q]):
                        return DEFERRED
                    if d[q] == 48:
                        q += 1
                    else:
                        while q < end and is_digit(d[q]):
                            q += 1
                    if q < end and (d[q] == 46 or d[q] == 101 or d[q] == 69 or is_digit(d[q])):
                        return DEFERRED  # a float (Python re-prints it) or a leading zero
                elif c == 116 and end - p >= 4 and memcmp(d + p, b"true", 4) == 0:
                    q = p + 4
                elif c == 102 and end - p >= 5 and memcmp(d + p, b"false", 5) == 0:
                    q = p + 5
                elif c == 110 and end - p >= 4 and memcmp(d + p, b"null", 4) == 0:
                    q = p + 4
                else:
                    return DEFERRED  # nested, NaN, or not JSON
                if self.key_lengths[keys - 1] == 7 and \
                        memcmp(d + self.key_starts[keys - 1], MESSAGE_KEY, 7) == 0:
                    if not value_is_string:
                        return DEFERRED
                    message, message_end = i, j
                elif self.key_lengths[keys - 1] == 9 and \
                        memcmp(d + self.key_starts[keys - 1], TIMESTAMP_KEY, 9) == 0:
                    if not value_is_string:
                        return DEFERRED
                    stamp, stamp_end, stamp_escaped = i, j, escaped
                p = q
                if p >= end:
                    return DEFERRED
                if d[p] == 125:
                    if p != end - 1:
                        return DEFERRED  # something after the object
                    break
                if d[p] != 44:
                    return DEFERRED
                p += 1
        if _long_exponent(d, a, end) and not _keys_counted(d, a, end, keys):
            return DEFERRED  # Python re-serialises it (_passes_through)
        if message < 0 or message_end == message:
            return DEFERRED  # no message (Python rejects)
        if message_end - message < 7 or memcmp(d + message, AUDIT, 7) != 0:
            return DEFERRED if _server_hint(d, a, end) else SKIPPED
        if stamp < 0 or stamp_escaped or not log_time_ok(d + stamp, stamp_end - stamp):
            return DEFERRED
        k = self.put_locator(line, (end - a) + backslashes + 2)
        o = self.out.data + self.out.size
        if not backslashes:
            memcpy(o + k, d + a, end - a)
            k += end - a
        else:  # no tab or newline in the line: only its backslashes are escaped
            k = _put_escaped(o, k, d, a, end)
        return self.end_row(k)

    # ------------------------------------------------------------------ stderr

    cdef tuple scan_stderr(self, bytes block, Py_ssize_t first_line, bint final, list items):
        cdef const unsigned char* d = block
        cdef Py_ssize_t n = len(block)
        cdef Py_ssize_t pos = 0, line = first_line, skipped = 0, end, p, e, next_end, i
        cdef bint audit, ascii, complete
        cdef int outcome
        cdef list lines
        while pos < n:
            end = line_end(d, pos, n)
            if end < 0:
                if not final:
                    break
                end = n
            if is_blank(d, pos, end):
                pos = end
                line += 1
                continue
            # an entry: this line and the tab-led lines after it
            p = end
            e = line + 1
            complete = False
            while True:
                if p >= n:
                    complete = final
                    break
                if d[p] != 9:
                    complete = True
                    break
                next_end = line_end(d, p, n)
                if next_end < 0:
                    if not final:
                        break
                    next_end = n
                p = next_end
                e += 1
            if not complete:
                break
            audit = _contains_audit(d, pos, end)
            ascii = True
            for i in range(pos, p):
                if d[i] >= 128 or (audit and (d[i] == 0 or d[i] == 13)):
                    ascii = False  # (for an audit entry: nor NUL or CR)
                    break
            outcome = DEFERRED
            if not ascii:
                pass
            elif not audit:
                outcome = DEFERRED if _server_hint(d, pos, p) else SKIPPED
            elif self.match_prefix:
                outcome = self.stderr_entry(d, pos, end, p, line)
            if outcome == SKIPPED:
                skipped += 1
            elif outcome == DEFERRED:
                lines = []
                i = pos
                while i < p:
                    next_end = line_end(d, i, p)
                    if next_end < 0:
                        next_end = p
                    lines.append(block[i:next_end])
                    i = next_end
                self.defer(items, (line, lines, None))
            pos = p
            line = e
        return pos, line - first_line, skipped


    cdef int stderr_entry(self, const unsigned char* d, Py_ssize_t a, Py_ssize_t first_end,
                          Py_ssize_t b, Py_ssize_t line) except -1:
        """Load or skip one ASCII stderr entry [a, b) (first line [a, first_end)) without NUL
        or CR, or leave it to Python (DEFERRED)."""
        cdef Py_ssize_t text_end = first_end, f, s, e, i, j, k, length
        cdef Py_ssize_t starts[STDERR_FIELDS]
        cdef Py_ssize_t ends[STDERR_FIELDS]
        cdef int found
        cdef char* o
        if text_end > a and d[text_end - 1] == 10:
            text_end -= 1
        for f in range(STDERR_FIELDS):
            self.captured_start[f] = -1
        self.budget = MATCH_BUDGET
        found = self.match(d, 0, a, text_end)
        if found != 1:
            return DEFERRED  # no match (Python rejects), or too many steps (Python decides)
        if text_end - self.message_start < 7 or memcmp(d + self.message_start, AUDIT, 7) != 0:
            return DEFERRED if _server_hint(d, a, b) else SKIPPED
        # the values, as _Stderr makes them: padded ones stripped, [unknown] as NULL, the
        # port cut from %r, '' as NULL
        for f in range(STDERR_FIELDS):
            s = self.captured_start[f]
            e = self.captured_end[f]
            if s < 0:
                starts[f] = ends[f] = 0
                continue
            if self.padded[f]:
                while s < e and _is_space(d[s]):
                    s += 1
                while e > s and _is_space(d[e - 1]):
                    e -= 1
            if (f == F_USER or f == F_DATABASE or f == F_APPLICATION) and e - s == 9 \
                    and memcmp(d + s, b"[unknown]", 9) == 0:
                e = s
            if f == F_REMOTE_HOST and self.port_in_host and e - s >= 3 and d[e - 1] == 41:
                j = e - 2
                while j > s and is_digit(d[j]):
                    j -= 1
                if j < e - 2 and d[j] == 40:
                    e = j
            starts[f] = s
            ends[f] = e
        if not log_time_ok(d + starts[F_LOG_TIME], ends[F_LOG_TIME] - starts[F_LOG_TIME]):
            return DEFERRED
        # fields, severity, message and entry: at most twice the entry's bytes, escaped
        k = self.put_locator(line, 6 * (b - a) + 2 * (STDERR_FIELDS + 3) + 16)
        o = self.out.data + self.out.size
        for f in range(STDERR_FIELDS):
            k = _put_field(o, k, d, starts[f], ends[f])
            o[k] = 9
            k += 1
        k = _put_field(o, k, d, self.severity_start, self.severity_end)
        o[k] = 9
        k += 1
        # the message: the first line's, then each continuation line without its tab
        k = _put_field(o, k, d, self.message_start, text_end)
        k = _put_continuations(o, k, d, first_end, b, 1)
        o[k] = 9
        k += 1
        # the entry: every line, joined by newlines
        k = _put_escaped(o, k, d, a, text_end)
        k = _put_continuations(o, k, d, first_end, b, 0)
        return self.end_row(k)

    cdef int match(self, const unsigned char* d, int index, Py_ssize_t pos,
                   Py_ssize_t end) except -2:
        """Match the prefix steps from `index` at `pos`, then the severity and message, in
        the order Python's regex tries them (lazy: shortest first; greedy: longest first;
        the %q group: with, then without). 1: matched, 0: no match, -1: out of budget."""
        cdef Step* step
        cdef Py_ssize_t k, e, f, g, fraction, zone, stop
        cdef int found
        self.budget -= 1
        if self.budget < 0:
            return -1
        if index == self.step_count:
            return self.match_tail(d, pos, end)
        step = &self.steps[index]
        if step.kind == STEP_LITERAL:
            if end - pos < step.literal_length or \
                    memcmp(d + pos, step.literal, step.literal_length) != 0:
                return 0
            return self.match(d, index + 1, pos + step.literal_length, end)
        if step.kind == STEP_OPTIONAL:
            found = self.match(d, index + 1, pos, end)
            if found != 0:
                return found
            return self.match(d, self.step_count, pos, end)  # the group ends the prefix
        if step.kind == STEP_LAZY:
            for k in range(pos, end + 1):
                self.capture(step.field, pos, k)
                found = self.match(d, index + 1, k, end)
                if found != 0:
                    return found
            return self.uncapture(step.field)
        if step.kind == STEP_DIGITS:
            e = pos
            while e < end and is_digit(d[e]):
                e += 1
            found = self.longest_first(d, index, step.field, pos, e, pos + 1, end)
            return found if found != 0 else self.uncapture(step.field)
        if step.kind == STEP_SESSION:
            # [0-9a-fA-F]+ then a dot: only the longest run can be followed by the dot
            e = pos
            while e < end and _is_hex(d[e]):
                e += 1
            if e == pos or e >= end or d[e] != 46:
                return self.uncapture(step.field)
            f = e + 1
            g = f
            while g < end and _is_hex(d[g]):
                g += 1
            found = self.longest_first(d, index, step.field, pos, g, f + 1, end)
            return found if found != 0 else self.uncapture(step.field)
        # STEP_TIME: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?: [^ ]+)?
        if end - pos < 19 or not _time_head(d + pos):
            return self.uncapture(step.field)
        e = pos + 19
        stop = e
        if e < end and d[e] == 46:
            stop = e + 1
            while stop < end and is_digit(d[stop]):
                stop += 1
            if stop == e + 1:
                stop = e  # a dot without digits: no fraction
        # fraction ends, longest first, then none
        fraction = stop
        while True:
            zone = -1
            if fraction < end and d[fraction] == 32:
                zone = fraction + 1
                while zone < end and d[zone] != 32:
                    zone += 1
                if zone == fraction + 1:
                    zone = -1
            if zone >= 0:
                found = self.longest_first(d, index, step.field, pos, zone, fraction + 2, end)
                if found != 0:
                    return found
            self.capture(step.field, pos, fraction)
            found = self.match(d, index + 1, fraction, end)
            if found != 0:
                return found
            if fraction == e:
                break
            fraction -= 1
            if fraction == e + 1:
                fraction = e  # the dot alone is no fraction
        return self.uncapture(step.field)

    cdef int longest_first(self, const unsigned char* d, int index, int field, Py_ssize_t start,
                           Py_ssize_t longest, Py_ssize_t shortest, Py_ssize_t end) except -2:
        """A greedy step: the rest matched after each end from `longest` down to `shortest`
        (the step's text is d[start:end_tried]); the first result that is not 0."""
        cdef Py_ssize_t k
        cdef int found
        for k in range(longest, shortest - 1, -1):
            self.capture(field, start, k)
            found = self.match(d, index + 1, k, end)
            if found != 0:
                return found
        return 0

    cdef int match_tail(self, const unsigned char* d, Py_ssize_t pos, Py_ssize_t end) noexcept:
        """`(?P<error_severity>[A-Z][A-Z0-9]*):  (?:[0-9A-Z]{5}: (?=AUDIT: ))?(?P<message>.*)`"""
        cdef Py_ssize_t e, i
        if pos >= end or not (65 <= d[pos] <= 90):
            return 0
        e = pos + 1
        while e < end and (65 <= d[e] <= 90 or is_digit(d[e])):
            e += 1
        if end - e < 3 or d[e] != 58 or d[e + 1] != 32 or d[e + 2] != 32:
            return 0
        self.severity_start = pos
        self.severity_end = e
        e += 3
        if end - e >= 14 and d[e + 5] == 58 and d[e + 6] == 32 and \
                memcmp(d + e + 7, AUDIT, 7) == 0:
            for i in range(e, e + 5):
                if not (65 <= d[i] <= 90 or is_digit(d[i])):
                    break
            else:
                e += 7
        self.message_start = e
        return 1

    cdef inline void capture(self, int field, Py_ssize_t start, Py_ssize_t end) noexcept:
        if field >= 0:
            self.captured_start[field] = start
            self.captured_end[field] = end

    cdef inline int uncapture(self, int field) noexcept:
        """A step that found no match leaves its field unset (a group that did not take
        part is None in Python); returns 0 (no match)."""
        if field >= 0:
            self.captured_start[field] = -1
        return 0


cdef bint _contains_audit(const unsigned char* d, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Whether b"AUDIT: " occurs in [a, b)."""
    cdef const unsigned char* p = d + a
    cdef const unsigned char* end = d + b
    while end - p >= 7:
        p = <const unsigned char*> memchr(p, 65, end - p - 6)
        if p == NULL:
            return False
        if memcmp(p, AUDIT, 7) == 0:
            return True
        p += 1
    return False


cdef bint _server_hint(const unsigned char* d, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Whether pgaudit_classify.SERVER_HINT matches in [a, b): `database system `,
    `received fast|smart|immediate|SIGHUP`, `terminating any other`, `parameter `, or
    `pgaudit.log` in any case."""
    cdef Py_ssize_t i, k, left
    cdef unsigned char c
    for i in range(a, b):
        c = d[i]
        left = b - i
        if c == 100:  # d
            if left >= 16 and memcmp(d + i, b"database system ", 16) == 0:
                return True
        elif c == 114:  # r
            if left >= 13 and memcmp(d + i, b"received ", 9) == 0 and (
                    memcmp(d + i + 9, b"fast", 4) == 0
                    or (left >= 14 and memcmp(d + i + 9, b"smart", 5) == 0)
                    or (left >= 15 and memcmp(d + i + 9, b"SIGHUP", 6) == 0)
                    or (left >= 18 and memcmp(d + i + 9, b"immediate", 9) == 0)):
                return True
        elif c == 116:  # t
            if left >= 21 and memcmp(d + i, b"terminating any other", 21) == 0:
                return True
        elif c == 112 or c == 80:  # p, P
            if left >= 10 and memcmp(d + i, b"parameter ", 10) == 0:
                return True
            if left >= 11:
                for k in range(1, 11):
                    if (d[i + k] | 32) != PGAUDIT_LOG[k]:
                        break
                else:
                    return True
    return False


cdef bint _long_exponent(const unsigned char* d, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Whether `[eE][-+]?[0-9]{5}` (pgaudit_log._LONG_EXPONENT) occurs in [a, b)."""
    cdef Py_ssize_t i, j, k
    cdef unsigned char c
    for i in range(a, b):
        c = d[i]
        if c == 101 or c == 69:
            j = i + 1
            if j < b and (d[j] == 43 or d[j] == 45):
                j += 1
            if b - j < 5:
                continue
            for k in range(j, j + 5):
                if not is_digit(d[k]):
                    break
            else:
                return True
    return False


cdef bint _keys_counted(const unsigned char* d, Py_ssize_t a, Py_ssize_t b,
                        Py_ssize_t keys) noexcept nogil:
    """pgaudit_log._no_duplicate_keys on an ASCII line without control characters that
    holds `keys` distinct keys: no escaped backslash, no `" :`, and as many `":` not
    after a backslash as keys."""
    cdef Py_ssize_t i, closing = 0
    for i in range(a, b - 1):
        if d[i] == 92 and d[i + 1] == 92:
            return False
        if d[i] == 34:
            if d[i + 1] == 58:
                if i == a or d[i - 1] != 92:
                    closing += 1
            elif d[i + 1] == 32 and i + 2 < b and d[i + 2] == 58:
                return False
    return closing == keys


cdef inline bint _is_hex(unsigned char c) noexcept nogil:
    return is_digit(c) or 97 <= c <= 102 or 65 <= c <= 70


cdef inline bint _is_space(unsigned char c) noexcept nogil:
    """str.strip()'s whitespace among ASCII characters."""
    return c == 32 or 9 <= c <= 13 or 28 <= c <= 31


cdef bint _time_head(const unsigned char* p) noexcept nogil:
    """`\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d` at p (19 bytes)."""
    cdef int i
    for i in range(19):
        if i == 4 or i == 7:
            if p[i] != 45:
                return False
        elif i == 10:
            if p[i] != 32:
                return False
        elif i == 13 or i == 16:
            if p[i] != 58:
                return False
        elif not is_digit(p[i]):
            return False
    return True


cdef inline Py_ssize_t _put_byte(char* o, Py_ssize_t k, unsigned char c) noexcept nogil:
    """One byte in COPY text at o[k] (backslash, newline and tab escaped; the scanner leaves
    CR and NUL to Python); returns the next write position."""
    if c == 92:
        o[k] = 92
        o[k + 1] = 92
        return k + 2
    if c == 9:
        o[k] = 92
        o[k + 1] = 116
        return k + 2
    if c == 10:
        o[k] = 92
        o[k + 1] = 110
        return k + 2
    o[k] = c
    return k + 1


cdef inline Py_ssize_t _put_escaped(char* o, Py_ssize_t k, const unsigned char* d,
                                    Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """d[a:b] in COPY text."""
    cdef Py_ssize_t i
    for i in range(a, b):
        k = _put_byte(o, k, d[i])
    return k


cdef Py_ssize_t _put_continuations(char* o, Py_ssize_t k, const unsigned char* d,
                                   Py_ssize_t a, Py_ssize_t b, Py_ssize_t drop) noexcept nogil:
    """The lines of d[a:b] (an entry's continuation lines) in COPY text, each after an
    escaped newline and without its newline and its first `drop` bytes (the tab)."""
    cdef Py_ssize_t end, length
    while a < b:
        end = line_end(d, a, b)
        if end < 0:
            end = b
        length = end - 1 if d[end - 1] == 10 else end
        o[k] = 92
        o[k + 1] = 110
        k = _put_escaped(o, k + 2, d, a + drop, length)
        a = end
    return k


cdef inline Py_ssize_t _put_field(char* o, Py_ssize_t k, const unsigned char* d,
                                  Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """A COPY field: \\N when empty, else escaped."""
    if a >= b:
        o[k] = 92
        o[k + 1] = 78
        return k + 2
    return _put_escaped(o, k, d, a, b)


cdef class LineCounter:
    """pgaudit_log's stream counters (_CsvlogCounter, _JsonlogCounter, _StderrCounter) in
    C: the same count from the same bytes, however they are chunked; None for gzip data.
    The bytes are scanned without the GIL: the snapshot's capture threads share a process."""

    cdef int fmt
    cdef Py_ssize_t rows
    cdef Py_ssize_t max_record
    cdef bytes head          # the first bytes, until the gzip magic can be ruled out
    cdef int gzip            # -1 not known yet, 0 no, 1 yes
    # the line in progress
    cdef Py_ssize_t length
    cdef bint odd
    cdef int first           # its first byte, -1 before it has one
    # csvlog: inside a record whose quote is still open, and its size
    cdef bint quoted
    cdef Py_ssize_t size
    # stderr: an entry is open (the line before was not blank)
    cdef bint entry_open

    def __cinit__(self, str fmt, Py_ssize_t max_record):
        self.fmt = _format(fmt)
        self.max_record = max_record
        self.head = b""
        self.gzip = -1
        self.rows = self.length = self.size = 0
        self.odd = self.quoted = self.entry_open = False
        self.first = -1

    def feed(self, bytes chunk):
        """Count the complete lines of the bytes seen so far; keep the partial last one."""
        if self.gzip < 0:
            self.head += chunk
            if len(self.head) < 2:
                return
            self.gzip = 1 if self.head[:2] == b"\x1f\x8b" else 0
            chunk, self.head = self.head, b""
        if self.gzip:
            return
        self._feed(chunk)

    cdef void _feed(self, bytes chunk):
        cdef const unsigned char* d = chunk
        cdef Py_ssize_t n = len(chunk)
        with nogil:
            self._scan(d, n)

    cdef void _scan(self, const unsigned char* d, Py_ssize_t n) noexcept nogil:
        cdef Py_ssize_t pos = 0, end
        while pos < n:
            end = line_end(d, pos, n)
            if end < 0:  # the rest of the chunk: part of a line that goes on
                self._take(d, pos, n)
                return
            self._take(d, pos, end - 1)
            self._line(1)
            pos = end

    cdef inline void _take(self, const unsigned char* d, Py_ssize_t a,
                           Py_ssize_t b) noexcept nogil:
        if a >= b:
            return
        if self.first < 0:
            self.first = d[a]
        self.length += b - a
        if self.fmt == CSVLOG and count_quotes(d, a, b) & 1:
            self.odd = not self.odd

    cdef void _line(self, int newline) noexcept nogil:
        """The line in progress ends (`newline`: 1 if a newline ended it)."""
        cdef bint blank = self.length == 0 or (self.length == 1 and self.first == 13)
        if self.fmt == JSONLOG:
            if not blank or not newline:  # the last line is never blank
                self.rows += 1
        elif self.fmt == CSVLOG:
            if not self.quoted:
                if not self.odd:
                    if not blank or not newline:
                        self.rows += 1
                else:
                    self.quoted = True
                    self.size = self.length + newline
            else:
                self.size += self.length + newline
                if self.odd or self.size > self.max_record:
                    self.rows += 1
                    self.quoted = False
        elif blank and newline:
            self.entry_open = False
        elif not self.entry_open or self.first != 9:
            self.rows += 1
            self.entry_open = True
        self.length = 0
        self.odd = False
        self.first = -1

    def total(self):
        """The record count once every byte was fed, or None for gzip data."""
        if self.gzip < 0:  # fewer bytes than the magic: a plain (tiny) file
            self.gzip = 0
            head, self.head = self.head, b""
            self._feed(head)
        if self.gzip:
            return None
        if self.length:
            self._line(0)
        if self.fmt == CSVLOG and self.quoted:  # an unterminated quoted field at the end
            self.rows += 1
            self.quoted = False
        return self.rows

