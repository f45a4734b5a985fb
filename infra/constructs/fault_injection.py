"""AWS FIS for a stack's Lambda functions (config `faultInjection`): where the extension reads its faults, and the
experiments that write them.

The AWS FIS Lambda extension (a layer, added by the Lambda factory to every function of a stack with fault
injection on, except a web-adapter function) wraps the runtime and polls an S3 prefix for fault configurations;
an experiment writes them there, the extension applies them to the invocations (delay, error), and removes them
when it ends. The extension cannot serve response-streaming functions (it suppresses streaming even with no fault
active), so the streaming chat function has none and no experiment targets it: fault injection covers the
pipeline functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_fis as fis
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.checkov import skip_checkov
from infra.constructs.encryption import stack_key
from infra.constructs.nag import wildcard_resource

# The prefix of the bucket the experiments write fault configurations to and the extension reads.
CONFIG_PREFIX = "FisConfigs/"
# What the extension needs in the function's environment (AWS FIS user guide, "use Lambda actions").
EXEC_WRAPPER = "/opt/aws-fis/bootstrap"
# How long the extension may wait for a fresh configuration before an invocation, so that an error action with
# preventExecution sees the experiment that just started (the FIS actions reference recommends 2000).
POLL_MAX_WAIT_MS = 2000
EXPERIMENT_DURATION = "PT5M"
_LOCATION_ID = "FaultInjectionConfig"
_LAYER_ID = "FisExtensionLayer"


def extension_environment(scope: Construct, config: DeploymentConfig) -> dict[str, str]:
    """The variables the FIS extension reads, for a function of `scope`'s stack (empty when the stage has no FIS)."""
    if not config.fault_injection.enabled:
        return {}
    bucket = config_bucket(scope)
    return {
        "AWS_LAMBDA_EXEC_WRAPPER": EXEC_WRAPPER,
        "AWS_FIS_CONFIGURATION_LOCATION": f"{bucket.bucket_arn}/{CONFIG_PREFIX}",
        "AWS_FIS_POLL_MAX_WAIT_MILLISECONDS": str(POLL_MAX_WAIT_MS),
    }


def extension_layer(scope: Construct, config: DeploymentConfig) -> lambda_.ILayerVersion | None:
    """The stack's reference to the Region's FIS extension layer, or None when the stage has no FIS."""
    arn = config.fault_injection.extension_layer_arn
    if not config.fault_injection.enabled or arn is None:
        return None
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_LAYER_ID)
    if existing is not None:
        return existing  # type: ignore[return-value]
    return lambda_.LayerVersion.from_layer_version_arn(stack, _LAYER_ID, arn)


def grant_extension_reads(function: lambda_.Function) -> None:
    """Let the function's extension list and read the fault configurations (and decrypt them), nothing else."""
    bucket = config_bucket(function)
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="FisExtensionListsItsConfigurations",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{CONFIG_PREFIX}*"]}},
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="FisExtensionReadsItsConfigurations",
            actions=["s3:GetObject"],
            resources=[bucket.arn_for_objects(f"{CONFIG_PREFIX}*")],
        )
    )
    function.add_to_role_policy(
        iam.PolicyStatement(
            sid="FisExtensionDecryptsItsConfigurations",
            actions=["kms:Decrypt"],
            resources=[stack_key(function).key_arn],
        )
    )
    if function.role is not None:
        Validations.of(function.role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(bucket, bucket.arn_for_objects(f"{CONFIG_PREFIX}*")),
                reason="The AWS FIS Lambda extension reads the fault configurations an experiment writes under "
                "this one prefix; their names are chosen by FIS at run time.",
            )
        )


