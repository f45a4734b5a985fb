"""JSON as this project reads it from callers: pydantic-core's parser, with nothing Bedrock could not take back.

Refused with an InvalidJson (a ValueError) whose message names the problem and its position, never the input:
NaN and Infinity (not JSON; forwarded to Bedrock they make an invalid request), numbers too large for a float
(read as infinity, the same invalid request), lone surrogate escapes (no
UTF-8 can carry them), integers beyond what Python represents, and nesting deeper than the parser's limit.
The chat body, tool-call arguments and every line of a batch prompt file are read here.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic_core import from_json

# pydantic-core's recursion limit: 200 nested arrays or objects parse, 201 do not.
MAX_DEPTH = 200
_POSITION = re.compile(r"(.*) at line (\d+) column (\d+)", re.DOTALL)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NON_FINITE = (b"NaN", b"Infinity")
# A number token, strings skipped whole so that digits inside them never count.
_NUMBER = re.compile(rb'"(?:[^"\\]|\\.)*"|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)')


class InvalidJson(ValueError):
    """Text that is not strict JSON: what is wrong (`problem`) and where (1-based line and byte column)."""

    def __init__(self, problem: str, line: int, column: int) -> None:
        super().__init__(f"{problem} at line {line} column {column}")
        self.problem = problem
        self.line = line
        self.column = column


def loads(text: str | bytes) -> Any:
    """The JSON value of `text`.

    Raises:
        InvalidJson: the text is not strict JSON (the message says why and where, quoting none of it).
    """
    try:
        value = from_json(text, allow_inf_nan=False)
    except ValueError as error:
        raise _explained(str(error), text) from None
    if _overflows(value):
        raise _overflow(text)
    return value


def _overflows(value: Any) -> bool:
    """Whether a number too large for a float (1e400) was read as infinity, which JSON cannot carry back."""
    if isinstance(value, float):
        return math.isinf(value)
    if isinstance(value, dict):
        return any(_overflows(item) for item in value.values())
    if isinstance(value, list):
        return any(_overflows(item) for item in value)
    return False


def _overflow(text: str | bytes) -> InvalidJson:
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    for token in _NUMBER.finditer(data):
        if token[1] is not None and math.isinf(float(token[1])):
            line = data.count(b"\n", 0, token.start()) + 1
            column = token.start() - (data.rfind(b"\n", 0, token.start()) + 1) + 1
            return InvalidJson("a number too large to be represented", line, column)
    return InvalidJson("a number too large to be represented", 1, 1)


def _explained(message: str, text: str | bytes) -> InvalidJson:
    """The parser's message in words a person reads, and the position of the offending token."""
    found = _POSITION.fullmatch(message)
    if found is None:
        return InvalidJson(message, 1, 1)
    problem, line, column = found[1], int(found[2]), int(found[3])
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    row = data.split(b"\n", line)[line - 1] if line > 0 else b""
    at = column - 1
    if "surrogate" in problem or "hex escape" in problem:
        # The parser stops at or just after the escape (at most two escapes back: a high surrogate and what
        # follows it); the last surrogate escape there is the lone one.
        escapes = list(_SURROGATE_ESCAPE.finditer(row, max(0, at - 11), at + 1))
        if escapes:
            escape = escapes[-1]
            name = escape[0].decode()
            return InvalidJson(f"a lone surrogate escape ({name}) is not a character", line, escape.start() + 1)
    elif problem in ("expected value", "invalid number") and row[at:].startswith(_NON_FINITE):
        start = at - 1 if row[at - 1 : at] == b"-" else at
        return InvalidJson("NaN and Infinity are not JSON numbers", line, start + 1)
    elif problem == "recursion limit exceeded":
        return InvalidJson(f"nested more than {MAX_DEPTH} levels deep", line, column)
    elif problem == "key must be a string":
        return InvalidJson("an object key must be a string in double quotes", line, column)
    elif problem == "number out of range":
        return InvalidJson("a number with more digits than can be represented", line, column)
    return InvalidJson(problem, line, column)
