"""Context handling of the app: cdk.json, typos, and values as `cdk synth -c key=value` passes them."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App

from infra.app_builder import CDK_JSON, build_app, cli_context, read_context
from infra.config import CONTEXT_KEYS, GPT_OSS_20B, DeploymentConfig


def test_cdk_json_runs_app_py_and_its_context_is_valid() -> None:
    cdk_json = json.loads(CDK_JSON.read_text())
    assert cdk_json["app"].endswith("python app.py")
    ours = {key for key in cdk_json["context"] if not key.startswith("@")}
    assert ours <= set(CONTEXT_KEYS)
    config = DeploymentConfig.from_context(read_context(App(context=cli_context())))
    assert config.stage == "dev"


def test_a_mistyped_context_key_fails_before_anything_is_built() -> None:
    with pytest.raises(ValueError, match="stgae"):
        build_app({"stgae": "prod"})


def test_cdk_keys_are_not_mistaken_for_ours() -> None:
    app = App(context={"@aws-cdk/core:newStyleStackSynthesis": True, "aws:cdk:enable-path-metadata": True})
    assert read_context(app) == {}


def test_command_line_values_are_parsed() -> None:
    config = DeploymentConfig.from_context(
        {
            "modelIds": GPT_OSS_20B,
            "endpointType": "PRIVATE",
            "vpcEndpointIds": "vpce-0a1b2c3d",
            "guardrailId": "abc123",
            "guardrailVersion": "4",
            "apiKeys": "true",
            "integrationTimeoutSeconds": "60",
        }
    )
    assert config.model_ids == (GPT_OSS_20B,)
    # Default aliases follow the deployed models.
    assert dict(config.model_aliases) == {"gpt-oss-20b": GPT_OSS_20B}
    assert config.chat.vpc_endpoint_ids == ("vpce-0a1b2c3d",)
    assert config.guardrail.existing_version == "4"
    assert config.chat.api_keys is True
    assert config.chat.integration_timeout_seconds == 60


@pytest.mark.parametrize(
    "context",
    [
        {"guardrailId": "arn:aws:bedrock:us-east-1:123456789012:guardrail/abc", "guardrailVersion": "1"},
        {"guardrailId": "abc123", "guardrailVersion": "DRAFT"},
        {"endpointType": "PRIVATE", "vpcEndpointIds": "not-an-endpoint"},
        {"webAclArn": "arn:aws:wafv2:us-east-1:123456789012:global/webacl/x/0a1b"},
        {"integrationTimeoutSeconds": "5", "deadlineMarginMs": "2500"},
        {"bedrockBackoffBaseMs": "5000", "bedrockBackoffMaxMs": "1000"},
    ],
)
def test_invalid_values_are_refused(context: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="validation error"):
        DeploymentConfig.from_context(context)
