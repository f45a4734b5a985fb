"""Prompt file -> batch records, id-map entries and rejections (pure, streaming).

Formats, chosen by the key's extension (case-insensitive):
- `.jsonl`: one prompt per line (see records.py for the accepted shapes, OpenAI's batch input lines among them);
- `.json`: one array of such prompts, streamed item by item (any size, bounded memory);
- `.csv`: a header row with a `prompt` column and optional `id` and `system` columns (other columns are
  ignored), one prompt per row;
- `.txt`: the whole file is one prompt.
Any other extension rejects the whole file (one rejection, line 0).

Text (text.py): UTF-8; a UTF-8 BOM is dropped, a UTF-16/UTF-32 BOM rejects the whole file by name, invalid
UTF-8 or a NUL byte rejects its line. JSON (shared/strict_json.py, the reading the chat API uses): a line or
item with a lone surrogate escape, NaN/Infinity, an integer too long to represent or nesting deeper than 200
is rejected, with what and where (the column in the line, or the line and column in the array item).

CSV quoting (RFC 4180, csv.reader in strict mode): a quoted field must end with a quote followed by a comma or
the end of its line. When it does not (the file ends inside it, its closing quote is followed by text, or the
row grows past `max_record_bytes`), the row is rejected at the line where it starts, and reading resumes at
the next line: a stray quote then costs one row, never the rows after it. The price: when a real multi-line
field is broken that way, its later lines are read (and usually rejected) as rows of their own.

Numbering (`line` in the id map and in rejections): the physical line for .jsonl (blank lines count),
the item number for .json, the line on which the row starts for .csv (the header is line 1), 1 for .txt.
Every non-blank line / item / row ends as exactly one accepted record or one rejection. Blank lines and
rows are skipped; a file with nothing but blanks has no prompt (the run ends "empty"). The custom_ids of
OpenAI batch lines are checked for duplicates across the file (.jsonl and .json; records.CustomIds).

Bounds: no line, item, row or .txt file may exceed `max_record_bytes`, and neither may the encoded
record it becomes; such prompts are rejected without being held in memory. Beyond that, only the custom_ids
grow with the file, and they are capped (records.CustomIds).
"""

from __future__ import annotations

import csv
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from batch.jsonl import Frame, NotAnArray, encode, iter_array_items, iter_lines
from batch.records import (
    CustomIds,
    IdEntry,
    InvalidPrompt,
    Rejection,
    build_record,
    caller_id,
    id_entry,
    is_batch_request,
    parse_prompt,
)
from batch.text import InvalidText, NotUtf8, decode, readable, utf8
from shared.strict_json import InvalidJson, loads

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
    kind = file_format(key)
    if kind is None:
        supported = ", ".join(FORMATS)
        suffix = PurePosixPath(key).suffix[:20] or "(none)"
        yield _reject(0, f"unsupported file type {suffix}; supported: {supported}")
        return
    try:  # both are raised before the first item: the whole file is refused
        yield from _READERS[kind](utf8(chunks), options)
    except (NotUtf8, NotAnArray) as error:
        yield _reject(0, str(error))


