"""The JSON page helpers behind msgspec's split (extract.connectors.formats)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from extract.connectors.formats import has_long_exponent, raw_json_items, raw_json_text

LONG_EXPONENT = re.compile(rb"[eE][-+]?[0-9]{5}")


@settings(max_examples=2000)
@given(st.binary(max_size=30) | st.text(alphabet="eE+-0123456789x", max_size=20).map(str.encode))
def test_has_long_exponent_is_the_regex(data: bytes) -> None:
    assert has_long_exponent(data) == bool(LONG_EXPONENT.search(data))


def test_a_page_msgspec_cannot_vouch_for_goes_to_the_json_path() -> None:
    assert raw_json_items(b'{"issues":[{"a":1},{"b":2}]}', "issues") is not None
    for page in (b'{"issues":[{"a":NaN}]}', b'{"issues":[{"a":"\xff"}]}',
                 b'\xef\xbb\xbf{"issues":[]}', b'{"issues":{}}', b'{"other":[]}',
                 b'{"issues":[{"a":"x\ny"}]}', b'[{"a":1}] x'):
        assert raw_json_items(page, "issues") is None, page
    assert [bytes(i) for i in raw_json_items(b' [ {"a":1} , 2 ] ', None) or []] == \
        [b'{"a":1}', b"2"]


def test_an_item_is_its_own_text_only_where_jsonb_reads_it_the_same() -> None:
    items = raw_json_items(b'{"x":[{"a":1.10},{"a":"\\u0000"},{"a":2e-99999},[1],'
                           b'{"a":"e12345"}]}', "x")
    assert items is not None
    assert [raw_json_text(i) for i in items] == ['{"a":1.10}', None, None, None, None]
