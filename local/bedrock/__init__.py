"""Bedrock runtime, locally: a model interface, its backends, a word-list guardrail and an HTTP stand-in."""

from local.bedrock.aws import AmazonBedrock
from local.bedrock.backends import BACKENDS, Backend, build_model
from local.bedrock.guardrail import DEFAULT_TRIGGER_WORDS, LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION, WordGuardrail
from local.bedrock.model import Generator, LocalModel, Model, StreamingGenerator, stream_answer
from local.bedrock.offline import DEFAULT_TOKENS_PER_SECOND, OfflineModel, pace_words
from local.bedrock.openai_compat import OpenAICompatibleModel, OpenAIServer
from local.bedrock.server import BedrockStandIn, StreamRecord
from local.bedrock.shapes import (
    Delta,
    Finish,
    Generation,
    ModelError,
    ReasoningDelta,
    StreamEvents,
    TextDelta,
    ToolCall,
    ToolUseDelta,
    ToolUseStart,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_TOKENS_PER_SECOND",
    "DEFAULT_TRIGGER_WORDS",
    "LOCAL_GUARDRAIL_ID",
    "LOCAL_GUARDRAIL_VERSION",
    "AmazonBedrock",
    "Backend",
    "BedrockStandIn",
    "Delta",
    "Finish",
    "Generation",
    "Generator",
    "LocalModel",
    "Model",
    "ModelError",
    "OfflineModel",
    "OpenAICompatibleModel",
    "OpenAIServer",
    "ReasoningDelta",
    "StreamEvents",
    "StreamRecord",
    "StreamingGenerator",
    "TextDelta",
    "ToolCall",
    "ToolUseDelta",
    "ToolUseStart",
    "WordGuardrail",
    "build_model",
    "pace_words",
    "stream_answer",
]
