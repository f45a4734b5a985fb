"""ChatApi: the OpenAI-compatible REST API (IAM-signed) in front of the chat function."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Annotations, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.config import (
    BEDROCK_SERVICE_TIERS,
    BUFFERED_INTEGRATION_TIMEOUT_SECONDS,
    DeploymentConfig,
    batch_api_parameter_name,
    chat_role_parameter_name,
)
from infra.constructs.checkov import skip_checkov
from infra.constructs.encryption import stack_key
from infra.constructs.guardrail import Guardrail
from infra.constructs.idempotency_table import IdempotencyTable
from infra.constructs.nag import aws_managed_policy
from infra.constructs.python_function import log_retention, metrics_namespace, python_function
from infra.constructs.web_adapter import WebAdapter, web_adapter_layer_arn

# The chat function is an ASGI app run by uvicorn under the AWS Lambda Web Adapter: its handler is the script that
# starts the server (relative to the asset root functions/), CHAT_APP is what that script serves, and the app
# answers GET CHAT_READINESS_PATH with 200 once it can take requests (the names are the contract with functions/).
CHAT_HANDLER = "chat/run.sh"
CHAT_APP = "chat.app:app"
CHAT_PORT = 8080
CHAT_READINESS_PATH = "/healthz"
# GET /v1/models and /v1/models/{model} answer from the configuration: API Gateway's buffered limit is plenty.
MODEL_ROUTES_TIMEOUT_SECONDS = BUFFERED_INTEGRATION_TIMEOUT_SECONDS
# The switch of functions/shared/model_stand_in.py (infra never imports functions/: the names are the contract).
MODEL_STAND_IN_VARIABLE = "MODEL_STAND_IN"
MODEL_STAND_IN_VALUE = "canned"
MULTIPART_FORM_DATA = "multipart/form-data"
# POST /v1/files: Lambda takes at most 6 MB per request, and API Gateway base64-encodes a multipart body (4/3 of
# its size): a 4 MiB file, with the form's framing and the headers, stays under it.
MAX_UPLOAD_BYTES = 4 * 1024 * 1024
# The construct id of the function is also its Powertools service name (the `service` metric dimension).
CHAT_FUNCTION_ID = "ChatFunction"
THROTTLED_METRIC_NAME = "Http429Responses"

# One JSON object per request, metadata only: no body, no query string, no headers (they carry prompts,
# and the SigV4 Authorization header). Every value is quoted, so a missing one ("-") stays valid JSON.
ACCESS_LOG_FIELDS: dict[str, str] = {
    "requestId": apigateway.AccessLogField.context_request_id(),
    "extendedRequestId": apigateway.AccessLogField.context_extended_request_id(),
    "requestTime": apigateway.AccessLogField.context_request_time_epoch(),
    "apiId": apigateway.AccessLogField.context_api_id(),
    "stage": apigateway.AccessLogField.context_stage(),
    "caller": apigateway.AccessLogField.context_identity_caller(),
    "userArn": apigateway.AccessLogField.context_identity_user_arn(),
    "accountId": apigateway.AccessLogField.context_identity_account_id(),
    "apiKeyId": apigateway.AccessLogField.context_identity_api_key_id(),
    "sourceIp": apigateway.AccessLogField.context_identity_source_ip(),
    "vpceId": "$context.identity.vpceId",
    "httpMethod": apigateway.AccessLogField.context_http_method(),
    "resourcePath": apigateway.AccessLogField.context_resource_path(),
    "path": apigateway.AccessLogField.context_path(),
    "protocol": apigateway.AccessLogField.context_protocol(),
    "status": apigateway.AccessLogField.context_status(),
    "errorType": apigateway.AccessLogField.context_error_response_type(),
    "responseLatency": apigateway.AccessLogField.context_response_latency(),
    "integrationLatency": apigateway.AccessLogField.context_integration_latency(),
    "integrationStatus": apigateway.AccessLogField.context_integration_status(),
    "responseLength": apigateway.AccessLogField.context_response_length(),
    "xrayTraceId": apigateway.AccessLogField.context_xray_trace_id(),
}


@dataclass(frozen=True)
class GatewayError:
    """One of API Gateway's own error responses, rendered in the OpenAI error envelope."""

    response_type: apigateway.ResponseType
    error_type: str
    code: str | None
    # None: API Gateway's own message. Fixed text where API Gateway's would mislead or disclose.
    message: str | None = None
    headers: Mapping[str, str] | None = None


