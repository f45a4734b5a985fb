"""Pure translation between OpenAI Chat Completions and Bedrock Converse for gpt-oss, and the core both APIs share.

Nothing is dropped silently: every OpenAI field is either honoured or rejected with a 400 naming it. The public
functions below `to_converse` are the rules /v1/responses (chat/responses.py) applies too: one conversation
builder, one guardrail placement, one place for tools, limits, structured output, metadata and service tiers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from chat.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    UnsupportedParameter,
    UnsupportedValue,
)
from chat.models import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionDefinition,
    NamedToolChoice,
)
from chat.settings import ChatSettings
from shared import strict_json
from shared.gpt_oss import CONTEXT_WINDOW_TOKENS, exceeds_context_window, split_reasoning

Block = dict[str, Any]
Turn = dict[str, Any]

# Converse's requestMetadata: at most 16 pairs, keys and values from this alphabet, up to 256 chars.
_METADATA_TEXT = re.compile(r"^[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}$")
_METADATA_MAX_PAIRS = 16
_METADATA_ALPHABET = "letters, digits, spaces and :_@$#=/+,-. (up to 256 characters)"
_RESERVED_METADATA_KEYS = ("user", "safety_identifier", "caller")

# gpt-oss reasons at three levels; OpenAI's "minimal" asks for the least reasoning, which is "low".
_REASONING_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}

# OpenAI fields that Converse has no slot for but the gpt-oss engine accepts in its request body
# (Bedrock passes additionalModelRequestFields through to it).
_PASSTHROUGH_FIELDS = ("seed", "frequency_penalty", "presence_penalty", "logit_bias", "parallel_tool_calls")


def _never(_: Any) -> bool:
    return False


# OpenAI's service tiers; "auto" (the project's default) is Bedrock's default tier, always allowed.
SERVICE_TIERS = ("auto", "default", "flex", "priority")

# OpenAI fields we cannot honour, and the value for which they are a no-op (accepted).
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "logprobs": lambda value: value is False,
    "top_logprobs": lambda value: value == 0,
    "store": lambda value: value is False,
    "modalities": lambda value: value == ["text"],
    "audio": _never,
    "prediction": _never,
    "verbosity": _never,
    "web_search_options": _never,
    "functions": _never,
    "function_call": _never,
    "prompt_cache_key": _never,
}


def resolve_model(name: str, settings: ChatSettings) -> str:
    """The Bedrock model id for a requested model name: an allowed id, or an alias of one (exact match).

    Raises:
        ModelNotFound: the name is neither.
    """
    model_id = name if name in settings.MODEL_IDS else settings.MODEL_ALIASES.get(name)
    if model_id is None or model_id not in settings.MODEL_IDS:
        shown = name if len(name) <= 100 else f"{name[:100]}..."
        raise ModelNotFound(f"The model '{shown}' does not exist or you do not have access to it.", param="model")
    return model_id


def to_converse(
    request: ChatCompletionRequest, settings: ChatSettings, *, model_id: str, caller: str | None = None
) -> dict[str, Any]:
    """Keyword arguments for bedrock-runtime Converse that ask what the OpenAI request asks.

    Raises:
        InvalidRequest: (or a subclass) naming the first field that cannot be honoured.
    """
    reject_unsupported(request, _UNSUPPORTED)
    _check_choices(request)
    system, turns = conversation(_said(request.messages), param="messages")
    max_tokens_param, max_tokens_value = (
        # max_completion_tokens supersedes the deprecated max_tokens when both are sent.
        ("max_completion_tokens", request.max_completion_tokens)
        if request.max_completion_tokens is not None
        else ("max_tokens", request.max_tokens)
    )
    choice = request.tool_choice
    return guarded_request(
        settings,
        model_id=model_id,
        system=system,
        turns=turns,
        inference=inference_config(
            settings,
            max_tokens=max_tokens(max_tokens_value, param=max_tokens_param, settings=settings),
            temperature=request.temperature,
            top_p=request.top_p,
            stops=_stops(request.stop),
        ),
        tool_config=tool_config(
            [tool.function for tool in request.tools or []],
            choice.function.name if isinstance(choice, NamedToolChoice) else choice,
            turns,
        ),
        output_config=_output_config(request),
        additional_fields=additional_fields(
            {name: getattr(request, name) for name in _PASSTHROUGH_FIELDS}, request.reasoning_effort
        ),
        metadata=request_metadata(
            request.metadata, user=request.user, safety_identifier=request.safety_identifier, caller=caller
        ),
        service_tier=service_tier(request.service_tier, settings),
        conversation_param="messages",
    )


def for_stream(converse: dict[str, Any], *, guardrail_mode: str) -> dict[str, Any]:
    """The ConverseStream request for a Converse request: the same, with the guardrail's stream processing mode."""
    guardrail = {**converse["guardrailConfig"], "streamProcessingMode": guardrail_mode}
    return {**converse, "guardrailConfig": guardrail}


