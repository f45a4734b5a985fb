"""The chat function's environment, as set by infra/constructs/chat_api.py."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ChatSettings(BaseModel):
    """Environment variables of the chat function; names are the variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    MODEL_IDS: tuple[str, ...]
    MODEL_ALIASES: dict[str, str] = Field(default_factory=dict)
    GUARDRAIL_ID: Annotated[str, Field(min_length=1)]
    GUARDRAIL_VERSION: Annotated[str, Field(min_length=1)]
    DEFAULT_MAX_TOKENS: Annotated[int, Field(ge=1)] = 4096
    MAX_TOKENS_CEILING: Annotated[int, Field(ge=1)] = 16_384
    MAX_REQUEST_BYTES: Annotated[int, Field(ge=1)] = 1_048_576
    # API Gateway's integration timeout: the answer, our own 504 or a stream's final error event come before it.
    INTEGRATION_TIMEOUT_MS: Annotated[int, Field(ge=1000)] = 600_000
    # ConverseStream's guardrail mode: `sync` checks each chunk before it is sent, `async` sends it at once.
    GUARDRAIL_STREAM_MODE: Literal["sync", "async"] = "sync"
    # A stream silent for this long (a long reasoning phase) gets an SSE comment, so no idle timeout cuts it.
    STREAM_KEEPALIVE_SECONDS: Annotated[float, Field(gt=0)] = 15
    DEADLINE_MARGIN_MS: Annotated[int, Field(ge=0)] = 1500
    BEDROCK_MAX_ATTEMPTS: Annotated[int, Field(ge=1, le=5)] = 3
    # Full-jitter backoff between Bedrock attempts: the n-th wait is random in [0, min(max, base * 2**(n-1))].
    BEDROCK_BACKOFF_BASE_MS: Annotated[int, Field(ge=1)] = 250
    BEDROCK_BACKOFF_MAX_MS: Annotated[int, Field(ge=1)] = 4000
    RETURN_REASONING: bool = False
    # The OpenAI service tiers callers may ask for besides "auto" (Bedrock's default tier), from infra's allow-list.
    SERVICE_TIERS: tuple[Literal["default", "flex", "priority"], ...] = ("default",)
    # The DynamoDB table of Idempotency-Key records; without one, a request with the header is refused.
    IDEMPOTENCY_TABLE_NAME: Annotated[str, Field(min_length=3)] | None = None
    # How long a finished answer is replayed for its Idempotency-Key.
    IDEMPOTENCY_TTL_SECONDS: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600

    # The SSM parameter where this stage's batch stack says where its bucket and state machine are (Batch API).
    BATCH_API_PARAMETER: Annotated[str, Field(min_length=1)] | None = None
    # POST /v1/files: Lambda takes at most 6 MB per request, and API Gateway base64-encodes a multipart body
    # (4/3 of its size): 4 MiB of file, with the form's framing and the headers, stays under that.
    MAX_UPLOAD_BYTES: Annotated[int, Field(ge=1, le=4 * 1024 * 1024)] = 4 * 1024 * 1024

    @field_validator("MODEL_IDS", "SERVICE_TIERS", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @field_validator("MODEL_ALIASES", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value
