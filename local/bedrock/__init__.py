"""Bedrock runtime, locally: a model interface, its backends, a word-list guardrail and an HTTP stand-in."""

from local.bedrock.aws import AmazonBedrock
from local.bedrock.backends import BACKENDS, Backend, build_model
from local.bedrock.guardrail import DEFAULT_TRIGGER_WORDS, LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION, WordGuardrail
from local.bedrock.model import LocalModel, Model
from local.bedrock.offline import DEFAULT_TOKENS_PER_SECOND, OfflineModel, pace_words
from local.bedrock.openai_compat import OpenAICompatibleModel, OpenAIServer
from local.bedrock.server import BedrockStandIn
from local.bedrock.shapes import Delta, Finish, Generation, ModelError, TextDelta

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
    "LocalModel",
    "Model",
    "ModelError",
    "OfflineModel",
    "OpenAICompatibleModel",
    "OpenAIServer",
    "TextDelta",
    "WordGuardrail",
    "build_model",
    "pace_words",
]
