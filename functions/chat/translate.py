"""Pure translation between OpenAI Chat Completions and Bedrock Converse for gpt-oss.

Nothing is dropped silently: every OpenAI field is either honoured or rejected with a 400 naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from chat.errors import (
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    UnsupportedParameter,
    UnsupportedValue,
)
from chat.models import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionDefinition,
    NamedToolChoice,
)
from chat.settings import ChatSettings
from chat.streaming import ChunkTranslator
from shared import strict_json
from shared.converse import ConverseReply, reply_events
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


# OpenAI fields we cannot honour, and the value for which they are a no-op (accepted).
_UNSUPPORTED: dict[str, Callable[[Any], bool]] = {
    "logprobs": lambda value: value is False,
    "top_logprobs": lambda value: value == 0,
    "store": lambda value: value is False,
    "modalities": lambda value: value == ["text"],
    "service_tier": lambda value: value in ("auto", "default"),
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
    _reject_unsupported(request)
    system, turns = _conversation(request.messages)
    converse: dict[str, Any] = {
        "modelId": model_id,
        "messages": turns,
        "inferenceConfig": _inference_config(request, settings),
        # Fixed by configuration: nothing in the request can choose or remove the guardrail.
        "guardrailConfig": {
            "guardrailIdentifier": settings.GUARDRAIL_ID,
            "guardrailVersion": settings.GUARDRAIL_VERSION,
            "trace": "enabled",
        },
    }
    optional = {
        "system": system,
        "toolConfig": _tool_config(request, turns),
        "outputConfig": _output_config(request),
        "additionalModelRequestFields": _additional_fields(request),
        "requestMetadata": _request_metadata(request, caller),
    }
    converse.update({key: value for key, value in optional.items() if value})
    _check_context_window(converse)
    return converse


def for_stream(converse: dict[str, Any], *, guardrail_mode: str) -> dict[str, Any]:
    """The ConverseStream request for a Converse request: the same, with the guardrail's stream processing mode."""
    guardrail = {**converse["guardrailConfig"], "streamProcessingMode": guardrail_mode}
    return {**converse, "guardrailConfig": guardrail}


def _reject_unsupported(request: ChatCompletionRequest) -> None:
    for field, is_no_op in _UNSUPPORTED.items():
        value = getattr(request, field)
        if value is not None and not is_no_op(value):
            raise UnsupportedParameter(
                f"'{field}' is not supported by this service (gpt-oss on Amazon Bedrock).", param=field
            )
    if request.n is not None and request.n != 1:
        if request.n < 1:
            raise InvalidRequest("Invalid 'n': must be at least 1.", param="n")
        raise UnsupportedValue("Only one choice can be generated per request: 'n' must be 1.", param="n")
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", param="stream_options")


def _conversation(messages: Sequence[ChatMessage]) -> tuple[list[Block], list[Turn]]:
    system: list[Block] = []
    turns: list[Turn] = []
    first_turn = None
    latest_user_blocks: list[Block] = []
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        _reject_message_fields(message, param)
        if message.role in ("system", "developer"):
            system.extend({"text": text} for text in _texts(message.content, param) if text.strip())
            continue
        role, blocks = _turn(message, param)
        if not blocks:
            continue
        if message.role == "user":
            # A copy: a tool message right after it merges its results into the same turn's list.
            latest_user_blocks = list(blocks)
        if first_turn is None:
            first_turn = index
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidRequest("'messages' must contain at least one user message.", param="messages")
    if turns[0]["role"] != "user":
        # Converse rejects a conversation that does not open with a user turn; saying so beats guessing.
        raise InvalidRequest(
            "The conversation must start with a user message (after any system or developer messages).",
            param=f"messages[{first_turn}]",
        )
    _guard(latest_user_blocks)
    return system, turns


def _reject_message_fields(message: ChatMessage, param: str) -> None:
    for field in ("name", "audio", "function_call"):
        if getattr(message, field) is not None:
            raise UnsupportedParameter(
                f"'{field}' on messages is not supported by this service.", param=f"{param}.{field}"
            )
    if message.tool_calls is not None and message.role != "assistant":
        raise InvalidRequest("Only assistant messages can have 'tool_calls'.", param=f"{param}.tool_calls")


