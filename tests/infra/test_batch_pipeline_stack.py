"""The batch stack as app.py synthesizes it: storage, trigger, IAM scope, function wiring, the state machine,
the arithmetic of its poll loop, monitoring, outputs, and the guardrail it reads from the chat stack."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from aws_cdk import Stack
from botocore.model import StringShape

from batch.models import ShardOutcome
from batch.settings import BatchSettings
from infra.config import (
    EVENTS_PER_POLL_LAP,
    HISTORY_EVENT_BUDGET,
    HISTORY_EVENT_LIMIT,
    POLL_MARGIN_HOURS,
    SHARD_FIXED_EVENTS,
    DeploymentConfig,
    batch_api_parameter_name,
    chat_role_parameter_name,
    guardrail_parameter_names,
)
from infra.constructs.batch_pipeline import (
    INBOX_PREFIX,
    OUTPUT_PREFIX,
    REJECTED_PREFIX,
    RESULTS_PREFIX,
    STREAMING_MALLOC_ENVIRONMENT,
    WORK_PREFIX,
)
from infra.constructs.batch_workflow import RUNNING_JOB_STATUSES, TERMINAL_JOB_STATUSES, TIMEOUT_WAVES, run_timeout
from shared import pipeline
from tests.infra.cfn import as_list, only, render, resources, role_statements
from tests.infra.synth import (
    DEFAULT_BATCH_STACK,
    DEFAULT_STACK,
    VARIANT_BATCH_STACK,
    VARIANT_CONTEXT,
    VARIANT_COST_TAGS,
    Synthesized,
)
from tests.infra.test_cdk_nag import acknowledgements

CONFIG = DeploymentConfig()
BATCH = CONFIG.batch
MODEL_ARN = f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}::foundation-model/{BATCH.model_id}"
JOB_ARNS = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:model-invocation-job/*"
FACTORY_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "STAGE"}
HANDLERS = {
    "StarterFunction": "batch.starter.lambda_handler",
    "PrepareFunction": "batch.prepare.lambda_handler",
    "OnDemandFunction": "batch.on_demand.lambda_handler",
    "CollectFunction": "batch.collect.lambda_handler",
    "JobEventsFunction": "batch.job_events.lambda_handler",
}
GUARDRAIL_ARN = (
    "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:guardrail/"
    "${SsmParameterValuegptossbedrockdevguardrailidC96584B6F00A464EAD1953AFF4B05118Parameter}"
)
GUARDRAIL_VERSION = "${SsmParameterValuegptossbedrockdevguardrailversionC96584B6F00A464EAD1953AFF4B05118Parameter}"
# Every job's tags: its run id, the SHA-256 of the source key (computed into the shard's input), the stage.
DEFAULT_JOB_TAGS = [
    {"Key": "run", "Value.$": "$.runId"},
    {"Key": "source", "Value.$": "$.sourceHash"},
    {"Key": "stage", "Value": CONFIG.stage},
]


def _functions(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The four functions by their service name (construct id): logical id and properties."""
    found = {}
    for logical_id, function in resources(template, "AWS::Lambda::Function").items():
        properties = function["Properties"]
        found[properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]] = (logical_id, properties)
    assert set(found) == set(HANDLERS)
    return found


def _statements_of(template: dict[str, Any], service: str) -> list[dict[str, Any]]:
    _, properties = _functions(template)[service]
    return role_statements(template, properties["Role"]["Fn::GetAtt"][0])


def _role(template: dict[str, Any], description_start: str) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical_id, role)
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"].get("Description", "").startswith(description_start)
    ]
    return found


def _state_machine_role(template: dict[str, Any]) -> str:
    _, machine = only(template, "AWS::StepFunctions::StateMachine")
    role_id: str = machine["Properties"]["RoleArn"]["Fn::GetAtt"][0]
    return role_id


def _definition(template: dict[str, Any]) -> dict[str, Any]:
    _, machine = only(template, "AWS::StepFunctions::StateMachine")
    definition: dict[str, Any] = json.loads(render(machine["Properties"]["DefinitionString"]))
    return definition


def _shard_states(template: dict[str, Any]) -> dict[str, Any]:
    states: dict[str, Any] = _definition(template)["States"]["Shards"]["ItemProcessor"]["States"]
    return states


def _object_access(statements: list[dict[str, Any]], bucket_id: str) -> dict[str, set[str]]:
    """Object-level S3 actions by the bucket prefixes they are allowed on."""
    access: dict[str, set[str]] = {}
    for statement in statements:
        for resource in as_list(statement.get("Resource", [])):
            text = render(resource)
            prefix = f"${{{bucket_id}.Arn}}/"
            if text.startswith(prefix):
                access.setdefault(text.removeprefix(prefix), set()).update(as_list(statement["Action"]))
    return access


@pytest.fixture(scope="module")
def bucket_id(batch: dict[str, Any]) -> str:
    (logical_id,) = [
        logical_id
        for logical_id, bucket in resources(batch, "AWS::S3::Bucket").items()
        if "NotificationConfiguration" in bucket["Properties"]
    ]
    return logical_id


# --- storage and trigger ----------------------------------------------------------------------------


