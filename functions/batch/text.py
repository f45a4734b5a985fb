"""The one text-decoding rule of prompt files (pure): UTF-8, with byte order marks detected and named.

- A UTF-8 BOM is accepted and dropped (Excel and Notepad write one).
- A UTF-16 or UTF-32 BOM refuses the whole file with a reason naming the encoding (`NotUtf8`). Such files
  are not decoded: every reader frames lines and array items on bytes and hands Bedrock UTF-8, and one
  encoding keeps one path; re-saving as UTF-8 is one click in the editor that wrote the file.
- Each line, array item, CSV line or .txt file must be UTF-8: invalid bytes or a NUL byte (binary data, or
  UTF-16 without a BOM) reject that line only, with the byte's offset (`InvalidText`).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator

# UTF-32 first: its little-endian BOM begins with UTF-16's.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)
_HEAD = max(len(bom) for bom, _ in _FOREIGN_BOMS)


class NotUtf8(ValueError):
    """A file whose byte order mark says it is not UTF-8; the message is the whole file's rejection."""


class InvalidText(ValueError):
    """A line (item, row, file) that is not UTF-8 text; the message is its rejection."""


def utf8(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The file's bytes without a leading UTF-8 BOM (even when it is split over chunks).

    Raises:
        NotUtf8: the file starts with a UTF-16 or UTF-32 BOM (raised before any byte is yielded).
    """
    iterator = iter(chunks)
    head = b""
    for chunk in iterator:
        head += chunk
        if len(head) >= _HEAD:
            break
    for bom, name in _FOREIGN_BOMS:
        if head.startswith(bom):
            raise NotUtf8(f"the file is {name} (BOM found); save it as UTF-8")
    yield head.removeprefix(codecs.BOM_UTF8)
    yield from iterator


def decode(data: bytes) -> str:
    """The text of one line (item, row, file).

    Raises:
        InvalidText: invalid UTF-8, or a NUL byte.
    """
    text, problem = readable(data)
    if problem is not None:
        raise InvalidText(problem)
    return text


def readable(data: bytes) -> tuple[str, str | None]:
    """The text of `data` and why it is not UTF-8 text (None when it is).

    Undecodable bytes read as U+FFFD, so that the structure around them (a CSV line's quotes and commas)
    survives for the reader that must still find where the rejected row ends.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        return data.decode("utf-8", "replace"), f"invalid UTF-8 at byte {error.start}; save the file as UTF-8"
    nul = data.find(b"\x00")
    if nul >= 0:
        return text, f"a NUL byte at byte {nul} (binary data, or UTF-16 without a BOM?); save the file as UTF-8 text"
    return text, None
