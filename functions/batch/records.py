"""What one prompt may look like, and the Bedrock batch record it becomes (pure).

Accepted shapes of one prompt (a JSONL line, a JSON array item, a CSV row):
- an OpenAI chat request body: `{"messages": [...], "max_completion_tokens": ..., ...}`;
- a short form: `{"prompt": "...", "system": "...", "id": "..."}`;
- a line of OpenAI's batch input format: `{"custom_id": "...", "method": "POST", "url": "/v1/chat/completions",
  "body": {<an OpenAI chat request body>}}` (an object with `custom_id` or `body` is read as one).
The first two may carry `id` (ours: the caller's id, echoed in the results); in the third, `custom_id` is the
caller's id and the body has no `id`. All take the generation options `max_completion_tokens` (or its older
name `max_tokens`), `temperature`, `top_p`, `stop`, `reasoning_effort`. Any other field is rejected by name
(its path, e.g. `body.messages.0.role`), because Bedrock would fail such a record inside the job ("Extra
inputs are not permitted") or silently ignore it.

Decisions:
- `model` is dropped when it names the configured model (its id or short name); another model is rejected.
- `stream` is dropped (true or false): a batch answer is always a whole file, so the flag cannot change
  what the caller gets. `n` is dropped when 1 and rejected when larger (one answer per record).
- `developer` messages become `system` messages; text content parts are joined into one string; image or
  other parts, `tool` messages and tool fields are rejected. The conversation must end with a user turn.
- Blank lines are skipped by the converter; a blank prompt is rejected ("empty prompt"); a prompt
  containing a NUL character is rejected (binary data).
- OpenAI batch lines: `method` must be POST and `url` /v1/chat/completions; a `custom_id` already given on an
  earlier line of the file is rejected, naming that line (CustomIds), even when that line was rejected.
"""

from __future__ import annotations

from functools import cache
from hashlib import blake2b
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from batch.names import record_id, short_model_name

# gpt-oss context window (Bedrock "OpenAI models" page): no completion budget can exceed it.
CONTEXT_WINDOW_TOKENS = 128_000
MAX_ID_LENGTH = 256
# OpenAI documents no custom_id limit; a bound keeps every result line short, and we take the one stdapi.ai (an
# OpenAI batch gateway over Bedrock) uses: 64 characters (streaming-and-apis.md, Batch).
MAX_CUSTOM_ID_LENGTH = 64
# What an OpenAI batch line may ask for: Bedrock batch serves chat completions only.
BATCH_METHOD = "POST"
BATCH_URL = "/v1/chat/completions"
# OpenAI caps a batch input file at 50,000 requests (the openai SDK's batches.create); we check the custom_ids of
# five times as many in one file, within a fixed memory bound (CustomIds).
MAX_CUSTOM_IDS = 250_000
MAX_STOP_SEQUENCES = 4
_MAX_REASON_ERRORS = 3


class InvalidPrompt(ValueError):
    """A prompt that cannot become a batch record; the message is the reason written to rejected/."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TextPart(_Strict):
    """A text content part of an OpenAI message."""

    type: Literal["text"]
    text: str


class InputMessage(_Strict):
    """One OpenAI chat message as accepted in a prompt file (text only)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        """The content as one string (text parts concatenated, as OpenAI does)."""
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


Tokens = Annotated[int, Field(ge=1, le=CONTEXT_WINDOW_TOKENS)]


class _Generation(_Strict):
    """The generation options every prompt shape accepts."""

    model: str | None = None
    stream: bool | None = None
    n: Annotated[int, Field(ge=1, le=1)] | None = None
    max_completion_tokens: Tokens | None = None
    max_tokens: Tokens | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | Annotated[list[str], Field(min_length=1, max_length=MAX_STOP_SEQUENCES)] | None = None
    reasoning_effort: Literal["low", "medium", "high"] | None = None


class _Options(_Generation):
    """Fields both of our own prompt shapes accept: the generation options and our `id`."""

    id: Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | int | None = None


class ChatBody(_Generation):
    """An OpenAI chat request body as OpenAI defines it (no `id`): the `body` of an OpenAI batch line."""

    messages: Annotated[list[InputMessage], Field(min_length=1)]


class ChatPrompt(ChatBody, _Options):
    """An OpenAI chat request body, with our `id`."""


