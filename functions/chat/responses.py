"""POST /v1/responses on the chat translation core.

A Responses request becomes a Converse request through the same rules as a chat completion (chat/translate.py:
one conversation builder, the same guardrail, tools, limits, structured output, metadata and service tiers). Its
answer is translated once into chat chunks (chat/streaming.py), and `ResponseBuilder` folds those chunks into
Responses events and the response object, so a streamed response and a whole one follow the very same rules.
Nothing is stored: every request carries its whole conversation.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic_core import to_json

from chat.errors import ChatError, InvalidRequest, UnsupportedParameter, UnsupportedValue
from chat.models import TOOL_NAME_PATTERN, ChatCompletion, ChatCompletionChunk, FunctionDefinition
from chat.responses_models import (
    ContentPart,
    FunctionCallItem,
    IncompleteDetails,
    InputItem,
    ItemStatus,
    MessageItem,
    OutputItem,
    OutputText,
    OutputTokensDetails,
    ReasoningItem,
    ReasoningText,
    Response,
    ResponseError,
    ResponsesRequest,
    ResponsesTool,
    ResponseUsage,
    TextConfig,
    ToolChoiceObject,
)
from chat.settings import ChatSettings
from chat.translate import (
    Said,
    additional_fields,
    assistant_text,
    conversation,
    guarded_request,
    inference_config,
    json_object_unsupported,
    json_schema_output,
    max_tokens,
    reject_unsupported,
    request_metadata,
    service_tier,
    tool_config,
    tool_result,
    tool_use,
)

Event = dict[str, Any]
Kind = Literal["message", "reasoning", "function_call"]
T = TypeVar("T")


def _never(_: Any) -> bool:
    return False


# Fields this service cannot honour, and the value for which each is a no-op (accepted).
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "truncation": lambda value: value == "disabled",
    "top_logprobs": lambda value: value == 0,
    "background": lambda value: value is False,
    "conversation": _never,
    "prompt": _never,
    "prompt_cache_key": _never,
    "prompt_cache_retention": _never,
    "prompt_cache_options": _never,
    "context_management": _never,
    "moderation": _never,
    "image": _never,
    "access_programs": _never,
    "background_options": _never,
}
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)
_FUNCTION_TOOL_FIELDS = frozenset({"type", "name", "description", "parameters", "strict"})
_TEXT_PARTS = frozenset({"input_text", "output_text"})
_MESSAGE_ROLES = ("user", "system", "developer", "assistant")


def to_converse(
    request: ResponsesRequest, settings: ChatSettings, *, model_id: str, caller: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for bedrock-runtime Converse that ask what the Responses request asks.

    Raises:
        InvalidRequest: (or a subclass) naming the first field that cannot be honoured.
    """
    _reject_unsupported(request)
    system, turns = conversation(_said(request), param="input")
    choice = request.tool_choice
    return guarded_request(
        settings,
        model_id=model_id,
        system=system,
        turns=turns,
        inference=inference_config(
            settings,
            max_tokens=max_tokens(request.max_output_tokens, param="max_output_tokens", settings=settings),
            temperature=request.temperature,
            top_p=request.top_p,
        ),
        tool_config=tool_config(
            _functions(request.tools or []),
            _forced_function(choice) if isinstance(choice, ToolChoiceObject) else choice,
            turns,
        ),
        output_config=_output_config(request.text),
        additional_fields=additional_fields({"parallel_tool_calls": request.parallel_tool_calls}, _effort(request)),
        metadata=request_metadata(
            request.metadata, user=request.user, safety_identifier=request.safety_identifier, caller=caller
        ),
        service_tier=service_tier(request.service_tier, settings),
        conversation_param="input",
    )


def wants_reasoning(request: ResponsesRequest) -> bool:
    """Whether the caller asked for reasoning items (any `reasoning.summary`: see the README)."""
    reasoning = request.reasoning
    return reasoning is not None and (reasoning.summary or reasoning.generate_summary) is not None