def _check_choices(request: ChatCompletionRequest) -> None:
    if request.n is not None and request.n != 1:
        if request.n < 1:
            raise InvalidRequest("Invalid 'n': must be at least 1.", param="n")
        raise UnsupportedValue("Only one choice can be generated per request: 'n' must be 1.", param="n")
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", param="stream_options")


def _said(messages: Sequence[ChatMessage]) -> Iterator[Said]:
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        _reject_message_fields(message, param)
        if message.role in ("system", "developer"):
            yield Said("system", [{"text": text} for text in _texts(message.content, param)], param)
        elif message.role == "assistant":
            yield Said("assistant", _assistant_blocks(message, param), param)
        elif message.role == "tool":
            if not message.tool_call_id:
                raise InvalidRequest("Tool messages must have a 'tool_call_id'.", param=f"{param}.tool_call_id")
            yield Said("user", [tool_result(message.tool_call_id, _texts(message.content, param))], param)
        else:
            yield Said("user", [{"text": text} for text in _texts(message.content, param)], param, by_user=True)


def _reject_message_fields(message: ChatMessage, param: str) -> None:
    for field in ("name", "audio", "function_call"):
        if getattr(message, field) is not None:
            raise UnsupportedParameter(
                f"'{field}' on messages is not supported by this service.", param=f"{param}.{field}"
            )
    if message.tool_calls is not None and message.role != "assistant":
        raise InvalidRequest("Only assistant messages can have 'tool_calls'.", param=f"{param}.tool_calls")


def _assistant_blocks(message: ChatMessage, param: str) -> list[Block]:
    text = "".join(_texts(message.content, param, allow_refusal=True)) or (message.refusal or "")
    blocks = assistant_text(text)
    for position, call in enumerate(message.tool_calls or []):
        arguments_param = f"{param}.tool_calls[{position}].function.arguments"
        blocks.append(tool_use(call.id, call.function.name, call.function.arguments, param=arguments_param))
    return blocks


def _texts(content: str | list[ContentPart] | None, param: str, *, allow_refusal: bool = False) -> list[str]:
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for position, part in enumerate(content):
        part_param = f"{param}.content[{position}]"
        if part.type == "text" and part.text is not None:
            texts.append(part.text)
        elif allow_refusal and part.type == "refusal" and isinstance((part.model_extra or {}).get("refusal"), str):
            texts.append(str((part.model_extra or {})["refusal"]))
        elif part.type == "text":
            raise InvalidRequest("Text content parts need a 'text' string.", param=f"{part_param}.text")
        else:
            raise UnsupportedValue(
                f"Content parts of type '{part.type[:40]}' are not supported: gpt-oss accepts text only.",
                param=f"{part_param}.type",
            )
    return texts


