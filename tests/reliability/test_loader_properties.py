"""Property: any bytes in a server log reach PostgreSQL's COPY without failing the object.

tests/unit/extract/test_pgaudit_log.py checks that the parsers' counts add up; this goes one
step further, through the real loader into the real raw tables: no input may make COPY
fail (a NUL, a lone surrogate or NaN in JSON used to), and loaded rows = loaded count.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extract.connectors import pgaudit_log
from extract.loader import copy_object
from soxtrail.kernel.database import Database
from tests.support.runs import running

AUDIT = "AUDIT: SESSION,1,1,DDL,CREATE TABLE,,,CREATE TABLE t (id int),<not logged>"
CSV = ('2024-07-05 10:00:00.000 UTC,"grace","postgres",1,"h:1",6688a672.1,1,"CREATE TABLE",'
       '2024-07-05 09:00:00 UTC,3/1,0,LOG,00000,"{m}",,,,,,,,,"psql","client backend",,0\n')
JSON = '{{"timestamp":"2024-07-05 10:00:00.000 UTC","user":"grace","message":"{m}"{extra}}}\n'
STDERR = "2024-07-05 10:00:00.000 UTC [1] grace@postgres LOG:  {m}\n"

PIECES = {
    "csvlog": [CSV.format(m=AUDIT).encode(), CSV.format(m="AUDIT: x\\u0000").encode(),
               CSV.format(m="hello").encode(), b'"unclosed,\n', b"\x00\n", b"\xff\n",
               CSV.format(m=AUDIT).encode().replace(b"grace", b"gr\x00ace")],
    "jsonlog": [JSON.format(m=AUDIT, extra="").encode(),
                JSON.format(m=AUDIT + "\\u0000", extra="").encode(),
                JSON.format(m=AUDIT + "\\ud800", extra="").encode(),
                JSON.format(m=AUDIT, extra=',"pid":NaN').encode(),
                JSON.format(m=AUDIT, extra=',"x":Infinity').encode(),
                JSON.format(m=AUDIT, extra=',"\\u0000k":1').encode(),
                JSON.format(m=AUDIT, extra=',"deep":[{"a":"\\udfff"}]').encode(),
                b'{"message":"AUDIT: \\\\u0000 is text"}\n', b"\x00\n", b"{\n"],
    "stderr": [STDERR.format(m=AUDIT).encode(), STDERR.format(m=AUDIT + "\x00").encode(),
               b"\tcontinued \x00\n", b"\n", b"\xed\xa0\x80\n"],
}


@pytest.mark.parametrize("fmt", sorted(PIECES))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_log_bytes_copy_without_failing_and_add_up(fmt: str, data: st.DataObject,
                                                       rel_db: Database) -> None:
    chunks = data.draw(st.lists(st.one_of(st.sampled_from(PIECES[fmt]), st.binary(max_size=30)),
                                min_size=1, max_size=10))
    params = {"format": fmt, "connector": "pgaudit_log", "source": "prop", "cluster": "c",
              "raw_table": pgaudit_log.FORMAT_TABLES[fmt],
              "log_line_prefix": pgaudit_log.DEFAULT_PREFIX}
    run_id, evidence_id = str(uuid.uuid4()), str(uuid.uuid4())
    with tempfile.TemporaryDirectory() as folder, rel_db.connect() as conn:
        path = Path(folder) / "f.log"
        path.write_bytes(b"".join(chunks))
        running(conn, run_id)
        counts = copy_object(conn, run_id=run_id, evidence_id=evidence_id, params=params,
                             path=path)
        rows = conn.execute(f"select count(*) from {params['raw_table']} where run_id = %s",
                            (run_id,)).fetchone()[0]
        rejects = conn.execute("select count(*), count(*) filter (where reason = '')"
                               " from soxtrail.sox_rejects where run_id = %s",
                               (run_id,)).fetchone()
        conn.rollback()
    assert counts.read == counts.loaded + counts.rejected + counts.skipped
    assert rows == counts.loaded
    assert rejects == (counts.rejected, 0)
