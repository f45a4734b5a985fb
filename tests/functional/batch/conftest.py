"""Fixtures of the batch functions' tests: environment, moto AWS, fake Bedrock runtime, Lambda context."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber
from moto import mock_aws
from moto.core.models import botocore_stubber

from batch import bedrock as batch_bedrock
from batch.settings import BatchSettings
from local.lambda_context import LocalLambdaContext
from local.lambda_runtime import fresh_container
from shared.settings import load_settings
from tests.functional.batch.harness import (
    ACCOUNT,
    BATCH_ENVIRONMENT,
    BUCKET,
    STATE_MACHINE_ARN,
    STATE_MACHINE_NAME,
    Aws,
    FakeBedrock,
    batch_context,
)


@pytest.fixture
def batch_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., BatchSettings]]:
    """The batch functions' environment; call it with overrides (names as the variables)."""

    def configure(**overrides: str) -> BatchSettings:
        for name, value in {**BATCH_ENVIRONMENT, **overrides}.items():
            monkeypatch.setenv(name, value)
        fresh_container()
        settings: BatchSettings = load_settings(BatchSettings)
        return settings

    configure()
    yield configure
    fresh_container()


@pytest.fixture
def aws(batch_env: Callable[..., BatchSettings]) -> Iterator[Aws]:
    """A versioned drop bucket and the state machine, in moto."""
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        sfn = boto3.client("stepfunctions")
        definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
        created = sfn.create_state_machine(
            name=STATE_MACHINE_NAME,
            definition=json.dumps(definition),
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/batch-pipeline",
        )
        assert created["stateMachineArn"] == STATE_MACHINE_ARN
        yield Aws(s3=s3, sfn=sfn)


@pytest.fixture
def lambda_context() -> LocalLambdaContext:
    """A Lambda context with ten minutes left."""
    return batch_context()


@pytest.fixture
def bedrock(batch_env: Callable[..., BatchSettings], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBedrock]:
    """Bedrock runtime offline, wired into the on-demand and collect functions."""
    client = boto3.client("bedrock-runtime", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    # moto (pinned) answers every request it routes, and has no Converse or ApplyGuardrail: this one client
    # goes to the fake instead. botocore emits before-send to every handler, so moto's must be removed.
    moto_hook: Any = botocore_stubber
    client.meta.events.unregister("before-send", moto_hook)
    fake = FakeBedrock(client=client, stubber=Stubber(client))
    monkeypatch.setattr(batch_bedrock, "gateway", fake.gateway)
    yield fake
    fake.stubber.assert_no_pending_responses()
    fake.stubber.deactivate()