def config_bucket(scope: Construct) -> s3.Bucket:
    """The stack's bucket of fault configurations (created once per stack, on first use)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_LOCATION_ID)
    if isinstance(existing, s3.Bucket):
        return existing
    bucket = s3.Bucket(
        stack,
        _LOCATION_ID,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=stack_key(stack),
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        # FIS deletes each configuration when its experiment ends; these only catch what an aborted run left.
        lifecycle_rules=[
            s3.LifecycleRule(
                expiration=Duration.days(1),
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
        # Kept on destroy: a versioned bucket with experiment leftovers would fail the stack's deletion.
        removal_policy=RemovalPolicy.RETAIN,
    )
    Validations.of(bucket).acknowledge(
        Acknowledgment(
            id="AwsSolutions-S1",
            reason="Holds only the short-lived fault configurations AWS FIS writes for its Lambda extension on a "
            "test stage; every write is an experiment, recorded by FIS and CloudTrail.",
        )
    )
    skip_checkov(
        bucket,
        {
            "CKV_AWS_18": "Holds only the short-lived fault configurations AWS FIS writes for its Lambda extension "
            "on a test stage; every write is an experiment, recorded by FIS and CloudTrail.",
        },
    )
    return bucket


@dataclass(frozen=True)
class Experiment:
    """One experiment template: an action on every target function."""

    action_id: str  # aws:lambda:invocation-add-delay or aws:lambda:invocation-error
    parameters: Mapping[str, str]
    description: str


class FaultInjection(Construct):
    """The FIS role and experiment templates for `functions`, stopped early by `stop_alarm`.

    `templates` maps each experiment's name to its template, for the stack's outputs.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        functions: Sequence[lambda_.Function],
        experiments: Mapping[str, Experiment],
        stop_alarm: cloudwatch.IAlarm,
    ) -> None:
        super().__init__(scope, construct_id)
        bucket = config_bucket(self)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal(
                "fis.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:fis:{Aws.REGION}:{Aws.ACCOUNT_ID}:experiment/*"},
                },
            ),
            description="AWS FIS experiments on this stack's Lambda functions",
        )
        # The permissions the FIS actions reference lists for aws:lambda:invocation-add-delay / -error.
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteAndRemoveFaultConfigurations",
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[bucket.arn_for_objects(f"{CONFIG_PREFIX}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadTheTargetFunctions",
                actions=["lambda:GetFunction"],
                resources=[function.function_arn for function in functions],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="ResolveTargets", actions=["tag:GetResources"], resources=["*"])
        )
        stack_key(self).grant(self.role, "kms:GenerateDataKey")
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(bucket, bucket.arn_for_objects(f"{CONFIG_PREFIX}*")),
                reason="AWS FIS writes and removes one fault configuration per experiment under this one prefix, "
                "named by FIS at run time; the role reaches no other object.",
            )
        )
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="tag:GetResources, which the FIS Lambda actions require to resolve targets, supports no "
                "resource-level permission; it only lists tags.",
            )
        )
        self.templates: dict[str, fis.CfnExperimentTemplate] = {}
        for name, experiment in experiments.items():
            self.templates[name] = fis.CfnExperimentTemplate(
                self,
                name,
                description=experiment.description,
                role_arn=self.role.role_arn,
                stop_conditions=[
                    fis.CfnExperimentTemplate.ExperimentTemplateStopConditionProperty(
                        source="aws:cloudwatch:alarm", value=stop_alarm.alarm_arn
                    )
                ],
                targets={
                    "Functions": fis.CfnExperimentTemplate.ExperimentTemplateTargetProperty(
                        resource_type="aws:lambda:function",
                        resource_arns=[function.function_arn for function in functions],
                        selection_mode="ALL",
                    )
                },
                actions={
                    "Inject": fis.CfnExperimentTemplate.ExperimentTemplateActionProperty(
                        action_id=experiment.action_id,
                        parameters={"duration": EXPERIMENT_DURATION, **experiment.parameters},
                        targets={"Functions": "Functions"},
                    )
                },
                tags={"Name": f"{Stack.of(self).stack_name}-{name}"},
            )
