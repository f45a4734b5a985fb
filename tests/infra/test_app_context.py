"""Context handling of the app: cdk.json, typos, and values as `cdk synth -c key=value` passes them."""

from __future__ import annotations

import json
import re

import botocore.session
import pytest
from aws_cdk import App
from botocore.model import ListShape, StructureShape

from infra.app_builder import CDK_JSON, build_app, cli_context, read_context
from infra.config import (
    CONTEXT_KEYS,
    GPT_OSS_20B,
    MAX_JOB_TAGS,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    RESERVED_JOB_TAG_KEYS,
    DeploymentConfig,
)


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


# --- batchCostTags: the configured cost tags of every batch job -------------------------------------------


def test_cost_tags_come_from_a_json_object_and_follow_the_stage() -> None:
    config = DeploymentConfig.from_context(
        {"stage": "prod", "batchCostTags": '{"team": "Research NLP", "cost-center": "ml-4711", "empty": ""}'}
    )
    assert config.batch.cost_tags == {"team": "Research NLP", "cost-center": "ml-4711", "empty": ""}
    assert config.batch_job_tags == {"stage": "prod", "team": "Research NLP", "cost-center": "ml-4711", "empty": ""}
    # cdk.json gives an object as it is; the default is none.
    assert DeploymentConfig.from_context({"batchCostTags": {"team": "a"}}).batch.cost_tags == {"team": "a"}
    assert DeploymentConfig().batch_job_tags == {"stage": "dev"}


def test_cost_tags_may_use_every_allowed_character_and_the_longest_key_and_value() -> None:
    allowed = "Az09 _.:/=+-@"
    tags = {allowed: allowed, "k" * MAX_TAG_KEY_LENGTH: "v" * MAX_TAG_VALUE_LENGTH}
    tags |= {f"tag{number}": str(number) for number in range(MAX_JOB_TAGS - len(RESERVED_JOB_TAG_KEYS) - len(tags))}
    assert DeploymentConfig.from_context({"batchCostTags": json.dumps(tags)}).batch.cost_tags == tags


@pytest.mark.parametrize(
    ("tags", "message"),
    [
        ({"run": "mine"}, r"'run' is set by the pipeline on every job \(run, stage, source\)"),
        ({"stage": "qa"}, "'stage' is set by the pipeline"),
        ({"source": "x"}, "'source' is set by the pipeline"),
        ({"Source": "x"}, "'Source' is set by the pipeline"),
        ({"aws:createdBy": "me"}, "'aws:createdBy': the aws: prefix is reserved for AWS"),
        ({"AWS:x": "me"}, "the aws: prefix is reserved"),
        ({"": "v"}, "a key has 1 to 128 characters, not 0"),
        ({"k" * 129: "v"}, "a key has 1 to 128 characters, not 129"),
        ({"team": "v" * 257}, "'team': a value has at most 256 characters, not 257"),
        (
            {"team#1": "a"},
            "'team#1': the key may hold only ASCII letters and digits, spaces and _ . : / = \\+ - @, not '#'",
        ),
        ({"team": "a,b;c"}, "'team': the value may hold only .*, not ',;'"),
        ({"équipe": "a"}, "the key may hold only .*, not 'é'"),
        ({"team": "line\nbreak"}, "the value may hold only .*, not '\\\\n'"),
        ({f"tag{number}": "v" for number in range(48)}, r"48 tags, at most 47 \(every job also carries run, stage, "),
    ],
)
def test_invalid_cost_tags_are_refused_with_the_reason(tags: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=f"batchCostTags: .*{message}"):
        DeploymentConfig.from_context({"batchCostTags": json.dumps(tags)})


@pytest.mark.parametrize("value", ["team=nlp", "team,nlp", '["team"]'])
def test_cost_tags_that_are_not_an_object_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="batchCostTags must be a JSON object of tag keys to values"):
        DeploymentConfig.from_context({"batchCostTags": value})


def test_a_cost_tag_value_must_be_text() -> None:
    with pytest.raises(ValueError, match=r"batch.cost_tags.team\n.*valid string"):
        DeploymentConfig.from_context({"batchCostTags": '{"team": 42}'})


def test_the_cost_tag_rules_are_within_bedrocks_api_model() -> None:
    """What config accepts, CreateModelInvocationJob accepts (botocore's bedrock model: TagList, TagKey, TagValue)."""
    request = botocore.session.get_session().get_service_model("bedrock").operation_model("CreateModelInvocationJob")
    assert request.input_shape is not None
    tag_list = request.input_shape.members["tags"]
    assert isinstance(tag_list, ListShape)
    assert tag_list.metadata["max"] >= MAX_JOB_TAGS
    tag = tag_list.member
    assert isinstance(tag, StructureShape)
    key, value = tag.members["key"], tag.members["value"]
    assert (key.metadata["min"], key.metadata["max"]) == (1, MAX_TAG_KEY_LENGTH)
    assert (value.metadata["min"], value.metadata["max"]) == (0, MAX_TAG_VALUE_LENGTH)
    # Every character config allows matches both patterns (a Java character class; \s is whitespace).
    allowed = "".join(chr(code) for code in range(0x3000) if "batchCostTags" not in _tag_error(chr(code)))
    assert allowed == " +-./0123456789:=@ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
    for shape in (key, value):
        assert re.fullmatch(shape.metadata["pattern"].replace(r"\s", " "), allowed)
        assert shape.metadata["pattern"] == r"[a-zA-Z0-9\s._:/=+@-]*"


def _tag_error(text: str) -> str:
    try:
        DeploymentConfig.from_context({"batchCostTags": {text: text}})
    except ValueError as error:
        return str(error)
    return ""


@pytest.mark.parametrize(
    ("context", "longest_days"),
    [({"batchWorkRetentionDays": "13"}, 13), ({"batchJobTimeoutHours": "168", "batchWorkRetentionDays": "14"}, 25)],
)
def test_work_files_must_outlive_the_longest_run(context: dict[str, str], longest_days: int) -> None:
    """A run reads its id map, records and task tokens under work/ until it ends: the lifecycle must not expire them."""
    with pytest.raises(
        ValueError, match=rf"batchWorkRetentionDays \(\d+\) must be more than the longest run \({longest_days} days"
    ):
        build_app({**cli_context(), **context}).synth()