# The status codes stay API Gateway's. Access-denied messages name the caller's ARN and our account,
# so they are replaced; signature messages help callers fix their signing, so they are kept. Types and
# codes match the function's own errors (functions/chat/errors.py) where both can occur.
GATEWAY_ERRORS: dict[str, GatewayError] = {
    "Default4xx": GatewayError(apigateway.ResponseType.DEFAULT_4_XX, "invalid_request_error", None),
    "Default5xx": GatewayError(apigateway.ResponseType.DEFAULT_5_XX, "server_error", None),
    "AccessDenied": GatewayError(
        apigateway.ResponseType.ACCESS_DENIED,
        "permission_error",
        "access_denied",
        "Access denied: the caller may not invoke this API.",
    ),
    "MissingAuthenticationToken": GatewayError(
        apigateway.ResponseType.MISSING_AUTHENTICATION_TOKEN,
        "authentication_error",
        "missing_authentication_token",
        "Missing authentication: requests must be signed with AWS SigV4 (service execute-api), "
        "or the route does not exist.",
    ),
    "InvalidSignature": GatewayError(
        apigateway.ResponseType.INVALID_SIGNATURE, "authentication_error", "invalid_signature"
    ),
    "ExpiredToken": GatewayError(apigateway.ResponseType.EXPIRED_TOKEN, "authentication_error", "expired_token"),
    "Unauthorized": GatewayError(apigateway.ResponseType.UNAUTHORIZED, "authentication_error", "unauthorized"),
    "InvalidApiKey": GatewayError(apigateway.ResponseType.INVALID_API_KEY, "authentication_error", "invalid_api_key"),
    "WafFiltered": GatewayError(apigateway.ResponseType.WAF_FILTERED, "permission_error", "request_blocked"),
    "Throttled": GatewayError(
        apigateway.ResponseType.THROTTLED,
        "rate_limit_error",
        "rate_limit_exceeded",
        "Rate limit exceeded: too many requests for this API; retry after a short wait.",
        # The stage throttle refills every second.
        headers={"Retry-After": "'1'"},
    ),
    "QuotaExceeded": GatewayError(apigateway.ResponseType.QUOTA_EXCEEDED, "rate_limit_error", "insufficient_quota"),
    "RequestTooLarge": GatewayError(
        apigateway.ResponseType.REQUEST_TOO_LARGE, "invalid_request_error", "request_too_large"
    ),
    "BadRequestBody": GatewayError(
        apigateway.ResponseType.BAD_REQUEST_BODY,
        "invalid_request_error",
        "invalid_request_body",
        # API Gateway's validation detail holds unescaped quotes, so it cannot go into a JSON string.
        'Invalid request body: expected a JSON object with a string "model" and an array "messages".',
    ),
    "BadRequestParameters": GatewayError(
        apigateway.ResponseType.BAD_REQUEST_PARAMETERS, "invalid_request_error", "invalid_request_parameters"
    ),
    "UnsupportedMediaType": GatewayError(
        apigateway.ResponseType.UNSUPPORTED_MEDIA_TYPE, "invalid_request_error", "unsupported_media_type"
    ),
    "ResourceNotFound": GatewayError(
        apigateway.ResponseType.RESOURCE_NOT_FOUND, "invalid_request_error", "unknown_url"
    ),
    "IntegrationTimeout": GatewayError(
        apigateway.ResponseType.INTEGRATION_TIMEOUT, "timeout", "timeout", "The model did not answer in time."
    ),
    "IntegrationFailure": GatewayError(
        apigateway.ResponseType.INTEGRATION_FAILURE, "server_error", "integration_failure"
    ),
    "ApiConfigurationError": GatewayError(
        apigateway.ResponseType.API_CONFIGURATION_ERROR, "server_error", "api_configuration_error"
    ),
}


def error_envelope_template(message: str | None, error_type: str, code: str | None) -> str:
    """A gateway-response body template for the OpenAI error envelope.

    Gateway responses do plain variable substitution (no VTL), so fixed text is JSON-encoded here and
    API Gateway's message comes from `$context.error.messageString`, which is already a quoted string.
    """
    text = "$context.error.messageString" if message is None else json.dumps(message)
    return (
        f'{{"error": {{"message": {text}, "type": {json.dumps(error_type)}, "param": null, '
        f'"code": {json.dumps(code)}, "request_id": "$context.requestId"}}}}'
    )


