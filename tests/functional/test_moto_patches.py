"""local/moto_patches.py: the pin guard fails loudly when moto moves, and each patch does what it claims.

The Bedrock stand-in (local/bedrock/batch_jobs.py) and in-process Lambda (local/lambda_runtime.py) are exercised
here through moto, as the patches wire them in.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Iterator
from importlib import import_module
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from local import lambda_runtime, moto_patches
from local.bedrock import LOCAL_GUARDRAIL_ID, LOCAL_GUARDRAIL_VERSION, LocalModel, ModelError, OfflineModel
from local.bedrock.batch_jobs import JobScenario
from local.harness import MOTO_CONFIG
from local.lambda_context import LocalLambdaContext
from local.moto_patches import MotoInternalsMoved

if TYPE_CHECKING:
    from mypy_boto3_bedrock.type_defs import TagTypeDef

REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = "moto-ext-tests"


@pytest.fixture
def aws() -> Iterator[None]:
    """moto with the extensions, Step Functions executing and Lambda in-process."""
    moto_patches.install()
    with mock_aws(config=MOTO_CONFIG):
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=BUCKET)
        yield
    lambda_runtime.clear_handlers()


def _execute(definition: dict[str, Any], execution_input: dict[str, Any] | None = None) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(
        name=f"probe{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=f"arn:aws:iam::{ACCOUNT}:role/x"
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(execution_input or {}))["executionArn"]
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        time.sleep(0.01)
    return dict(described)


# --- the pin guard ---------------------------------------------------------------------------------------


def test_every_patched_moto_internal_is_where_the_extensions_expect_it() -> None:
    assert moto_patches.check() == []


def test_a_moved_attribute_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    monkeypatch.delattr(StateTaskService, "_from_boto_response")
    (problem,) = moto_patches.check()
    assert problem.endswith("StateTaskServiceAwsSdk._from_boto_response: attribute missing")


def test_a_changed_signature_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    def _wait_interval(self: Any, env: Any, seconds: int, extra: int) -> None: ...

    monkeypatch.setattr(WaitFunction, "_wait_interval", _wait_interval)
    (problem,) = moto_patches.check()
    assert "WaitFunction._wait_interval: parameters are ('self', 'env', 'seconds', 'extra')" in problem


def test_a_patched_behaviour_that_moved_elsewhere_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry.retrier_decl import RetrierDecl

    def _eval_body(self: Any, env: Any) -> None:
        """Retries that no longer sleep through the module's `time`."""

    monkeypatch.setattr(RetrierDecl, "_eval_body", _eval_body)
    (problem,) = moto_patches.check()
    assert problem.endswith("RetrierDecl._eval_body: no longer contains 'time.sleep('")


def test_another_moto_version_or_an_upstream_implementation_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.bedrock.responses import BedrockResponse

    monkeypatch.setattr(moto_patches, "version", lambda _name: "9.9.9")
    monkeypatch.setattr(BedrockResponse, "get_model_invocation_job", lambda self: "{}", raising=False)
    problems = moto_patches.check()
    assert problems[0] == "moto 9.9.9 is installed; the extensions were written for 5.2.5"
    assert problems[1].endswith("BedrockResponse.get_model_invocation_job: drop that extension")


def test_install_refuses_a_moved_moto_and_is_otherwise_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    moto_patches.install()
    moto_patches.install()
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_aws_sdk

    assert state_task_service_aws_sdk.StateTaskServiceAwsSdk._normalise_parameters is moto_patches._normalise_parameters
    monkeypatch.setattr(moto_patches, "_installed", False)
    monkeypatch.setattr(moto_patches, "check", lambda: ["somewhere: attribute missing"])
    with pytest.raises(MotoInternalsMoved, match="somewhere: attribute missing"):
        moto_patches.install()


