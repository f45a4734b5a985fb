"""The chat stack as app.py synthesizes it: API edge, IAM scope, function wiring, guardrail, monitoring."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from chat.settings import ChatSettings
from infra.config import GPT_OSS_MODELS, DeploymentConfig, batch_api_parameter_name
from infra.constructs.chat_api import CHAT_HANDLER
from infra.constructs.guardrail import CONTENT_FILTERS
from infra.constructs.web_adapter import (
    EXEC_WRAPPER_VARIABLE,
    INVOKE_MODE_VARIABLE,
    PORT_VARIABLE,
    READINESS_CHECK_PATH_VARIABLE,
)
from tests.infra.cfn import as_list, iam_statements, only, render, resources, role_statements
from tests.infra.synth import Synthesized

CONFIG = DeploymentConfig()
FOUNDATION_MODEL_ARNS = sorted(
    f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}::foundation-model/{model_id}" for model_id in GPT_OSS_MODELS
)
# Set by the Lambda factory for every function, and for a web-adapter function; not part of ChatSettings.
FACTORY_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "STAGE"} | {
    EXEC_WRAPPER_VARIABLE,
    INVOKE_MODE_VARIABLE,
    PORT_VARIABLE,
    READINESS_CHECK_PATH_VARIABLE,
}
# The chat app's streaming settings: set from the config and checked by value here (the set check below holds
# whether ChatSettings declares them or not).
STREAM_SETTINGS = {
    "GUARDRAIL_STREAM_MODE": CONFIG.chat.guardrail_stream_mode,
    "STREAM_KEEPALIVE_SECONDS": str(CONFIG.chat.stream_keepalive_seconds),
}
# The service tiers callers may ask for (tests/infra/test_chat_service_tiers.py): checked by value here, and left
# out of the set check below, which holds whether ChatSettings declares the variable yet or not.
SERVICE_TIER_SETTINGS = {"SERVICE_TIERS": ",".join(CONFIG.chat.service_tiers)}
# The only actions any identity policy of the app may allow on Resource "*": none of them supports a
# resource-level permission (Service Authorization Reference). Adding one means adding its reason here.
STAR_RESOURCE_ACTIONS: dict[str, str] = {
    "xray:PutTraceSegments": "active tracing of every function and of the state machine",
    "xray:PutTelemetryRecords": "active tracing of every function and of the state machine",
    "xray:GetSamplingRules": "state machine tracing (CDK's StateMachine with tracing_enabled)",
    "xray:GetSamplingTargets": "state machine tracing (CDK's StateMachine with tracing_enabled)",
    "logs:CreateLogDelivery": "Step Functions vended logs to the state machine's log group",
    "logs:GetLogDelivery": "Step Functions vended logs to the state machine's log group",
    "logs:UpdateLogDelivery": "Step Functions vended logs to the state machine's log group",
    "logs:DeleteLogDelivery": "Step Functions vended logs to the state machine's log group",
    "logs:ListLogDeliveries": "Step Functions vended logs to the state machine's log group",
    "logs:PutResourcePolicy": "Step Functions vended logs to the state machine's log group",
    "logs:DescribeResourcePolicies": "Step Functions vended logs to the state machine's log group",
    "logs:DescribeLogGroups": "Step Functions vended logs to the state machine's log group",
    "servicequotas:ListServiceQuotas": "prepare reads the Bedrock batch quotas (read-only)",
    "tag:GetResources": "AWS FIS resolves Lambda targets (faultInjection stages only; FIS actions reference)",
    "cloudwatch:PutMetricData": "the poll loop reports overdue runs; only with the cloudwatch:namespace condition",
    "bedrock:ListModelInvocationJobs": "a Batch API cancel finds its run's jobs (no resource-level permission)",
}
# Actions allowed on "*" only under a condition that narrows them.
# Metric namespaces are per stage (GptOssBedrock/<stage>): a namespace-conditioned PutMetricData stays in its own.
STAR_RESOURCE_CONDITIONS = {"cloudwatch:PutMetricData": "cloudwatch:namespace"}


def _chat_function(chat: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    found = {
        logical_id: resource
        for logical_id, resource in resources(chat, "AWS::Lambda::Function").items()
        if resource["Properties"]["Handler"] == CHAT_HANDLER
    }
    assert len(found) == 1, sorted(found)
    ((logical_id, resource),) = found.items()
    return logical_id, resource


def _method_paths(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Methods by (HTTP method, full path), the path rebuilt from the Resource parents."""
    api_resources = resources(template, "AWS::ApiGateway::Resource")

    def path(resource_id: Any) -> str:
        if "Ref" not in resource_id:  # the root resource: {"Fn::GetAtt": [api, "RootResourceId"]}
            return ""
        properties = api_resources[resource_id["Ref"]]["Properties"]
        return f"{path(properties['ParentId'])}/{properties['PathPart']}"

    return {
        (method["Properties"]["HttpMethod"], path(method["Properties"]["ResourceId"])): method["Properties"]
        for method in resources(template, "AWS::ApiGateway::Method").values()
    }


