"""Line and JSON-array framing: exact on any chunking, bounded in memory, explicit about broken input."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.jsonl import Frame, NotAnArray, encode, iter_array_items, iter_lines

MIB = 1024 * 1024


def _chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in pairwise(points)]


def _reference_lines(data: bytes, max_bytes: int) -> list[Frame]:
    if not data:
        return []
    pieces = data.split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    frames = []
    for number, piece in enumerate(pieces, start=1):
        line = piece.removesuffix(b"\r")
        frames.append(Frame(number, b"", too_long=True) if len(line) > max_bytes else Frame(number, line))
    return frames


lines_content = st.binary(max_size=400) | st.lists(
    st.sampled_from([b"", b"abc", b"\r", b"\xef\xbb\xbf", b"x" * 40, "é🚀".encode(), b"\xff"]), max_size=30
).map(lambda parts: b"\n".join(parts))


@given(data=lines_content, cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=12))
@settings(max_examples=400)
def test_lines_match_a_plain_split_whatever_the_chunking(data: bytes, cuts: list[int]) -> None:
    assert list(iter_lines(_chunked(data, cuts), max_bytes=32)) == _reference_lines(data, 32)


def test_crlf_blank_lines_and_a_final_line_without_newline() -> None:
    frames = list(iter_lines([b'{"a":1}\r\n\r\n', b"\n  \nlast"], max_bytes=100))
    assert frames == [Frame(1, b'{"a":1}'), Frame(2, b""), Frame(3, b""), Frame(4, b"  "), Frame(5, b"last")]


def test_an_over_long_line_is_reported_without_its_content() -> None:
    frames = list(iter_lines([b"ok\n", b"x" * 50, b"y" * 50 + b"\nfine\n"], max_bytes=60))
    assert frames == [Frame(1, b"ok"), Frame(2, b"", too_long=True), Frame(3, b"fine")]


def _huge_line(size: int) -> Iterator[bytes]:
    chunk = b"z" * MIB
    for _ in range(size // MIB):
        yield chunk
    yield b"\nafter\n"


def test_memory_stays_bounded_on_a_huge_line() -> None:
    tracemalloc.start()
    try:
        frames = list(iter_lines(_huge_line(64 * MIB), max_bytes=MIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert frames == [Frame(1, b"", too_long=True), Frame(2, b"after")]
    assert peak < 5 * MIB


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
tricky_text = st.text(alphabet='[]{},"\\:ab é🚀\n\t', max_size=30)
items = st.lists(st.dictionaries(st.sampled_from(["prompt", "id", "x"]), tricky_text | json_values), max_size=12)


@given(values=items, indent=st.sampled_from([None, 0, 2]), cuts=st.lists(st.integers(0, 2000), max_size=15))
@settings(max_examples=300)
def test_array_items_round_trip_whatever_the_chunking(
    values: list[dict[str, object]], indent: int | None, cuts: list[int]
) -> None:
    text = json.dumps(values, indent=indent, ensure_ascii=indent == 0).encode()
    frames = list(iter_array_items(_chunked(text, cuts), max_bytes=10_000))
    assert [frame.number for frame in frames] == list(range(1, len(values) + 1))
    assert [json.loads(frame.data) for frame in frames] == values


def test_an_escaped_backslash_at_a_chunk_edge() -> None:
    text = b'[{"p": "a\\\\"}, {"p": "b\\""}]'
    for cut in range(len(text) + 1):
        frames = list(iter_array_items([text[:cut], text[cut:]], max_bytes=100))
        assert [json.loads(frame.data) for frame in frames] == [{"p": "a\\"}, {"p": 'b"'}]


@pytest.mark.parametrize("text", [b"", b"  \n", b"[]", b" [ \n ] \n"])
def test_no_items(text: bytes) -> None:
    assert list(iter_array_items([text], max_bytes=10)) == []


@pytest.mark.parametrize("text", [b'{"prompt": "x"}', b'"text"', b"12", b"x[1]", b"\xff[1]"])
def test_a_value_that_is_not_an_array(text: bytes) -> None:
    with pytest.raises(NotAnArray):
        list(iter_array_items([text], max_bytes=100))


def test_broken_arrays_report_what_went_wrong() -> None:
    assert list(iter_array_items([b"[1,,2,]"], max_bytes=10)) == [
        Frame(1, b"1"),
        Frame(2, b"", error="empty array item (a stray or trailing comma)"),
        Frame(3, b"2"),
        Frame(4, b"", error="empty array item (a stray or trailing comma)"),
    ]
    assert list(iter_array_items([b'[1, {"a": '], max_bytes=10)) == [
        Frame(1, b"1"),
        Frame(2, b"", error="the file ends before the closing ']' of the array"),
    ]
    assert list(iter_array_items([b"[1] [2]", b" 3"], max_bytes=10)) == [
        Frame(1, b"1"),
        Frame(2, b"", error="unexpected data after the closing ']' of the array"),
    ]


def test_an_over_long_item_does_not_stop_the_others() -> None:
    text = b'[{"p": "' + b"x" * 500 + b'"}, {"p": "ok"}]'
    frames = list(iter_array_items(_chunked(text, [100, 200, 300]), max_bytes=100))
    assert frames == [Frame(1, b"", too_long=True), Frame(2, b'{"p": "ok"}')]


def test_encode_is_compact_utf8_jsonl() -> None:
    assert encode({"b": "é", "a": [1, None]}) == '{"b":"é","a":[1,null]}\n'.encode()
