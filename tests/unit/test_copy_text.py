"""COPY text read back (engine: spark writes the loader's COPY lines as Parquet columns)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from soxtrail.kernel.sources import copy_fields, copy_lines_columns, copy_unescape

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(st.lists(st.lists(st.one_of(st.none(), TEXT), min_size=3, max_size=3), max_size=20))
def test_copy_lines_read_back_as_the_values_written(rows: list[list[str | None]]) -> None:
    data = "".join(copy_fields(row) + "\n" for row in rows).encode("utf-8")
    columns = copy_lines_columns(data, 3)
    assert [list(row) for row in zip(*columns, strict=True)] == rows if rows else \
        columns == [[], [], []]


@pytest.mark.parametrize(("field", "value"), [
    ("\\N", None), ("", ""), ("a\\\\b", "a\\b"), ("a\\tb\\nc\\rd", "a\tb\nc\rd"),
    ("\\101\\7", "A\x07"), ("\\x", "x"), ("end\\", "end\\"),
])
def test_copy_unescape_undoes_what_copy_text_escapes(field: str, value: str | None) -> None:
    assert copy_unescape(field) == value


def test_a_line_with_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match="2 fields, expected 3"):
        copy_lines_columns(b"a\tb\n", 3)
