"""Streaming framing of bytes (pure): lines of a file and items of a top-level JSON array.

Both work on an iterable of byte chunks and hold at most one line (or item) of `max_bytes` plus one chunk
in memory, whatever the size of the file. Anything longer is reported as `too_long` without its content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pydantic_core import to_json

_WHITESPACE = b" \t\r\n"
# Inside a JSON array only these bytes change the structure; an escape pair (backslash + any byte) is one
# token so that an escaped quote never ends a string.
_TOKENS = re.compile(rb'\\.|[\[\]{}",]', re.DOTALL)


class Frame(NamedTuple):
    """One line (or array item): 1-based number, bytes (empty when too long or broken), what went wrong.

    A named tuple: one is made per line of every file the pipeline reads, and a tuple is the cheapest to make.
    """

    number: int
    data: bytes
    too_long: bool = False
    error: str | None = None


class NotAnArray(ValueError):
    """A .json prompt file whose top-level value is not an array."""


def encode(value: Any) -> bytes:
    """One JSONL line: compact, UTF-8 (not ASCII-escaped), key order as given, newline-terminated.

    pydantic-core's serializer writes what json.dumps would (it spells tiny floats `0.00001`, not `1e-05`)
    several times faster, and straight to bytes.
    """
    return to_json(value) + b"\n"


def iter_lines(chunks: Iterable[bytes], max_bytes: int) -> Iterator[Frame]:
    """Split a byte stream into lines: LF or CRLF endings; bytes as they are (text.py decides what is text).

    Blank lines are yielded too (so numbers match an editor's line numbers); a final line without a
    newline is yielded; a line longer than `max_bytes` is yielded empty with `too_long` set.
    """
    pending = bytearray()  # the start of a line that began in an earlier chunk
    too_long = False
    number = 0
    for chunk in chunks:
        start = 0
        if pending or too_long:
            newline = chunk.find(b"\n")
            if newline < 0:
                pending, too_long = _carry(pending, chunk, too_long, max_bytes)
                continue
            number += 1
            yield _line(number, pending, chunk[:newline], too_long, max_bytes)
            pending.clear()
            too_long = False
            start = newline + 1
        # The lines wholly inside the chunk, split in one call (the bulk of every file).
        lines = (chunk[start:] if start else chunk).split(b"\n")
        tail = lines.pop()
        for line in lines:
            number += 1
            data = line[:-1] if line.endswith(b"\r") else line
            yield Frame(number, data) if len(data) <= max_bytes else Frame(number, b"", True)
        pending, too_long = _carry(pending, tail, too_long, max_bytes)
    if pending or too_long:
        yield _line(number + 1, pending, b"", too_long, max_bytes)


def _carry(pending: bytearray, tail: bytes, too_long: bool, max_bytes: int) -> tuple[bytearray, bool]:
    """Keep the unfinished line's bytes, or only the fact that it is too long."""
    if too_long:
        return pending, True
    pending += tail
    if len(pending) > max_bytes + 1:  # + 1: room for the '\r' of a CRLF ending
        pending.clear()
        return pending, True
    return pending, False


def _line(number: int, pending: bytearray, tail: bytes, too_long: bool, max_bytes: int) -> Frame:
    if too_long or len(pending) + len(tail) > max_bytes + 1:
        return Frame(number, b"", too_long=True)
    data = bytes(pending) + tail
    if data.endswith(b"\r"):
        data = data[:-1]
    if len(data) > max_bytes:
        return Frame(number, b"", too_long=True)
    return Frame(number, data)


def iter_array_items(chunks: Iterable[bytes], max_bytes: int) -> Iterator[Frame]:
    """Split a stream holding one JSON array into the raw bytes of its items, numbered from 1.

    Items are not parsed here (the caller parses each one, so one broken item does not lose the others).
    An empty or whitespace-only stream has no items. Raises NotAnArray when the first value is not an
    array. An array left open at the end of the stream, an empty item (`[1,,2]`, `[1,]`) and data after
    the closing bracket are yielded as frames with an `error`.
    """
    scanner = _ArrayScanner(max_bytes)
    carry = b""
    for chunk in chunks:
        yield from scanner.feed(carry + chunk, final=False)
        carry = scanner.carry
    yield from scanner.feed(carry, final=True)
    yield from scanner.finish()


class _ArrayScanner:
    """Incremental state of `iter_array_items`: nesting depth, string state and the current item."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.opened = False
        self.closed = False
        self.trailing_reported = False
        self.depth = 0
        self.in_string = False
        self.item = bytearray()
        self.item_too_long = False
        self.number = 0
        self.carry = b""

    def feed(self, data: bytes, *, final: bool) -> Iterator[Frame]:
        """Scan one chunk; a lone backslash at its end is carried over to the next chunk."""
        cursor = 0  # where the bytes not yet attributed to an item or checked as whitespace begin
        last_end = 0
        for match in _TOKENS.finditer(data):
            last_end = match.end()
            if self.closed:
                break
            frames, cursor = self._token(data, match.group(), match.start(), cursor)
            yield from frames
        lone_escape = not final and data.endswith(b"\\") and last_end < len(data) and not self.closed
        self.carry = data[-1:] if lone_escape else b""
        end = len(data) - len(self.carry)
        yield from self._rest(data[cursor:end])

    def _token(self, data: bytes, token: bytes, position: int, cursor: int) -> tuple[list[Frame], int]:
        """Apply one structural token; returns finished items and the new cursor."""
        if self.in_string:
            self.in_string = token != b'"'
            return [], cursor
        if len(token) == 2:  # an escape outside a string: invalid JSON, left for the item parser
            return [], cursor
        if not self.opened:
            if token != b"[" or data[cursor:position].strip(_WHITESPACE):
                raise NotAnArray("a .json prompt file must hold one JSON array")
            self.opened, self.depth = True, 1
            return [], position + 1
        if token == b'"':
            self.in_string = True
        elif token in (b"[", b"{"):
            self.depth += 1
        elif token in (b"]", b"}"):
            self.depth -= 1
            if self.depth == 0:
                self.closed = True
                return self._end_item(data[cursor:position], last=True), position + 1
        elif self.depth == 1:  # a comma between items
            return self._end_item(data[cursor:position], last=False), position + 1
        return [], cursor

    def _rest(self, tail: bytes) -> Iterator[Frame]:
        """Bytes after the last boundary of a chunk: part of the current item, or whitespace outside."""
        if self.opened and not self.closed:
            if not self.item_too_long:
                self.item += tail
                if len(self.item) > self.max_bytes:
                    self.item_too_long = True
                    self.item.clear()
        elif tail.strip(_WHITESPACE):
            if not self.opened:
                raise NotAnArray("a .json prompt file must hold one JSON array")
            if not self.trailing_reported:
                self.trailing_reported = True
                yield Frame(self.number + 1, b"", error="unexpected data after the closing ']' of the array")

    def _end_item(self, tail: bytes, *, last: bool) -> list[Frame]:
        too_long = self.item_too_long or len(self.item) + len(tail) > self.max_bytes
        body = b"" if too_long else (bytes(self.item) + tail).strip(_WHITESPACE)
        self.item.clear()
        self.item_too_long = False
        if too_long:
            self.number += 1
            return [Frame(self.number, b"", too_long=True)]
        if not body:
            if last and self.number == 0:  # `[]`
                return []
            self.number += 1
            return [Frame(self.number, b"", error="empty array item (a stray or trailing comma)")]
        self.number += 1
        return [Frame(self.number, body)]

    def finish(self) -> Iterator[Frame]:
        """At the end of the stream: an array still open means the file was cut short."""
        if self.opened and not self.closed:
            self.number += 1
            yield Frame(self.number, b"", error="the file ends before the closing ']' of the array")
