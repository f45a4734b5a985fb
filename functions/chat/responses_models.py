"""OpenAI Responses API wire types: the request POST /v1/responses accepts, and the response object it returns.

Fields OpenAI defines that gpt-oss on Converse cannot honour are typed loosely and rejected by name in
chat/responses.py unless they hold their no-op value; a field OpenAI does not define is a 400 here.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from chat.models import TOOL_NAME_PATTERN


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Loose(BaseModel):
    """Items and tools whose shape depends on their `type`: checked by type in chat/responses.py.

    Other fields are ignored because clients replay whole output items, which carry read-only fields (`status`).
    """

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class ContentPart(_Loose):
    """A content part of an input message (`input_text`, `output_text`, `refusal`; other types are rejected)."""

    type: str
    text: str | None = None
    refusal: str | None = None


class InputItem(_Loose):
    """One item of `input`: a message (its `type` may be left out), a function call or its output, or reasoning."""

    type: str | None = None
    role: str | None = None
    content: str | list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ContentPart] | None = None


class ResponsesTool(_Loose):
    """A tool offered to the model: only `function` tools can be."""

    type: str
    name: str | None = None
    description: str | None = None
    parameters: dict[str, JsonValue] | None = None
    strict: bool | None = None


class ToolChoiceObject(_Loose):
    """`tool_choice` as an object: `{"type": "function", "name": ...}` forces one function."""

    type: str
    name: str | None = None


class TextFormat(_Request):
    """`text.format`: plain text, or JSON that follows a schema."""

    type: Literal["text", "json_schema", "json_object"]
    name: Annotated[str, Field(pattern=TOOL_NAME_PATTERN)] | None = None
    json_schema: dict[str, JsonValue] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(_Request):
    """`text`."""

    format: TextFormat | None = None
    verbosity: JsonValue | None = None


class ReasoningConfig(_Request):
    """`reasoning`."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(_Request):
    """`stream_options`."""

    include_obfuscation: bool | None = None


class ResponsesRequest(_Request):
    """The body of POST /v1/responses."""

    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    tools: list[ResponsesTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    safety_identifier: str | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    service_tier: str | None = None
    include: list[str] | None = None
    # Only about OpenAI's built-in tools, which this service offers none of: any value holds.
    max_tool_calls: int | None = None
    previous_response_id: str | None = None
    truncation: str | None = None
    top_logprobs: int | None = None
    background: bool | None = None
    conversation: JsonValue | None = None
    prompt: JsonValue | None = None
    prompt_cache_key: JsonValue | None = None
    prompt_cache_retention: JsonValue | None = None
    prompt_cache_options: JsonValue | None = None
    context_management: JsonValue | None = None
    moderation: JsonValue | None = None
    image: JsonValue | None = None
    access_programs: JsonValue | None = None
    background_options: JsonValue | None = None


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputText(_Response):
    """The answer's text."""

    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[JsonValue] = Field(default_factory=list)
    logprobs: list[JsonValue] = Field(default_factory=list)


class ReasoningText(_Response):
    """The model's raw reasoning (gpt-oss writes no summaries)."""

    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class MessageItem(_Response):
    """An assistant message of the output."""

    type: Literal["message"] = "message"
    id: str
    role: Literal["assistant"] = "assistant"
    status: ItemStatus
    content: list[OutputText]


class FunctionCallItem(_Response):
    """A function call the model made."""

    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    status: ItemStatus


class ReasoningItem(_Response):
    """The model's reasoning, only when asked for (`reasoning.summary`, or the deployment's returnReasoning)."""

    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[JsonValue] = Field(default_factory=list)
    content: list[ReasoningText]
    status: ItemStatus


OutputItem = MessageItem | FunctionCallItem | ReasoningItem


class InputTokensDetails(_Response):
    """Input token details: this service sends Converse no cache points, so nothing is cached or written."""

    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(_Response):
    """Output token details."""

    # Converse counts output tokens as one figure: this is the reasoning's share of the output text, in tokens.
    reasoning_tokens: int


class ResponseUsage(_Response):
    """Token usage from Converse."""

    input_tokens: int
    input_tokens_details: InputTokensDetails = InputTokensDetails()
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class IncompleteDetails(_Response):
    """Why a response is incomplete."""

    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(_Response):
    """Why a response failed."""

    code: str
    message: str


class Response(_Response):
    """The response object: what was asked (echoed as OpenAI does) and what the model produced."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool = True
    previous_response_id: None = None
    reasoning: JsonValue = None
    service_tier: str = "default"
    store: bool = False
    temperature: float | None = None
    text: JsonValue = None
    tool_choice: JsonValue = "auto"
    tools: list[JsonValue] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    safety_identifier: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
