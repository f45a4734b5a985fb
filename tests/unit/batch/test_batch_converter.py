"""Prompt files -> records and rejections: every malformed-file case, and every line accounted for once."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.converter import Accepted, Item, Options, Rejected, convert, file_format
from batch.names import record_id

MODEL = "openai.gpt-oss-120b-1:0"
OPTIONS = Options(model_id=MODEL, default_max_tokens=4096, max_record_bytes=2048)
ROOMY = Options(model_id=MODEL, default_max_tokens=4096, max_record_bytes=64 * 1024)


def _convert(key: str, data: bytes, options: Options = OPTIONS) -> list[Item]:
    return list(convert(key, [data[i : i + 5] for i in range(0, len(data), 5)] or [b""], options))


def _records(items: list[Item]) -> list[dict[str, Any]]:
    return [json.loads(item.line) for item in items if isinstance(item, Accepted)]


def _rejections(items: list[Item]) -> list[tuple[int, str]]:
    return [(item.rejection.line, item.rejection.reason) for item in items if isinstance(item, Rejected)]


def _one(line: dict[str, Any] | str) -> Item:
    body = line if isinstance(line, str) else json.dumps(line)
    [item] = _convert("inbox/p.jsonl", body.encode())
    return item


def _reason(line: dict[str, Any] | str) -> str:
    item = _one(line)
    assert isinstance(item, Rejected), item
    return item.rejection.reason


def _model_input(line: dict[str, Any]) -> dict[str, Any]:
    item = _one(line)
    assert isinstance(item, Accepted), item
    model_input: dict[str, Any] = json.loads(item.line)["modelInput"]
    return model_input


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("inbox/a.jsonl", "jsonl"),
        ("inbox/A.JSON", "json"),
        ("inbox/x.y.Csv", "csv"),
        ("inbox/t.txt", "txt"),
        ("inbox/t.pdf", None),
        ("inbox/noext", None),
    ],
)
def test_format_by_extension(key: str, expected: str | None) -> None:
    assert file_format(key) == expected


def test_short_and_chat_shapes_become_openai_bodies_without_model_or_stream() -> None:
    assert _model_input({"prompt": "Hi", "system": "Be brief", "id": "a-1"}) == {
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
        "max_completion_tokens": 4096,
    }
    body = {
        "model": MODEL,
        "stream": True,
        "n": 1,
        "messages": [
            {"role": "developer", "content": "rules"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": "ab?"},
            {"role": "user", "content": "yes"},
        ],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "reasoning_effort": "low",
    }
    assert _model_input(body) == {
        "messages": [
            {"role": "system", "content": "rules"},
            {"role": "user", "content": "ab"},
            {"role": "assistant", "content": "ab?"},
            {"role": "user", "content": "yes"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "reasoning_effort": "low",
    }


def test_the_model_may_be_named_by_id_or_short_name_but_not_another() -> None:
    assert "model" not in _model_input({"prompt": "x", "model": "gpt-oss-120b"})
    assert "not the model of this pipeline" in _reason({"prompt": "x", "model": "openai.gpt-oss-20b-1:0"})
    assert "not the model of this pipeline" in _reason({"prompt": "x", "model": "gpt-4o"})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ({"prompt": "x", "n": 2}, "n: Input should be less than or equal to 1"),
        ({"prompt": "x", "max_completion_tokens": 0}, "max_completion_tokens"),
        ({"prompt": "x", "max_completion_tokens": 128_001}, "max_completion_tokens"),
        ({"prompt": "x", "max_completion_tokens": "100"}, "max_completion_tokens"),
        ({"prompt": "x", "max_completion_tokens": 10, "max_tokens": 20}, "disagree"),
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "top_p": -0.1}, "top_p"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "reasoning_effort": "max"}, "reasoning_effort"),
        ({"prompt": "x", "tools": []}, "tools: Extra inputs are not permitted"),
        ({"prompt": "x", "response_format": {"type": "json_object"}}, "response_format"),
        ({"prompt": "x", "id": True}, "id"),
        ({"prompt": "x", "id": "i" * 257}, "id"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "   \n"}, "empty prompt"),
        ({"prompt": "a\x00b"}, "NUL"),
        ({"system": "s"}, "missing 'messages'"),
        ({"prompt": "x", "messages": []}, "either 'messages' or 'prompt'"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "content"),
        ({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}, "end with a user"),
        ({"messages": [{"role": "system", "content": "only"}]}, "end with a user"),
        ({"messages": [{"role": "user", "content": "x", "name": "n"}]}, "name"),
        ({"messages": [{"role": "user", "content": ""}]}, "empty prompt"),
        ({"messages": [{"role": "assistant", "content": " "}, {"role": "user", "content": "x"}]}, "empty assistant"),
        ("[1, 2]", "expected a JSON object, got an array"),
        ('"just text"', "expected a JSON object, got a string"),
        ("null", "got null"),
        ('{"prompt": "x"', "invalid JSON at column 14: EOF while parsing an object"),
        ("{'prompt': 'x'}", "invalid JSON"),
        ("[" * 2000, "invalid JSON at column 202: nested more than 200 levels deep"),
    ],
)
@pytest.mark.row(18)
def test_invalid_prompts_are_rejected_with_a_reason(line: dict[str, Any] | str, reason: str) -> None:
    assert reason in _reason(line)


def test_defaults_and_blank_system_messages() -> None:
    assert _model_input({"prompt": "x", "system": "  "}) == {
        "messages": [{"role": "user", "content": "x"}],
        "max_completion_tokens": 4096,
    }
    chat = {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "x"}], "max_tokens": 7}
    assert _model_input(chat) == {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 7}


def test_ids_come_from_the_file_or_the_line_and_label_rejections() -> None:
    items = _convert("inbox/p.jsonl", b'{"prompt": "a", "id": 7}\n{"prompt": "b"}\n{"prompt": "", "id": "bad-1"}\n')
    accepted = [item.entry for item in items if isinstance(item, Accepted)]
    assert [(entry.recordId, entry.id, entry.line) for entry in accepted] == [
        (record_id(1), "7", 1),
        (record_id(2), "line-2", 2),
    ]
    [rejected] = [item.rejection for item in items if isinstance(item, Rejected)]
    assert rejected.to_json() == {"line": 3, "reason": "empty prompt", "id": "bad-1"}


# Valid prompts of both shapes with every generation option, each in its valid range.
_texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=12)
_systems = st.sampled_from(["", " \n", "Be brief.", "é😀\u2028"]) | st.none()
_contents = _texts.filter(str.strip) | st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": _texts.filter(str.strip)}), min_size=1, max_size=3
)
_turns = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "assistant"]), "content": _contents}
    ),
    max_size=3,
).map(lambda turns: [*turns, {"role": "user", "content": "Why?"}])
_options: dict[str, st.SearchStrategy[Any]] = {
    "id": _texts | st.integers() | st.none(),
    "model": st.sampled_from([MODEL, "gpt-oss-120b", None]),
    "stream": st.booleans() | st.none(),
    "n": st.just(1) | st.none(),
    "temperature": st.floats(0, 2) | st.integers(0, 2) | st.none(),
    "top_p": st.floats(0, 1) | st.integers(0, 1) | st.none(),
    "stop": _texts | st.lists(_texts, min_size=1, max_size=4) | st.none(),
    "reasoning_effort": st.sampled_from(["low", "medium", "high"]) | st.none(),
}
_budgets: st.SearchStrategy[dict[str, int]] = st.sampled_from(["max_completion_tokens", "max_tokens"]).flatmap(
    lambda name: st.fixed_dictionaries({name: st.integers(1, 128_000)})
) | st.just({})
valid_prompts = st.tuples(
    st.fixed_dictionaries({"prompt": _texts.filter(str.strip)}, optional={"system": _systems, **_options})
    | st.fixed_dictionaries({"messages": _turns}, optional=_options),
    _budgets,
).map(lambda pair: {**pair[0], **pair[1]})


def _text(content: str | list[dict[str, str]]) -> str:
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def _expected_record(value: dict[str, Any]) -> dict[str, Any]:
    """What the rules of records.py make of a valid prompt, spelled out independently of them."""
    if "prompt" in value:
        system = value.get("system")
        given = [("system", system)] if system and system.strip() else []
        given.append(("user", value["prompt"]))
    else:
        turns = [
            ("system" if turn["role"] == "developer" else turn["role"], _text(turn["content"]))
            for turn in value["messages"]
        ]
        given = [(role, text) for role, text in turns if role != "system" or text.strip()]
    model_input: dict[str, Any] = {
        "messages": [{"role": role, "content": text} for role, text in given],
        "max_completion_tokens": value.get("max_completion_tokens") or value.get("max_tokens") or 4096,
    }
    model_input.update(
        {
            name: value[name]
            for name in ("temperature", "top_p", "stop", "reasoning_effort")
            if value.get(name) is not None
        }
    )
    return {"recordId": record_id(1), "modelInput": model_input}


@given(value=valid_prompts)
def test_every_valid_prompt_becomes_its_record_and_id_map_entry(value: dict[str, Any]) -> None:
    [item] = _convert("inbox/p.jsonl", json.dumps(value).encode(), ROOMY)
    assert isinstance(item, Accepted), item
    assert json.loads(item.line) == _expected_record(value)  # model, stream and n dropped; developer -> system
    identifier = value.get("id")
    assert item.entry.id == ("line-1" if identifier is None else str(identifier))
    assert (item.entry.recordId, item.entry.line) == (record_id(1), 1)


@pytest.mark.row(18)
def test_jsonl_bom_crlf_blank_lines_invalid_utf8_and_long_lines() -> None:
    data = (
        b'\xef\xbb\xbf{"prompt": "one"}\r\n'
        b"\r\n"
        b"   \n"
        b'{"prompt": "caf\xc3\xa9"}\n'
        b'{"prompt": "\xff\xfe"}\n'
        b'{"prompt": "' + b"x" * 3000 + b'"}\n'
        b"\x00\x01\x02binary\n"
        b'{"prompt": "last"}'
    )
    items = _convert("inbox/p.jsonl", data)
    assert [record["recordId"] for record in _records(items)] == [record_id(1), record_id(4), record_id(8)]
    assert _records(items)[1]["modelInput"]["messages"][0]["content"] == "café"
    assert _rejections(items) == [
        (5, "invalid UTF-8 at byte 12; save the file as UTF-8"),
        (6, "longer than 2048 bytes"),
        (7, "a NUL byte at byte 0 (binary data, or UTF-16 without a BOM?); save the file as UTF-8 text"),
    ]


def test_a_record_that_grows_past_the_limit_when_encoded_is_rejected() -> None:
    # 2,000 bytes of prompt fit the source limit, but the record adds its envelope and the default budget.
    options = Options(model_id=MODEL, default_max_tokens=4096, max_record_bytes=2020)
    items = _convert("inbox/p.jsonl", json.dumps({"prompt": "y" * 2000}).encode(), options)
    assert _rejections(items) == [(1, "the record is longer than 2020 bytes")]


@pytest.mark.parametrize("key", ["inbox/p.jsonl", "inbox/p.json", "inbox/p.csv", "inbox/p.txt"])
@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b" \r\n\n  \n"])
@pytest.mark.row(18)
def test_empty_files_have_no_prompt_and_nothing_to_reject(key: str, data: bytes) -> None:
    assert _convert(key, data) == []


@pytest.mark.row(18)
def test_an_unknown_extension_rejects_the_whole_file() -> None:
    assert _rejections(_convert("inbox/report.pdf", b"%PDF-1.7")) == [
        (0, "unsupported file type .pdf; supported: .jsonl, .json, .csv, .txt")
    ]


def test_json_arrays() -> None:
    data = json.dumps([{"prompt": "a", "id": "x"}, {"bad": 1}, {"messages": [{"role": "user", "content": "b"}]}])
    items = _convert("inbox/p.json", data.encode())
    assert [(r["recordId"], r["modelInput"]["messages"][-1]["content"]) for r in _records(items)] == [
        (record_id(1), "a"),
        (record_id(3), "b"),
    ]
    assert _rejections(items) == [(2, "missing 'messages' (an OpenAI chat body) or 'prompt'")]
    assert _rejections(_convert("inbox/p.json", b'{"prompt": "x"}')) == [
        (0, "a .json prompt file must hold one JSON array")
    ]
    cut = _convert("inbox/p.json", b'[{"prompt": "a"}, {"prompt": "b')
    assert _rejections(cut) == [(2, "the file ends before the closing ']' of the array")]


def test_csv_columns_quotes_multiline_rows_and_bad_rows() -> None:
    data = (
        b"\xef\xbb\xbfID, Prompt ,system,notes\r\n"
        b'1,"Hello, world",,ignored\r\n'
        b'2,"two\r\nlines",Be terse,x\r\n'
        b"\r\n"
        b"3,too few\r\n"
        b"4,\xff\xfe,,x\r\n"
        b",,,\r\n"
        b' ,"no id",,x\r\n'
        b'5,"' + b"q" * 3000 + b'",,x\r\n'
        b"6,last,,x"
    )
    items = _convert("inbox/p.csv", data)
    records = _records(items)
    assert [(r["recordId"], r["modelInput"]["messages"]) for r in records] == [
        (record_id(2), [{"role": "user", "content": "Hello, world"}]),
        (record_id(3), [{"role": "system", "content": "Be terse"}, {"role": "user", "content": "two\nlines"}]),
        (record_id(9), [{"role": "user", "content": "no id"}]),
        (record_id(11), [{"role": "user", "content": "last"}]),
    ]
    assert [item.entry.id for item in items if isinstance(item, Accepted)] == ["1", "2", "line-9", "6"]
    assert _rejections(items) == [
        (6, "the row has 2 fields, the header has 4 (a stray comma or quote?)"),
        (7, "invalid UTF-8 at byte 2; save the file as UTF-8"),
        (10, "longer than 2048 bytes"),
    ]


def test_csv_without_a_prompt_column_rejects_the_file() -> None:
    assert _rejections(_convert("inbox/p.csv", b"id,text\n1,hello\n")) == [(1, "the CSV header has no 'prompt' column")]


def test_csv_field_larger_than_the_limit_spanning_lines() -> None:
    # Past the limit an open quote is taken for an unterminated one: the row is rejected where it starts and
    # the lines after that are read as rows (here the rest of the field: rows of the wrong width).
    row = b'1,"' + b"\n".join([b"w" * 1000] * 3) + b'"\n2,fine\n'
    items = _convert("inbox/p.csv", b"id,prompt\n" + row)
    assert [r["recordId"] for r in _records(items)] == [record_id(5)]
    assert _rejections(items) == [
        (2, "the row is longer than 2048 bytes (an unterminated quote?); the lines after it are read as rows"),
        (3, "the row has 1 fields, the header has 2 (a stray comma or quote?)"),
        (4, "the row has 1 fields, the header has 2 (a stray comma or quote?)"),
    ]


def test_txt_is_one_prompt() -> None:
    records = _records(_convert("inbox/p.txt", b"\xef\xbb\xbfSummarise this.\r\nThanks\n"))
    assert records == [
        {
            "recordId": record_id(1),
            "modelInput": {
                "messages": [{"role": "user", "content": "Summarise this.\r\nThanks\n"}],
                "max_completion_tokens": 4096,
            },
        }
    ]
    assert _rejections(_convert("inbox/p.txt", b"x" * 2049)) == [(1, "a .txt prompt file may hold at most 2048 bytes")]
    assert _rejections(_convert("inbox/p.txt", b"\xc3\x28")) == [(1, "invalid UTF-8 at byte 0; save the file as UTF-8")]
    assert "NUL" in _rejections(_convert("inbox/p.txt", b"PK\x03\x04\x00\x00"))[0][1]


LINES = {
    "good": b'{"prompt": "hello"}',
    "chat": b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}',
    "blank": b"  ",
    "empty": b"",
    "bad_json": b'{"prompt": ',
    "bad_prompt": b'{"prompt": "x", "n": 3}',
    "not_utf8": b'{"prompt": "\xc0"}',
    "too_long": b'{"prompt": "' + b"z" * 2100 + b'"}',
    "binary": b"\x00\xff\x10",
}
ACCEPTED = {"good", "chat"}
BLANK = {"blank", "empty"}


@given(kinds=st.lists(st.sampled_from(sorted(LINES)), max_size=60), crlf=st.booleans(), trailing=st.booleans())
@settings(max_examples=200)
def test_every_non_blank_line_is_one_record_or_one_rejection(kinds: list[str], crlf: bool, trailing: bool) -> None:
    newline = b"\r\n" if crlf else b"\n"
    data = newline.join(LINES[kind] for kind in kinds) + (newline if trailing and kinds else b"")
    items = _convert("inbox/p.jsonl", data)
    accepted = [item.entry.line for item in items if isinstance(item, Accepted)]
    rejected = [item.rejection.line for item in items if isinstance(item, Rejected)]
    expected = [n for n, kind in enumerate(kinds, start=1) if kind not in BLANK]
    assert sorted(accepted + rejected) == expected
    assert accepted == [n for n, kind in enumerate(kinds, start=1) if kind in ACCEPTED]
    assert len({record["recordId"] for record in _records(items)}) == len(accepted)
    assert all(set(record["modelInput"]) >= {"messages", "max_completion_tokens"} for record in _records(items))
    assert not any({"model", "stream"} & set(record["modelInput"]) for record in _records(items))


def _generated(lines: int, prompt_bytes: int) -> Iterator[bytes]:
    """A prompt file produced on the fly, in 1 MiB chunks, never held whole."""
    chunk = bytearray()
    for number in range(lines):
        chunk += b'{"prompt": "' + str(number).encode() + b" " + b"w" * prompt_bytes + b'"}\n'
        if len(chunk) >= 1024 * 1024:
            yield bytes(chunk)
            chunk.clear()
    yield bytes(chunk)


@pytest.mark.row(20)
def test_memory_stays_bounded_whatever_the_file_size() -> None:
    options = Options(model_id=MODEL, default_max_tokens=4096, max_record_bytes=64 * 1024)
    tracemalloc.start()
    try:
        accepted = sum(
            isinstance(item, Accepted) for item in convert("inbox/big.jsonl", _generated(20_000, 2_000), options)
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert accepted == 20_000  # about 40 MB of prompts went through
    assert peak < 6 * 1024 * 1024