@pytest.mark.row(15)
def test_bucket_is_kms_encrypted_versioned_private_and_logged(batch: dict[str, Any], bucket_id: str) -> None:
    buckets = resources(batch, "AWS::S3::Bucket")
    properties = buckets[bucket_id]["Properties"]
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["BucketKeyEnabled"] is True
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    key_id = encryption["ServerSideEncryptionByDefault"]["KMSMasterKeyID"]["Fn::GetAtt"][0]
    assert resources(batch, "AWS::KMS::Key")[key_id]["Properties"]["EnableKeyRotation"] is True
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == dict.fromkeys(
        ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"), True
    )
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (logs_id,) = set(buckets) - {bucket_id}
    assert properties["LoggingConfiguration"]["DestinationBucketName"] == {"Ref": logs_id}
    # Delivered to EventBridge by the bucket's own property (no notification custom resource).
    assert properties["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert not [r for r in batch["Resources"].values() if r["Type"] == "Custom::S3BucketNotifications"]


@pytest.mark.row(15)
def test_every_bucket_denies_plain_http_and_old_tls(batch: dict[str, Any]) -> None:
    policies = {
        policy["Properties"]["Bucket"]["Ref"]: policy["Properties"]["PolicyDocument"]["Statement"]
        for policy in resources(batch, "AWS::S3::BucketPolicy").values()
    }
    assert set(policies) == set(resources(batch, "AWS::S3::Bucket"))
    for statements in policies.values():
        denials = [statement["Condition"] for statement in statements if statement["Effect"] == "Deny"]
        assert {"Bool": {"aws:SecureTransport": "false"}} in denials
        assert {"NumericLessThan": {"s3:TlsVersion": 1.2}} in denials


@pytest.mark.row(15)
def test_lifecycle_expires_work_and_output_and_cleans_up(batch: dict[str, Any], bucket_id: str) -> None:
    rules = {
        rule["Id"]: rule
        for rule in resources(batch, "AWS::S3::Bucket")[bucket_id]["Properties"]["LifecycleConfiguration"]["Rules"]
    }
    assert (
        rules["ExpireWork"] | {"Prefix": "work/", "ExpirationInDays": BATCH.work_retention_days}
        == (rules["ExpireWork"])
    )
    assert rules["ExpireBedrockOutput"]["Prefix"] == "bedrock-output/"
    assert rules["ExpireBedrockOutput"]["ExpirationInDays"] == BATCH.output_retention_days
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert "Prefix" not in rules["AbortIncompleteUploads"]
    assert rules["ExpireNoncurrentVersions"]["NoncurrentVersionExpiration"]["NoncurrentDays"] > 0
    assert all(rule["Status"] == "Enabled" for rule in rules.values())
    # What users drop and read is never expired by the stack.
    assert {rule.get("Prefix") for rule in rules.values()} == {"work/", "bedrock-output/", None}


def test_access_log_bucket_uses_s3_keys_and_is_private_versioned_and_expiring(
    batch: dict[str, Any], bucket_id: str
) -> None:
    (logs_id,) = set(resources(batch, "AWS::S3::Bucket")) - {bucket_id}
    properties = resources(batch, "AWS::S3::Bucket")[logs_id]["Properties"]
    (encryption,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    (rule,) = properties["LifecycleConfiguration"]["Rules"]
    assert rule["ExpirationInDays"] > 0
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    (policy,) = [
        p for p in resources(batch, "AWS::S3::BucketPolicy").values() if p["Properties"]["Bucket"] == {"Ref": logs_id}
    ]
    (delivery,) = [s for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Condition"]["ArnLike"] == {"aws:SourceArn": {"Fn::GetAtt": [bucket_id, "Arn"]}}


def _rule(template: dict[str, Any], name: str) -> dict[str, Any]:
    (rule,) = [rule for logical_id, rule in resources(template, "AWS::Events::Rule").items() if name in logical_id]
    return rule


def test_only_objects_created_under_inbox_reach_the_queue(batch: dict[str, Any], bucket_id: str) -> None:
    rule = _rule(batch, "InboxObjectCreated")
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [{"Ref": bucket_id}]}, "object": {"key": [{"prefix": "inbox/"}]}},
    }
    (target,) = rule["Properties"]["Targets"]
    queues = resources(batch, "AWS::SQS::Queue")
    (queue_id,) = [logical_id for logical_id, queue in queues.items() if "RedrivePolicy" in queue["Properties"]]
    (dead_letters_id,) = set(queues) - {queue_id}
    assert target["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dead_letters_id, "Arn"]}}


def test_only_terminal_state_changes_of_this_stages_jobs_reach_job_events(batch: dict[str, Any]) -> None:
    rule = _rule(batch, "JobStateChanged")
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.bedrock"],
        "detail-type": ["Batch Inference Job State Change"],
        "detail": {
            "status": list(TERMINAL_JOB_STATUSES),
            "batchJobName": [{"prefix": f"{CONFIG.stage}."}],
        },
    }
    (target,) = rule["Properties"]["Targets"]
    function_id, _ = _functions(batch)["JobEventsFunction"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == 3600
    (permission,) = [
        p["Properties"]
        for p in resources(batch, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function_id, "Arn"]}
    ]
    assert permission["Principal"] == "events.amazonaws.com"


def test_job_events_reads_only_task_tokens_and_resumes_only_this_state_machine(
    batch: dict[str, Any], bucket_id: str
) -> None:
    machine_id, _ = only(batch, "AWS::StepFunctions::StateMachine")
    statements = _statements_of(batch, "JobEventsFunction")
    assert _object_access(statements, bucket_id) == {"work/job-tokens/*": {"s3:GetObject"}}
    (resume,) = [s for s in statements if "states:SendTaskSuccess" in as_list(s["Action"])]
    assert resume["Action"] == "states:SendTaskSuccess"
    # The state machine and its Distributed Map runs (a shard's token belongs to its child execution).
    assert sorted(render(r) for r in resume["Resource"]) == [f"${{{machine_id}}}", f"${{{machine_id}}}/*"]
    assert not [s for s in statements if any(a.startswith("states:") for a in as_list(s["Action"])) and s != resume]
    # The state machine stores the tokens, under that prefix only.
    machine = [s for s in role_statements(batch, _state_machine_role(batch)) if str(s["Action"]).startswith("s3:")]
    assert _object_access(machine, bucket_id) == {"work/job-tokens/*": {"s3:PutObject"}}