def _reject_unsupported(request: ResponsesRequest) -> None:
    if request.store:
        raise UnsupportedValue(
            "Responses are not stored by this service: send 'store': false (or leave it out) and the whole "
            "conversation in 'input'.",
            param="store",
        )
    if request.previous_response_id is not None:
        raise UnsupportedParameter(
            "'previous_response_id' is not supported: responses are not stored, so send the whole conversation "
            "in 'input' (the earlier output items can be replayed as they are).",
            param="previous_response_id",
        )
    if request.include:
        raise UnsupportedValue(
            "'include' is not supported: reasoning comes as reasoning items when 'reasoning.summary' is set; "
            "encrypted reasoning, logprobs and built-in tool results are not available.",
            param="include",
        )
    reject_unsupported(request, _UNSUPPORTED)
    if request.stream_options is not None:
        if not request.stream:
            raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", param="stream_options")
        if request.stream_options.include_obfuscation:
            raise UnsupportedValue(
                "Stream obfuscation is not supported: set 'include_obfuscation' to false.",
                param="stream_options.include_obfuscation",
            )


def _said(request: ResponsesRequest) -> Iterator[Said]:
    if request.instructions is not None:
        yield Said("system", [{"text": request.instructions}], "instructions")
    if isinstance(request.input, str):
        if not request.input.strip():
            raise InvalidRequest("'input' must not be empty.", param="input")
        yield Said("user", [{"text": request.input}], "input", by_user=True)
        return
    for index, item in enumerate(request.input):
        param = f"input[{index}]"
        kind = item.type or "message"
        if kind == "message":
            yield _message(item, param)
        elif kind == "function_call":
            call_id, name = _required(item.call_id, f"{param}.call_id"), _required(item.name, f"{param}.name")
            arguments = _required(item.arguments, f"{param}.arguments")
            yield Said("assistant", [tool_use(call_id, name, arguments, param=f"{param}.arguments")], param)
        elif kind == "function_call_output":
            call_id = _required(item.call_id, f"{param}.call_id")
            yield Said("user", [tool_result(call_id, _texts(item.output, f"{param}.output"))], param)
        elif kind != "reasoning":
            # Reasoning items are accepted and never replayed: Converse rejects replayed reasoning for gpt-oss.
            raise UnsupportedValue(
                f"Input items of type '{kind[:40]}' are not supported: messages, function calls, their outputs "
                "and reasoning are.",
                param=f"{param}.type",
            )


def _message(item: InputItem, param: str) -> Said:
    role = _required(item.role, f"{param}.role")
    if role not in _MESSAGE_ROLES:
        raise InvalidRequest(f"'role' must be one of {', '.join(_MESSAGE_ROLES)}.", param=f"{param}.role")
    texts = _texts(item.content, f"{param}.content", allow_refusal=role == "assistant")
    if role == "assistant":
        return Said("assistant", assistant_text("".join(texts)), param)
    if role in ("system", "developer"):
        return Said("system", [{"text": text} for text in texts], param)
    return Said("user", [{"text": text} for text in texts], param, by_user=True)


def _texts(content: str | list[ContentPart] | None, param: str, *, allow_refusal: bool = False) -> list[str]:
    """The texts of a message's content (or a function call's output), named by `param`."""
    if content is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for position, part in enumerate(content):
        part_param = f"{param}[{position}]"
        if part.type in _TEXT_PARTS:
            texts.append(_required(part.text, f"{part_param}.text"))
        elif part.type == "refusal" and allow_refusal:
            texts.append(_required(part.refusal, f"{part_param}.refusal"))
        else:
            raise UnsupportedValue(
                f"Content parts of type '{part.type[:40]}' are not supported: gpt-oss accepts text only.",
                param=f"{part_param}.type",
            )
    return texts


def _required(value: T | None, param: str) -> T:
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")
    return value