def _turn(message: ChatMessage, param: str) -> tuple[str, list[Block]]:
    if message.role == "assistant":
        return "assistant", _assistant_blocks(message, param)
    if message.role == "tool":
        return "user", [_tool_result(message, param)]
    blocks: list[Block] = [{"text": text} for text in _texts(message.content, param) if text.strip()]
    if not blocks:
        raise InvalidRequest("User messages must have non-empty content.", param=f"{param}.content")
    return "user", blocks


def _assistant_blocks(message: ChatMessage, param: str) -> list[Block]:
    text = "".join(_texts(message.content, param, allow_refusal=True)) or (message.refusal or "")
    # Replayed reasoning is never sent back: Converse rejects it for gpt-oss, and it is not the answer.
    answer = split_reasoning(text).answer
    blocks: list[Block] = [{"text": answer}] if answer.strip() else []
    for position, call in enumerate(message.tool_calls or []):
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.id,
                    "name": call.function.name,
                    "input": _arguments(call.function.arguments, f"{param}.tool_calls[{position}].function.arguments"),
                }
            }
        )
    return blocks


def _arguments(arguments: str, param: str) -> dict[str, Any]:
    try:
        parsed = strict_json.loads(arguments) if arguments.strip() else {}
    except ValueError as error:
        raise InvalidRequest(f"Tool call arguments must be a JSON object ({error}).", param=param) from None
    if not isinstance(parsed, dict):
        raise InvalidRequest("Tool call arguments must be a JSON object.", param=param)
    return parsed


def _tool_result(message: ChatMessage, param: str) -> Block:
    if not message.tool_call_id:
        raise InvalidRequest("Tool messages must have a 'tool_call_id'.", param=f"{param}.tool_call_id")
    texts = _texts(message.content, param)
    return {"toolResult": {"toolUseId": message.tool_call_id, "content": [{"text": text} for text in texts]}}


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


def _guard(blocks: list[Block]) -> None:
    # When guardContent is present only it is evaluated, so a message flagged earlier in the history
    # does not block every later turn: the newest user message is what the guardrail checks.
    for block in blocks:
        block["guardContent"] = {"text": {"text": block.pop("text")}}


def _max_tokens(request: ChatCompletionRequest, settings: ChatSettings) -> int:
    # max_completion_tokens supersedes the deprecated max_tokens when both are sent.
    param, value = (
        ("max_completion_tokens", request.max_completion_tokens)
        if request.max_completion_tokens is not None
        else ("max_tokens", request.max_tokens)
    )
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


def _inference_config(request: ChatCompletionRequest, settings: ChatSettings) -> dict[str, Any]:
    config: dict[str, Any] = {"maxTokens": _max_tokens(request, settings)}
    if request.temperature is not None:
        if request.temperature > 1:
            raise UnsupportedValue("Bedrock Converse accepts 'temperature' from 0 to 1.", param="temperature")
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    stops = [request.stop] if isinstance(request.stop, str) else (request.stop or [])
    if any(not stop for stop in stops):
        raise InvalidRequest("Stop sequences must not be empty strings.", param="stop")
    if stops:
        config["stopSequences"] = stops
    return config


