"""The converter's plain-prompt fast path against its precise path: whatever a line holds, the fast path either
steps aside or produces exactly what pydantic validation would (the same record bytes and id-map entry)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from batch import converter
from batch.converter import Accepted, Options, Rejected
from shared.strict_json import InvalidJson, loads

MODEL = "openai.gpt-oss-120b-1:0"
OPTIONS = Options(model_id=MODEL, default_max_tokens=256, max_record_bytes=4096)

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)
texts = st.sampled_from(["", " ", "\n\t", "a\x00b", "Hello", "  spaced  ", "é😀\u2028"]) | st.text(max_size=30)
numbers = st.integers(-2, 5) | st.floats(-1, 3) | st.sampled_from([0, 1, 2, 0.0, 1e-05, 2.0000001])
# Each field: valid values, near misses and junk, so both paths are exercised on the same lines.
valid_options: dict[str, st.SearchStrategy[Any]] = {
    "id": st.text(min_size=1, max_size=12) | st.integers() | st.none(),
    "model": st.sampled_from([MODEL, "gpt-oss-120b", None]),
    "stream": st.booleans() | st.none(),
    "n": st.just(1) | st.none(),
    "max_completion_tokens": st.integers(1, 128_000) | st.none(),
    "temperature": st.floats(0, 2) | st.integers(0, 2) | st.none(),
    "top_p": st.floats(0, 1) | st.integers(0, 1) | st.none(),
    "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), min_size=1, max_size=4) | st.none(),
    "reasoning_effort": st.sampled_from(["low", "medium", "high"]) | st.none(),
}
any_options = {
    "id": valid_options["id"] | st.text(max_size=300) | junk,
    "model": st.sampled_from([MODEL, "gpt-4o", ""]) | junk,
    "stream": junk,
    "n": numbers | junk,
    "max_completion_tokens": numbers | st.integers(127_999, 128_001) | junk,
    "max_tokens": numbers | junk,
    "temperature": numbers | junk,
    "top_p": numbers | junk,
    "stop": st.lists(st.text(max_size=3), max_size=6) | junk,
    "reasoning_effort": st.sampled_from(["low", "minimal", "HIGH"]) | junk,
    "unknown": junk,
}
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "User"])
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": roles | junk,
            "content": texts | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts})),
        },
        optional={"name": st.text(max_size=3)},
    )
    | junk,
    max_size=4,
)
any_prompts = st.one_of(
    st.fixed_dictionaries({"prompt": texts | junk}, optional={"system": texts | junk, **any_options}),
    st.fixed_dictionaries({"messages": messages | junk}, optional=any_options),
    st.fixed_dictionaries({"messages": messages, "prompt": texts}),
    junk,
)
plain_systems = st.sampled_from(["", " \n", "Be brief.", "é😀\u2028"]) | st.none()
plain_turns = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": st.just("Hi")}
    ),
    max_size=3,
).map(lambda turns: [*turns, {"role": "user", "content": "Why?"}])
plain_prompts = st.one_of(
    st.fixed_dictionaries({"prompt": st.just("Why?")}, optional={"system": plain_systems, **valid_options}),
    st.fixed_dictionaries({"messages": plain_turns}, optional=valid_options),
)


def _precise(value: Any) -> converter.Item:
    """The converter's path for a line the fast path leaves alone (pydantic validation)."""
    return converter._from_value(1, value, OPTIONS)


def _same(fast: Accepted, precise: converter.Item) -> None:
    assert isinstance(precise, Accepted)
    assert fast.line == precise.line
    assert fast.entry == precise.entry


@given(value=any_prompts, ascii_only=st.booleans())
def test_the_fast_path_accepts_only_what_validation_accepts_and_writes_the_same_record(
    value: Any, ascii_only: bool
) -> None:
    try:
        data = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        return  # not a line a prompt file can hold (a lone surrogate)
    try:
        parsed = loads(data)
    except InvalidJson:  # NaN or Infinity: the line is rejected before either path sees it
        assert isinstance(converter._from_bytes(1, data, OPTIONS), Rejected)
        return
    fast = converter._plain(1, parsed, OPTIONS)
    if fast is not None:
        _same(fast, _precise(parsed))
    item = converter._from_bytes(1, data, OPTIONS)
    if isinstance(item, Accepted):
        _same(item, _precise(parsed))
    else:
        assert item == _precise(parsed)


@given(value=plain_prompts)
def test_plain_prompts_take_the_fast_path(value: dict[str, Any]) -> None:
    parsed = loads(json.dumps(value).encode())
    fast = converter._plain(1, parsed, OPTIONS)
    assert fast is not None
    _same(fast, _precise(parsed))


def test_lines_the_strict_reading_refuses_reach_neither_path() -> None:
    # Rejected with the reason the strict reading gives (NaN, a huge integer, a BOM inside the file, a raw
    # control character, a lone surrogate escape, trailing text, invalid UTF-8).
    for line in (
        b'{"prompt": "x", "temperature": NaN}',
        b'{"prompt": "x", "id": ' + b"9" * 5000 + b"}",
        b'\xef\xbb\xbf{"prompt": "x"}',
        b'{"prompt": "a\x01b"}',
        b'{"prompt": "\\ud800"}',
        b'{"prompt": "x"} trailing',
        b"\xff\xfe",
    ):
        item = converter._from_bytes(1, line, OPTIONS)
        assert isinstance(item, Rejected), line
        assert item.rejection.reason.startswith(("invalid JSON at column ", "invalid UTF-8 at byte ")), line