# --- (a) casing, (b) error names, (e) no waiting ------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_sdk_tasks_speak_pascal_case_with_aws_error_names_and_never_wait() -> None:
    boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key="a.txt", Body=b"hello")
    moto_patches.waits.clear()
    get = "arn:aws:states:::aws-sdk:s3:getObject"
    described = _execute(
        {
            "StartAt": "Wait",
            "States": {
                "Wait": {"Type": "Wait", "Seconds": 3600, "Next": "Read"},
                "Read": {
                    "Type": "Task",
                    "Resource": get,
                    "Parameters": {"Bucket": BUCKET, "Key": "a.txt"},
                    "ResultSelector": {"body.$": "$.Body", "length.$": "$.ContentLength"},
                    "ResultPath": "$.read",
                    "Next": "Missing",
                },
                "Missing": {
                    "Type": "Task",
                    "Resource": get,
                    "Parameters": {"Bucket": BUCKET, "Key": "absent.txt"},
                    "Retry": [{"ErrorEquals": ["S3.NoSuchKeyException"], "IntervalSeconds": 600, "MaxAttempts": 1}],
                    "Catch": [{"ErrorEquals": ["S3.NoSuchKeyException"], "ResultPath": "$.error", "Next": "Done"}],
                    "End": True,
                },
                "Done": {"Type": "Pass", "End": True},
            },
        }
    )
    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["read"] == {"body": "hello", "length": 5}
    assert output["error"]["Error"] == "S3.NoSuchKeyException"
    assert moto_patches.waits == [3600.0, 600.0]  # asked for, never slept


# --- (g) workflow variables in JSONPath states ---------------------------------------------------------------


@pytest.mark.usefixtures("aws")
def test_jsonpath_states_read_workflow_variables_in_assign_choice_and_intrinsics() -> None:
    described = _execute(
        {
            "StartAt": "Start",
            "States": {
                "Start": {"Type": "Pass", "Assign": {"laps": 0, "box": {"x": 5}}, "Next": "Lap"},
                "Lap": {"Type": "Pass", "Assign": {"laps.$": "States.MathAdd($laps, 1)"}, "Next": "Enough"},
                "Enough": {
                    "Type": "Choice",
                    "Choices": [{"Variable": "$laps", "NumericGreaterThanEquals": 3, "Next": "Done"}],
                    "Default": "Lap",
                },
                "Done": {
                    "Type": "Pass",
                    "Parameters": {"laps.$": "$laps", "x.$": "$box.x", "text.$": "States.Format('{} laps', $laps)"},
                    "End": True,
                },
            },
        }
    )
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"]) == {"laps": 3, "x": 5, "text": "3 laps"}


@pytest.mark.usefixtures("aws")
def test_a_variable_never_assigned_fails_the_execution() -> None:
    described = _execute(
        {"StartAt": "Read", "States": {"Read": {"Type": "Pass", "Parameters": {"n.$": "$n"}, "End": True}}}
    )
    assert described["status"] == "FAILED"


# --- (c) Bedrock ------------------------------------------------------------------------------------------


def _create(bedrock: Any, name: str, token: str, key: str = "in/records.jsonl") -> str:
    arn: str = bedrock.create_model_invocation_job(
        jobName=name,
        clientRequestToken=token,
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/batch",
        modelId="openai.gpt-oss-120b-1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/{key}"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}},
        timeoutDurationInHours=24,
    )["jobArn"]
    return arn


def _records(count: int) -> bytes:
    lines = (
        json.dumps({"recordId": f"R{n:011d}", "modelInput": {"messages": [{"role": "user", "content": f"q{n}"}]}})
        for n in range(count)
    )
    return "".join(f"{line}\n" for line in lines).encode()


@pytest.mark.usefixtures("aws")
def test_batch_jobs_are_idempotent_advance_per_check_and_write_bedrocks_output() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="in/records.jsonl", Body=_records(12))
    bedrock = boto3.client("bedrock", region_name=REGION)
    fake = moto_patches.fake_bedrock(ACCOUNT, REGION)
    fake.scenario = lambda request: JobScenario(status="PartiallyCompleted", failed_records=2, unprocessed_records=3)

    arn = _create(bedrock, "job-1", "token1")
    assert _create(bedrock, "job-1", "token1") == arn  # the same token: the same job, no error
    with pytest.raises(ClientError, match="ConflictException"):
        _create(bedrock, "job-1", "token2")
    with pytest.raises(ClientError, match="ValidationException"):
        _create(bedrock, "job_2", "token3")  # botocore does not check the name pattern; Bedrock does
    statuses = [bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] for _ in range(3)]
    assert statuses == ["InProgress", "PartiallyCompleted", "PartiallyCompleted"]
    described = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert (described["totalRecordCount"], described["successRecordCount"], described["errorRecordCount"]) == (
        12,
        7,
        2,
    )
    job_id = arn.rsplit("/", 1)[-1]
    lines = [
        json.loads(line)
        for line in s3.get_object(Bucket=BUCKET, Key=f"out/{job_id}/records.jsonl.out")["Body"].iter_lines()
    ]
    record_ids = [line["recordId"] for line in lines]
    assert sorted(record_ids) == [f"R{n:011d}" for n in range(9)]  # the last three never processed
    assert record_ids != sorted(record_ids)  # order is not guaranteed, and the fake does not keep it
    errors = {line["recordId"]: line["error"] for line in lines if "error" in line}
    assert set(errors) == {"R00000000000", "R00000000001"}
    assert {error["errorCode"] for error in errors.values()} == {400}
    answered = next(line for line in lines if "modelOutput" in line)
    content = answered["modelOutput"]["choices"][0]["message"]["content"]
    assert content.startswith("<reasoning>")
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=f"out/{job_id}/manifest.json.out")["Body"].read())
    assert manifest["processedRecordCount"] == 9
    assert manifest["successRecordCount"] == 7


