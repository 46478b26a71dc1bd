"""Bodies parsed the quick way (one orjson call) give what the careful way gives, errors too."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from entityflow import bodies
from entityflow.dataset import sample

POST = {"publication": "BBC", "content": "Angela Merkel visited Paris."}


def outcome(parse: Any, body: bytes, max_items: int) -> Any:
    try:
        return ("ok", parse(body, max_items=max_items))
    except bodies.BodyError as error:
        return ("error", error.status, error.code, error.message)


def articles() -> bytes:
    return orjson.dumps([{**a.as_post(), "id": f"a{n}"} for n, a in enumerate(sample(40))])


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b" \n[ ]\t",
        orjson.dumps([POST] * 3),
        b" [ " + orjson.dumps(POST) + b" ,\n" + orjson.dumps(POST) + b" ] \r\n",
        orjson.dumps([POST, "text", 7, None, [POST], {"nested": {"a": [1, 2, {"b": "}"}]}}]),
        orjson.dumps([{**POST, "content": "commas, [brackets] and {braces}: ,,,[[{{"}]),
        orjson.dumps([{**POST, "id": "x"}, {**POST, "id": "x", "id2": "y"}]),
        b'[{"publication": "a", "publication": "b", "content": "c"}]',  # the last key wins
        orjson.dumps([POST] * 5),  # over max_items: refused at item 5
        b"[" + orjson.dumps(POST) + b",]",  # malformed after a good item
        b"[" + orjson.dumps(POST) + b"] x",  # data after the array
        b'[{"publication": "BBC", "content": NaN}]',
        b'[{"publication": "BBC", "content": "\xff"}]',  # not UTF-8
        b'[{"publication": "BBC", "content": "\\ud800"}]',  # a lone surrogate
        b"\xef\xbb\xbf[]",  # a byte order mark
        b"[1e400]",
        b'{"publication": "BBC", "content": "one post"}',
        b'  {"publication": "BBC"}  ',
        b'{"publication": "BBC",',
        b'{"content": "\xc3"}',
        b"",
        b"   ",
        b"null",
    ],
)
def test_quick_and_careful_agree(body: bytes) -> None:
    assert outcome(bodies.parse_json, body, 4) == outcome(bodies._cut, body, 4)


def test_a_batch_of_articles_is_parsed_whole_and_the_same() -> None:
    body = articles()
    assert bodies._few_values(body, 1000)
    assert bodies.parse_json(body, max_items=1000) == bodies._cut(body, max_items=1000)


def test_many_tiny_items_are_cut_not_parsed_whole() -> None:
    # Over VALUES_PER_ITEM per allowed item: the careful way, which stops at item 11.
    body = b"[" + b",".join([b"{}"] * (bodies.VALUES_PER_ITEM * 10)) + b"]"
    assert not bodies._few_values(body, 10)
    assert outcome(bodies.parse_json, body, 10) == (
        "error",
        422,
        "batch_too_large",
        "a batch holds at most 10 posts; this one has more",
    )