def _functions(tools: Sequence[ResponsesTool]) -> list[FunctionDefinition]:
    functions = []
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if tool.type != "function":
            raise UnsupportedValue(
                f"Tools of type '{tool.type[:40]}' are not supported: only function tools are.", param=f"{param}.type"
            )
        unknown = sorted(set(tool.model_extra or {}) - _FUNCTION_TOOL_FIELDS)
        if unknown:
            raise UnsupportedParameter(
                f"Unrecognized function tool argument supplied: '{unknown[0][:40]}'.", param=f"{param}.{unknown[0]}"
            )
        name = _required(tool.name, f"{param}.name")
        if not _TOOL_NAME.match(name):
            raise InvalidRequest(
                "Function names are 1 to 64 letters, digits, underscores and dashes.", param=f"{param}.name"
            )
        functions.append(
            FunctionDefinition(name=name, description=tool.description, parameters=tool.parameters, strict=tool.strict)
        )
    return functions


def _forced_function(choice: ToolChoiceObject) -> str:
    if choice.type != "function":
        raise UnsupportedValue(
            f"'tool_choice' of type '{choice.type[:40]}' is not supported: use none, auto, required or a function.",
            param="tool_choice.type",
        )
    return _required(choice.name, "tool_choice.name")


def _output_config(text: TextConfig | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if text.verbosity is not None:
        raise UnsupportedParameter("'text.verbosity' is not supported by gpt-oss.", param="text.verbosity")
    schema_format = text.format
    if schema_format is None or schema_format.type == "text":
        return None
    if schema_format.type == "json_object":
        raise json_object_unsupported("text.format.type", "'json_schema' with a schema")
    return json_schema_output(
        _required(schema_format.name, "text.format.name"),
        _required(schema_format.json_schema, "text.format.schema"),
        schema_format.description,
    )


def _effort(request: ResponsesRequest) -> str | None:
    effort = request.reasoning.effort if request.reasoning else None
    if effort in ("none", "xhigh"):
        raise UnsupportedValue(
            "gpt-oss reasons at three levels: 'reasoning.effort' must be minimal, low, medium or high.",
            param="reasoning.effort",
        )
    return effort


@dataclass
class _OpenItem:
    kind: Kind
    item_id: str
    output_index: int
    pieces: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class ResponseBuilder:
    """Folds the chat chunks of one answer into Responses events, as they come, and into the response object.

    Every event carries the next `sequence_number`. `failed` may be called from another thread than the one
    feeding chunks (a stream's deadline): it only reads the finished items.
    """

    def __init__(
        self, request: ResponsesRequest, *, response_id: str, created_at: int, model: str, service_tier: str
    ) -> None:
        self.response_id, self.created_at, self.model = response_id, created_at, model
        self._request = request
        # The tier asked of Bedrock, until the finished answer says which one served it.
        self._service_tier = service_tier
        self._sequence = itertools.count()
        self._items: list[OutputItem] = []
        self._open: _OpenItem | None = None
        self._calls: dict[int, _OpenItem] = {}

    def opening(self) -> list[Event]:
        """response.created and response.in_progress."""
        snapshot = self._response("in_progress", output=[]).model_dump(mode="json")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def feed(self, chunk: ChatCompletionChunk) -> list[Event]:
        """The events one chat chunk makes."""
        events: list[Event] = []
        for choice in chunk.choices:
            delta = choice.delta
            if delta.reasoning_content:
                events += self._piece("reasoning", delta.reasoning_content)
            if delta.content:
                events += self._piece("message", delta.content)
            for call in delta.tool_calls or []:
                if call.id is not None:
                    events += self._close("completed")
                    opened = _OpenItem("function_call", f"fc_{self._suffix()}", len(self._items))
                    opened.call_id, opened.name = call.id, call.function.name or ""
                    self._calls[call.index] = opened
                    events += self._begin(opened)
                if call.function.arguments:
                    events += self._piece("function_call", call.function.arguments, self._calls.get(call.index))
        return events

    def finish(self, completion: ChatCompletion, *, reasoning_tokens: int) -> tuple[list[Event], Response]:
        """The events that close the answer (its last item, then its final event), and the response object."""
        finish = completion.choices[0].finish_reason
        events = self._close("incomplete" if finish in ("length", "content_filter") else "completed")
        final = self._final(completion, reasoning_tokens=reasoning_tokens)
        kind = "response.completed" if final.status == "completed" else "response.incomplete"
        return [*events, self._event(kind, response=final.model_dump(mode="json"))], final

    def _final(self, completion: ChatCompletion, *, reasoning_tokens: int) -> Response:
        finish = completion.choices[0].finish_reason
        output = list(self._items)
        incomplete = None
        if finish == "length":
            incomplete = IncompleteDetails(reason="max_output_tokens")
        elif finish == "content_filter":
            # The guardrail's message replaces the answer; nothing else the model produced is returned.
            incomplete = IncompleteDetails(reason="content_filter")
            output = [item for item in output if isinstance(item, MessageItem)]
        usage = completion.usage
        return self._response(
            "incomplete" if incomplete else "completed",
            output=output,
            incomplete_details=incomplete,
            service_tier=completion.service_tier,
            usage=ResponseUsage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning_tokens),
                total_tokens=usage.total_tokens,
            ),
        )

    def failed(self, error: ChatError) -> Event:
        """response.failed for an answer that broke off: the items finished so far, and why."""
        # OpenAI's response error codes: a throttled call is the one a caller may act on, the rest are ours.
        code = "rate_limit_exceeded" if error.code == "rate_limit_exceeded" else "server_error"
        response = self._response(
            "failed", output=list(self._items), error=ResponseError(code=code, message=error.message)
        )
        return self._event("response.failed", response=response.model_dump(mode="json"))

    def replay(self, response: Response) -> Iterator[Event]:
        """The events that stream a stored response (an Idempotency-Key replay): each item whole, then its end."""
        yield from self.opening()
        for item in response.output:
            if isinstance(item, FunctionCallItem):
                opened = _OpenItem("function_call", item.id, len(self._items), [], item.call_id, item.name)
                text = item.arguments
            elif isinstance(item, ReasoningItem):
                opened = _OpenItem("reasoning", item.id, len(self._items))
                text = "".join(part.text for part in item.content)
            else:
                opened = _OpenItem("message", item.id, len(self._items))
                text = "".join(part.text for part in item.content)
            yield from self._begin(opened)
            yield from self._piece(opened.kind, text, opened)
            yield from self._close(item.status)
        kind = "response.completed" if response.status == "completed" else "response.incomplete"
        yield self._event(kind, response=response.model_dump(mode="json"))

    def _piece(self, kind: Kind, text: str, target: _OpenItem | None = None) -> list[Event]:
        events: list[Event] = []
        if target is None:
            if self._open is None or self._open.kind != kind:
                events += self._close("completed")
                prefix = "rs" if kind == "reasoning" else "msg"
                events += self._begin(_OpenItem(kind, f"{prefix}_{self._suffix()}", len(self._items)))
            target = self._open
        if target is None or not text:
            return events
        target.pieces.append(text)
        where = {"item_id": target.item_id, "output_index": target.output_index}
        if target.kind == "function_call":
            return [*events, self._event("response.function_call_arguments.delta", **where, delta=text)]
        if target.kind == "reasoning":
            return [*events, self._event("response.reasoning_text.delta", **where, content_index=0, delta=text)]
        return [*events, self._event("response.output_text.delta", **where, content_index=0, delta=text, logprobs=[])]

    def _begin(self, opened: _OpenItem) -> list[Event]:
        self._open = opened
        item = self._item(opened, "in_progress", whole=False).model_dump(mode="json")
        events = [self._event("response.output_item.added", output_index=opened.output_index, item=item)]
        if opened.kind != "function_call":
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=opened.item_id,
                    output_index=opened.output_index,
                    content_index=0,
                    part=self._part(opened, ""),
                )
            )
        return events

    def _close(self, status: ItemStatus) -> list[Event]:
        opened, self._open = self._open, None
        if opened is None:
            return []
        text = "".join(opened.pieces)
        where = {"item_id": opened.item_id, "output_index": opened.output_index}
        item = self._item(opened, status, whole=True)
        events: list[Event] = []
        if opened.kind == "function_call":
            events.append(
                self._event("response.function_call_arguments.done", **where, name=opened.name, arguments=text)
            )
        else:
            done = "response.reasoning_text.done" if opened.kind == "reasoning" else "response.output_text.done"
            extra: dict[str, Any] = {} if opened.kind == "reasoning" else {"logprobs": []}
            events.append(self._event(done, **where, content_index=0, text=text, **extra))
            events.append(
                self._event("response.content_part.done", **where, content_index=0, part=self._part(opened, text))
            )
        self._items.append(item)
        events.append(
            self._event(
                "response.output_item.done", output_index=opened.output_index, item=item.model_dump(mode="json")
            )
        )
        return events

    @staticmethod
    def _item(opened: _OpenItem, status: ItemStatus, *, whole: bool) -> OutputItem:
        """The item: whole when it is done, empty when it has just been added."""
        text = "".join(opened.pieces) if whole else ""
        if opened.kind == "function_call":
            return FunctionCallItem(
                id=opened.item_id, call_id=opened.call_id, name=opened.name, arguments=text, status=status
            )
        if opened.kind == "reasoning":
            return ReasoningItem(id=opened.item_id, content=[ReasoningText(text=text)] if whole else [], status=status)
        return MessageItem(id=opened.item_id, content=[OutputText(text=text)] if whole else [], status=status)

    @staticmethod
    def _part(opened: _OpenItem, text: str) -> dict[str, Any]:
        part = ReasoningText(text=text) if opened.kind == "reasoning" else OutputText(text=text)
        return part.model_dump(mode="json")

    def _suffix(self) -> str:
        return f"{self.response_id.removeprefix('resp_')}{len(self._items)}"

    def _event(self, kind: str, **fields: Any) -> Event:
        return {"type": kind, "sequence_number": next(self._sequence), **fields}

    def _response(self, status: Literal["in_progress", "completed", "incomplete", "failed"], **fields: Any) -> Response:
        request = self._request
        fields.setdefault("service_tier", self._service_tier)
        return Response(
            id=self.response_id,
            created_at=self.created_at,
            status=status,
            model=self.model,
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            parallel_tool_calls=request.parallel_tool_calls is not False,
            reasoning=request.reasoning.model_dump(mode="json", exclude_none=True) if request.reasoning else None,
            temperature=request.temperature,
            text=request.text.model_dump(mode="json", by_alias=True, exclude_none=True)
            if request.text
            else {"format": {"type": "text"}},
            tool_choice=_echo(request.tool_choice) if request.tool_choice is not None else "auto",
            tools=[_echo(tool) for tool in request.tools or []],
            top_p=request.top_p,
            user=request.user,
            safety_identifier=request.safety_identifier,
            metadata=dict(request.metadata or {}),
            **fields,
        )


def event_sse(event: Event) -> str:
    """One server-sent event as OpenAI streams Responses: named by its type, its JSON as data."""
    return f"event: {event['type']}\ndata: {to_json(event).decode()}\n\n"


def replay_events(request: ResponsesRequest | None, response: Response) -> Iterator[Event]:
    """The events that stream a stored response again, under its own id."""
    assert request is not None, "a replay answers the request it was stored for"
    builder = ResponseBuilder(
        request,
        response_id=response.id,
        created_at=response.created_at,
        model=response.model,
        service_tier=response.service_tier,
    )
    return builder.replay(response)


def _echo(value: Any) -> Any:
    return value.model_dump(mode="json", exclude_none=True) if hasattr(value, "model_dump") else value
