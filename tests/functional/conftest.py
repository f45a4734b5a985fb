"""Fixtures of the functional tests: the chat handler (environment, fast fake Bedrock, logs) and the batch
stack running offline (synthesized once per session)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import shared.converse
from chat.settings import ChatSettings
from local.contexts import SMALL_QUOTAS, small_run_context
from local.harness import OfflinePipeline, synthesize_batch_stack
from local.lambda_runtime import fresh_container
from shared.observability import logger
from shared.settings import load_settings
from tests.bedrock_fakes import CHAT_ENVIRONMENT, BedrockFake

OFFLINE_STAGE = "offline"
OFFLINE_QUOTAS = SMALL_QUOTAS
# Cost tags every batch job carries beside run, stage and source (as `-c batchCostTags='{...}'` gives them).
OFFLINE_COST_TAGS: Mapping[str, str] = {"team": "Research NLP", "cost-center": "ml-4711"}
OFFLINE_CONTEXT: Mapping[str, str] = {
    **small_run_context(OFFLINE_STAGE),
    "batchCostTags": json.dumps(OFFLINE_COST_TAGS),
}


@pytest.fixture
def chat_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[ChatSettings]:
    """The chat function's environment, read fresh for the test."""
    for name, value in CHAT_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    fresh_container()
    settings: ChatSettings = load_settings(ChatSettings)
    yield settings
    fresh_container()


@pytest.fixture
def bedrock(chat_env: ChatSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[BedrockFake]:
    """Bedrock offline: the gateway gets one real client (built the production way) for every call."""
    fake = BedrockFake(shared.converse.runtime_client(5))
    monkeypatch.setattr(shared.converse, "runtime_client", fake.client_for)
    yield fake
    fake.stubber.assert_no_pending_responses()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """What the Powertools logger writes during the test (its handler kept the stdout of import time)."""
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.fixture(scope="session")
def offline_batch_template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The batch stack as `cdk synth` makes it with OFFLINE_CONTEXT (small quotas, hourly polls), once per session."""
    from infra.app_builder import cli_context  # loads aws_cdk: only for the tests that synthesize

    return synthesize_batch_stack({**cli_context(), **OFFLINE_CONTEXT}, tmp_path_factory.mktemp("cdk-offline"))


@pytest.fixture
def pipeline(offline_batch_template: dict[str, Any]) -> Iterator[OfflinePipeline]:
    """The synthesized batch stack running in a fresh moto (its state machine executed by moto's interpreter)."""
    with OfflinePipeline(offline_batch_template, stage=OFFLINE_STAGE) as running:
        yield running
