"""Bedrock runtime, locally: a model interface, its backends, a word-list guardrail and an HTTP stand-in."""

from local.bedrock.aws import AmazonBedrock
from local.bedrock.backends import BACKENDS, Backend, build_model
from local.bedrock.guardrail import DEFAULT_TRIGGER_WORDS, LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION, WordGuardrail
from local.bedrock.model import Generator, LocalModel, Model
from local.bedrock.offline import OfflineModel
from local.bedrock.openai_compat import OpenAICompatibleModel, OpenAIServer
from local.bedrock.server import BedrockStandIn
from local.bedrock.shapes import Generation, ModelError, ToolCall

__all__ = [
    "BACKENDS",
    "DEFAULT_TRIGGER_WORDS",
    "LOCAL_GUARDRAIL_ID",
    "LOCAL_GUARDRAIL_VERSION",
    "AmazonBedrock",
    "Backend",
    "BedrockStandIn",
    "Generation",
    "Generator",
    "LocalModel",
    "Model",
    "ModelError",
    "OfflineModel",
    "OpenAICompatibleModel",
    "OpenAIServer",
    "ToolCall",
    "WordGuardrail",
    "build_model",
]