# --- API edge -----------------------------------------------------------------------------------


def test_routes_are_exactly_the_openai_ones(chat: dict[str, Any]) -> None:
    assert set(_method_paths(chat)) == {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/responses"),
        ("GET", "/v1/models"),
        ("GET", "/v1/models/{model}"),
        # The Batch API.
        ("POST", "/v1/files"),
        ("GET", "/v1/files/{file_id}"),
        ("GET", "/v1/files/{file_id}/content"),
        ("POST", "/v1/batches"),
        ("GET", "/v1/batches"),
        ("GET", "/v1/batches/{batch_id}"),
        ("POST", "/v1/batches/{batch_id}/cancel"),
    }


@pytest.mark.row(13)
def test_every_method_requires_iam_authorization(chat: dict[str, Any], chat_template: Template) -> None:
    methods = resources(chat, "AWS::ApiGateway::Method")
    assert methods
    assert {method["Properties"]["AuthorizationType"] for method in methods.values()} == {"AWS_IAM"}
    assert not any(method["Properties"].get("ApiKeyRequired") for method in methods.values())
    chat_template.resource_count_is("AWS::ApiGateway::Authorizer", 0)


def test_methods_proxy_to_the_chat_function_with_the_configured_timeout(chat: dict[str, Any]) -> None:
    """The model routes' shorter timeout and the streaming mode: tests/infra/test_chat_web_adapter.py."""
    function_id, _ = _chat_function(chat)
    methods = _method_paths(chat)
    for method in methods.values():
        integration = method["Integration"]
        assert integration["Type"] == "AWS_PROXY"
        assert f"${{{function_id}.Arn}}" in render(integration["Uri"])
    for answering in ("/v1/chat/completions", "/v1/responses"):
        integration = methods[("POST", answering)]["Integration"]
        assert integration["TimeoutInMillis"] == CONFIG.chat.integration_timeout_seconds * 1000


