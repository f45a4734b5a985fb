"""AWS event-stream messages (`application/vnd.amazon.eventstream`), encoded as Bedrock sends them.

botocore only decodes this framing (`botocore.eventstream`); this is the other half, for the load-test model
stand-in (shared/model_stand_in.py, which ships in the function), the local Bedrock stand-in and the test
fakes. One message on the wire:

    prelude:  total length (uint32) | headers length (uint32) | CRC32 of those 8 bytes (uint32)
    headers:  per header, name length (uint8) | name | value type (uint8, 7 = string) | length (uint16) | value
    payload:  bytes (here: JSON)
    trailer:  CRC32 of everything before it (uint32)

All integers are big-endian. ConverseStream events carry their members as the JSON payload and their name
in `:event-type`; its modelled errors come as `:message-type` `exception` messages, which botocore raises
as `EventStreamError` with the member name (e.g. `throttlingException`) as the error code.
"""

from __future__ import annotations

import base64
import json
import struct
from binascii import crc32
from collections.abc import Mapping
from typing import Any

# botocore's limits (botocore.eventstream): a decoder refuses anything larger.
MAX_HEADERS_BYTES = 128 * 1024
MAX_PAYLOAD_BYTES = 24 * 1024 * 1024
CONTENT_TYPE = "application/vnd.amazon.eventstream"
# The exception members of bedrock-runtime's ConverseStreamOutput union (every other member is an event);
# a unit test holds this to botocore's service model.
CONVERSE_STREAM_EXCEPTIONS = frozenset(
    {
        "internalServerException",
        "modelStreamErrorException",
        "validationException",
        "throttlingException",
        "serviceUnavailableException",
    }
)
_PRELUDE = struct.Struct("!II")
_CRC = struct.Struct("!I")
_STRING_HEADER = 7


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One event-stream message with string headers and a payload.

    Raises:
        ValueError: a header name or value, the headers or the payload is too long for the framing.
    """
    encoded_headers = b"".join(_header(name, value) for name, value in headers.items())
    if len(encoded_headers) > MAX_HEADERS_BYTES:
        raise ValueError(f"event-stream headers are limited to {MAX_HEADERS_BYTES} bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"an event-stream payload is limited to {MAX_PAYLOAD_BYTES} bytes")
    total = _PRELUDE.size + _CRC.size + len(encoded_headers) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(encoded_headers))
    prelude += _CRC.pack(crc32(prelude))
    message = prelude + encoded_headers + payload
    return message + _CRC.pack(crc32(message))


def event_message(event_type: str, payload: Mapping[str, Any]) -> bytes:
    """An `event` message: the event's members as its JSON payload, its name in `:event-type`."""
    headers = {":message-type": "event", ":event-type": event_type, ":content-type": "application/json"}
    return encode_message(headers, _json(payload))


def exception_message(exception_type: str, message: str, **members: Any) -> bytes:
    """An `exception` message: a modelled error (`message`, plus any other members of its shape)."""
    headers = {":message-type": "exception", ":exception-type": exception_type, ":content-type": "application/json"}
    return encode_message(headers, _json({"message": message, **members}))


def converse_stream_message(event: Mapping[str, Any]) -> bytes:
    """The message for one ConverseStream event in botocore's output shape, e.g. `{"messageStop": {...}}`.

    boto3 yields exactly this dict back for an event member, and raises `EventStreamError` (code: the
    member's name) for an exception member such as `{"throttlingException": {"message": "..."}}`.

    Raises:
        ValueError: the dict does not hold exactly one member.
    """
    if len(event) != 1:
        raise ValueError(f"a stream event holds exactly one member, not {sorted(event)}")
    [(name, members)] = event.items()
    if name in CONVERSE_STREAM_EXCEPTIONS:
        fields = dict(members)
        return exception_message(name, str(fields.pop("message", "")), **fields)
    return event_message(name, members)


def _header(name: str, value: str) -> bytes:
    encoded_name, encoded_value = name.encode(), value.encode()
    if not 0 < len(encoded_name) < 2**8 or len(encoded_value) >= 2**16:
        raise ValueError(f"event-stream header {name!r} is too long for the framing")
    return (
        struct.pack("!B", len(encoded_name))
        + encoded_name
        + struct.pack("!BH", _STRING_HEADER, len(encoded_value))
        + encoded_value
    )


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), default=_blob).encode()


def _blob(value: Any) -> str:
    # In an output-shape dict only blob members hold bytes (e.g. reasoningContent.redactedContent), and the
    # JSON protocols carry blobs as base64: botocore decodes them back into the same bytes.
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