def _jsonl(chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    return _frames(iter_lines(chunks, options.max_record_bytes), options, skip_blank=True)


def _json(chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    return _frames(iter_array_items(chunks, options.max_record_bytes), options, skip_blank=False)


def _frames(frames: Iterable[Frame], options: Options, *, skip_blank: bool) -> Iterator[Item]:
    custom_ids = CustomIds()
    for frame in frames:
        if frame.error is not None:
            yield _reject(frame.number, frame.error)
        elif frame.too_long:
            yield _reject(frame.number, f"longer than {options.max_record_bytes} bytes")
        elif skip_blank and not frame.data.strip():
            continue
        else:
            yield _from_bytes(frame.number, frame.data, options, custom_ids)


def _from_bytes(number: int, data: bytes, options: Options, custom_ids: CustomIds | None = None) -> Item:
    try:
        value = loads(data)
    except InvalidJson as error:
        # Bytes that are not text at all get that reason: more useful than where the parser stopped.
        return _reject(number, readable(data)[1] or _json_reason(error))
    return _from_value(number, value, options, custom_ids)


def _json_reason(error: InvalidJson) -> str:
    where = f"column {error.column}" if error.line == 1 else f"line {error.line} column {error.column} of the item"
    return f"invalid JSON at {where}: {error.problem}"


def _from_value(number: int, value: Any, options: Options, custom_ids: CustomIds | None = None) -> Item:
    identifier = caller_id(value)
    try:
        # Claimed before validation: a custom_id stays taken even when its line is rejected, so that no id
        # ends up both answered and rejected.
        if custom_ids is not None and identifier is not None and is_batch_request(value):
            custom_ids.claim(identifier, number)
        prompt = parse_prompt(value)
        record = build_record(prompt, number, model_id=options.model_id, default_max_tokens=options.default_max_tokens)
    except InvalidPrompt as error:
        return _reject(number, str(error), identifier)
    line = encode(record.model_dump())
    if len(line) > options.max_record_bytes:
        return _reject(number, f"the record is longer than {options.max_record_bytes} bytes", identifier)
    return Accepted(line=line, entry_line=encode(id_entry(prompt, number).model_dump()))


def _reject(number: int, reason: str, identifier: str | None = None) -> Rejected:
    return Rejected(Rejection(line=number, reason=reason, id=identifier))


def _txt(chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    data = bytearray()
    for chunk in chunks:
        data += chunk
        if len(data) > options.max_record_bytes:
            yield _reject(1, f"a .txt prompt file may hold at most {options.max_record_bytes} bytes")
            return
    try:
        text = decode(bytes(data))
    except InvalidText as error:
        yield _reject(1, str(error))
        return
    if text.strip():
        yield _from_value(1, {"prompt": text}, options)


class _RowTooLong(Exception):
    """The row being read has grown past the record limit over several lines."""


@dataclass(frozen=True, slots=True)
class _Line:
    """One physical line of a CSV file as csv.reader reads it, with the problem that rejects its row (a line
    too long to hold is read as blank)."""

    number: int
    text: str
    size: int
    problem: str | None = None


class _CsvLines:
    """The lines of a CSV file for csv.reader, remembering those of the row being read: a row that turns out
    broken is rejected at its first line, and the lines after that one are read again (at most one record's
    worth of lines is held)."""

    def __init__(self, chunks: Iterable[bytes], max_bytes: int) -> None:
        self._frames = iter_lines(chunks, max_bytes)
        self._again: deque[_Line] = deque()
        self._max_bytes = max_bytes
        self._size = 0
        self._ended = False
        self.row: list[_Line] = []

    def __iter__(self) -> Iterator[str]:
        while (line := self._next()) is not None:
            self._ended = False
            self.row.append(line)
            self._size += line.size
            if self._size > self._max_bytes + 1 and len(self.row) > 1:
                raise _RowTooLong
            yield line.text
        self._ended = True

    def _next(self) -> _Line | None:
        if self._again:
            return self._again.popleft()
        frame = next(self._frames, None)
        if frame is None:
            return None
        if frame.too_long:
            return _Line(frame.number, "\n", 1, f"longer than {self._max_bytes} bytes")
        text, problem = readable(frame.data)
        return _Line(frame.number, text + "\n", len(frame.data) + 1, problem)

    def take(self) -> tuple[int, str | None]:
        """The row just read: its first line and the first problem of its lines."""
        row, self.row, self._size = self.row, [], 0
        return row[0].number, next((line.problem for line in row if line.problem), None)

    def broken(self, error: Exception) -> tuple[int, str, bool]:
        """The row being read is broken: its first line, why, and whether the lines after that one (which will
        be read again) were part of it."""
        (first, *rest), self.row, self._size = self.row, [], 0
        self._again.extendleft(reversed(rest))
        if isinstance(error, _RowTooLong):
            reason = f"the row is longer than {self._max_bytes} bytes (an unterminated quote?)"
        elif self._ended:
            reason = "unterminated quote: a quoted field of this row is never closed"
        elif "expected after" in str(error) and rest:
            reason = (
                f"unterminated quote: a quoted field of this row runs to line {rest[-1].number}, "
                "where its closing quote is followed by text"
            )
        elif "expected after" in str(error):
            reason = 'text after a closing quote: a quote inside a quoted field must be doubled ("")'
        elif "new-line character" in str(error):
            reason = "a line break (a lone CR) inside an unquoted field: quote the field"
        else:
            reason = f"malformed CSV row: {error}"
        return first.number, reason, bool(rest)


def _csv(chunks: Iterable[bytes], options: Options) -> Iterator[Item]:
    lines = _CsvLines(chunks, options.max_record_bytes)
    csv.field_size_limit(options.max_record_bytes)  # process-wide; a Lambda runs one conversion at a time
    columns: dict[str, int] | None = None
    width = 0
    while True:
        try:
            for row in csv.reader(lines, strict=True):
                start, problem = lines.take()
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
            return
        except (csv.Error, _RowTooLong) as error:
            start, reason, spanned = lines.broken(error)
            if columns is None:
                yield _reject(start, f"the CSV header cannot be read: {reason}")
                return
            yield _reject(start, f"{reason}; the lines after it are read as rows" if spanned else reason)


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


_READERS: dict[Format, Callable[[Iterable[bytes], Options], Iterator[Item]]] = {
    "jsonl": _jsonl,
    "json": _json,
    "csv": _csv,
    "txt": _txt,
}
