"""The one Lambda factory: every function of the app is made here, the same way."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import DeploymentConfig
from infra.layer import dependency_layer_dir

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_14
METRICS_NAMESPACE = "GptOssBedrock"
_LAYER_ID = "DependencyLayer"


def metrics_namespace(config: DeploymentConfig) -> str:
    """The stage's CloudWatch namespace: two stages in one account and Region never share a metric or alarm."""
    return f"{METRICS_NAMESPACE}/{config.stage}"


def dependency_layer(scope: Construct) -> lambda_.ILayerVersion:
    """Return the stack's one layer of third-party runtime packages (Powertools, pydantic, boto3)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_LAYER_ID)
    if isinstance(existing, lambda_.LayerVersion):
        return existing
    return lambda_.LayerVersion(
        stack,
        _LAYER_ID,
        code=lambda_.Code.from_asset(str(dependency_layer_dir())),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        description="Runtime dependencies from uv.lock (runtime group)",
    )


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str,
    config: DeploymentConfig,
    environment: Mapping[str, str],
    timeout: Duration,
    memory_size: int = 512,
) -> lambda_.Function:
    """Create a Python function from `functions/` with the app's runtime, logging, tracing and layer.

    The function gets its own role with no AWS managed policy: it may write to its own log group (and
    X-Ray), nothing else; callers add their grants to `function.role`.
    """
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=log_retention(config),
        removal_policy=RemovalPolicy.DESTROY,
    )
    role = iam.Role(
        scope,
        f"{construct_id}Role",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=f"Execution role of {construct_id}",
    )
    # Instead of AWSLambdaBasicExecutionRole (logs:* on every log group): only this function's group.
    log_group.grant_write(role)
    Validations.of(role).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="Active tracing adds xray:PutTraceSegments and xray:PutTelemetryRecords, which support no "
            "resource but '*'; tests/infra allows Resource '*' only for a listed set of such actions.",
        )
    )
    return lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        code=lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=["**/__pycache__", "**/*.pyc"]),
        handler=handler,
        layers=[dependency_layer(scope)],
        environment={
            "POWERTOOLS_SERVICE_NAME": construct_id,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace(config),
            "STAGE": config.stage,
            **environment,
        },
        tracing=lambda_.Tracing.ACTIVE,
        logging_format=lambda_.LoggingFormat.JSON,
        application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
        system_log_level_v2=lambda_.SystemLogLevel.WARN,
        log_group=log_group,
        timeout=timeout,
        memory_size=memory_size,
        role=role,
    )


_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
}


def log_retention(config: DeploymentConfig) -> logs.RetentionDays:
    """The retention every log group of the app uses."""
    return _RETENTION[config.log_retention_days]