def _tool_config(request: ChatCompletionRequest, turns: Sequence[Turn]) -> dict[str, Any] | None:
    history_uses_tools = any("toolUse" in block or "toolResult" in block for turn in turns for block in turn["content"])
    if not request.tools:
        if history_uses_tools:
            raise InvalidRequest("The messages contain tool calls, so 'tools' must define them.", param="tools")
        if request.tool_choice is not None:
            raise InvalidRequest("'tool_choice' is only allowed when 'tools' are given.", param="tool_choice")
        return None
    choice = request.tool_choice
    if choice == "none":
        if history_uses_tools:
            # Converse needs the tools defined to read tool history, and then cannot be told not to call one.
            raise UnsupportedValue(
                "'tool_choice': 'none' cannot be honoured once the messages contain tool calls.", param="tool_choice"
            )
        # Offering no tools is the only way to guarantee the model calls none.
        return None
    config: dict[str, Any] = {"tools": [_tool_spec(tool.function) for tool in request.tools]}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif isinstance(choice, NamedToolChoice):
        if choice.function.name not in {tool.function.name for tool in request.tools}:
            raise InvalidRequest("'tool_choice' names a function that is not in 'tools'.", param="tool_choice")
        config["toolChoice"] = {"tool": {"name": choice.function.name}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
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


def _output_config(request: ChatCompletionRequest) -> dict[str, Any] | None:
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        # Converse only constrains output to a given schema; "any JSON object" has no faithful equivalent.
        raise UnsupportedValue(
            "'response_format' type 'json_object' is not supported; use 'json_schema' with a schema.",
            param="response_format.type",
        )
    schema_format = response_format.json_schema
    if schema_format is None or schema_format.json_schema is None:
        raise InvalidRequest(
            "'response_format' of type 'json_schema' needs 'json_schema.schema'.", param="response_format.json_schema"
        )
    json_schema: dict[str, Any] = {"schema": json.dumps(schema_format.json_schema), "name": schema_format.name}
    if schema_format.description:
        json_schema["description"] = schema_format.description
    return {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": json_schema}}}


def _additional_fields(request: ChatCompletionRequest) -> dict[str, Any] | None:
    fields: dict[str, Any] = {
        name: getattr(request, name) for name in _PASSTHROUGH_FIELDS if getattr(request, name) is not None
    }
    if request.reasoning_effort is not None:
        # gpt-oss takes the OpenAI field flat; Anthropic-style "thinking" is rejected by the model.
        fields["reasoning_effort"] = _REASONING_EFFORT[request.reasoning_effort]
    return fields or None


def _request_metadata(request: ChatCompletionRequest, caller: str | None) -> dict[str, str] | None:
    metadata = dict(request.metadata or {})
    if len(metadata) > _METADATA_MAX_PAIRS - len(_RESERVED_METADATA_KEYS):
        limit = _METADATA_MAX_PAIRS - len(_RESERVED_METADATA_KEYS)
        raise InvalidRequest(f"At most {limit} metadata pairs are supported.", param="metadata")
    for key, value in metadata.items():
        if key in _RESERVED_METADATA_KEYS or not key or not _METADATA_TEXT.match(key):
            raise InvalidRequest(f"Invalid metadata key '{key[:64]}'.", param="metadata")
        if not _METADATA_TEXT.match(value):
            raise InvalidRequest(f"Metadata values may only use {_METADATA_ALPHABET}.", param=f"metadata.{key}")
    for field in ("user", "safety_identifier"):
        value = getattr(request, field)
        if value is not None:
            if not _METADATA_TEXT.match(value):
                raise InvalidRequest(f"'{field}' may only use {_METADATA_ALPHABET}.", param=field)
            metadata[field] = value
    # The caller's identity tags Bedrock's invocation logs for cost attribution; it is left out, not
    # rejected, if it ever holds characters requestMetadata cannot carry.
    if caller and _METADATA_TEXT.match(caller):
        metadata["caller"] = caller
    return metadata or None


def _check_context_window(converse: dict[str, Any]) -> None:
    prompt = json.dumps(
        [converse.get("system", []), converse["messages"], converse.get("toolConfig", {})], ensure_ascii=False
    )
    if exceeds_context_window(len(prompt)):
        raise ContextLengthExceeded(
            f"This model's maximum context length is {CONTEXT_WINDOW_TOKENS} tokens, and the messages are far longer.",
            param="messages",
        )


def from_converse(
    reply: ConverseReply,
    *,
    model: str,
    completion_id: str,
    created: int,
    include_reasoning: bool,
    tools_offered: bool,
) -> ChatCompletion:
    """The chat.completion for a Converse reply, by the same translation as a stream (chat/streaming.py).

    Raises:
        BedrockModelError: the reply is malformed (stop reason, or a tool call nobody offered).
    """
    translator = ChunkTranslator(
        completion_id=completion_id,
        created=created,
        model=model,
        include_reasoning=include_reasoning,
        tools_offered=tools_offered,
    )
    for _ in translator.translate(reply_events(reply)):
        pass
    return translator.completion()
