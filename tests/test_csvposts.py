"""Reading posts from a CSV: line numbers, batches, and the rows that cannot be posts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from entityflow.csvposts import BadRow, DatasetError, Reader


def read_all(text: str | bytes, **options: Any) -> tuple[list[list[dict[str, Any]]], list[BadRow]]:
    """Every batch (as posts) and every bad row of a file with this content."""
    data = text.encode() if isinstance(text, str) else text
    reader = Reader(io.BytesIO(data), Path("t.csv"), **options)
    batches, bad = [], []
    while True:
        chunk = reader.next_chunk(stop_at_bad=False)
        bad.extend(chunk.bad)
        if chunk.items:
            batches.append([orjson.loads(item.body) | {"_line": item.line} for item in chunk.items])
        if chunk.end:
            return batches, bad


def test_lines_are_where_records_start_across_newlines_crlf_and_blank_lines() -> None:
    text = (
        "\ufeffpublication,content,extra\r\n"
        'BBC,"two\r\nlines",x\r\n'
        "\r\n"
        'CNN,"three\nlines\nhere",y\r\n'
        "CNN,one line,z\r\n"
        "CNN,too,many,fields\r\n"
    )
    batches, bad = read_all(text)
    posts = [post for batch in batches for post in batch]
    assert [(p["_line"], p["publication"]) for p in posts] == [(2, "BBC"), (5, "CNN"), (8, "CNN")]
    assert posts[0]["content"] == "two\r\nlines"
    assert bad == [BadRow(9, "has 4 fields but the header has 3")]


def test_batches_keep_to_the_size_and_the_body_limit() -> None:
    rows = "".join(f"BBC,{'x' * 400} {n}\n" for n in range(10))
    data = ("publication,content\n" + rows).encode()
    reader = Reader(io.BytesIO(data), Path("t.csv"), batch_size=4, max_body_bytes=2048)
    lines = []
    while True:
        chunk = reader.next_chunk(stop_at_bad=False)
        assert len(chunk.items) <= 4
        assert 2 + sum(len(item.body) + 1 for item in chunk.items) <= 2048
        lines.extend(item.line for item in chunk.items)
        if chunk.end:
            break
    assert lines == list(range(2, 12))


def test_skip_and_limit_count_rows_not_lines() -> None:
    text = "publication,content\n" + "".join(f'BBC,"row\n{n}"\n' for n in range(10))
    batches, _ = read_all(text, skip=3, limit=4)
    assert [p["content"] for batch in batches for p in batch] == [f"row\n{n}" for n in range(3, 7)]


def test_empty_cells_are_left_out_and_the_service_derives_the_id() -> None:
    text = "id,title,publication,author,date,url,content\n,,BBC,,,,Text about Rome.\n"
    batches, bad = read_all(text)
    assert (batches, bad) == (
        [[{"publication": "BBC", "content": "Text about Rome.", "_line": 2}]],
        [],
    )


def test_invalid_utf8_in_a_row_is_reported_and_the_rest_read() -> None:
    batches, bad = read_all(b"publication,content\nBBC,caf\xe9\nCNN,fine\n")
    assert bad == [BadRow(2, "is not valid UTF-8")]
    assert [p["content"] for p in batches[0]] == ["fine"]


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("", {}, "is empty"),
        ("title,body\nT,x\n", {}, "no 'content' or 'publication' column"),
        ("title,content\nT,x\n", {}, "or give --publication NAME"),
        ("publication,content\n", {"content": "text"}, "the header has no column 'text'"),
        ('publication,"content\n', {}, "bad header: not valid CSV"),
    ],
)
def test_a_file_that_cannot_give_posts_is_one_error(
    text: str, columns: dict[str, str], message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        Reader(io.BytesIO(text.encode()), Path("t.csv"), columns=columns)


def test_dates_that_overflow_in_utc_are_bad_rows_by_line() -> None:
    text = (
        "publication,content,date\n"
        "BBC,one,0001-01-01T00:30:00+01:00\n"
        "BBC,two,2017-03-01\n"
        "CNN,three,9999-12-31T23:30:00-01:00\n"
    )
    batches, bad = read_all(text)
    assert [row.line for row in bad] == [2, 4]
    assert all("years 1 to 9999" in row.reason for row in bad)
    assert [p["content"] for p in batches[0]] == ["two"]