def _stops(stop: str | list[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else (stop or [])
    if any(not stop for stop in stops):
        raise InvalidRequest("Stop sequences must not be empty strings.", param="stop")
    return stops


def _output_config(request: ChatCompletionRequest) -> dict[str, Any] | None:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        raise json_object_unsupported("response_format.type", "'json_schema' with a schema")
    schema_format = response_format.json_schema
    if schema_format is None or schema_format.json_schema is None:
        raise InvalidRequest(
            "'response_format' of type 'json_schema' needs 'json_schema.schema'.", param="response_format.json_schema"
        )
    return json_schema_output(schema_format.name, schema_format.json_schema, schema_format.description)


# --- The core both APIs share ------------------------------------------------------------------


@dataclass(frozen=True)
class Said:
    """One message of a conversation as Converse blocks: its role, where it is in the request, and its author.

    `by_user` marks a user's own words (what the guardrail checks), as opposed to a tool's output sent as a
    user turn.
    """

    role: Literal["system", "user", "assistant"]
    blocks: list[Block]
    param: str
    by_user: bool = False


def reject_unsupported(request: Any, table: dict[str, Callable[[Any], bool]]) -> None:
    """A 400 naming the first field of `table` the request sets to anything but its no-op value."""
    for field, is_no_op in table.items():
        value = getattr(request, field)
        if value is not None and not is_no_op(value):
            raise UnsupportedParameter(
                f"'{field}' is not supported by this service (gpt-oss on Amazon Bedrock).", param=field
            )


def conversation(said: Iterable[Said], *, param: str) -> tuple[list[Block], list[Turn]]:
    """Converse's `system` and `messages`: consecutive turns of one role merged, the newest user words guarded.

    Raises:
        InvalidRequest: no user message, a user message without text, or a conversation that opens otherwise.
    """
    system: list[Block] = []
    turns: list[Turn] = []
    first_turn: str | None = None
    latest_user_blocks: list[Block] = []
    for entry in said:
        if entry.role == "system":
            system.extend(block for block in entry.blocks if block["text"].strip())
            continue
        blocks = [block for block in entry.blocks if "text" not in block or block["text"].strip()]
        if entry.by_user:
            if not blocks:
                raise InvalidRequest("User messages must have non-empty content.", param=f"{entry.param}.content")
            latest_user_blocks = blocks
        if not blocks:
            continue
        first_turn = first_turn or entry.param
        if turns and turns[-1]["role"] == entry.role:
            turns[-1]["content"].extend(blocks)
        else:
            # A list of its own: later entries of the same role extend the turn, never an entry's blocks.
            turns.append({"role": entry.role, "content": list(blocks)})
    if not turns:
        raise InvalidRequest(f"'{param}' must contain at least one user message.", param=param)
    if turns[0]["role"] != "user":
        # Converse rejects a conversation that does not open with a user turn; saying so beats guessing.
        raise InvalidRequest(
            "The conversation must start with a user message (after any system or developer messages).",
            param=first_turn,
        )
    # When guardContent is present only it is evaluated, so a message flagged earlier in the history
    # does not block every later turn: the newest user message is what the guardrail checks.
    for block in latest_user_blocks:
        block["guardContent"] = {"text": {"text": block.pop("text")}}
    return system, turns


def assistant_text(text: str) -> list[Block]:
    """The text block of a replayed assistant answer, if any: its reasoning is never sent back.

    Converse rejects replayed reasoning for gpt-oss, and it is not the answer.
    """
    answer = split_reasoning(text).answer
    return [{"text": answer}] if answer.strip() else []


def tool_use(call_id: str, name: str, arguments: str, *, param: str) -> Block:
    """The toolUse block of a replayed tool call whose arguments are JSON text.

    Raises:
        InvalidRequest: the arguments are not a JSON object (named by `param`).
    """
    try:
        parsed = strict_json.loads(arguments) if arguments.strip() else {}
    except ValueError as error:
        raise InvalidRequest(f"Tool call arguments must be a JSON object ({error}).", param=param) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("Tool call arguments must be a JSON object.", param=param)
    return {"toolUse": {"toolUseId": call_id, "name": name, "input": parsed}}


def tool_result(call_id: str, texts: Sequence[str]) -> Block:
    """The toolResult block of a tool's output."""
    return {"toolResult": {"toolUseId": call_id, "content": [{"text": text} for text in texts]}}


def max_tokens(value: int | None, *, param: str, settings: ChatSettings) -> int:
    """The output token limit asked for, or the deployment's default.

    Raises:
        InvalidRequest: not positive, or above the deployment's ceiling.
    """
    if value is None:
        # Always sent: Converse would otherwise reserve the model maximum against the TPM quota.
        return settings.DEFAULT_MAX_TOKENS
    if value < 1:
        raise InvalidRequest(f"Invalid '{param}': must be a positive integer.", param=param)
    if value > settings.MAX_TOKENS_CEILING:
        raise InvalidRequest(
            f"Invalid '{param}': {value} is above this service's limit of {settings.MAX_TOKENS_CEILING}.",
            param=param,
        )
    return value


def inference_config(
    settings: ChatSettings,
    *,
    max_tokens: int,
    temperature: float | None,
    top_p: float | None,
    stops: Sequence[str] = (),
) -> dict[str, Any]:
    """Converse's inferenceConfig.

    Raises:
        UnsupportedValue: a temperature above Converse's range.
    """
    config: dict[str, Any] = {"maxTokens": max_tokens}
    if temperature is not None:
        if temperature > 1:
            raise UnsupportedValue("Bedrock Converse accepts 'temperature' from 0 to 1.", param="temperature")
        config["temperature"] = temperature
    if top_p is not None:
        config["topP"] = top_p
    if stops:
        config["stopSequences"] = list(stops)
    return config


def tool_config(
    functions: Sequence[FunctionDefinition], choice: str | None, turns: Sequence[Turn]
) -> dict[str, Any] | None:
    """Converse's toolConfig for the offered functions and `tool_choice` ("none", "auto", "required" or a name).

    Raises:
        InvalidRequest: (or a subclass) tool history without tools, or a choice that cannot be honoured.
    """
    history_uses_tools = any("toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"])
    if not functions:
        if history_uses_tools:
            raise InvalidRequest("The conversation contains tool calls, so 'tools' must define them.", param="tools")
        if choice is not None:
            raise InvalidRequest("'tool_choice' is only allowed when 'tools' are given.", param="tool_choice")
        return None
    if choice == "none":
        if history_uses_tools:
            # Converse needs the tools defined to read tool history, and then cannot be told not to call one.
            raise UnsupportedValue(
                "'tool_choice': 'none' cannot be honoured once the conversation contains tool calls.",
                param="tool_choice",
            )
        # Offering no tools is the only way to guarantee the model calls none.
        return None
    config: dict[str, Any] = {"tools": [_tool_spec(function) for function in functions]}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif choice is not None:
        if choice not in {function.name for function in functions}:
            raise InvalidRequest("'tool_choice' names a function that is not in 'tools'.", param="tool_choice")
        config["toolChoice"] = {"tool": {"name": choice}}
    return config


def _tool_spec(function: FunctionDefinition) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": function.name,
        "inputSchema": {"json": function.parameters or {"type": "object", "properties": {}}},
    }
    if function.description:
        spec["description"] = function.description
    if function.strict is not None:
        spec["strict"] = function.strict
    return {"toolSpec": spec}