class ChatApi(Construct):
    """The chat function behind `POST /v1/chat/completions`, `GET /v1/models` and `GET /v1/models/{model}`.

    Every method uses AWS_IAM (SigV4) authorization; optionally API keys with a usage plan identify
    callers for per-caller throttling. The function may call only the configured gpt-oss models, and
    only with the guardrail's pinned version.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig, guardrail: Guardrail) -> None:
        super().__init__(scope, construct_id)
        chat = config.chat
        self.integration_timeout = Duration.seconds(chat.integration_timeout_seconds)
        self.service_name = CHAT_FUNCTION_ID
        self.idempotency = IdempotencyTable(self, "Idempotency")
        self.function = self._chat_function(config, guardrail)
        self.access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=log_retention(config),
            encryption_key=stack_key(self),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api = self._rest_api(config)
        self._execution_logs(config)
        self._routes(config)
        for response_id, error in GATEWAY_ERRORS.items():
            self.api.add_gateway_response(
                response_id,
                type=error.response_type,
                templates={"application/json": error_envelope_template(error.message, error.error_type, error.code)},
                # The request id in the header the function's own errors use too: one place for callers to look.
                response_headers={"x-request-id": "context.requestId", **(error.headers or {})},
            )
        self.api_key: apigateway.IApiKey | None = self._usage_plan(config) if chat.api_keys else None
        self._web_acl(config)
        # What users give the OpenAI SDK as base_url; it replaces RestApi's own output (the stage root).
        self.url: str = self.api.url_for_path("/v1")
        self.api.node.try_remove_child("Endpoint")
        self.throttled_requests = self._throttled_requests_metric(config)

    def _chat_function(self, config: DeploymentConfig, guardrail: Guardrail) -> lambda_.Function:
        chat = config.chat
        function = python_function(
            self,
            CHAT_FUNCTION_ID,
            handler=CHAT_HANDLER,
            config=config,
            web_adapter=WebAdapter(
                layer_arn=web_adapter_layer_arn(
                    self, version=chat.web_adapter_layer_version, override=chat.web_adapter_layer_arn
                ),
                port=CHAT_PORT,
                readiness_check_path=CHAT_READINESS_PATH,
            ),
            # Exactly the variables of functions/chat/settings.py (ChatSettings).
            environment={
                "MODEL_IDS": ",".join(config.model_ids),
                "MODEL_ALIASES": json.dumps(dict(config.model_aliases), sort_keys=True),
                "GUARDRAIL_ID": guardrail.guardrail_id,
                "GUARDRAIL_VERSION": guardrail.guardrail_version,
                "DEFAULT_MAX_TOKENS": str(chat.default_max_tokens),
                "MAX_TOKENS_CEILING": str(chat.max_tokens_ceiling),
                "MAX_REQUEST_BYTES": str(chat.max_request_bytes),
                "INTEGRATION_TIMEOUT_MS": str(chat.integration_timeout_seconds * 1000),
                "DEADLINE_MARGIN_MS": str(chat.deadline_margin_ms),
                "BEDROCK_MAX_ATTEMPTS": str(chat.bedrock_max_attempts),
                "BEDROCK_BACKOFF_BASE_MS": str(chat.bedrock_backoff_base_ms),
                "BEDROCK_BACKOFF_MAX_MS": str(chat.bedrock_backoff_max_ms),
                "RETURN_REASONING": "true" if chat.return_reasoning else "false",
                "IDEMPOTENCY_TABLE_NAME": self.idempotency.table.table_name,
                "IDEMPOTENCY_TTL_SECONDS": str(chat.idempotency_ttl_seconds),
                "GUARDRAIL_STREAM_MODE": chat.guardrail_stream_mode,
                "STREAM_KEEPALIVE_SECONDS": str(chat.stream_keepalive_seconds),
                "SERVICE_TIERS": ",".join(chat.service_tiers),
                "BATCH_API_PARAMETER": batch_api_parameter_name(config.stage),
                "MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES),
                # The app runs in the adapter's child process, which never sees the invocation's trace id
                # (_X_AMZN_TRACE_ID): the X-Ray SDK would log a missing segment on every Bedrock call. The
                # function's trace is Lambda's own segment (active tracing stays on).
                "POWERTOOLS_TRACE_DISABLED": "true",
                # Load-test stages only (config refuses it for production): read by shared/model_stand_in.py.
                **({MODEL_STAND_IN_VARIABLE: MODEL_STAND_IN_VALUE} if chat.model_stand_in else {}),
            },
            # Above the integration timeout (ChatConfig.function_timeout_seconds): the function's own deadline,
            # below the integration timeout, ends a request first, and an orphaned generation does not run on.
            timeout=Duration.seconds(chat.function_timeout_seconds),
            memory_size=chat.memory_mb,
            reserved_concurrency=chat.reserved_concurrency,
        )
        self.idempotency.grant_records(function)
        stack = Stack.of(self)
        # Converse is authorised as bedrock:InvokeModel, ConverseStream as bedrock:InvokeModelWithResponseStream
        # (Bedrock API reference, ConverseStream). Only our models, and only with our guardrail's pinned version:
        # a call without it (or with another guardrail) is denied by IAM.
        invoke_actions = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
        models = [
            stack.format_arn(
                service="bedrock",
                account="",
                resource="foundation-model",
                resource_name=model_id,
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
            for model_id in config.model_ids
        ]
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeGptOssOnlyWithGuardrail",
                actions=invoke_actions,
                resources=models,
                conditions={"StringEquals": {"bedrock:GuardrailIdentifier": guardrail.versioned_arn}},
            )
        )
        # Only the configured service tiers: a call asking for any other (reserved always) is denied, as in the
        # Bedrock user guide, "Control access to service tiers" (security_iam_id-based-policy-examples-agent).
        # A call without a tier runs on the default tier, which the config always allows (so it is never denied).
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="DenyServiceTiersNotAllowed",
                effect=iam.Effect.DENY,
                actions=invoke_actions,
                resources=models,
                conditions={
                    "StringEquals": {
                        "bedrock:ServiceTier": [
                            tier for tier in BEDROCK_SERVICE_TIERS if tier not in chat.service_tiers
                        ]
                    }
                },
            )
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ApplyOurGuardrail", actions=["bedrock:ApplyGuardrail"], resources=[guardrail.guardrail_arn]
            )
        )
        self._batch_api_access(config, function)
        if chat.model_stand_in:
            Annotations.of(function).add_warning_v2(
                "gpt-oss:model-stand-in",
                f"stage {config.stage}: the chat function answers every request from a canned stand-in, "
                "never from a model (chatModelStandIn=true, for load tests only)",
            )
        return function

    def _batch_api_access(self, config: DeploymentConfig, function: lambda_.Function) -> None:
        """The Batch API's half of the contract with the batch stack: read where the pipeline is, and publish the
        role the batch stack grants the pipeline's bucket, state machine and jobs to (it owns those grants)."""
        stack = Stack.of(self)
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadWhereTheBatchPipelineIs",
                actions=["ssm:GetParameter"],
                resources=[
                    stack.format_arn(
                        service="ssm",
                        resource="parameter",
                        resource_name=batch_api_parameter_name(config.stage).lstrip("/"),
                        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
                    )
                ],
            )
        )
        assert function.role is not None
        ssm.StringParameter(
            self,
            "FunctionRoleParameter",
            parameter_name=chat_role_parameter_name(config.stage),
            string_value=function.role.role_arn,
            description=f"The chat function's role of stage {config.stage}: the batch stack grants it the Batch API",
        )

    def _rest_api(self, config: DeploymentConfig) -> apigateway.RestApi:
        chat = config.chat
        private = chat.endpoint_type == "PRIVATE"
        api = apigateway.RestApi(
            self,
            "Api",
            # A display name, not unique; it is the ApiName dimension of the API Gateway metrics.
            rest_api_name=f"{Stack.of(self).stack_name}-ChatApi",
            description="OpenAI-compatible chat completions for gpt-oss on Amazon Bedrock (SigV4)",
            endpoint_configuration=apigateway.EndpointConfiguration(
                types=[apigateway.EndpointType.PRIVATE if private else apigateway.EndpointType.REGIONAL],
            ),
            policy=_private_api_policy(chat.vpc_endpoint_ids) if private else None,
            # POST /v1/files: the multipart body reaches the function byte for byte (base64 in the proxy event,
            # which the adapter decodes), whatever the file holds.
            binary_media_types=[MULTIPART_FORM_DATA],
            default_method_options=apigateway.MethodOptions(
                authorization_type=apigateway.AuthorizationType.IAM,
                api_key_required=chat.api_keys,
            ),
            cloud_watch_role=chat.api_gateway_cloudwatch_role,
            # Kept on delete: the account setting keeps pointing at it, for every other API of the account.
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN if chat.api_gateway_cloudwatch_role else None,
            deploy_options=apigateway.StageOptions(
                stage_name=config.stage,
                access_log_destination=apigateway.LogGroupLogDestination(self.access_logs),
                access_log_format=apigateway.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
                logging_level=apigateway.MethodLoggingLevel.ERROR,
                # Data trace would log request and response bodies: prompts and answers.
                data_trace_enabled=False,
                tracing_enabled=True,
                throttling_rate_limit=chat.throttle_rate_limit,
                throttling_burst_limit=chat.throttle_burst_limit,
            ),
        )
        Validations.of(api).acknowledge(
            Acknowledgment(
                id="AwsSolutions-COG4",
                reason="Callers are AWS workloads, not end users: every method uses AWS_IAM (SigV4) "
                "authorization, so there is no Cognito user pool to authorize against.",
            )
        )
        skip_checkov(
            api.deployment_stage,
            {
                "CKV_AWS_120": "No stage cache: every chat completion is a new answer to a new prompt; a cache "
                "would return one caller's answer to another and keep prompts and answers outside our keys.",
            },
        )
        if chat.api_gateway_cloudwatch_role:
            # Acknowledged on the API: the role RestApi creates for cloudWatchRole is the only one under it.
            push_to_logs = iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
            )
            Validations.of(api).acknowledge(
                Acknowledgment(
                    id=aws_managed_policy(api, push_to_logs),
                    reason="The account-wide role API Gateway uses to write every API's execution and access "
                    "logs in this account and Region (any log group, created by API Gateway); this AWS "
                    "managed policy is the one AWS documents for it.",
                )
            )
        return api

    def _execution_logs(self, config: DeploymentConfig) -> None:
        # API Gateway creates this group itself (without retention) unless it exists: create it first.
        execution_logs = logs.LogGroup(
            self,
            "ExecutionLogs",
            log_group_name=f"API-Gateway-Execution-Logs_{self.api.rest_api_id}/{config.stage}",
            retention=log_retention(config),
            encryption_key=stack_key(self),
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api.deployment_stage.node.add_dependency(execution_logs)

    def _routes(self, config: DeploymentConfig) -> None:
        # Every method streams. The adapter runs in response_stream mode for every route, so the function writes
        # the streaming format (a JSON prelude, a delimiter, then the body), which API Gateway parses only on a
        # STREAM integration (invoked through InvokeWithResponseStream; a BUFFERED Lambda proxy integration
        # expects the buffered JSON answer instead: API Gateway developer guide, "Set up a Lambda proxy
        # integration with payload response streaming", response-transfer-mode-lambda.html). The docs do not
        # say what a BUFFERED integration makes of a streamed answer, so the model routes stream too.
        completions = apigateway.LambdaIntegration(
            self.function,
            proxy=True,
            timeout=self.integration_timeout,
            response_transfer_mode=apigateway.ResponseTransferMode.STREAM,
            allow_test_invoke=False,
        )
        model_routes = apigateway.LambdaIntegration(
            self.function,
            proxy=True,
            timeout=Duration.seconds(min(MODEL_ROUTES_TIMEOUT_SECONDS, config.chat.integration_timeout_seconds)),
            response_transfer_mode=apigateway.ResponseTransferMode.STREAM,
            allow_test_invoke=False,
        )
        # Cheap structural checks only; the function's own 400s name the offending field.
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        request_model = self.api.add_model(
            "ChatCompletionRequest",
            content_type="application/json",
            description="The minimum of an OpenAI chat completion request",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                title="ChatCompletionRequest",
                type=apigateway.JsonSchemaType.OBJECT,
                required=["model", "messages"],
                properties={
                    "model": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING),
                    "messages": apigateway.JsonSchema(type=apigateway.JsonSchemaType.ARRAY),
                },
            ),
        )
        v1 = self.api.root.add_resource("v1")
        v1.add_resource("chat").add_resource("completions").add_method(
            "POST",
            completions,
            request_validator=validator,
            request_models={"application/json": request_model},
        )
        responses_model = self.api.add_model(
            "ResponsesRequest",
            content_type="application/json",
            description="The minimum of an OpenAI Responses request",
            schema=apigateway.JsonSchema(
                schema=apigateway.JsonSchemaVersion.DRAFT4,
                title="ResponsesRequest",
                type=apigateway.JsonSchemaType.OBJECT,
                required=["model", "input"],
                properties={"model": apigateway.JsonSchema(type=apigateway.JsonSchemaType.STRING)},
            ),
        )
        # Same function, same integration (and timeout) as chat completions: a response is an answer too.
        v1.add_resource("responses").add_method(
            "POST",
            completions,
            request_validator=validator,
            request_models={"application/json": responses_model},
        )
        # The Batch API: uploads and batch control answer within the buffered limit; a file's content streams as
        # long as an answer may (an output file can be far above API Gateway's 10 MB buffered response).
        files = v1.add_resource("files")
        files.add_method("POST", model_routes, request_validator=validator)
        file = files.add_resource("{file_id}")
        file.add_method("GET", model_routes, request_validator=validator, request_parameters=_path("file_id"))
        file.add_resource("content").add_method(
            "GET", completions, request_validator=validator, request_parameters=_path("file_id")
        )
        batches = v1.add_resource("batches")
        batches.add_method("POST", model_routes, request_validator=validator)
        batches.add_method("GET", model_routes, request_validator=validator)
        batch = batches.add_resource("{batch_id}")
        batch.add_method("GET", model_routes, request_validator=validator, request_parameters=_path("batch_id"))
        batch.add_resource("cancel").add_method(
            "POST", model_routes, request_validator=validator, request_parameters=_path("batch_id")
        )
        models = v1.add_resource("models")
        models.add_method("GET", model_routes, request_validator=validator)
        models.add_resource("{model}").add_method(
            "GET",
            model_routes,
            request_validator=validator,
            request_parameters={"method.request.path.model": True},
        )

    def _usage_plan(self, config: DeploymentConfig) -> apigateway.IApiKey:
        api_key = self.api.add_api_key("ApiKey", description="Identifies a caller of the chat API for its usage plan")
        plan = self.api.add_usage_plan(
            "UsagePlan",
            description="Per-key throttling of the chat API",
            throttle=apigateway.ThrottleSettings(
                rate_limit=config.chat.throttle_rate_limit, burst_limit=config.chat.throttle_burst_limit
            ),
            api_stages=[apigateway.UsagePlanPerApiStage(api=self.api, stage=self.api.deployment_stage)],
        )
        plan.add_api_key(api_key)
        return api_key

    def _web_acl(self, config: DeploymentConfig) -> None:
        if config.chat.web_acl_arn is not None:
            wafv2.CfnWebACLAssociation(
                self,
                "WebAcl",
                resource_arn=self.api.deployment_stage.stage_arn,
                web_acl_arn=config.chat.web_acl_arn,
            )
            return
        Validations.of(self.api.deployment_stage).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG3",
                reason="No web ACL is configured (context webAclArn associates one). Every method requires a "
                "SigV4 signature, so unsigned traffic is rejected before the function; callers are throttled "
                "by the stage (and usage plan); AWS managed WAF body rules (8 KB body limit, XSS/SQLi "
                "patterns) would block ordinary prompts.",
            )
        )

    def _throttled_requests_metric(self, config: DeploymentConfig) -> cloudwatch.Metric:
        """429 responses per API, counted from the access log.

        API Gateway publishes no 429 metric (4XXError mixes them with 400/403/404), and the function
        never sees the requests the stage throttle rejects; the access log has every response.
        """
        logs.MetricFilter(
            self,
            "ThrottledRequests",
            log_group=self.access_logs,
            filter_pattern=logs.FilterPattern.string_value("$.status", "=", "429"),
            metric_namespace=metrics_namespace(config),
            metric_name=THROTTLED_METRIC_NAME,
            metric_value="1",
            dimensions={"ApiId": "$.apiId"},
            unit=cloudwatch.Unit.COUNT,
        )
        return cloudwatch.Metric(
            namespace=metrics_namespace(config),
            metric_name=THROTTLED_METRIC_NAME,
            dimensions_map={"ApiId": self.api.rest_api_id},
            statistic=cloudwatch.Stats.SUM,
            period=Duration.minutes(5),
            label="429 responses",
        )


def _path(*names: str) -> dict[str, bool]:
    """Required path parameters of a method."""
    return {f"method.request.path.{name}": True for name in names}


def _private_api_policy(vpc_endpoint_ids: tuple[str, ...]) -> iam.PolicyDocument:
    """Resource policy of a PRIVATE API: only through our VPC endpoints, only principals of this account."""
    through_our_endpoints = {"aws:SourceVpce": list(vpc_endpoint_ids)}
    return iam.PolicyDocument(
        statements=[
            iam.PolicyStatement(
                sid="InvokeThroughOurVpcEndpoints",
                principals=[iam.AccountRootPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"StringEquals": through_our_endpoints},
            ),
            iam.PolicyStatement(
                sid="DenyOtherNetworkPaths",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["execute-api:Invoke"],
                resources=["execute-api:/*"],
                conditions={"StringNotEquals": through_our_endpoints},
            ),
        ]
    )