class ShortPrompt(_Options):
    """`{"prompt": ..., "system": ..., "id": ...}`."""

    prompt: str
    system: str | None = None

    @field_validator("system")
    @classmethod
    def _blank_system_is_none(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None


class BatchRequest(_Strict):
    """A line of OpenAI's batch input format; `custom_id` is the caller's id."""

    custom_id: Annotated[str, Field(min_length=1, max_length=MAX_CUSTOM_ID_LENGTH)]
    method: str
    url: str
    body: ChatBody

    @field_validator("method", "url")
    @classmethod
    def _supported(cls, value: str, info: ValidationInfo) -> str:
        supported = BATCH_METHOD if info.field_name == "method" else BATCH_URL
        if value != supported:
            context = {"supported": supported, "given": repr(value[:100])}
            raise PydanticCustomError("unsupported", "only {supported} is supported, got {given}", context)
        return value


Prompt = ChatPrompt | ShortPrompt | BatchRequest


class BatchRecord(BaseModel):
    """One line of a Bedrock batch input file (invocation type InvokeModel, OpenAI chat body)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recordId: str
    modelInput: dict[str, Any]


class IdEntry(BaseModel):
    """Where a record came from: its recordId, the caller's id (or one made from the line) and the line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recordId: str
    id: str
    line: int


class Rejection(BaseModel):
    """A line of the source file that was not accepted (line 0: the whole file)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    line: Annotated[int, Field(ge=0)]
    reason: str
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rejected.jsonl line: `id` only when known."""
        return self.model_dump(exclude_none=True)


def generated_id(line: int) -> str:
    """The id of a prompt whose file gave none."""
    return f"line-{line}"


class CustomIds:
    """The custom_ids given so far in one file, each with the line that gave it first.

    Memory is bounded whatever the file's size: an id is kept as its 8-byte BLAKE2b digest with its line, about
    115 bytes each (measured with tracemalloc), and at most MAX_CUSTOM_IDS are kept: ~29 MB. An id past that
    limit is rejected. Two ids of one file share a digest with odds of about n^2 / 2^65 (2e-9 at the limit).
    """

    def __init__(self, limit: int = MAX_CUSTOM_IDS) -> None:
        self._first_line: dict[bytes, int] = {}
        self._limit = limit

    def claim(self, custom_id: str, line: int) -> None:
        """Note that `line` gives `custom_id`. Raises InvalidPrompt when an earlier line gave it, or past the limit."""
        digest = blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        first = self._first_line.get(digest)
        if first is not None:
            raise InvalidPrompt(f"custom_id {custom_id!r} duplicates line {first}")
        if len(self._first_line) >= self._limit:
            raise InvalidPrompt(f"more than {self._limit} custom_ids in one file: split the file")
        self._first_line[digest] = line


def is_batch_request(value: dict[str, Any]) -> bool:
    """Whether a parsed object is meant as a line of OpenAI's batch input format."""
    return "custom_id" in value or "body" in value


def caller_id(value: Any) -> str | None:
    """The caller's id of a parsed object (an OpenAI batch line's custom_id), if usable (labels rejections too)."""
    if not isinstance(value, dict):
        return None
    if is_batch_request(value):
        custom = value.get("custom_id")
        return custom if isinstance(custom, str) and 0 < len(custom) <= MAX_CUSTOM_ID_LENGTH else None
    raw = value.get("id")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None
    text = str(raw)
    return text if 0 < len(text) <= MAX_ID_LENGTH else None


def parse_prompt(value: Any) -> Prompt:
    """Validate one parsed JSON value as a prompt. Raises InvalidPrompt with a short, content-free reason."""
    if not isinstance(value, dict):
        raise InvalidPrompt(f"expected a JSON object, got {_json_type(value)}")
    shape: type[Prompt]
    if is_batch_request(value):
        shape = BatchRequest
    elif "messages" in value and "prompt" in value:
        raise InvalidPrompt("give either 'messages' or 'prompt', not both")
    elif "messages" in value:
        shape = ChatPrompt
    elif "prompt" in value:
        shape = ShortPrompt
    else:
        raise InvalidPrompt("missing 'messages' (an OpenAI chat body) or 'prompt'")
    try:
        return shape.model_validate(value)
    except ValidationError as error:
        raise InvalidPrompt(_reason(error)) from None


def build_record(prompt: Prompt, line: int, *, model_id: str, default_max_tokens: int) -> BatchRecord:
    """The batch record of a valid prompt. Raises InvalidPrompt for rules pydantic cannot express."""
    request = prompt.body if isinstance(prompt, BatchRequest) else prompt
    if request.model is not None and request.model not in model_names(model_id):
        raise InvalidPrompt(f"model {request.model[:100]!r} is not the model of this pipeline ({model_id})")
    model_input: dict[str, Any] = {
        "messages": _messages(request),
        "max_completion_tokens": _max_tokens(request, default_max_tokens),
    }
    for field in ("temperature", "top_p", "stop", "reasoning_effort"):
        value = getattr(request, field)
        if value is not None:
            model_input[field] = value
    return BatchRecord(recordId=record_id(line), modelInput=model_input)


def id_entry(prompt: Prompt, line: int) -> IdEntry:
    """The id-map entry of an accepted prompt."""
    given = prompt.custom_id if isinstance(prompt, BatchRequest) else prompt.id
    return IdEntry(recordId=record_id(line), id=generated_id(line) if given is None else str(given), line=line)


@cache
def model_names(model_id: str) -> frozenset[str]:
    """The names a prompt may use for the configured model: its id and its short name (`gpt-oss-120b`)."""
    return frozenset({model_id, short_model_name(model_id)})


def _max_tokens(prompt: ChatBody | ShortPrompt, default: int) -> int:
    new, old = prompt.max_completion_tokens, prompt.max_tokens
    if new is not None and old is not None and new != old:
        raise InvalidPrompt("max_completion_tokens and max_tokens disagree; give one of them")
    return new if new is not None else old if old is not None else default


def _messages(prompt: ChatBody | ShortPrompt) -> list[dict[str, str]]:
    if isinstance(prompt, ShortPrompt):
        pairs = [("system", prompt.system)] if prompt.system is not None else []
        pairs.append(("user", prompt.prompt))
    else:
        pairs = [("system" if m.role == "developer" else m.role, m.text()) for m in prompt.messages]
        pairs = [(role, text) for role, text in pairs if role != "system" or text.strip()]
    if not pairs or pairs[-1][0] != "user":
        raise InvalidPrompt("the conversation must end with a user message")
    for role, text in pairs:
        if "\x00" in text:
            raise InvalidPrompt("the prompt contains a NUL character (binary data?)")
        if not text.strip():
            raise InvalidPrompt("empty prompt" if role == "user" else f"empty {role} message")
    return [{"role": role, "content": text} for role, text in pairs]


def _reason(error: ValidationError) -> str:
    parts = []
    for detail in error.errors(include_url=False, include_input=False)[:_MAX_REASON_ERRORS]:
        where = ".".join(str(part) for part in detail["loc"])
        parts.append(f"{where}: {detail['msg']}" if where else detail["msg"])
    more = error.error_count() - _MAX_REASON_ERRORS
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _json_type(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