def test_queues_are_encrypted_tls_only_with_a_dead_letter_queue(batch: dict[str, Any]) -> None:
    queues = resources(batch, "AWS::SQS::Queue")
    (queue_id,) = [logical_id for logical_id, queue in queues.items() if "RedrivePolicy" in queue["Properties"]]
    (dead_letters_id,) = set(queues) - {queue_id}
    queue = queues[queue_id]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letters_id, "Arn"]},
        "maxReceiveCount": 5,
    }
    _, starter = _functions(batch)["StarterFunction"]
    assert queue["VisibilityTimeout"] >= 6 * starter["Timeout"]
    keys = resources(batch, "AWS::KMS::Key")
    for properties in (queue, queues[dead_letters_id]["Properties"]):
        key_id = properties["KmsMasterKeyId"]["Fn::GetAtt"][0]
        assert keys[key_id]["Properties"]["EnableKeyRotation"] is True
    for policy in resources(batch, "AWS::SQS::QueuePolicy").values():
        assert {"Bool": {"aws:SecureTransport": "false"}} in [
            s["Condition"] for s in policy["Properties"]["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"
        ]
    _, mapping = only(batch, "AWS::Lambda::EventSourceMapping")
    starter_id, _ = _functions(batch)["StarterFunction"]
    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert mapping["Properties"]["FunctionName"] == {"Ref": starter_id}
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# --- functions ---------------------------------------------------------------------------------------


def test_functions_run_the_batch_handlers_with_exactly_batch_settings(batch: dict[str, Any]) -> None:
    machine_id, _ = only(batch, "AWS::StepFunctions::StateMachine")
    for service, (_, properties) in _functions(batch).items():
        assert properties["Handler"] == HANDLERS[service]
        assert properties["Runtime"] == "python3.14"
        assert properties["Architectures"] == ["arm64"]
        assert properties["TracingConfig"] == {"Mode": "Active"}
        variables = properties["Environment"]["Variables"]
        names = set(variables) - FACTORY_VARIABLES - set(STREAMING_MALLOC_ENVIRONMENT)
        assert names <= set(BatchSettings.model_fields), service
        streaming = service in ("PrepareFunction", "CollectFunction")
        tuned = all(variables.get(name) == value for name, value in STREAMING_MALLOC_ENVIRONMENT.items())
        assert tuned is streaming, service
        assert ("STATE_MACHINE_ARN" in names) is (service == "StarterFunction")
        assert ("BUCKET_NAME" in names) is (service == "JobEventsFunction")
        assert variables["JOB_NAME_PREFIX"] == f"{CONFIG.stage}."
        assert variables["GUARDRAIL_ID"] == {"Ref": GUARDRAIL_ARN.rsplit("${", 1)[1].rstrip("}")}
        settings = BatchSettings.model_validate(
            {name: value if isinstance(value, str) else "deploy-time" for name, value in variables.items()}
        )
        configured = (
            BATCH.model_id,
            BATCH.quotas.min_records_per_job,
            BATCH.quotas.max_records_per_job,
            BATCH.quotas.max_concurrent_jobs,
            TIMEOUT_WAVES * BATCH.quotas.max_concurrent_jobs,
            BATCH.read_service_quotas,
            BATCH.apply_guardrail,
        )
        assert configured == (
            settings.MODEL_ID,
            settings.MIN_RECORDS_PER_JOB,
            settings.MAX_RECORDS_PER_JOB,
            settings.MAX_CONCURRENT_JOBS,
            settings.MAX_JOBS_PER_RUN,
            settings.READ_SERVICE_QUOTAS,
            settings.APPLY_GUARDRAIL,
        )
    _, starter = _functions(batch)["StarterFunction"]
    assert starter["Environment"]["Variables"]["STATE_MACHINE_ARN"] == {"Ref": machine_id}


def test_long_tasks_get_lambdas_limit_and_streaming_memory(batch: dict[str, Any]) -> None:
    functions = _functions(batch)
    for service in ("PrepareFunction", "OnDemandFunction", "CollectFunction"):
        assert functions[service][1]["Timeout"] == 900
        assert functions[service][1]["MemorySize"] >= 1024
    assert functions["StarterFunction"][1]["Timeout"] <= 60


# --- IAM -----------------------------------------------------------------------------------------------


@pytest.mark.row(14)
def test_bedrock_assumes_the_batch_role_only_for_this_accounts_jobs(batch: dict[str, Any]) -> None:
    _, role = _role(batch, "Assumed by Amazon Bedrock")
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "bedrock.amazonaws.com"}
    assert trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert render(trust["Condition"]["ArnLike"]["aws:SourceArn"]) == JOB_ARNS
    assert "ManagedPolicyArns" not in role["Properties"]


def test_the_batch_role_reads_work_writes_output_and_invokes_the_batch_model(
    batch: dict[str, Any], bucket_id: str
) -> None:
    role_id, _ = _role(batch, "Assumed by Amazon Bedrock")
    statements = role_statements(batch, role_id)
    assert _object_access(statements, bucket_id) == {"work/*": {"s3:GetObject"}, "bedrock-output/*": {"s3:PutObject"}}
    (listing,) = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["work/*", "bedrock-output/*"]}}
    (invoke,) = [s for s in statements if s["Action"] == "bedrock:InvokeModel"]
    assert render(invoke["Resource"]) == MODEL_ARN
    (kms,) = [s for s in statements if "kms:Decrypt" in as_list(s["Action"])]
    assert set(kms["Action"]) == {"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"}
    bucket = resources(batch, "AWS::S3::Bucket")[bucket_id]["Properties"]
    key = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert kms["Resource"] == key["KMSMasterKeyID"]


