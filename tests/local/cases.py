"""What several local tests ask of the Bedrock stand-in and of the chat API: the model, the guardrail, a tool."""

from __future__ import annotations

from typing import Any

import openai

from local.bedrock import WordGuardrail

MODEL = "openai.gpt-oss-120b-1:0"
GUARDRAIL = WordGuardrail(guardrail_id="gr0local", guardrail_version="3", trigger_words=("forbidden", "top secret"))
GUARDRAIL_CONFIG: dict[str, Any] = {"guardrailIdentifier": "gr0local", "guardrailVersion": "3", "trace": "enabled"}
# The weather tool as Converse takes it (the stand-in's requests) and as the OpenAI SDK sends it (the chat API's).
WEATHER_TOOL = {
    "toolSpec": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "inputSchema": {
            "json": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
            }
        },
    }
}
OPENAI_WEATHER_TOOL: openai.types.chat.ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
