"""JSON as this project reads it from callers: pydantic-core's parser, with nothing Bedrock could not take back.

Refused with a ValueError whose message names the problem and its position, never the input: NaN and
Infinity (not JSON; forwarded to Bedrock they make an invalid request), lone surrogate escapes (no UTF-8 can
carry them), numbers beyond what JSON parsers represent, and nesting beyond the parser's recursion limit.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json


def loads(text: str | bytes) -> Any:
    """The JSON value of `text`.

    Raises:
        ValueError: the text is not strict JSON (the message says why and where, quoting none of it).
    """
    return from_json(text, allow_inf_nan=False)
