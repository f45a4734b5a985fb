"""Prompt file -> batch records, id-map entries and rejections (pure, streaming).

Formats, chosen by the key's extension (case-insensitive):
- `.jsonl`: one prompt per line (see records.py for the two accepted shapes);
- `.json`: one array of such prompts, streamed item by item (any size, bounded memory);
- `.csv`: a header row with a `prompt` column and optional `id` and `system` columns (other columns are
  ignored), one prompt per row;
- `.txt`: the whole file is one prompt.
Any other extension rejects the whole file (one rejection, line 0).

Numbering (`line` in the id map and in rejections): the physical line for .jsonl (blank lines count),
the item number for .json, the line on which the row starts for .csv (the header is line 1), 1 for .txt.
Every non-blank line / item / row ends as exactly one accepted record or one rejection. Blank lines and
rows are skipped; a file with nothing but blanks has no prompt (the run ends "empty").

Bounds: no line, item, row or .txt file may exceed `max_record_bytes`, and neither may the encoded
record it becomes; such prompts are rejected without being held in memory.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic_core import from_json

from batch.jsonl import Frame, NotAnArray, encode, iter_array_items, iter_lines, without_bom
from batch.records import (
    IdEntry,
    InvalidPrompt,
    Rejection,
    build_record,
    caller_id,
    id_entry,
    parse_prompt,
    plain_record,
)

Format = Literal["jsonl", "json", "csv", "txt"]
FORMATS: dict[str, Format] = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".txt": "txt"}


@dataclass(frozen=True, slots=True)
class Options:
    """What the conversion depends on (from settings)."""

    model_id: str
    default_max_tokens: int
    max_record_bytes: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """A prompt that became a record: the encoded JSONL line and its encoded id-map line."""

    line: bytes
    entry_line: bytes

    @property
    def entry(self) -> IdEntry:
        """The id-map entry."""
        return IdEntry.model_validate_json(self.entry_line)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A line that did not."""

    rejection: Rejection


Item = Accepted | Rejected


def file_format(key: str) -> Format | None:
    """The format of a prompt file, by extension; None when unsupported."""
    return FORMATS.get(PurePosixPath(key).suffix.lower())