@pytest.mark.usefixtures("aws")
def test_failed_and_expired_jobs_write_nothing_and_creates_can_be_refused() -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="in/records.jsonl", Body=_records(3))
    bedrock = boto3.client("bedrock", region_name=REGION, config=_no_retries())
    fake = moto_patches.fake_bedrock(ACCOUNT, REGION)
    fake.scenario = lambda request: JobScenario(status="Failed", message="boom", polls=0)
    fake.create_errors = ["ServiceQuotaExceededException"]
    with pytest.raises(ClientError, match="ServiceQuotaExceededException"):
        _create(bedrock, "job-3", "token4")
    arn = _create(bedrock, "job-3", "token4")
    described = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert (described["status"], described["message"]) == ("Failed", "boom")
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="out/")
    assert fake.create_calls == 2
    assert len(fake.jobs) == 1


@pytest.mark.usefixtures("aws")
def test_a_jobs_tags_are_listed_as_bedrock_lists_them() -> None:
    bedrock = boto3.client("bedrock", region_name=REGION, config=_no_retries())
    tags: list[TagTypeDef] = [{"key": "run", "value": "r-1"}, {"key": "team", "value": "Research NLP"}]
    arn = bedrock.create_model_invocation_job(
        jobName="tagged-1",
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/batch",
        modelId="openai.gpt-oss-120b-1:0",
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/in/records.jsonl"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/out/"}},
        timeoutDurationInHours=24,
        tags=tags,
    )["jobArn"]
    assert bedrock.list_tags_for_resource(resourceARN=arn)["tags"] == tags
    assert moto_patches.fake_bedrock(ACCOUNT, REGION).tags(arn) == {"run": "r-1", "team": "Research NLP"}
    assert bedrock.list_tags_for_resource(resourceARN=_create(bedrock, "untagged-1", "token9"))["tags"] == []
    # Any other ARN is still moto's to answer.
    with pytest.raises(ClientError, match="ResourceNotFoundException"):
        bedrock.list_tags_for_resource(resourceARN=f"arn:aws:bedrock:{REGION}:{ACCOUNT}:custom-model/none")


@pytest.mark.usefixtures("aws")
def test_converse_answers_from_the_model_and_reports_its_errors_as_bedrock_does() -> None:
    runtime = boto3.client("bedrock-runtime", region_name=REGION, config=_no_retries())
    reply = runtime.converse(
        modelId="openai.gpt-oss-20b-1:0",
        messages=[{"role": "user", "content": [{"text": "Hello?"}]}],
        guardrailConfig={"guardrailIdentifier": LOCAL_GUARDRAIL_ID, "guardrailVersion": LOCAL_GUARDRAIL_VERSION},
    )
    reasoning, text = reply["output"]["message"]["content"]
    assert reasoning["reasoningContent"]["reasoningText"]["text"]
    assert "Hello?" in text["text"]
    assert reply["stopReason"] == "end_turn"
    fake = moto_patches.fake_bedrock(ACCOUNT, REGION)
    (request,) = fake.converse_requests
    assert request["modelId"] == "openai.gpt-oss-20b-1:0"
    assert request["guardrailConfig"] == {
        "guardrailIdentifier": LOCAL_GUARDRAIL_ID,
        "guardrailVersion": LOCAL_GUARDRAIL_VERSION,
    }

    class Throttled(LocalModel):
        def converse(self, request: Any) -> dict[str, Any]:
            raise ModelError("ThrottlingException", "slow down")

    fake.model = Throttled(OfflineModel(tokens_per_second=None))
    with pytest.raises(runtime.exceptions.ThrottlingException):
        runtime.converse(modelId="m", messages=[{"role": "user", "content": [{"text": "x"}]}])
    verdict = runtime.apply_guardrail(
        guardrailIdentifier=LOCAL_GUARDRAIL_ID,
        guardrailVersion=LOCAL_GUARDRAIL_VERSION,
        source="OUTPUT",
        content=[{"text": {"text": "fine"}}],
    )
    assert verdict["action"] == "NONE"


