"""Property tests of the prompt-file converter on arbitrary input: whatever bytes arrive, in whatever
chunks, under whatever supported extension, it never raises; every item is a record or a rejection."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from batch.converter import Accepted, Options, Rejected, convert
from batch.names import record_id

MODEL = "openai.gpt-oss-120b-1:0"
OPTIONS = Options(model_id=MODEL, default_max_tokens=256, max_record_bytes=512)
EXTENSIONS = [".jsonl", ".json", ".csv", ".txt", ".bin", ""]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=15,
)
# Lines that are mostly prompt-shaped objects with junk in their fields, plus any JSON and any text.
prompt_lines = st.one_of(
    st.fixed_dictionaries(
        {"prompt": json_values | st.text(max_size=40)},
        optional={"id": json_values, "system": json_values, "max_completion_tokens": json_values, "model": json_values},
    ).map(json.dumps),
    st.fixed_dictionaries({"messages": json_values}).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    edges = [0, *points, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]


def _check(items: list[Any], data: bytes) -> None:
    # A line (or array item) number is at most one more than the bytes before it.
    lines = len(data) + 1
    for item in items:
        assert isinstance(item, Accepted | Rejected)
        if isinstance(item, Accepted):
            assert item.entry.recordId == record_id(item.entry.line)
            assert len(item.line) <= OPTIONS.max_record_bytes
            assert item.line.endswith(b"\n")
        else:
            assert 0 <= item.rejection.line <= lines
    accepted = [item.entry.recordId for item in items if isinstance(item, Accepted)]
    assert len(set(accepted)) == len(accepted)


@given(
    data=st.binary(max_size=2_000), cuts=st.lists(st.integers(0, 4_000), max_size=6), ext=st.sampled_from(EXTENSIONS)
)
def test_any_bytes_under_any_extension_convert_without_raising(data: bytes, cuts: list[int], ext: str) -> None:
    items = list(convert(f"inbox/any{ext}", _chunks(data, cuts), OPTIONS))
    _check(items, data)


@given(
    lines=st.lists(prompt_lines, max_size=12),
    cuts=st.lists(st.integers(0, 4_000), max_size=6),
    ext=st.sampled_from([".jsonl", ".json", ".csv"]),
)
def test_prompt_shaped_junk_converts_without_raising(lines: list[str], cuts: list[int], ext: str) -> None:
    if ext == ".json":
        data = ("[" + ",".join(line for line in lines if _is_json(line)) + "]").encode()
    elif ext == ".csv":
        data = ("prompt,id\n" + "".join(f'"{line.replace(chr(34), chr(34) * 2)}",x\n' for line in lines)).encode()
    else:
        data = "".join(f"{line}\n" for line in lines).encode()
    items = list(convert(f"inbox/junk{ext}", _chunks(data, cuts), OPTIONS))
    _check(items, data)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
