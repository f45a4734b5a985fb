"""The one Lambda factory: every function of the app is made here, the same way."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Acknowledgment, Annotations, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra import bytecode
from infra.config import DeploymentConfig
from infra.constructs.checkov import skip_checkov
from infra.constructs.encryption import stack_key
from infra.constructs.fault_injection import extension_environment, extension_layer, grant_extension_reads
from infra.constructs.web_adapter import WebAdapter
from infra.layer import BUILD_DIR, dependency_layer_dir

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
RUNTIME = lambda_.Runtime.PYTHON_3_14
METRICS_NAMESPACE = "GptOssBedrock"
_LAYER_ID = "DependencyLayer"
# Checks that do not fit any function of this app (pinned in tests/infra/test_security_checkov.py).
FUNCTION_CHECKOV_SKIPS = {
    "CKV_AWS_115": "No reserved concurrency (for chat: unless chatReservedConcurrency is set): it is taken "
    "from the account's unreserved pool and fails deploys on accounts with a low concurrency quota. "
    "Concurrency is bounded upstream instead: the API stage's throttling for chat, the SQS event source's "
    "maximum concurrency for the starter and the Distributed Map's MaxConcurrency for the batch tasks.",
    "CKV_AWS_116": "No dead-letter queue: a function DLQ only catches asynchronous invocations, and none is "
    "invoked asynchronously. API Gateway and Step Functions invoke synchronously (the error returns to the "
    "caller or the state machine's retry/catch) and the SQS event source leaves failed messages to the "
    "queue's own redrive to its dead-letter queue.",
    "CKV_AWS_117": "No VPC: the functions reach no VPC resource, only Bedrock, S3, Step Functions and "
    "CloudWatch over their AWS endpoints with IAM; a VPC would add NAT or endpoint cost and isolate nothing.",
    "CKV_AWS_173": "Environment variables hold no secret (model ids, bucket name, guardrail id, limits); Lambda "
    "encrypts them at rest with its AWS managed key, a customer key would add nothing.",
}


def metrics_namespace(config: DeploymentConfig) -> str:
    """The stage's CloudWatch namespace: two stages in one account and Region never share a metric or alarm."""
    return f"{METRICS_NAMESPACE}/{config.stage}"


def dependency_layer(scope: Construct) -> lambda_.ILayerVersion:
    """Return the stack's one layer of third-party runtime packages (Powertools, pydantic, boto3)."""
    stack = Stack.of(scope)
    existing = stack.node.try_find_child(_LAYER_ID)
    if isinstance(existing, lambda_.LayerVersion):
        return existing
    if bytecode.lambda_interpreter() is None:
        # Once per stack (each has its own layer and functions): the synth prints it in its validation report.
        Annotations.of(stack).add_warning_v2(bytecode.WARNING_ID, bytecode.no_bytecode_warning())
    return lambda_.LayerVersion(
        stack,
        _LAYER_ID,
        code=lambda_.Code.from_asset(str(dependency_layer_dir())),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[lambda_.Architecture.ARM_64],
        description="Runtime dependencies from uv.lock (runtime group)",
    )


def function_code() -> lambda_.AssetCode:
    """Every function's code asset: `functions/` with the runtime's bytecode, or its sources only (as a warning says).

    With an interpreter of the runtime's version (bytecode.lambda_interpreter), a copy under .build/ with
    `__pycache__/*.cpython-3XX.pyc` beside the sources; without one, `functions/` itself minus this machine's caches.
    """
    interpreter = bytecode.lambda_interpreter()
    if interpreter is None:
        return lambda_.Code.from_asset(str(FUNCTIONS_DIR), exclude=list(bytecode.SOURCE_ONLY_EXCLUDE))
    return lambda_.Code.from_asset(str(bytecode.compiled_copy(FUNCTIONS_DIR, BUILD_DIR, interpreter)))


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    handler: str,
    config: DeploymentConfig,
    environment: Mapping[str, str],
    timeout: Duration,
    memory_size: int = 512,
    reserved_concurrency: int | None = None,
    web_adapter: WebAdapter | None = None,
) -> lambda_.Function:
    """Create a Python function from `functions/` with the app's runtime, logging, tracing and layer.

    `handler` is a dotted handler name, or with `web_adapter` the path (under `functions/`) of the script that
    starts the web server: the function then also gets the AWS Lambda Web Adapter's layer and variables.

    The function gets its own role with no AWS managed policy: it may write to its own log group (and
    X-Ray), nothing else; callers add their grants to `function.role`. On a stage with `faultInjection`, every
    function without a web adapter also gets the AWS FIS Lambda extension (layer, environment, read access to its
    configurations). A web-adapter function streams its response, which the extension cannot serve (it suppresses
    response streaming even when no fault is active: AWS FIS user guide, "Use the AWS FIS aws:lambda:function
    actions", Limitations), and both would need the runtime's one exec wrapper (AWS_LAMBDA_EXEC_WRAPPER).
    """
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=log_retention(config),
        encryption_key=stack_key(scope),
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
    fis_layer = extension_layer(scope, config) if web_adapter is None else None
    adapter_layers = (
        [lambda_.LayerVersion.from_layer_version_arn(scope, f"{construct_id}WebAdapterLayer", web_adapter.layer_arn)]
        if web_adapter is not None
        else []
    )
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=lambda_.Architecture.ARM_64,
        code=function_code(),
        handler=handler,
        layers=[dependency_layer(scope), *adapter_layers, *([fis_layer] if fis_layer is not None else [])],
        environment={
            "POWERTOOLS_SERVICE_NAME": construct_id,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace(config),
            "STAGE": config.stage,
            **(web_adapter.environment() if web_adapter is not None else extension_environment(scope, config)),
            **environment,
        },
        tracing=lambda_.Tracing.ACTIVE,
        logging_format=lambda_.LoggingFormat.JSON,
        application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
        system_log_level_v2=lambda_.SystemLogLevel.WARN,
        log_group=log_group,
        timeout=timeout,
        memory_size=memory_size,
        reserved_concurrent_executions=reserved_concurrency,
        role=role,
    )
    if fis_layer is not None:
        grant_extension_reads(function)
    reserved = {"CKV_AWS_115"} if reserved_concurrency is not None else set()
    skip_checkov(function, {check: why for check, why in FUNCTION_CHECKOV_SKIPS.items() if check not in reserved})
    return function


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