def convert(key: str, chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    """Stream a prompt file into accepted records and rejections, in file order."""
    match file_format(key):
        case "jsonl":
            yield from _frames(iter_lines(chunks, options.max_record_bytes), options, skip_blank=True)
        case "json":
            try:
                yield from _frames(iter_array_items(chunks, options.max_record_bytes), options, skip_blank=False)
            except NotAnArray as error:
                yield _reject(0, str(error))
        case "csv":
            yield from _csv(chunks, options)
        case "txt":
            yield from _txt(chunks, options)
        case None:
            supported = ", ".join(FORMATS)
            suffix = PurePosixPath(key).suffix[:20] or "(none)"
            yield _reject(0, f"unsupported file type {suffix}; supported: {supported}")


def _frames(frames: Iterable[Frame], options: Options, *, skip_blank: bool) -> Iterator[Item]:
    for frame in frames:
        if frame.error is not None:
            yield _reject(frame.number, frame.error)
        elif frame.too_long:
            yield _reject(frame.number, f"longer than {options.max_record_bytes} bytes")
        elif skip_blank and not frame.data.strip():
            continue
        else:
            yield _from_bytes(frame.number, frame.data, options)


def _from_bytes(number: int, data: bytes, options: Options) -> Item:
    fast = _plain(number, data, options)
    if fast is not None:
        return fast
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return _reject(number, f"invalid UTF-8 at byte {error.start}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return _reject(number, f"invalid JSON: {error.msg} at column {error.colno}")
    except (ValueError, RecursionError) as error:  # huge integers, absurd nesting
        return _reject(number, f"invalid JSON: {type(error).__name__}")
    return _from_value(number, value, options)


def _plain(number: int, data: bytes, options: Options) -> Accepted | None:
    """A plain prompt parsed (pydantic-core's parser: the same values as json.loads for every line json.loads
    reads) and converted without pydantic validation; None sends the line down the precise path."""
    try:  # only keys are interned: prompt texts and ids seldom repeat
        plain = plain_record(
            from_json(data, cache_strings="keys"),
            number,
            model_id=options.model_id,
            default_max_tokens=options.default_max_tokens,
        )
    except ValueError:  # not JSON, not UTF-8, or an integer str() refuses: the precise path says which
        return None
    if plain is None:
        return None
    record, entry = plain
    line = encode(record)
    if len(line) > options.max_record_bytes:
        return None
    return Accepted(line=line, entry_line=encode(entry))


def _from_value(number: int, value: Any, options: Options) -> Item:
    try:
        prompt = parse_prompt(value)
        record = build_record(prompt, number, model_id=options.model_id, default_max_tokens=options.default_max_tokens)
    except InvalidPrompt as error:
        return _reject(number, str(error), caller_id(value))
    line = encode(record.model_dump())
    if len(line) > options.max_record_bytes:
        return _reject(number, f"the record is longer than {options.max_record_bytes} bytes", caller_id(value))
    return Accepted(line=line, entry_line=encode(id_entry(prompt, number).model_dump()))


def _reject(number: int, reason: str, identifier: str | None = None) -> Rejected:
    return Rejected(Rejection(line=number, reason=reason, id=identifier))


def _txt(chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    data = bytearray()
    for chunk in without_bom(chunks):
        data += chunk
        if len(data) > options.max_record_bytes:
            yield _reject(1, f"a .txt prompt file may hold at most {options.max_record_bytes} bytes")
            return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        yield _reject(1, f"invalid UTF-8 at byte {error.start}")
        return
    if text.strip():
        yield _from_value(1, {"prompt": text}, options)


class _CsvLines:
    """Decoded physical lines for csv.reader; unreadable lines become blank and are remembered by number."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self.frames = iter_lines(chunks, max_bytes)
        self.max_bytes = max_bytes
        self.problems: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        for frame in self.frames:
            if frame.too_long:
                self.problems[frame.number] = f"longer than {self.max_bytes} bytes"
                yield "\n"
                continue
            try:
                yield frame.data.decode("utf-8") + "\n"
            except UnicodeDecodeError as error:
                self.problems[frame.number] = f"invalid UTF-8 at byte {error.start}"
                yield "\n"

    def take(self, first: int, last: int) -> str | None:
        """The first problem on lines first..last (and forget them)."""
        found = [self.problems.pop(number) for number in range(first, last + 1) if number in self.problems]
        return found[0] if found else None


def _csv(chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    lines = _CsvLines(chunks, options.max_record_bytes)
    csv.field_size_limit(options.max_record_bytes)  # process-wide; a Lambda runs one conversion at a time
    reader = csv.reader(lines)
    columns: dict[str, int] | None = None
    width = 0
    end = 0
    while True:
        start = end + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            end = reader.line_num
            yield _reject(start, f"malformed CSV row: {error}")
            continue
        end = reader.line_num
        problem = lines.take(start, end)
        if columns is None:
            if problem is None and not any(cell.strip() for cell in row):
                continue
            columns = _header(row) if problem is None else {}
            if "prompt" not in columns:
                yield _reject(start, problem or "the CSV header has no 'prompt' column")
                return
            width = len(row)
            continue
        yield from _row(start, row, columns, width, problem, options)


def _header(row: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for index, name in enumerate(row):
        columns.setdefault(name.strip().lower(), index)
    return columns


def _row(
    start: int, row: list[str], columns: dict[str, int], width: int, problem: str | None, options: Options
) -> Iterator[Item]:
    if problem is not None:
        yield _reject(start, problem)
    elif not any(cell.strip() for cell in row):
        return
    elif len(row) != width:
        yield _reject(start, f"the row has {len(row)} fields, the header has {width} (a stray comma or quote?)")
    else:
        value = {name: row[columns[name]] for name in ("prompt", "id", "system") if name in columns}
        identifier = value.pop("id", "").strip()
        if identifier:
            value["id"] = identifier
        yield _from_value(start, value, options)