def test_regional_endpoint_without_resource_policy(chat: dict[str, Any]) -> None:
    _, api = only(chat, "AWS::ApiGateway::RestApi")
    assert api["Properties"]["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert "Policy" not in api["Properties"]


def test_request_validation_is_minimal_and_on_every_method(chat: dict[str, Any]) -> None:
    validator_id, validator = only(chat, "AWS::ApiGateway::RequestValidator")
    assert validator["Properties"]["ValidateRequestBody"] is True
    assert validator["Properties"]["ValidateRequestParameters"] is True
    methods = _method_paths(chat)
    assert all(method["RequestValidatorId"] == {"Ref": validator_id} for method in methods.values())
    models = resources(chat, "AWS::ApiGateway::Model")
    by_title = {model["Properties"]["Schema"]["title"]: (model_id, model) for model_id, model in models.items()}
    assert set(by_title) == {"ChatCompletionRequest", "ResponsesRequest"}
    # Only the shape; the function's own 400s name the offending field for everything else.
    for path, title, required, properties in (
        ("/v1/chat/completions", "ChatCompletionRequest", ["model", "messages"], {"messages": {"type": "array"}}),
        # `input` is a string or a list of items: the function reads which.
        ("/v1/responses", "ResponsesRequest", ["model", "input"], {}),
    ):
        model_id, model = by_title[title]
        assert methods[("POST", path)]["RequestModels"] == {"application/json": {"Ref": model_id}}
        schema = model["Properties"]["Schema"]
        assert schema["type"] == "object"
        assert schema["required"] == required
        assert schema["properties"] == {"model": {"type": "string"}, **properties}
        assert schema.get("additionalProperties", True) is not False
    assert methods[("GET", "/v1/models/{model}")]["RequestParameters"] == {"method.request.path.model": True}
    for method, path, parameter in (
        ("GET", "/v1/files/{file_id}", "file_id"),
        ("GET", "/v1/files/{file_id}/content", "file_id"),
        ("GET", "/v1/batches/{batch_id}", "batch_id"),
        ("POST", "/v1/batches/{batch_id}/cancel", "batch_id"),
    ):
        assert methods[(method, path)]["RequestParameters"] == {f"method.request.path.{parameter}": True}
    # A multipart upload and the batch requests have no body model: the function names what is wrong.
    for method, path in (("POST", "/v1/files"), ("POST", "/v1/batches"), ("GET", "/v1/batches")):
        assert "RequestModels" not in methods[(method, path)]


def test_stage_logs_metadata_only(chat: dict[str, Any]) -> None:
    _, stage = only(chat, "AWS::ApiGateway::Stage")
    properties = stage["Properties"]
    assert properties["StageName"] == CONFIG.stage
    assert properties["TracingEnabled"] is True
    (settings,) = properties["MethodSettings"]
    assert settings["DataTraceEnabled"] is False
    assert settings["LoggingLevel"] == "ERROR"
    assert settings["ThrottlingRateLimit"] == CONFIG.chat.throttle_rate_limit
    assert settings["ThrottlingBurstLimit"] == CONFIG.chat.throttle_burst_limit
    fields = json.loads(properties["AccessLogSetting"]["Format"])
    assert {
        "requestId",
        "userArn",
        "sourceIp",
        "httpMethod",
        "path",
        "status",
        "responseLatency",
        "integrationLatency",
        "responseLength",
    } <= set(fields)
    for name, value in fields.items():
        assert value.startswith("$context."), name
        for forbidden in ("body", "$input", "requestOverride", "responseOverride", "header", "querystring"):
            assert forbidden.lower() not in f"{name} {value}".lower(), (name, value)


def test_access_log_group_and_execution_log_group_have_retention(chat: dict[str, Any]) -> None:
    log_groups = resources(chat, "AWS::Logs::LogGroup")
    assert {group["Properties"]["RetentionInDays"] for group in log_groups.values()} == {CONFIG.log_retention_days}
    _, stage = only(chat, "AWS::ApiGateway::Stage")
    api_id, _ = only(chat, "AWS::ApiGateway::RestApi")
    execution_logs = [
        logical_id
        for logical_id, group in log_groups.items()
        if render(group["Properties"].get("LogGroupName", ""))
        == f"API-Gateway-Execution-Logs_${{{api_id}}}/{CONFIG.stage}"
    ]
    assert len(execution_logs) == 1
    assert execution_logs[0] in stage["DependsOn"]


EXPECTED_GATEWAY_RESPONSES = {
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "ACCESS_DENIED",
    "MISSING_AUTHENTICATION_TOKEN",
    "INVALID_SIGNATURE",
    "EXPIRED_TOKEN",
    "UNAUTHORIZED",
    "INVALID_API_KEY",
    "WAF_FILTERED",
    "THROTTLED",
    "QUOTA_EXCEEDED",
    "REQUEST_TOO_LARGE",
    "BAD_REQUEST_BODY",
    "BAD_REQUEST_PARAMETERS",
    "UNSUPPORTED_MEDIA_TYPE",
    "RESOURCE_NOT_FOUND",
    "INTEGRATION_TIMEOUT",
    "INTEGRATION_FAILURE",
    "API_CONFIGURATION_ERROR",
}


def _render_gateway_body(template: str, message: str) -> Any:
    """What API Gateway sends: plain substitution of the context variables."""
    body = template.replace("$context.error.messageString", json.dumps(message))
    body = body.replace("$context.requestId", "4f0c7e2a-request")
    assert "$context" not in body, body
    return json.loads(body)


@pytest.mark.row(1)
def test_gateway_responses_use_the_openai_error_envelope(chat: dict[str, Any]) -> None:
    responses = {
        response["Properties"]["ResponseType"]: response["Properties"]
        for response in resources(chat, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(responses) == EXPECTED_GATEWAY_RESPONSES
    for response_type, properties in responses.items():
        (content_type,) = properties["ResponseTemplates"]
        assert content_type == "application/json"
        body = _render_gateway_body(properties["ResponseTemplates"][content_type], 'API "Gateway" message')
        assert set(body) == {"error"}, response_type
        error = body["error"]
        assert {"message", "type", "param", "code"} <= set(error), response_type
        assert isinstance(error["message"], str)
        assert error["message"]
        assert error["type"].endswith("_error") or error["type"] == "timeout", response_type
        assert error["param"] is None
        assert error["request_id"] == "4f0c7e2a-request"
        # The request id in the same header as the function's own errors.
        assert properties["ResponseParameters"]["gatewayresponse.header.x-request-id"] == "context.requestId"
    assert responses["THROTTLED"]["ResponseParameters"] == {
        "gatewayresponse.header.x-request-id": "context.requestId",
        "gatewayresponse.header.Retry-After": "'1'",
    }
    assert _render_gateway_body(responses["THROTTLED"]["ResponseTemplates"]["application/json"], "x")["error"] == {
        "message": "Rate limit exceeded: too many requests for this API; retry after a short wait.",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
        "request_id": "4f0c7e2a-request",
    }
    # Access denied messages would name the caller's ARN and our account: replaced by fixed text.
    denied = _render_gateway_body(responses["ACCESS_DENIED"]["ResponseTemplates"]["application/json"], "arn:aws:...")
    assert "arn:" not in denied["error"]["message"]


# --- Chat function ----------------------------------------------------------------------------


def test_chat_function_runtime_and_wiring(chat: dict[str, Any]) -> None:
    _, function = _chat_function(chat)
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.14"
    assert properties["Architectures"] == ["arm64"]
    assert properties["Timeout"] == CONFIG.chat.function_timeout_seconds
    assert properties["MemorySize"] == CONFIG.chat.memory_mb
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["LoggingConfig"]["LogFormat"] == "JSON"
    assert properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == "ChatFunction"
    assert properties["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"] == "GptOssBedrock/dev"
    layer_id, _ = only(chat, "AWS::Lambda::LayerVersion")
    # Ours (the runtime group of uv.lock) and the web adapter's (tests/infra/test_chat_web_adapter.py).
    assert {"Ref": layer_id} in properties["Layers"]
    assert len(properties["Layers"]) == 2


def test_chat_environment_is_exactly_chat_settings(chat: dict[str, Any]) -> None:
    _, function = _chat_function(chat)
    variables = function["Properties"]["Environment"]["Variables"]
    # Besides ChatSettings, only Powertools' tracing switch: the app runs under the web adapter, untraced.
    assert set(variables) - FACTORY_VARIABLES - set(SERVICE_TIER_SETTINGS) == (
        set(ChatSettings.model_fields) | {"POWERTOOLS_TRACE_DISABLED"}
    ) - set(SERVICE_TIER_SETTINGS)
    assert variables["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert {name: variables[name] for name in STREAM_SETTINGS} == STREAM_SETTINGS
    assert {name: variables[name] for name in SERVICE_TIER_SETTINGS} == SERVICE_TIER_SETTINGS
    guardrail_id, _ = only(chat, "AWS::Bedrock::Guardrail")
    version_id, _ = only(chat, "AWS::Bedrock::GuardrailVersion")
    assert variables["GUARDRAIL_ID"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}
    assert variables["GUARDRAIL_VERSION"] == {"Fn::GetAtt": [version_id, "Version"]}
    # The runtime parses what the stack sets into the values configured.
    settings = ChatSettings.model_validate(
        {name: value if isinstance(value, str) else "resolved-at-deploy" for name, value in variables.items()}
    )
    table_id, _ = only(chat, "AWS::DynamoDB::Table")
    assert variables["IDEMPOTENCY_TABLE_NAME"] == {"Ref": table_id}
    assert settings.model_dump(
        exclude={
            "GUARDRAIL_ID",
            "GUARDRAIL_VERSION",
            "IDEMPOTENCY_TABLE_NAME",
            *STREAM_SETTINGS,
            *SERVICE_TIER_SETTINGS,
        }
    ) == {
        "MODEL_IDS": CONFIG.model_ids,
        "MODEL_ALIASES": dict(CONFIG.model_aliases),
        "DEFAULT_MAX_TOKENS": CONFIG.chat.default_max_tokens,
        "MAX_TOKENS_CEILING": CONFIG.chat.max_tokens_ceiling,
        "MAX_REQUEST_BYTES": CONFIG.chat.max_request_bytes,
        "INTEGRATION_TIMEOUT_MS": CONFIG.chat.integration_timeout_seconds * 1000,
        "DEADLINE_MARGIN_MS": CONFIG.chat.deadline_margin_ms,
        "BEDROCK_MAX_ATTEMPTS": CONFIG.chat.bedrock_max_attempts,
        "BEDROCK_BACKOFF_BASE_MS": CONFIG.chat.bedrock_backoff_base_ms,
        "BEDROCK_BACKOFF_MAX_MS": CONFIG.chat.bedrock_backoff_max_ms,
        "RETURN_REASONING": CONFIG.chat.return_reasoning,
        "IDEMPOTENCY_TTL_SECONDS": CONFIG.chat.idempotency_ttl_seconds,
        # The Batch API: where the batch stack publishes the pipeline, and the upload limit Lambda's payload sets.
        "BATCH_API_PARAMETER": batch_api_parameter_name(CONFIG.stage),
        "MAX_UPLOAD_BYTES": 4 * 1024 * 1024,
    }


@pytest.mark.row(14)
def test_chat_role_may_only_invoke_gpt_oss_with_the_pinned_guardrail(chat: dict[str, Any]) -> None:
    _, function = _chat_function(chat)
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = resources(chat, "AWS::IAM::Role")[role_id]
    assert "ManagedPolicyArns" not in role["Properties"]
    assert "Policies" not in role["Properties"]
    guardrail_id, _ = only(chat, "AWS::Bedrock::Guardrail")
    version_id, _ = only(chat, "AWS::Bedrock::GuardrailVersion")
    bedrock = [s for s in role_statements(chat, role_id) if any(a.startswith("bedrock:") for a in as_list(s["Action"]))]
    assert len(bedrock) == 3
    [deny] = [s for s in bedrock if s["Effect"] == "Deny"]
    apply, invoke = sorted((s for s in bedrock if s is not deny), key=lambda s: as_list(s["Action"])[0])
    assert apply["Action"] == "bedrock:ApplyGuardrail"
    assert apply["Effect"] == "Allow"
    assert apply["Resource"] == {"Fn::GetAtt": [guardrail_id, "GuardrailArn"]}
    assert "Condition" not in apply
    # ConverseStream is authorised as InvokeModelWithResponseStream: without it every streamed answer is a 403.
    assert invoke["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    assert invoke["Effect"] == "Allow"
    assert sorted(render(arn) for arn in as_list(invoke["Resource"])) == FOUNDATION_MODEL_ARNS
    assert invoke["Condition"] == {
        "StringEquals": {
            "bedrock:GuardrailIdentifier": {
                "Fn::Join": [
                    ":",
                    [{"Fn::GetAtt": [guardrail_id, "GuardrailArn"]}, {"Fn::GetAtt": [version_id, "Version"]}],
                ]
            }
        }
    }
    # The same calls on the same models are denied for the service tiers not configured (test_chat_service_tiers.py).
    assert deny["Sid"] == "DenyServiceTiersNotAllowed"
    assert (deny["Action"], deny["Resource"]) == (invoke["Action"], invoke["Resource"])
    assert list(deny["Condition"]) == ["StringEquals"]
    assert list(deny["Condition"]["StringEquals"]) == ["bedrock:ServiceTier"]
    logs = [s for s in role_statements(chat, role_id) if any(a.startswith("logs:") for a in as_list(s["Action"]))]
    (own_log_group,) = logs
    assert render(own_log_group["Resource"]).startswith("${ChatApiChatFunctionLogs")


def test_only_the_chat_role_touches_bedrock(chat: dict[str, Any]) -> None:
    bedrock_actions = sorted(
        (statement["Effect"], action)
        for _, statement in iam_statements(chat)
        for action in as_list(statement["Action"])
        if action.startswith("bedrock:")
    )
    assert bedrock_actions == [
        ("Allow", "bedrock:ApplyGuardrail"),
        ("Allow", "bedrock:InvokeModel"),
        ("Allow", "bedrock:InvokeModelWithResponseStream"),
        # Narrowing only: the service tiers not configured.
        ("Deny", "bedrock:InvokeModel"),
        ("Deny", "bedrock:InvokeModelWithResponseStream"),
    ]


# --- Guardrail --------------------------------------------------------------------------------


def test_guardrail_filters_messages_and_published_version(chat: dict[str, Any]) -> None:
    guardrail_id, guardrail = only(chat, "AWS::Bedrock::Guardrail")
    properties = guardrail["Properties"]
    assert properties["BlockedInputMessaging"] == CONFIG.guardrail.blocked_input_message
    assert properties["BlockedOutputsMessaging"] == CONFIG.guardrail.blocked_output_message
    filters = {
        f["Type"]: (f["InputStrength"], f["OutputStrength"]) for f in properties["ContentPolicyConfig"]["FiltersConfig"]
    }
    assert filters == {kind: (given, answered) for kind, given, answered in CONTENT_FILTERS}
    assert filters["PROMPT_ATTACK"] == ("HIGH", "NONE")
    assert all(given in ("HIGH", "MEDIUM") for given, _ in filters.values())
    _, version = only(chat, "AWS::Bedrock::GuardrailVersion")
    assert version["Properties"]["GuardrailIdentifier"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}
    assert "configuration" in version["Properties"]["Description"]


# --- Monitoring -------------------------------------------------------------------------------


def _alarm_metrics(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    properties = alarm["Properties"]
    if "MetricName" in properties:
        return [properties]
    return [query["MetricStat"]["Metric"] for query in properties["Metrics"] if "MetricStat" in query]


def test_alarms_cover_the_chat_api_and_notify_the_topic(chat: dict[str, Any]) -> None:
    topic_id, _ = only(chat, "AWS::SNS::Topic")
    alarms = resources(chat, "AWS::CloudWatch::Alarm")
    by_metric: dict[tuple[str, str], dict[str, Any]] = {}
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
        (metric,) = _alarm_metrics(alarm)
        by_metric[(metric["Namespace"], metric["MetricName"])] = alarm
    assert set(by_metric) == {
        ("AWS/ApiGateway", "5XXError"),
        ("AWS/ApiGateway", "Latency"),
        ("GptOssBedrock/dev", "Http429Responses"),
        ("GptOssBedrock/dev", "GuardrailIntervened"),
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
    }
    deadline_ms = CONFIG.chat.integration_timeout_seconds * 1000
    assert by_metric[("AWS/ApiGateway", "Latency")]["Properties"]["Threshold"] == deadline_ms * 0.8
    (guardrail_metric,) = _alarm_metrics(by_metric[("GptOssBedrock/dev", "GuardrailIntervened")])
    assert guardrail_metric["Dimensions"] == [{"Name": "service", "Value": "ChatFunction"}]


def test_429s_are_counted_from_the_access_log(chat: dict[str, Any]) -> None:
    _, metric_filter = only(chat, "AWS::Logs::MetricFilter")
    _, stage = only(chat, "AWS::ApiGateway::Stage")
    api_id, _ = only(chat, "AWS::ApiGateway::RestApi")
    properties = metric_filter["Properties"]
    access_logs = properties["LogGroupName"]["Ref"]
    assert f"${{{access_logs}}}" in render(stage["Properties"]["AccessLogSetting"]["DestinationArn"])
    assert properties["FilterPattern"] == '{ $.status = "429" }'
    (transformation,) = properties["MetricTransformations"]
    assert transformation["MetricName"] == "Http429Responses"
    assert transformation["Dimensions"] == [{"Key": "ApiId", "Value": "$.apiId"}]
    # The fields the filter reads are in the access log.
    fields = json.loads(stage["Properties"]["AccessLogSetting"]["Format"])
    assert fields["status"] == "$context.status"
    assert fields["apiId"] == "$context.apiId"
    alarm = next(a for a in resources(chat, "AWS::CloudWatch::Alarm").values() if "Http429Responses" in json.dumps(a))
    (metric,) = _alarm_metrics(alarm)
    assert metric["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": api_id}}]


def test_dashboard_shows_the_chat_api(chat: dict[str, Any]) -> None:
    _, dashboard = only(chat, "AWS::CloudWatch::Dashboard")
    body = render(dashboard["Properties"]["DashboardBody"])
    for needle in ("5XXError", "Latency", "Http429Responses", "GuardrailIntervened", "AWS/Lambda", "alarms"):
        assert needle in body, needle
    # Tiers are priced apart: the tokens of each tier the stage allows, as the function publishes them.
    (by_tier,) = [w for w in json.loads(body)["widgets"] if w["properties"].get("title") == "Tokens by service tier"]
    shown = set()
    for namespace, name, *dimensions, _ in by_tier["properties"]["metrics"]:
        assert namespace == "GptOssBedrock/dev"
        shown.add((name, tuple(sorted(zip(dimensions[::2], dimensions[1::2], strict=True)))))
    assert shown == {
        (name, (("ServiceTier", tier), ("service", "ChatFunction")))
        for name in ("InputTokens", "OutputTokens")
        for tier in CONFIG.chat.service_tiers
    }


def test_alarm_topic_is_encrypted_and_tls_only(chat_template: Template, chat: dict[str, Any]) -> None:
    key_id, key = only(chat, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    chat_template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": {"Fn::GetAtt": [key_id, "Arn"]}})
    chat_template.has_resource_properties(
        "AWS::SNS::TopicPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})]
                )
            }
        },
    )
    # CloudWatch alarms can publish only if the key lets the CloudWatch service use it.
    assert any(
        statement.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        and set(as_list(statement["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey*"}
        for statement in key["Properties"]["KeyPolicy"]["Statement"]
    )
    chat_template.resource_count_is("AWS::SNS::Subscription", 0)


# --- Outputs and IAM hygiene ------------------------------------------------------------------


def test_outputs(chat: dict[str, Any]) -> None:
    outputs = chat["Outputs"]
    assert set(outputs) == {"ApiUrl", "GuardrailId", "GuardrailVersion", "AlarmTopicArn"}
    api_id, _ = only(chat, "AWS::ApiGateway::RestApi")
    stage_id, _ = only(chat, "AWS::ApiGateway::Stage")
    assert render(outputs["ApiUrl"]["Value"]) == (
        f"https://${{{api_id}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/${{{stage_id}}}/v1"
    )
    guardrail_id, _ = only(chat, "AWS::Bedrock::Guardrail")
    version_id, _ = only(chat, "AWS::Bedrock::GuardrailVersion")
    assert outputs["GuardrailId"]["Value"] == {"Fn::GetAtt": [guardrail_id, "GuardrailId"]}
    assert outputs["GuardrailVersion"]["Value"] == {"Fn::GetAtt": [version_id, "Version"]}


@pytest.mark.row(14)
def test_no_wildcard_actions_and_star_resources_only_where_nothing_narrower_exists(
    synthesized_apps: list[Synthesized],
) -> None:
    """Identity policies only (a KMS key policy's "*" resource means the key itself)."""
    for synthesized in synthesized_apps:
        for stack_name, template in synthesized.templates.items():
            stage = stack_name.rsplit("-", 1)[1]
            statements = iam_statements(template)
            assert statements
            for logical_id, statement in statements:
                actions = as_list(statement["Action"])
                assert not any("*" in action for action in actions), (logical_id, actions)
                if "*" in as_list(statement.get("Resource", [])):
                    assert set(actions) <= set(STAR_RESOURCE_ACTIONS), (logical_id, statement)
                    for action in set(actions) & set(STAR_RESOURCE_CONDITIONS):
                        assert actions == [action], (logical_id, statement)
                        condition = {"StringEquals": {STAR_RESOURCE_CONDITIONS[action]: f"GptOssBedrock/{stage}"}}
                        assert statement["Condition"] == condition, (logical_id, statement)
