"""PostgreSQL server log lines with pgaudit entries, in csvlog, jsonlog or stderr encoding."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from extract.demo.inventory import PREFIX_SESSION

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(when: datetime) -> int:
    """Milliseconds since the epoch."""
    return int((when - EPOCH) / timedelta(milliseconds=1))


_HMS = [f"{h:02d}:{m:02d}:{sec:02d}" for h in range(24) for m in range(60) for sec in range(60)]
_MSU = [f".{milli:03d} UTC" for milli in range(1000)]


class Clock:
    """Fast `2024-07-05 10:00:00.123 UTC` formatting from epoch milliseconds."""

    def __init__(self) -> None:
        self.days: dict[int, str] = {}
        self.second = -1
        self.text = ""

    def ts(self, ms: int) -> str:
        s, milli = divmod(ms, 1000)
        if s != self.second:
            day, sod = divmod(s, 86400)
            prefix = self.days.get(day)
            if prefix is None:
                prefix = self.days[day] = (EPOCH + timedelta(days=day)).strftime("%Y-%m-%d ")
            self.second, self.text = s, prefix + _HMS[sod]
        return self.text + _MSU[milli]

    def start(self, ms: int) -> str:
        return self.ts(ms - ms % 1000)[:-8] + " UTC"


def audit_message(stmt_id: int, sub: int, cls: str, command: str, otype: str, oname: str,
                  sql: str) -> str:
    """A pgaudit SESSION message (the statement CSV-quoted when needed)."""
    if any(ch in sql for ch in ',"\n\r'):
        sql = '"' + sql.replace('"', '""') + '"'
    return f"AUDIT: SESSION,{stmt_id},{sub},{cls},{command},{otype},{oname},{sql},<not logged>"


@dataclass(slots=True)
class Ctx:
    """One server session (or background process) as its log lines need it."""

    pid: int
    sid: str
    start: str
    user: str | None
    db: str | None
    app: str | None
    host: str | None
    port: int | None
    backend: str = "client backend"
    line: int = 0
    tpl: Any = None


class LogWriter:
    """Renders log entries in one of the three encodings, into a buffered file."""

    def __init__(self, fmt: str, prefix: str | None, clock: Clock) -> None:
        self.fmt = fmt
        self.prefix = prefix
        self.clock = clock
        self.buf: list[str] = []
        self.lines = 0
        self.handle: Any = None

    # -- file handling -------------------------------------------------------
    def open(self, path: Path) -> None:
        self.close()
        self.handle = path.open("wb")

    def flush(self) -> None:
        if self.buf and self.handle is not None:
            self.handle.write("".join(self.buf).encode())
        self.buf.clear()

    def close(self) -> None:
        self.flush()
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def _put(self, text: str, nlines: int) -> None:
        self.buf.append(text)
        self.lines += nlines
        if len(self.buf) >= 8192:
            self.flush()

    # -- rendering -------------------------------------------------------------
    def prepare(self, ctx: Ctx) -> None:
        """Precompute the per-session constant parts of a client-backend line."""
        if self.fmt == "csvlog":
            ctx.tpl = (f',"{ctx.user}","{ctx.db}",{ctx.pid},"{ctx.host}:{ctx.port}",'
                       f'{ctx.sid},', f',{ctx.start},',
                       f',,,,,,,,,"{ctx.app}","client backend",,0\n')
        elif self.fmt == "jsonlog":
            head = (f',"user":"{ctx.user}","dbname":"{ctx.db}",'
                    f'"pid":{ctx.pid},"remote_host":"{ctx.host}","remote_port":{ctx.port},'
                    f'"session_id":"{ctx.sid}","line_num":')
            tail = (f',"application_name":"{ctx.app}",'
                    '"backend_type":"client backend","query_id":0}\n')
            ctx.tpl = (head, f',"session_start":"{ctx.start}",', tail)
        elif self.prefix == PREFIX_SESSION:
            ctx.tpl = (f" [{ctx.pid}] {ctx.sid} ", f" {ctx.user}@{ctx.db} {ctx.app} ", None)
        else:
            ctx.tpl = (f" [{ctx.pid}] {ctx.user}@{ctx.db} ", None, None)

    def escape(self, message: str) -> tuple[str, int]:
        """A message escaped for this encoding (without outer quotes) and its physical lines."""
        if self.fmt == "csvlog":
            return message.replace('"', '""'), 1 + message.count("\n")
        if self.fmt == "jsonlog":
            return json.dumps(message)[1:-1], 1
        return message.replace("\n", "\n\t"), 1 + message.count("\n")

    def entry(self, ctx: Ctx, ms: int, tag: str, vxid: str, message: str) -> None:
        """A client-backend LOG entry with a plain message."""
        esc, nlines = self.escape(message)
        self.fast(ctx, ms, tag, vxid, esc, nlines)

    def fast(self, ctx: Ctx, ms: int, tag: str, vxid: str, esc: str, nlines: int) -> None:
        """A client-backend LOG entry whose message is already escaped (the hot path)."""
        ctx.line += 1
        ts = self.clock.ts(ms)
        t0, t1, t2 = ctx.tpl
        fmt = self.fmt
        if fmt == "csvlog":
            text = f'{ts}{t0}{ctx.line},"{tag}"{t1}{vxid},0,LOG,00000,"{esc}"{t2}'
        elif fmt == "jsonlog":
            vx = f'"vxid":"{vxid}",' if vxid else ""
            text = (f'{{"timestamp":"{ts}"{t0}{ctx.line},"ps":"{tag}"{t1}{vx}"txid":0,'
                    f'"error_severity":"LOG","state_code":"00000","message":"{esc}"{t2}')
        elif t1 is None:
            text = f"{ts}{t0}LOG:  {esc}\n"
        else:
            text = f"{ts}{t0}{ctx.line}{t1}LOG:  {esc}\n"
        buf = self.buf
        buf.append(text)
        self.lines += nlines
        if len(buf) >= 8192:
            self.flush()

    def received(self, ctx: Ctx, ms: int) -> None:
        """`connection received`: the first line of a session, before user and database."""
        ctx.line += 1
        ts = self.clock.ts(ms)
        host, port, pid, sid = ctx.host, ctx.port, ctx.pid, ctx.sid
        msg = f"connection received: host={host} port={port}"
        if self.fmt == "csvlog":
            text = (f'{ts},,,{pid},"{host}:{port}",{sid},{ctx.line},"",{ctx.start},,0,LOG,00000,'
                    f'"{msg}",,,,,,,,,"","client backend",,0\n')
        elif self.fmt == "jsonlog":
            text = (f'{{"timestamp":"{ts}","pid":{pid},"remote_host":"{host}",'
                    f'"remote_port":{port},"session_id":"{sid}","line_num":{ctx.line},"ps":"",'
                    f'"session_start":"{ctx.start}","txid":0,"error_severity":"LOG",'
                    f'"state_code":"00000","message":"{msg}","backend_type":"client backend",'
                    f'"query_id":0}}\n')
        elif self.prefix == PREFIX_SESSION:
            text = f"{ts} [{pid}] {sid} {ctx.line} [unknown]@[unknown] [unknown] LOG:  {msg}\n"
        else:
            text = f"{ts} [{pid}] [unknown]@[unknown] LOG:  {msg}\n"
        self._put(text, 1)

    def general(self, ctx: Ctx, ms: int, tag: str | None, severity: str, state: str,
                message: str, *, detail: str | None = None, query: str | None = None,
                query_pos: int | None = None, vxid: str | None = None) -> None:
        """Any entry: background processes, pre-authentication lines, errors with a query."""
        ctx.line += 1
        ts = self.clock.ts(ms)
        if self.fmt == "csvlog":
            conn = f'"{ctx.host}:{ctx.port}"' if ctx.host else ""
            fields = [ts, _q(ctx.user), _q(ctx.db), str(ctx.pid), conn, ctx.sid, str(ctx.line),
                      _q(tag if tag is not None else ""), ctx.start, vxid or "", "0", severity,
                      state, _q(message), _q(detail), "", "", "", "", _q(query),
                      "" if query_pos is None else str(query_pos), "",
                      _q(ctx.app if ctx.app is not None else ""), _q(ctx.backend), "", "0"]
            text = ",".join(fields) + "\n"
            self._put(text, 1 + text.count("\n", 0, -1))
        elif self.fmt == "jsonlog":
            doc: dict[str, Any] = {"timestamp": ts}
            if ctx.user:
                doc["user"] = ctx.user
            if ctx.db:
                doc["dbname"] = ctx.db
            doc["pid"] = ctx.pid
            if ctx.host:
                doc["remote_host"] = ctx.host
                doc["remote_port"] = ctx.port
            doc["session_id"] = ctx.sid
            doc["line_num"] = ctx.line
            if tag is not None:
                doc["ps"] = tag
            doc["session_start"] = ctx.start
            if vxid:
                doc["vxid"] = vxid
            doc["txid"] = 0
            doc["error_severity"] = severity
            doc["state_code"] = state
            doc["message"] = message
            if detail:
                doc["detail"] = detail
            if query:
                doc["statement"] = query
            if query_pos is not None:
                doc["cursor_position"] = query_pos
            if ctx.app:
                doc["application_name"] = ctx.app
            doc["backend_type"] = ctx.backend
            doc["query_id"] = 0
            self._put(json.dumps(doc, separators=(",", ":")) + "\n", 1)
        else:
            text = self._stderr_prefix(ctx, ts)
            shown = message + (f" at character {query_pos}" if query_pos is not None else "")
            text += f"{severity}:  {shown}".replace("\n", "\n\t") + "\n"
            n = 1 + shown.count("\n")
            if detail:
                text += self._stderr_prefix(ctx, ts) + "DETAIL:  " + detail.replace(
                    "\n", "\n\t") + "\n"
                n += 1 + detail.count("\n")
            if query:
                text += self._stderr_prefix(ctx, ts) + "STATEMENT:  " + query.replace(
                    "\n", "\n\t") + "\n"
                n += 1 + query.count("\n")
            self._put(text, n)

    def _stderr_prefix(self, ctx: Ctx, ts: str) -> str:
        if ctx.backend != "client backend":
            if self.prefix == PREFIX_SESSION:
                return f"{ts} [{ctx.pid}] {ctx.sid} {ctx.line} "
            return f"{ts} [{ctx.pid}] "
        user = ctx.user or "[unknown]"
        db = ctx.db or "[unknown]"
        if self.prefix == PREFIX_SESSION:
            return f"{ts} [{ctx.pid}] {ctx.sid} {ctx.line} {user}@{db} {ctx.app or '[unknown]'} "
        return f"{ts} [{ctx.pid}] {user}@{db} "


def _q(value: str | None) -> str:
    if value is None:
        return ""
    return '"' + value.replace('"', '""') + '"'