def json_object_unsupported(param: str, instead: str) -> UnsupportedValue:
    """The 400 for OpenAI's `json_object` format."""
    # Converse only constrains output to a given schema; "any JSON object" has no faithful equivalent.
    return UnsupportedValue(f"The 'json_object' format is not supported; use {instead}.", param=param)


def json_schema_output(name: str, schema: dict[str, Any], description: str | None) -> dict[str, Any]:
    """Converse's outputConfig for structured output with a JSON schema."""
    json_schema: dict[str, Any] = {"schema": json.dumps(schema), "name": name}
    if description:
        json_schema["description"] = description
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": json_schema}}}


def additional_fields(passthrough: dict[str, Any], reasoning_effort: str | None) -> dict[str, Any] | None:
    """additionalModelRequestFields: the fields the gpt-oss engine takes as they are, and the reasoning effort."""
    fields = {name: value for name, value in passthrough.items() if value is not None}
    if reasoning_effort is not None:
        # gpt-oss takes the OpenAI field flat; Anthropic-style "thinking" is rejected by the model.
        fields["reasoning_effort"] = _REASONING_EFFORT[reasoning_effort]
    return fields or None


def request_metadata(
    metadata: dict[str, str] | None, *, user: str | None, safety_identifier: str | None, caller: str | None
) -> dict[str, str] | None:
    """Converse's requestMetadata (kept in Bedrock's invocation logs): the caller's pairs and who asked.

    Raises:
        InvalidRequest: too many pairs, or a key or value Converse cannot carry.
    """
    pairs = dict(metadata or {})
    if len(pairs) > _METADATA_MAX_PAIRS - len(_RESERVED_METADATA_KEYS):
        limit = _METADATA_MAX_PAIRS - len(_RESERVED_METADATA_KEYS)
        raise InvalidRequest(f"At most {limit} metadata pairs are supported.", param="metadata")
    for key, value in pairs.items():
        if key in _RESERVED_METADATA_KEYS or not key or not _METADATA_TEXT.match(key):
            raise InvalidRequest(f"Invalid metadata key '{key[:64]}'.", param="metadata")
        if not _METADATA_TEXT.match(value):
            raise InvalidRequest(f"Metadata values may only use {_METADATA_ALPHABET}.", param=f"metadata.{key}")
    for field, given in (("user", user), ("safety_identifier", safety_identifier)):
        if given is not None:
            if not _METADATA_TEXT.match(given):
                raise InvalidRequest(f"'{field}' may only use {_METADATA_ALPHABET}.", param=field)
            pairs[field] = given
    # The caller's identity tags Bedrock's invocation logs for cost attribution; it is left out, not
    # rejected, if it ever holds characters requestMetadata cannot carry.
    if caller and _METADATA_TEXT.match(caller):
        pairs["caller"] = caller
    return pairs or None


