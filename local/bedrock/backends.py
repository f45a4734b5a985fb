"""Choose a model backend by name: the deterministic offline model, an OpenAI-compatible server, or AWS."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

from infra.config import GPT_OSS_MODELS
from local.bedrock.guardrail import WordGuardrail
from local.bedrock.model import LocalModel
from local.bedrock.offline import DEFAULT_TOKENS_PER_SECOND, OfflineModel
from local.bedrock.openai_compat import OpenAICompatibleModel, OpenAIServer

Backend = Literal["offline", "openai", "aws"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)


def build_model(
    backend: Backend,
    *,
    openai: OpenAIServer | None = None,
    guardrail: WordGuardrail | None = None,
    model_ids: Sequence[str] = GPT_OSS_MODELS,
    tokens_per_second: float | None = DEFAULT_TOKENS_PER_SECOND,
) -> LocalModel:
    """The local model of a backend.

    `tokens_per_second` paces the offline model's streams (None or 0: no pause); a server streams at its own pace.

    Raises:
        ValueError: `aws` (real Bedrock answers: there is no local model), `openai` without a server, or a
            negative pace.
    """
    if backend == "offline":
        return LocalModel(OfflineModel(tokens_per_second=tokens_per_second), guardrail=guardrail, model_ids=model_ids)
    if backend == "openai":
        if openai is None:
            raise ValueError("the openai backend needs the OpenAI-compatible server's base URL")
        return LocalModel(OpenAICompatibleModel(openai), guardrail=guardrail, model_ids=model_ids)
    raise ValueError(f"the {backend} backend has no local model: Amazon Bedrock itself answers")