def _no_retries() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "standard", "total_max_attempts": 1})


# --- (d) Lambda in-process ----------------------------------------------------------------------------------


def _function(name: str, variables: dict[str, str]) -> None:
    role = boto3.client("iam", region_name=REGION).create_role(RoleName=name, AssumeRolePolicyDocument="{}")
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role["Role"]["Arn"],
        Handler="any.handler",
        Code={"ZipFile": b"offline"},
        Timeout=30,
        Environment={"Variables": variables},
    )


class ShardMissing(Exception):
    """A handler's own error type."""


@pytest.mark.usefixtures("aws")
def test_an_event_delivered_to_a_target_carries_its_account() -> None:
    """(h): every EventBridge event has `account`; moto's default template for a target's input left it out."""
    events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
    queue = sqs.create_queue(QueueName="events")["QueueUrl"]
    events.put_rule(Name="jobs", EventPattern=json.dumps({"source": ["aws.bedrock"]}))
    events.put_targets(Rule="jobs", Targets=[{"Id": "q", "Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:events"}])
    events.put_events(Entries=[{"Source": "aws.bedrock", "DetailType": "x", "Detail": "{}", "Resources": []}])
    (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    delivered = json.loads(message["Body"])
    assert delivered["account"] == ACCOUNT
    assert {"id", "time", "version", "detail-type", "source", "region", "resources", "detail"} < set(delivered)


def test_a_changed_event_template_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = import_module("moto.events.utils").EventTemplateParser
    monkeypatch.setattr(parser, "DEFAULT_EVENT_INPUT_TEMPLATE", '{"account": "<account>"}')
    assert any("default event template changed" in problem for problem in moto_patches.check())


@pytest.mark.usefixtures("aws")
def test_lambda_runs_the_registered_handler_and_never_touches_the_environment() -> None:
    """The environment is the pipeline's, set once (tests/functional/test_batch_state_machine.py holds that)."""
    seen: dict[str, Any] = {}

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.update(setting=os.environ.get("OFFLINE_SETTING"), remaining=context.get_remaining_time_in_millis())
        if event.get("fail"):
            raise ShardMissing("no such shard")
        return {"doubled": event["value"] * 2}

    _function("doubler", {"OFFLINE_SETTING": "on"})
    lambda_runtime.register_handler("doubler", handler)
    client = boto3.client("lambda", region_name=REGION)

    answer = client.invoke(FunctionName="doubler", Payload=json.dumps({"value": 21}).encode())
    assert json.loads(answer["Payload"].read()) == {"doubled": 42}
    assert seen["setting"] is None
    assert 0 < seen["remaining"] <= 30_000

    failed = client.invoke(FunctionName="doubler", Payload=json.dumps({"fail": True}).encode())
    assert failed["FunctionError"] == "Unhandled"
    error = json.loads(failed["Payload"].read())
    assert (error["errorType"], error["errorMessage"]) == ("ShardMissing", "no such shard")

    _function("orphan", {})
    orphan = client.invoke(FunctionName="orphan", Payload=b"{}")
    assert json.loads(orphan["Payload"].read())["errorType"] == "HandlerNotRegistered"


@pytest.mark.usefixtures("aws")
def test_a_handler_error_is_the_error_name_retry_and_catch_see() -> None:
    def handler(event: dict[str, Any], context: Any) -> None:
        raise ShardMissing("gone")

    _function("failing", {})
    lambda_runtime.register_handler("failing", handler)
    arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:failing"
    described = _execute(
        {
            "StartAt": "Call",
            "States": {
                "Call": {
                    "Type": "Task",
                    "Resource": arn,
                    "Catch": [{"ErrorEquals": ["ShardMissing"], "ResultPath": "$.error", "Next": "Caught"}],
                    "End": True,
                },
                "Caught": {"Type": "Pass", "End": True},
            },
        }
    )
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["error"]["Error"] == "ShardMissing"


def test_the_lambda_context_counts_down() -> None:
    context = LocalLambdaContext.starting_now("f", timeout_seconds=2, memory_mb=128)
    assert context.invoked_function_arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f"
    first = context.get_remaining_time_in_millis()
    time.sleep(0.05)
    assert 0 < context.get_remaining_time_in_millis() < first <= 2000
    assert inspect.signature(moto_patches.install).parameters == {}