def service_tier(requested: str | None, settings: ChatSettings) -> dict[str, str] | None:
    """Converse's serviceTier for OpenAI's `service_tier`; None (Bedrock's default tier) for none or "auto".

    Raises:
        UnsupportedValue: a tier Bedrock does not have, or one this deployment does not allow.
    """
    if requested is None or requested == "auto":
        return None
    allowed = ", ".join(("auto", *settings.SERVICE_TIERS))
    if requested not in SERVICE_TIERS:
        raise UnsupportedValue(
            f"'service_tier' must be one of {allowed} (Amazon Bedrock has no '{requested[:20]}' tier).",
            param="service_tier",
        )
    if requested not in settings.SERVICE_TIERS:
        raise UnsupportedValue(
            f"The '{requested}' service tier is not enabled on this deployment; use one of {allowed}.",
            param="service_tier",
        )
    return {"type": requested}


def guarded_request(
    settings: ChatSettings,
    *,
    model_id: str,
    system: list[Block],
    turns: list[Turn],
    inference: dict[str, Any],
    tool_config: dict[str, Any] | None,
    output_config: dict[str, Any] | None,
    additional_fields: dict[str, Any] | None,
    metadata: dict[str, str] | None,
    service_tier: dict[str, str] | None,
    conversation_param: str,
) -> dict[str, Any]:
    """The Converse request, always with the deployment's guardrail; the optional members are sent when set.

    Raises:
        ContextLengthExceeded: the prompt is obviously longer than the model's context window.
    """
    converse: dict[str, Any] = {
        "modelId": model_id,
        "messages": turns,
        "inferenceConfig": inference,
        # Fixed by configuration: nothing in the request can choose or remove the guardrail.
        "guardrailConfig": {
            "guardrailIdentifier": settings.GUARDRAIL_ID,
            "guardrailVersion": settings.GUARDRAIL_VERSION,
            "trace": "enabled",
        },
    }
    optional = {
        "system": system,
        "toolConfig": tool_config,
        "outputConfig": output_config,
        "additionalModelRequestFields": additional_fields,
        "requestMetadata": metadata,
        "serviceTier": service_tier,
    }
    converse.update({key: value for key, value in optional.items() if value})
    _check_context_window(converse, conversation_param)
    return converse


def _check_context_window(converse: dict[str, Any], param: str) -> None:
    prompt = json.dumps(
        [converse.get("system", []), converse["messages"], converse.get("toolConfig", {})], ensure_ascii=False
    )
    if exceeds_context_window(len(prompt)):
        raise ContextLengthExceeded(
            f"This model's maximum context length is {CONTEXT_WINDOW_TOKENS} tokens, and the prompt is far longer.",
            param=param,
        )
