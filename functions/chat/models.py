"""OpenAI Chat Completions wire types: the request we accept, and the objects we return."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.gpt_oss import FinishReason

# Converse's ToolName pattern, which is also what OpenAI allows for function names.
TOOL_NAME_PATTERN = r"^[a-zA-Z0-9_-]{1,64}$"


def _is_none(value: Any) -> bool:
    return value is None


class _Request(BaseModel):
    """Request side: strict JSON types (no "5" for 5), and unknown fields are an error we can name."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ContentPart(BaseModel):
    """One content part; only `text` parts can be sent to gpt-oss, the rest is rejected by name later."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    type: str
    text: str | None = None


class FunctionCall(_Request):
    """A function call an assistant turn made (arguments as a JSON string)."""

    name: str
    arguments: str


class ToolCall(_Request):
    """A tool call in a replayed assistant turn."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message of the conversation.

    Unknown fields are ignored here (not at the top level) because clients replay whole assistant
    messages from earlier responses, which carry read-only fields such as `annotations`.
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    audio: JsonValue | None = None
    function_call: JsonValue | None = None
    # Accepted on replayed assistant turns and never sent back to the model.
    reasoning_content: str | None = None


class FunctionDefinition(_Request):
    """A function the model may call."""

    name: Annotated[str, Field(pattern=TOOL_NAME_PATTERN)]
    description: str | None = None
    parameters: dict[str, JsonValue] | None = None
    strict: bool | None = None


class Tool(_Request):
    """A tool offered to the model (function tools only)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Request):
    """The function a named tool choice forces."""

    name: str


class NamedToolChoice(_Request):
    """`tool_choice` naming one function."""

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(_Request):
    """`response_format.json_schema`."""

    name: Annotated[str, Field(pattern=TOOL_NAME_PATTERN)]
    description: str | None = None
    json_schema: dict[str, JsonValue] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Request):
    """`response_format`."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(_Request):
    """`stream_options`."""

    include_usage: bool | None = None


class ChatCompletionRequest(_Request):
    """The body of POST /v1/chat/completions.

    Fields OpenAI defines that gpt-oss on Converse cannot honour are typed loosely here and rejected by
    name in translate.py unless they hold their no-op value. `include_reasoning` is our extension.
    """

    model: str
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: int | None = None
    max_tokens: int | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | list[str] | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    metadata: dict[str, str] | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    include_reasoning: bool = False
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    logit_bias: dict[str, JsonValue] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    seed: int | None = None
    store: bool | None = None
    modalities: list[str] | None = None
    service_tier: str | None = None
    audio: JsonValue | None = None
    prediction: JsonValue | None = None
    verbosity: JsonValue | None = None
    web_search_options: JsonValue | None = None
    functions: JsonValue | None = None
    function_call: JsonValue | None = None
    prompt_cache_key: JsonValue | None = None


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ResponseToolCall(_Response):
    """A tool call the model made."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(_Response):
    """choices[].message of a chat.completion."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    reasoning_content: str | None = Field(default=None, exclude_if=_is_none)
    tool_calls: list[ResponseToolCall] | None = Field(default=None, exclude_if=_is_none)


class Choice(_Response):
    """One choice of a chat.completion (there is always exactly one)."""

    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason
    logprobs: None = None


class Usage(_Response):
    """Token usage from Converse."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(_Response):
    """A chat.completion object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    # The tier that served the answer, as Bedrock reports it ("default", "flex", "priority").
    service_tier: str = "default"


class ChunkFunction(_Response):
    """The function part of a streamed tool-call delta: the name once, then the arguments piece by piece."""

    name: str | None = Field(default=None, exclude_if=_is_none)
    arguments: str = ""


class ChunkToolCall(_Response):
    """A tool call inside a streamed delta: `id`, `type` and the name come with its first delta only."""

    index: int
    id: str | None = Field(default=None, exclude_if=_is_none)
    type: Literal["function"] | None = Field(default=None, exclude_if=_is_none)
    function: ChunkFunction


class ChunkDelta(_Response):
    """choices[].delta of a chat.completion.chunk."""

    role: Literal["assistant"] | None = Field(default=None, exclude_if=_is_none)
    content: str | None = Field(default=None, exclude_if=_is_none)
    reasoning_content: str | None = Field(default=None, exclude_if=_is_none)
    tool_calls: list[ChunkToolCall] | None = Field(default=None, exclude_if=_is_none)


class ChunkChoice(_Response):
    """One choice of a chat.completion.chunk."""

    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(_Response):
    """A chat.completion.chunk event of a streamed answer."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    # The tier asked of Bedrock (the tier that served it is known only at the end: ChatCompletion.service_tier).
    service_tier: str = "default"
    usage: Usage | None = Field(default=None, exclude_if=_is_none)


class ModelCard(_Response):
    """A model object of /v1/models."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(_Response):
    """The list object of GET /v1/models."""

    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(_Response):
    """The OpenAI error object."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorEnvelope(_Response):
    """The body of every error response."""

    error: ErrorBody