@pytest.mark.row(14)
def test_the_state_machine_creates_and_reads_jobs_and_passes_only_the_batch_role(batch: dict[str, Any]) -> None:
    statements = role_statements(batch, _state_machine_role(batch))
    by_action: dict[str, list[dict[str, Any]]] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            by_action.setdefault(action, []).append(statement)
    (create,) = by_action["bedrock:CreateModelInvocationJob"]
    assert sorted(render(r) for r in as_list(create["Resource"])) == sorted([MODEL_ARN, JOB_ARNS])
    (get,) = by_action["bedrock:GetModelInvocationJob"]
    assert render(get["Resource"]) == JOB_ARNS
    (tag,) = by_action["bedrock:TagResource"]
    assert render(tag["Resource"]) == JOB_ARNS
    assert tag["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": ["run", "source", "stage"]}}
    (pass_role,) = by_action["iam:PassRole"]
    batch_role_id, _ = _role(batch, "Assumed by Amazon Bedrock")
    assert pass_role["Resource"] == {"Fn::GetAtt": [batch_role_id, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "bedrock.amazonaws.com"}}
    assert not [action for action in by_action if action.startswith("bedrock:") and "Invoke" in action]
    (invoke,) = by_action["lambda:InvokeFunction"]
    functions = _functions(batch)
    tasks = {functions[name][0] for name in ("PrepareFunction", "OnDemandFunction", "CollectFunction")}
    invoked = {render(r).removesuffix(":*").removeprefix("${").removesuffix(".Arn}") for r in invoke["Resource"]}
    assert invoked == tasks  # never the starter
    (metrics,) = by_action["cloudwatch:PutMetricData"]
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "GptOssBedrock/dev"}}


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("StarterFunction", {"inbox/*": {"s3:GetObject", "s3:GetObjectVersion"}}),
        (
            "PrepareFunction",
            {
                "inbox/*": {"s3:GetObject", "s3:GetObjectVersion"},
                # A batch created through the Batch API runs on its uploaded file.
                "openai/*/files/*": {"s3:GetObject", "s3:GetObjectVersion"},
                "work/*": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
                "rejected/*": {"s3:PutObject", "s3:AbortMultipartUpload"},
            },
        ),
        (
            "OnDemandFunction",
            {"work/*": {"s3:GetObject"}, "bedrock-output/*": {"s3:PutObject", "s3:AbortMultipartUpload"}},
        ),
        (
            "CollectFunction",
            {
                "work/*": {"s3:GetObject"},
                "bedrock-output/*": {"s3:GetObject"},
                "rejected/*": {"s3:GetObject"},
                "results/*": {"s3:PutObject", "s3:AbortMultipartUpload"},
            },
        ),
    ],
)
def test_each_function_touches_only_its_prefixes(
    batch: dict[str, Any], bucket_id: str, service: str, expected: dict[str, set[str]]
) -> None:
    statements = _statements_of(batch, service)
    assert _object_access(statements, bucket_id) == expected
    # No whole-bucket grant besides listing one prefix.
    bucket_wide = [s for s in statements if {"Fn::GetAtt": [bucket_id, "Arn"]} in as_list(s.get("Resource", []))]
    assert all(s["Action"] == "s3:ListBucket" and "s3:prefix" in s["Condition"]["StringLike"] for s in bucket_wide)


def test_model_calls_of_the_functions_carry_the_published_guardrail(batch: dict[str, Any]) -> None:
    bedrock = {
        service: [
            s for s in _statements_of(batch, service) if any(a.startswith("bedrock:") for a in as_list(s["Action"]))
        ]
        for service in HANDLERS
    }
    assert bedrock["StarterFunction"] == bedrock["PrepareFunction"] == []
    assert bedrock["CollectFunction"] == []  # batchApplyGuardrail is off by default
    invoke, apply = sorted(bedrock["OnDemandFunction"], key=lambda s: str(s["Action"]), reverse=True)
    assert invoke["Action"] == "bedrock:InvokeModel"
    assert render(invoke["Resource"]) == MODEL_ARN
    assert render(invoke["Condition"]["StringEquals"]["bedrock:GuardrailIdentifier"]) == (
        f"{GUARDRAIL_ARN}:{GUARDRAIL_VERSION}"
    )
    assert apply["Action"] == "bedrock:ApplyGuardrail"
    assert render(apply["Resource"]) == GUARDRAIL_ARN


def test_variant_guards_batch_answers_and_reads_no_service_quotas(batch_variant: dict[str, Any]) -> None:
    collect = _statements_of(batch_variant, "CollectFunction")
    (apply,) = [s for s in collect if s["Action"] == "bedrock:ApplyGuardrail"]
    assert render(apply["Resource"]).endswith(
        "guardrail/${SsmParameterValuegptossbedrockprodguardrailidC96584B6F00A464EAD1953AFF4B05118Parameter}"
    )
    prepare = _statements_of(batch_variant, "PrepareFunction")
    assert not [s for s in prepare if "servicequotas:ListServiceQuotas" in as_list(s["Action"])]


def test_each_shard_hashes_the_source_key_for_its_jobs_source_tag(batch: dict[str, Any]) -> None:
    selector = _definition(batch)["States"]["Shards"]["ItemSelector"]
    # The parent's $.source is the run input (bucket, key, version id); only the key's hash enters the shard.
    assert selector["sourceHash.$"] == "States.Hash($.source.key, 'SHA-256')"
    assert not [value for value in selector.values() if value == "$.source" or value.startswith("$.source.")]
    begin = _definition(batch)["States"]["Begin"]
    assert begin["Parameters"]["source.$"] == "$"


def test_variant_tags_every_job_with_the_configured_cost_tags_and_may_tag_only_those_keys(
    batch_variant: dict[str, Any],
) -> None:
    stage = VARIANT_CONTEXT["stage"]
    configured = [{"Key": key, "Value": value} for key, value in VARIANT_COST_TAGS.items()]
    expected = [*DEFAULT_JOB_TAGS[:2], {"Key": "stage", "Value": stage}, *configured]
    assert _shard_states(batch_variant)["SubmitJob"]["Parameters"]["Tags"] == expected
    statements = role_statements(batch_variant, _state_machine_role(batch_variant))
    (tag,) = [s for s in statements if "bedrock:TagResource" in as_list(s["Action"])]
    assert as_list(tag["Action"]) == ["bedrock:TagResource"]
    assert render(tag["Resource"]) == JOB_ARNS
    keys = ["run", "source", "stage", *VARIANT_COST_TAGS]
    assert tag["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": keys}}
    # Exactly the keys SubmitJob sends: a new tag key cannot ride on the job creation.
    assert keys == [entry["Key"] for entry in expected]


