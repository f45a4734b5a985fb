"""prepare's shard split: whole lines handed out by count, whatever the chunk boundaries."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from batch.prepare import _LineBlocks


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[start:end] for start, end in itertools.pairwise([0, *points, len(data)])]


@given(
    lines=st.lists(st.binary(max_size=12).map(lambda line: line.replace(b"\n", b"") + b"\n"), max_size=40),
    cuts=st.lists(st.integers(0, 600), max_size=8),
    counts=st.lists(st.integers(1, 15), min_size=1, max_size=6),
)
def test_shards_get_exactly_their_lines_in_order(lines: list[bytes], cuts: list[int], counts: list[int]) -> None:
    reader = _LineBlocks(iter(_chunks(b"".join(lines), cuts)))
    start = 0
    for count in counts:
        taken = list(reader.take(count))
        expected = lines[start : start + count]
        assert b"".join(block for block, _ in taken) == b"".join(expected)
        assert sum(number for _, number in taken) == len(expected)
        assert all(block.endswith(b"\n") for block, _ in taken)
        start += count


def test_a_last_line_without_its_newline_still_counts() -> None:
    reader = _LineBlocks(iter([b"a\nb\nc"]))
    assert list(reader.take(5)) == [(b"a\nb\n", 2), (b"c\n", 1)]