def test_prepare_reads_service_quotas_with_an_explained_acknowledgement(
    batch: dict[str, Any], default_app: Synthesized
) -> None:
    (quotas,) = [s for s in _statements_of(batch, "PrepareFunction") if s.get("Sid") == "ReadBedrockQuotas"]
    assert (quotas["Action"], quotas["Resource"]) == ("servicequotas:ListServiceQuotas", "*")
    reasons = [
        reason
        for path, finding, reason in acknowledgements(default_app.app)
        if path == f"{DEFAULT_BATCH_STACK}/BatchPipeline/PrepareFunctionRole" and finding.endswith("[Resource::*]")
    ]
    assert any("servicequotas:ListServiceQuotas" in reason for reason in reasons)
    assert any("xray" in reason.lower() for reason in reasons)


# --- state machine --------------------------------------------------------------------------------------


def test_state_machine_is_standard_traced_logged_without_data_and_times_out(batch: dict[str, Any]) -> None:
    _, machine = only(batch, "AWS::StepFunctions::StateMachine")
    properties = machine["Properties"]
    assert properties["StateMachineType"] == "STANDARD"
    assert properties["TracingConfiguration"] == {"Enabled": True}
    logging = properties["LoggingConfiguration"]
    assert (logging["Level"], logging["IncludeExecutionData"]) == ("ALL", False)
    group_id = logging["Destinations"][0]["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
    group = resources(batch, "AWS::Logs::LogGroup")[group_id]["Properties"]
    assert group["RetentionInDays"] == CONFIG.log_retention_days
    assert "KmsKeyId" in group
    timeout = _definition(batch)["TimeoutSeconds"]
    assert timeout == run_timeout(BATCH).to_seconds()
    assert timeout > (BATCH.job_timeout_hours + POLL_MARGIN_HOURS) * 3600


def test_the_run_flows_through_prepare_a_path_and_collect_and_every_failure_is_collected(
    batch: dict[str, Any],
) -> None:
    definition = _definition(batch)
    states = definition["States"]
    functions = _functions(batch)

    def resource(name: str) -> str:
        return render(states[name]["Resource"])

    assert definition["StartAt"] == "Begin"
    assert resource("Prepare") == f"${{{functions['PrepareFunction'][0]}.Arn}}"
    assert resource("OnDemand") == f"${{{functions['OnDemandFunction'][0]}.Arn}}"
    assert resource("Collect") == resource("CollectFailure") == f"${{{functions['CollectFunction'][0]}.Arn}}"
    assert {choice["StringEquals"]: choice["Next"] for choice in states["Route"]["Choices"]} == {
        "batch": "Shards",
        "on_demand": "OnDemand",
        "empty": "Collect",
    }
    assert states["Shards"]["Next"] == states["OnDemand"]["Next"] == "Collect"
    for name in ("Prepare", "Shards", "OnDemand", "Collect"):
        (catch,) = states[name]["Catch"]
        assert catch == {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CollectFailure"}
    assert states["CollectFailure"]["Next"] == "RunFailed"
    assert states["RunFailed"]["Type"] == "Fail"
    # After the summary is written: a FAILED one fails the execution, naming it; SUCCEEDED and PARTIAL succeed.
    assert states["Collect"]["Next"] == "Ended"
    assert states["Ended"]["Choices"] == [{"Variable": "$.status", "StringEquals": "FAILED", "Next": "SummaryFailed"}]
    assert states["Ended"]["Default"] == "Done"
    assert states["Done"]["Type"] == "Succeed"
    assert states["SummaryFailed"] == {
        "Type": "Fail",
        "Comment": "The summary is written; the execution fails so that the failure alarms fire",
        "Error": "SummaryFailed",
        "CausePath": "States.Format('summary FAILED (no prompt answered): {}', $.summary)",
    }
    # Collect's payload: every field of CollectInput, the start time from the context object.
    assert set(states["Collect"]["Parameters"]) == {
        "source.$",
        "prepared.$",
        "shardOutcomes.$",
        "onDemand.$",
        "error.$",
        "startedAt.$",
    }
    assert states["Collect"]["Parameters"]["startedAt.$"] == "$$.Execution.StartTime"
    service_errors = {
        "ErrorEquals": [
            "Lambda.ClientExecutionTimeoutException",
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        ],
        "IntervalSeconds": 2,
        "MaxAttempts": 6,
        "BackoffRate": 2,
    }
    crashed = {
        "ErrorEquals": ["Lambda.Unknown", "Sandbox.Timedout"],
        "IntervalSeconds": 10,
        "MaxAttempts": 1,
        "BackoffRate": 2,
    }
    # A killed prepare or collect runs once more (it rewrites the same keys); on-demand would pay the model twice.
    for name in ("Prepare", "Collect", "CollectFailure"):
        assert states[name]["Retry"] == [service_errors, crashed]
    assert states["OnDemand"]["Retry"] == [service_errors]


def test_shards_run_as_a_distributed_map_capped_at_the_concurrent_jobs_quota(batch: dict[str, Any]) -> None:
    shards = _definition(batch)["States"]["Shards"]
    assert shards["ItemsPath"] == "$.prepared.shards"
    assert shards["MaxConcurrency"] == BATCH.quotas.max_concurrent_jobs
    assert shards["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert shards["ResultPath"] == "$.shardOutcomes"
    # The lap counter is the child's own workflow variable, set by SubmitJob (not part of the item).
    assert "lap" not in shards["ItemSelector"]
    assert _shard_states(batch)["SubmitJob"]["Assign"] == {"laps": 0}


@pytest.mark.row(21)
def test_submit_job_is_the_sdk_integration_with_the_shards_idempotency_token(
    batch: dict[str, Any], bucket_id: str
) -> None:
    submit = _shard_states(batch)["SubmitJob"]
    assert render(submit["Resource"]) == "arn:${AWS::Partition}:states:::aws-sdk:bedrock:createModelInvocationJob"
    parameters = submit["Parameters"]
    assert parameters["JobName.$"] == "$.shard.jobName"
    assert parameters["ClientRequestToken.$"] == "$.shard.clientRequestToken"
    assert parameters["ModelInvocationType"] == "InvokeModel"
    assert parameters["TimeoutDurationInHours"] == BATCH.job_timeout_hours
    assert parameters["InputDataConfig"] == {
        "S3InputDataConfig": {"S3Uri.$": "$.shard.inputUri", "S3InputFormat": "JSONL"}
    }
    output = parameters["OutputDataConfig"]["S3OutputDataConfig"]
    assert output["S3Uri.$"] == "$.shard.outputUri"
    bucket = resources(batch, "AWS::S3::Bucket")[bucket_id]["Properties"]
    key = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert output["S3EncryptionKeyId"] == "${" + key["KMSMasterKeyID"]["Fn::GetAtt"][0] + ".Arn}"
    assert parameters["Tags"] == DEFAULT_JOB_TAGS
    batch_role_id, _ = _role(batch, "Assumed by Amazon Bedrock")
    assert parameters["RoleArn"] == f"${{{batch_role_id}.Arn}}"
    retries = {tuple(retry["ErrorEquals"]): retry for retry in submit["Retry"]}
    assert set(retries) == {
        ("Bedrock.ThrottlingException",),
        ("Bedrock.ServiceQuotaExceededException",),
        ("Bedrock.InternalServerException",),
    }
    throttled, quota = retries[("Bedrock.ThrottlingException",)], retries[("Bedrock.ServiceQuotaExceededException",)]
    # Quota refusals wait for other jobs to finish: a long backoff and many attempts.
    assert quota["IntervalSeconds"] > 10 * throttled["IntervalSeconds"]
    assert quota["MaxAttempts"] > throttled["MaxAttempts"]
    assert quota["MaxDelaySeconds"] >= 1800
    (catch,) = submit["Catch"]
    assert (catch["ErrorEquals"], catch["Next"]) == (["States.ALL"], "SubmitFailed")


def test_the_poll_loop_waits_checks_and_counts_laps_up_to_the_limit(batch: dict[str, Any]) -> None:
    states = _shard_states(batch)
    assert states["SubmitJob"]["Next"] == "AwaitJob"
    # The shard waits for its job's state event (job_events sends the stored token), at most the reconcile
    # interval; then it checks the status itself. If the token cannot be stored, it waits the interval.
    await_job = states["AwaitJob"]
    assert render(await_job["Resource"]) == "arn:${AWS::Partition}:states:::aws-sdk:s3:putObject.waitForTaskToken"
    parameters = await_job["Parameters"]
    assert parameters["Key.$"] == "States.Format('work/job-tokens/{}', $.shard.jobName)"
    assert parameters["Body"] == {"taskToken.$": "$$.Task.Token"}
    assert await_job["TimeoutSeconds"] == BATCH.poll_interval_seconds
    assert await_job["Next"] == "GetJob"
    timeout, other = await_job["Catch"]
    assert (timeout["ErrorEquals"], timeout["Next"]) == (["States.Timeout"], "GetJob")
    assert (other["ErrorEquals"], other["Next"]) == (["States.ALL"], "WaitForJob")
    assert states["WaitForJob"] == {"Type": "Wait", "Seconds": BATCH.poll_interval_seconds, "Next": "GetJob"}
    get = states["GetJob"]
    assert render(get["Resource"]) == "arn:${AWS::Partition}:states:::aws-sdk:bedrock:getModelInvocationJob"
    assert get["Parameters"] == {"JobIdentifier.$": "$.job.jobArn"}
    # A successful check counts the lap (Assign is not applied when the task fails or is retried).
    assert get["Assign"] == {"laps.$": "States.MathAdd($laps, 1)"}
    (retry,) = get["Retry"]
    assert "Bedrock.ThrottlingException" in retry["ErrorEquals"]
    assert get["Next"] == "JobStatus"
    terminal, limit, overdue = states["JobStatus"]["Choices"]
    assert {rule["StringEquals"]: terminal["Next"] for rule in terminal["Or"]} == dict.fromkeys(
        ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"), "HasMessage"
    )
    assert all(rule["Variable"] == "$.poll.Status" for rule in terminal["Or"])
    # Every other status (running, or one this code does not know) polls again, bounded by the lap limit.
    assert (limit["Variable"], limit["NumericGreaterThanEquals"], limit["Next"]) == (
        "$laps",
        BATCH.poll_lap_limit,
        "PollLimitReached",
    )
    assert (overdue["Variable"], overdue["NumericEquals"], overdue["Next"]) == (
        "$laps",
        BATCH.overdue_lap,
        "ReportOverdue",
    )
    assert states["JobStatus"]["Default"] == "AwaitJob"
    assert states["ReportOverdue"]["Next"] == "AwaitJob"
    # A lap is three states: nothing else sits between the check and the next wait.
    assert {"CountLap", "PollLimit"}.isdisjoint(states)


def test_every_shard_ends_with_an_outcome_collect_accepts(batch: dict[str, Any]) -> None:
    states = _shard_states(batch)
    ends = {name: state for name, state in states.items() if state.get("End")}
    assert set(ends) == {"SubmitFailed", "PollFailed", "PollLimitReached", "JobEnded", "JobEndedWithMessage"}
    sample = {"$.shard.index": 3, "$.job.jobArn": "arn:job", "$.poll.Status": "Failed", "$.poll.Message": "m"}
    for name, state in ends.items():
        assert state["Type"] == "Pass"
        outcome = {
            key.removesuffix(".$"): (sample.get(value, "formatted") if key.endswith(".$") else value)
            for key, value in state["Parameters"].items()
        }
        ShardOutcome.model_validate(outcome)  # the collect function's own model
        assert outcome["index"] == 3, name


@pytest.mark.row(22)
def test_the_lap_limit_covers_the_job_timeout_within_the_history_budget(batch: dict[str, Any]) -> None:
    limit = BATCH.poll_lap_limit
    assert limit * BATCH.poll_interval_seconds >= (BATCH.job_timeout_hours + POLL_MARGIN_HOURS) * 3600
    assert limit == math.ceil((72 + 6) * 3600 / 3600) == 78
    # One shard's child execution: the submit task with every retry it may make, then the laps.
    submit = _shard_states(batch)["SubmitJob"]
    attempts = 1 + sum(retry["MaxAttempts"] for retry in submit["Retry"])
    submit_events = 2 + 3 * attempts  # entered and exited; scheduled, started, failed/succeeded per attempt
    assert submit_events + 40 <= SHARD_FIXED_EVENTS  # + start/end, first wait/check, overdue report, outcome
    assert limit * EVENTS_PER_POLL_LAP + SHARD_FIXED_EVENTS <= HISTORY_EVENT_BUDGET < HISTORY_EVENT_LIMIT


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"batchJobTimeoutHours": "168", "batchPollIntervalSeconds": "60"}, "poll every 414 s or more"),
        ({"batchJobTimeoutHours": "24", "batchExpectedRunHours": "30"}, "batchExpectedRunHours"),
    ],
)
def test_configurations_beyond_the_history_budget_are_refused(context: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeploymentConfig.from_context(context)


def test_the_longest_job_timeout_fits_with_a_slower_poll() -> None:
    config = DeploymentConfig.from_context({"batchJobTimeoutHours": "168", "batchPollIntervalSeconds": "900"})
    assert config.batch.poll_lap_limit * EVENTS_PER_POLL_LAP + SHARD_FIXED_EVENTS <= HISTORY_EVENT_BUDGET


# --- monitoring, outputs and the guardrail -----------------------------------------------------------------


def _alarm_metrics(alarm: dict[str, Any]) -> Iterator[dict[str, Any]]:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        yield properties
    for query in properties.get("Metrics", []):
        if "MetricStat" in query:
            yield query["MetricStat"]["Metric"]


def test_alarms_cover_failures_timeouts_aborts_dead_letters_overdue_runs_and_record_errors(
    batch: dict[str, Any],
) -> None:
    topic_id, _ = only(batch, "AWS::SNS::Topic")
    machine_id, _ = only(batch, "AWS::StepFunctions::StateMachine")
    alarms = resources(batch, "AWS::CloudWatch::Alarm").values()
    found = set()
    for alarm in alarms:
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
        for metric in _alarm_metrics(alarm):
            found.add((metric["Namespace"], metric["MetricName"]))
            if metric["Namespace"] == "AWS/States":
                assert metric["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": machine_id}}]
            if metric["MetricName"] == "RunsOverdue":
                assert metric["Dimensions"] == [{"Name": "StateMachine", "Value": {"Ref": machine_id}}]
            if metric["MetricName"].startswith(("Records", "RunsFailed")):
                assert metric["Dimensions"] == [{"Name": "service", "Value": "CollectFunction"}]
    assert found == {
        ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"),
        ("AWS/States", "ExecutionsAborted"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("GptOssBedrock/dev", "RunsOverdue"),
        ("GptOssBedrock/dev", "RunsFailed"),
        ("GptOssBedrock/dev", "RecordsOk"),
        ("GptOssBedrock/dev", "RecordsError"),
        ("GptOssBedrock/dev", "RecordsMissing"),
    }
    expressions = [
        query["Expression"]
        for alarm in alarms
        for query in alarm["Properties"].get("Metrics", [])
        if "Expression" in query
    ]
    assert expressions == ["IF(ok + errors + missing > 0, 100 * (errors + missing) / (ok + errors + missing), 0)"]


def test_dashboard_shows_the_batch_pipeline(batch: dict[str, Any]) -> None:
    _, dashboard = only(batch, "AWS::CloudWatch::Dashboard")
    body = render(dashboard["Properties"]["DashboardBody"])
    for needle in ("Batch pipeline", "ExecutionsFailed", "ApproximateNumberOfMessagesVisible", "RecordsMissing"):
        assert needle in body, needle
    # Every function's errors and duration, the job-state event handler's too.
    functions = _functions(batch)
    for name in ("StarterFunction", "PrepareFunction", "OnDemandFunction", "CollectFunction", "JobEventsFunction"):
        assert f"${{{functions[name][0]}}}" in body, name


def test_outputs(batch: dict[str, Any], bucket_id: str) -> None:
    outputs = batch["Outputs"]
    machine_id, _ = only(batch, "AWS::StepFunctions::StateMachine")
    assert set(outputs) == {"BucketName", "InboxUri", "StateMachineArn", "AlarmTopicArn"}
    assert outputs["BucketName"]["Value"] == {"Ref": bucket_id}
    assert render(outputs["InboxUri"]["Value"]) == f"s3://${{{bucket_id}}}/inbox/"
    assert outputs["StateMachineArn"]["Value"] == {"Ref": machine_id}


def test_the_guardrail_travels_through_ssm_parameters_not_exports(
    default_app: Synthesized, chat: dict[str, Any], batch: dict[str, Any]
) -> None:
    names = guardrail_parameter_names(CONFIG.stage)
    published = {
        parameter["Properties"]["Name"]: parameter["Properties"]["Value"]
        for parameter in resources(chat, "AWS::SSM::Parameter").values()
    }
    guardrail_id, _ = only(chat, "AWS::Bedrock::Guardrail")
    version_id, _ = only(chat, "AWS::Bedrock::GuardrailVersion")
    (role_id,) = [logical_id for logical_id in resources(chat, "AWS::IAM::Role") if "ChatFunctionRole" in logical_id]
    assert published == {
        names.guardrail_id: {"Fn::GetAtt": [guardrail_id, "GuardrailId"]},
        names.guardrail_version: {"Fn::GetAtt": [version_id, "Version"]},
        # The Batch API's contract: the batch stack grants this role its access to the pipeline.
        chat_role_parameter_name(CONFIG.stage): {"Fn::GetAtt": [role_id, "Arn"]},
    }
    read = {
        parameter["Default"]: parameter["Type"]
        for parameter in batch["Parameters"].values()
        if parameter["Default"].startswith("/gpt-oss-bedrock/")
    }
    assert read == dict.fromkeys(
        (names.guardrail_id, names.guardrail_version, chat_role_parameter_name(CONFIG.stage)),
        "AWS::SSM::Parameter::Value<String>",
    )
    # No export/import pair: a new guardrail version must be able to deploy.
    assert "Fn::ImportValue" not in json.dumps(batch)
    assert not [output for output in chat["Outputs"].values() if "Export" in output]
    stacks = {stack.node.id: stack for stack in default_app.app.node.children if isinstance(stack, Stack)}
    assert stacks[DEFAULT_STACK] in stacks[DEFAULT_BATCH_STACK].dependencies


def test_the_variant_publishes_the_existing_guardrail(variant: dict[str, Any], variant_app: Synthesized) -> None:
    names = guardrail_parameter_names("prod")
    published = {
        parameter["Properties"]["Name"]: parameter["Properties"]["Value"]
        for parameter in resources(variant, "AWS::SSM::Parameter").values()
    }
    assert {name: value for name, value in published.items() if name != chat_role_parameter_name("prod")} == {
        names.guardrail_id: "abc123def456",
        names.guardrail_version: "3",
    }
    assert VARIANT_BATCH_STACK in variant_app.templates


def test_the_job_statuses_the_loop_routes_are_every_status_bedrock_documents() -> None:
    model = botocore.session.get_session().get_service_model("bedrock")
    shape = model.shape_for("ModelInvocationJobStatus")
    assert isinstance(shape, StringShape)
    documented = set(shape.enum)
    assert set(TERMINAL_JOB_STATUSES) | set(RUNNING_JOB_STATUSES) == documented
    assert not set(TERMINAL_JOB_STATUSES) & set(RUNNING_JOB_STATUSES)


def test_the_prefixes_granted_are_the_layout_the_functions_write() -> None:
    run = "drop-0123456789abcdef01234567"
    assert INBOX_PREFIX == pipeline.INBOX_PREFIX
    keys = {
        WORK_PREFIX: [
            pipeline.all_records_key(run),
            pipeline.all_ids_key(run),
            pipeline.shard_records_key(run, 0),
            pipeline.shard_ids_key(run, 0),
            pipeline.on_demand_records_key(run),
            pipeline.on_demand_ids_key(run),
        ],
        OUTPUT_PREFIX: [pipeline.shard_output_prefix(run, 0), pipeline.on_demand_output_key(run)],
        RESULTS_PREFIX: [pipeline.results_key(run), pipeline.summary_key(run)],
        REJECTED_PREFIX: [pipeline.rejected_key(run)],
    }
    for prefix, written in keys.items():
        assert all(key.startswith(prefix) for key in written), prefix


def test_the_batch_api_grants_the_chat_role_exactly_its_access(batch: dict[str, Any], bucket_id: str) -> None:
    """The batch stack attaches one policy to the chat function's role (read from the parameter the chat stack
    publishes) and publishes where the pipeline is for it; nothing crosses the stacks as an export."""
    policies = {
        logical_id: policy["Properties"]
        for logical_id, policy in resources(batch, "AWS::IAM::Policy").items()
        if "BatchApiAccess" in logical_id
    }
    ((_, policy),) = policies.items()
    (role,) = policy["Roles"]
    assert "chatfunctionrolearn" in json.dumps(role).lower()
    machine_id, _ = only(batch, "AWS::StepFunctions::StateMachine")
    bucket_encryption = resources(batch, "AWS::S3::Bucket")[bucket_id]["Properties"]["BucketEncryption"]
    key_id = bucket_encryption["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"][
        "KMSMasterKeyID"
    ]["Fn::GetAtt"][0]
    granted = {
        statement["Sid"]: (
            sorted(as_list(statement["Action"])),
            sorted(render(r) for r in as_list(statement["Resource"])),
        )
        for statement in policy["PolicyDocument"]["Statement"]
    }
    bucket = f"${{{bucket_id}.Arn}}"
    assert granted == {
        "FilesAndBatches": (["s3:GetObject", "s3:PutObject"], [f"{bucket}/openai/*"]),
        "ListBatches": (["s3:ListBucket"], [bucket]),
        "RunProgressAndResults": (
            ["s3:GetObject"],
            [f"{bucket}/results/batch-*", f"{bucket}/work/batch-*/records.jsonl"],
        ),
        "BucketKey": (["kms:Decrypt", "kms:GenerateDataKey"], [f"${{{key_id}.Arn}}"]),
        "StartRuns": (["states:StartExecution"], [f"${{{machine_id}}}"]),
        "FollowAndCancelRuns": (
            ["states:DescribeExecution", "states:StopExecution"],
            [
                f"arn:${{AWS::Partition}}:states:${{AWS::Region}}:${{AWS::AccountId}}:execution:${{{machine_id}.Name}}:batch-*"
            ],
        ),
        "FindRunJobs": (["bedrock:ListModelInvocationJobs"], ["*"]),
        "StopRunJobs": (
            ["bedrock:StopModelInvocationJob"],
            ["arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:model-invocation-job/*"],
        ),
    }
    (listing,) = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "ListBatches"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["openai/*"]}}
    published = {
        parameter["Properties"]["Name"]: parameter["Properties"]["Value"]
        for parameter in resources(batch, "AWS::SSM::Parameter").values()
    }
    value = render(published[batch_api_parameter_name(CONFIG.stage)])
    assert value == f'{{"bucket":"${{{bucket_id}}}","stateMachineArn":"${{{machine_id}}}"}}'
