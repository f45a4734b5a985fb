"""The chat handler end to end: API Gateway proxy events in, Bedrock offline (Stubber / before-send fakes)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.stub import ANY

import chat.service as chat_service
from chat.app import app
from chat.settings import ChatSettings
from local.lambda_runtime import fresh_container
from tests.apigw_bridge import BridgeResponse, build_event, chat_context, invoke_event, invoke_handler
from tests.bedrock_fakes import (
    GPT_OSS_20B,
    GPT_OSS_120B,
    GUARDRAIL_ID,
    GUARDRAIL_VERSION,
    BedrockFake,
    converse_response,
    converse_stream_events,
    error_response,
    http_response,
    read_timeout,
)

JSON = {"Content-Type": "application/json"}
GUARDRAIL_CONFIG = {"guardrailIdentifier": GUARDRAIL_ID, "guardrailVersion": GUARDRAIL_VERSION, "trace": "enabled"}
# 10 s left in the Lambda: the budget is 10 - 1.5 (margin) = 8.5 s, so the first read timeout is 7 s.
REMAINING_MS = 10_000
MARGIN_S = 1.5


def chat(content: str = "What is the capital of France?", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": content}], **fields}


def post(
    body: dict[str, Any] | str, *, remaining_ms: int = REMAINING_MS, headers: dict[str, str] | None = None
) -> BridgeResponse:
    raw = body if isinstance(body, str) else json.dumps(body)
    return invoke_handler(
        app,
        "POST",
        "/v1/chat/completions",
        {**JSON, **(headers or {})},
        raw,
        context=chat_context(remaining_ms=remaining_ms),
    )


def error_of(response: BridgeResponse) -> dict[str, Any]:
    envelope = json.loads(response.body)
    assert set(envelope) == {"error"}
    assert set(envelope["error"]) == {"message", "type", "param", "code"}
    assert response.headers["x-request-id"] in envelope["error"]["message"]
    assert response.headers["Content-Type"] == "application/json"
    error: dict[str, Any] = envelope["error"]
    return error


def records(output: str) -> list[dict[str, Any]]:
    parsed = []
    for line in output.splitlines():
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [record for record in parsed if isinstance(record, dict)]


def metrics_in(output: str) -> dict[str, list[float]]:
    """Our EMF metrics (the cold-start blob aside), after checking their dimensions.

    Every metric carries the service; a completion's metrics are also published per ServiceTier (a second
    dimension set in the same blob), and are named here `InputTokens[flex]`.
    """
    found: dict[str, list[float]] = {}
    for record in records(output):
        for definition in record.get("_aws", {}).get("CloudWatchMetrics", []):
            names = [metric["Name"] for metric in definition["Metrics"]]
            if names == ["ColdStart"]:
                continue
            assert definition["Namespace"] == "GptOssBedrock"
            assert definition["Dimensions"] in ([["service"]], [["service"], ["service", "ServiceTier"]])
            for dimensions in definition["Dimensions"]:
                suffix = f"[{record['ServiceTier']}]" if "ServiceTier" in dimensions else ""
                for name in names:
                    found.setdefault(f"{name}{suffix}", []).extend(record[name])
    return found


def logs_in(output: str) -> list[dict[str, Any]]:
    return [record for record in records(output) if "level" in record]


# --- the happy path --------------------------------------------------------------------------------------


def test_the_canonical_event_gets_a_chat_completion(
    bedrock: BedrockFake, load_event: Callable[[str], Any], capfd: pytest.CaptureFixture[str], logs: io.StringIO
) -> None:
    event = load_event("apigw_chat_completion.json")
    bedrock.reply(
        load_event("converse_end_turn.json"),
        expected_params={
            "modelId": GPT_OSS_120B,
            "messages": [
                {"role": "user", "content": [{"guardContent": {"text": {"text": "What is the capital of France?"}}}]}
            ],
            "system": [{"text": "You are terse."}],
            "inferenceConfig": {"maxTokens": 512},
            "guardrailConfig": GUARDRAIL_CONFIG,
            "requestMetadata": {"caller": "arn:aws:sts::123456789012:assumed-role/orders-service/orders-service"},
        },
    )
    response = invoke_event(app, event, chat_context(remaining_ms=REMAINING_MS))
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["x-request-id"] == event["requestContext"]["requestId"]
    body = json.loads(response.body)
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == GPT_OSS_120B
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris.", "refusal": None},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ]
    assert body["usage"] == {"prompt_tokens": 91, "completion_tokens": 23, "total_tokens": 114}
    assert bedrock.read_timeouts == [7]
    output = capfd.readouterr().out
    assert metrics_in(output) == {
        "ChatCompletions": [1.0],
        "InputTokens": [91.0],
        "OutputTokens": [23.0],
        "ModelLatency": [412.0],
        "ChatCompletions[default]": [1.0],
        "InputTokens[default]": [91.0],
        "OutputTokens[default]": [23.0],
        "ModelLatency[default]": [412.0],
    }
    [finished] = [log for log in logs_in(logs.getvalue()) if log["message"] == "chat completion finished"]
    assert finished["correlation_id"] == event["requestContext"]["requestId"]
    assert finished["caller"] == event["requestContext"]["identity"]["userArn"]
    assert (finished["model_id"], finished["stop_reason"], finished["guardrail_action"]) == (
        GPT_OSS_120B,
        "end_turn",
        "NONE",
    )
    assert (finished["input_tokens"], finished["output_tokens"]) == (91, 23)


@pytest.mark.row(4, 6)
def test_max_tokens_and_the_guardrail_are_always_sent(bedrock: BedrockFake) -> None:
    bedrock.reply(
        converse_response(),
        expected_params={
            "modelId": GPT_OSS_20B,
            "messages": ANY,
            "inferenceConfig": {"maxTokens": 1024},
            "guardrailConfig": GUARDRAIL_CONFIG,
            "requestMetadata": ANY,
        },
    )
    assert (
        post(chat(), headers={"X-Amzn-Bedrock-GuardrailIdentifier": "none", "X-Amzn-Bedrock-Trace": "DISABLED"}).status
        == 200
    )


@pytest.mark.row(6)
def test_callers_cannot_choose_the_guardrail(bedrock: BedrockFake) -> None:
    response = post(chat(guardrailConfig={"guardrailIdentifier": "other", "guardrailVersion": "DRAFT"}))
    assert response.status == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == ("unsupported_parameter", "guardrailConfig")
    assert bedrock.calls == []


def test_reasoning_is_returned_only_when_asked(bedrock: BedrockFake, load_event: Callable[[str], Any]) -> None:
    bedrock.reply(load_event("converse_end_turn.json"))
    bedrock.reply(load_event("converse_end_turn.json"))
    plain = json.loads(post(chat()).body)["choices"][0]["message"]
    asked = json.loads(post(chat(include_reasoning=True)).body)["choices"][0]["message"]
    assert "reasoning_content" not in plain
    assert asked["reasoning_content"] == "The user asks for the capital of France. It is Paris."
    assert plain["content"] == asked["content"] == "Paris."


def test_reasoning_can_be_on_by_configuration(
    bedrock: BedrockFake, monkeypatch: pytest.MonkeyPatch, chat_env: ChatSettings, load_event: Callable[[str], Any]
) -> None:

    monkeypatch.setenv("RETURN_REASONING", "true")
    fresh_container()
    bedrock.reply(load_event("converse_end_turn.json"))
    assert "reasoning_content" in json.loads(post(chat()).body)["choices"][0]["message"]


def test_tool_calls_come_back_as_openai_tool_calls(bedrock: BedrockFake, load_event: Callable[[str], Any]) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}
    bedrock.reply(load_event("converse_tool_use.json"))
    body = json.loads(post(chat("Weather in Paris?", tools=[tool])).body)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris", "unit": "celsius"}',
    }


def test_stream_true_returns_server_sent_events(bedrock: BedrockFake) -> None:
    bedrock.reply_stream(converse_stream_events("Paris."))
    response = post(chat(stream=True, stream_options={"include_usage": True}))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    assert response.body.endswith("data: [DONE]\n\n")
    chunks = [json.loads(frame.removeprefix("data: ")) for frame in response.body.split("\n\n")[:-2]]
    assert "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"]) == "Paris."
    assert chunks[-1]["usage"]["total_tokens"] == 19


def test_prompts_and_answers_never_reach_the_logs(
    bedrock: BedrockFake, capfd: pytest.CaptureFixture[str], logs: io.StringIO
) -> None:
    bedrock.reply(converse_response("okapi-answer-17", reasoning="pangolin-thought-5"))
    post(chat("zebra-prompt-42", include_reasoning=True, user="user-1"))
    post(chat("zebra-prompt-42", messages=[{"role": "robot", "content": "zebra-prompt-42"}]))
    output = capfd.readouterr().out + logs.getvalue()
    [rejected] = [log for log in logs_in(output) if log["message"] == "chat request rejected"]
    assert (rejected["param"], rejected["status"]) == ("messages[0].role", 400)
    assert rejected["caller"].startswith("arn:aws:sts::")
    for secret in ("zebra-prompt-42", "okapi-answer-17", "pangolin-thought-5"):
        assert secret not in output


# --- models and routes ---------------------------------------------------------------------------------


def test_the_canonical_list_models_event(chat_env: ChatSettings, load_event: Callable[[str], Any]) -> None:
    response = invoke_event(app, load_event("apigw_list_models.json"), chat_context())
    assert response.status == 200
    body = json.loads(response.body)
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == [GPT_OSS_20B, GPT_OSS_120B, "gpt-oss-20b", "gpt-oss-120b"]
    assert {model["object"] for model in body["data"]} == {"model"}


@pytest.mark.parametrize(
    "path", [f"/v1/models/{GPT_OSS_20B}", "/v1/models/openai.gpt-oss-20b-1%3A0", "/v1/models/gpt-oss-120b"]
)
def test_a_model_can_be_retrieved_by_id_or_alias(chat_env: ChatSettings, path: str) -> None:
    response = invoke_handler(app, "GET", path)
    assert response.status == 200
    assert json.loads(response.body)["id"] in (GPT_OSS_20B, "gpt-oss-120b")


def test_an_unknown_model_is_404(chat_env: ChatSettings) -> None:
    response = invoke_handler(app, "GET", "/v1/models/gpt-4o")
    assert response.status == 404
    assert error_of(response)["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/v1/completions", 404, None),
        ("POST", "/v2/chat/completions", 404, None),
        ("GET", "/v1/chat/completions", 405, "POST"),
        # Starlette answers HEAD wherever it answers GET (API Gateway routes neither HEAD nor DELETE here).
        ("DELETE", "/v1/models", 405, "GET, HEAD"),
        ("POST", f"/v1/models/{GPT_OSS_20B}", 405, "GET, HEAD"),
    ],
)
def test_unknown_routes_and_methods_get_the_envelope(
    chat_env: ChatSettings, method: str, path: str, status: int, allow: str | None
) -> None:
    response = invoke_handler(app, method, path, JSON, "{}")
    assert response.status == status
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert response.headers.get("Allow") == allow


def test_the_bridge_builds_canonical_events(load_event: Callable[[str], Any]) -> None:
    canonical = load_event("apigw_chat_completion.json")
    built = build_event("POST", "/v1/chat/completions", headers=JSON, body="{}")
    assert set(built) == set(canonical)
    assert set(built["requestContext"]) == set(canonical["requestContext"])
    assert set(built["requestContext"]["identity"]) == set(canonical["requestContext"]["identity"])


# --- bad requests: 400/404/413 before any Bedrock call ---------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ("{not json", 400, "invalid_json", None),
        ("[]", 400, "invalid_type", None),
        ("", 400, "invalid_type", None),
        ({"model": "gpt-oss-20b"}, 400, "missing_required_parameter", "messages"),
        ({"model": "gpt-oss-20b", "messages": []}, 400, "invalid_value", "messages"),
        ({"model": "gpt-oss-20b", "messages": "hi"}, 400, "invalid_type", "messages"),
        (
            {"model": "gpt-oss-20b", "messages": [{"role": "bob", "content": "x"}]},
            400,
            "invalid_value",
            "messages[0].role",
        ),
        (
            {
                "model": "gpt-oss-20b",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            400,
            "unsupported_value",
            "messages[0].content[0].type",
        ),
        (chat(n=2), 400, "unsupported_value", "n"),
        (chat(top_k=40), 400, "unsupported_parameter", "top_k"),
        (chat(logprobs=True), 400, "unsupported_parameter", "logprobs"),
        (chat(max_tokens=0), 400, "invalid_value", "max_tokens"),
        (chat(max_tokens=-1), 400, "invalid_value", "max_tokens"),
        (chat(max_tokens=9000), 400, "invalid_value", "max_tokens"),
        (chat(max_tokens=1.5), 400, "invalid_type", "max_tokens"),
        (chat(max_tokens="100"), 400, "invalid_type", "max_tokens"),
        (chat(model="gpt-4o"), 404, "model_not_found", "model"),
        (chat(model=f"arn:aws:bedrock:us-east-1::foundation-model/{GPT_OSS_20B}"), 404, "model_not_found", "model"),
        (chat(model=f"{GPT_OSS_120B} "), 404, "model_not_found", "model"),
        (chat(model="anthropic.claude-3-haiku-20240307-v1:0"), 404, "model_not_found", "model"),
        (chat(response_format={"type": "json_object"}), 400, "unsupported_value", "response_format.type"),
    ],
)
@pytest.mark.row(2)
def test_invalid_requests_never_reach_bedrock(
    bedrock: BedrockFake, body: dict[str, Any] | str, status: int, code: str, param: str | None
) -> None:
    response = post(body)
    assert response.status == status
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error"
    assert bedrock.calls == []


@pytest.mark.row(1)
def test_a_body_over_the_limit_is_413_before_parsing(bedrock: BedrockFake, chat_env: ChatSettings) -> None:
    padding = "x" * chat_env.MAX_REQUEST_BYTES
    for body in (json.dumps(chat(padding)), "{not even json" + padding):
        response = post(body)
        assert response.status == 413
        assert error_of(response)["code"] == "request_too_large"
    assert bedrock.calls == []


def test_a_non_json_body_is_415(bedrock: BedrockFake) -> None:
    response = post("model=gpt-oss-20b", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert bedrock.calls == []


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_a_form_body_is_415_too(bedrock: BedrockFake, content_type: str) -> None:
    response = post("model=gpt-oss-20b", headers={"Content-Type": content_type})
    assert response.status == 415
    assert error_of(response)["code"] == "unsupported_media_type"
    assert bedrock.calls == []


def test_a_json_content_type_with_a_charset_is_json(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response())
    response = post(chat(), headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status == 200


@pytest.mark.row(5)
def test_an_obviously_too_long_prompt_is_rejected_without_a_call(
    bedrock: BedrockFake, monkeypatch: pytest.MonkeyPatch, chat_env: ChatSettings
) -> None:

    monkeypatch.setenv("MAX_REQUEST_BYTES", "2000000")
    fresh_container()
    response = post(chat("word " * 120_000))
    assert response.status == 400
    assert (error_of(response)["code"], error_of(response)["param"]) == ("context_length_exceeded", "messages")
    assert bedrock.calls == []


# --- guardrail interventions (row 6) -----------------------------------------------------------------------


@pytest.mark.row(6)
def test_a_guardrail_intervention_is_a_200_content_filter(
    bedrock: BedrockFake, load_event: Callable[[str], Any], capfd: pytest.CaptureFixture[str], logs: io.StringIO
) -> None:
    bedrock.reply(
        load_event("converse_guardrail_intervened.json"),
        expected_params={
            "modelId": GPT_OSS_20B,
            "messages": [
                {"role": "user", "content": [{"guardContent": {"text": {"text": "How do I build a pipe bomb?"}}}]}
            ],
            "inferenceConfig": {"maxTokens": 1024},
            "guardrailConfig": GUARDRAIL_CONFIG,
            "requestMetadata": ANY,
        },
    )
    response = post(chat("How do I build a pipe bomb?"))
    assert response.status == 200
    choice = json.loads(response.body)["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == "Sorry, this request was blocked by the content policy."
    for detail in ("VIOLENCE", "contentPolicy", GUARDRAIL_ID, "trace", "Guardrail blocked"):
        assert detail not in response.body
    output = capfd.readouterr().out + logs.getvalue()
    assert metrics_in(output)["GuardrailIntervened"] == [1.0]
    [finished] = [log for log in logs_in(output) if log["message"] == "chat completion finished"]
    assert finished["guardrail_action"] == "INTERVENED"
    assert finished["guardrail_findings"] == ["input:contentPolicy:VIOLENCE", "input:wordPolicy:custom"]
    assert "pipe bomb" not in output


@pytest.mark.row(6)
def test_an_intervention_on_the_answer_is_a_content_filter_too(bedrock: BedrockFake) -> None:
    body = converse_response("Sorry, the answer was blocked by the content policy.", stop_reason="guardrail_intervened")
    body["trace"] = {
        "guardrail": {
            "outputAssessments": {
                GUARDRAIL_ID: [
                    {"contentPolicy": {"filters": [{"type": "MISCONDUCT", "confidence": "HIGH", "action": "BLOCKED"}]}}
                ]
            }
        }
    }
    bedrock.reply(body)
    choice = json.loads(post(chat()).body)["choices"][0]
    assert (choice["finish_reason"], choice["message"]["content"]) == (
        "content_filter",
        "Sorry, the answer was blocked by the content policy.",
    )


# --- upstream faults (rows 5, 7-11) ---------------------------------------------------------------------------


@pytest.mark.row(7)
def test_throttling_on_every_attempt_is_a_bounded_429(
    bedrock: BedrockFake, chat_env: ChatSettings, capfd: pytest.CaptureFixture[str]
) -> None:
    bedrock.on_send(lambda request, _: error_response(request, 429, "ThrottlingException", "Too many tokens"))
    started = time.monotonic()
    response = post(chat())
    elapsed = time.monotonic() - started
    assert response.status == 429
    error = error_of(response)
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert int(response.headers["Retry-After"]) >= 1
    assert bedrock.sent == chat_env.BEDROCK_MAX_ATTEMPTS
    assert elapsed < REMAINING_MS / 1000 - MARGIN_S
    assert metrics_in(capfd.readouterr().out)["UpstreamErrors"] == [1.0]


@pytest.mark.parametrize(("status", "code"), [(503, "ServiceUnavailableException"), (500, "InternalServerException")])
@pytest.mark.row(8)
def test_one_transient_failure_then_success_takes_exactly_two_attempts(
    bedrock: BedrockFake, status: int, code: str
) -> None:
    def respond(request: AWSPreparedRequest, attempt: int) -> AWSResponse:
        if attempt == 1:
            return error_response(request, status, code)
        return http_response(request, 200, converse_response("Paris."))

    bedrock.on_send(respond)
    started = time.monotonic()
    response = post(chat())
    assert response.status == 200
    assert json.loads(response.body)["choices"][0]["message"]["content"] == "Paris."
    assert bedrock.sent == 2
    assert time.monotonic() - started < REMAINING_MS / 1000 - MARGIN_S


@pytest.mark.row(9)
def test_a_slow_model_gets_a_504_before_the_deadline(bedrock: BedrockFake, logs: io.StringIO) -> None:
    # 4 s left: the budget is 2.5 s, so the read timeout is 1 s and no second call can fit after it.
    def slow(request: AWSPreparedRequest, _: int) -> AWSResponse:
        time.sleep(bedrock.read_timeouts[-1])
        raise read_timeout(request)

    bedrock.on_send(slow)
    started = time.monotonic()
    response = post(chat(), remaining_ms=4_000)
    elapsed = time.monotonic() - started
    assert response.status == 504
    assert (error_of(response)["type"], error_of(response)["code"]) == ("timeout", "timeout")
    assert bedrock.sent == 1
    assert bedrock.read_timeouts == [1]
    assert elapsed < 4.0 - MARGIN_S
    [failed_call] = [log for log in logs_in(logs.getvalue()) if log["message"] == "bedrock call failed"]
    assert failed_call["correlation_id"] == response.headers["x-request-id"]
    assert failed_call["elapsed_ms"] >= 1000
    assert failed_call["will_retry"] is False


@pytest.mark.row(9)
def test_a_model_timeout_with_little_time_left_is_not_retried(bedrock: BedrockFake) -> None:
    def model_timeout(request: AWSPreparedRequest, _: int) -> AWSResponse:
        time.sleep(0.9)
        return error_response(request, 408, "ModelTimeoutException")

    bedrock.on_send(model_timeout)
    response = post(chat(), remaining_ms=4_000)
    assert response.status == 504
    assert bedrock.sent == 1


def test_a_quick_model_timeout_is_retried_while_the_budget_allows(bedrock: BedrockFake) -> None:
    bedrock.on_send(
        lambda request, attempt: (
            error_response(request, 408, "ModelTimeoutException")
            if attempt == 1
            else http_response(request, 200, converse_response())
        )
    )
    assert post(chat()).status == 200
    assert bedrock.sent == 2


@pytest.mark.row(9)
def test_no_call_is_made_when_the_lambda_has_no_time_left(bedrock: BedrockFake) -> None:
    bedrock.on_send(lambda request, _: http_response(request, 200, converse_response()))
    response = post(chat(), remaining_ms=2_500)
    assert response.status == 504
    assert bedrock.sent == 0


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        (
            "AccessDeniedException",
            403,
            "User: arn:aws:sts::123456789012:assumed-role/ChatFn/chat is not authorized to perform: "
            "bedrock:InvokeModel on resource: arn:aws:bedrock:us-east-1::foundation-model/openai.gpt-oss-20b-1:0",
        ),
        (
            "ResourceNotFoundException",
            404,
            "Guardrail arn:aws:bedrock:us-east-1:123456789012:guardrail/gr7abc123xyz was not found",
        ),
    ],
)
@pytest.mark.row(10)
def test_access_and_configuration_errors_are_generic_500s(
    bedrock: BedrockFake, capfd: pytest.CaptureFixture[str], code: str, status: int, message: str
) -> None:
    bedrock.fail(code, status, message)
    response = post(chat())
    assert response.status == 500
    error = error_of(response)
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    for secret in ("arn:", "123456789012", "InvokeModel", "guardrail/", "ChatFn"):
        assert secret not in response.body
    assert metrics_in(capfd.readouterr().out)["UpstreamErrors"] == [1.0]


@pytest.mark.row(5)
def test_a_bedrock_validation_error_is_a_400(bedrock: BedrockFake) -> None:
    bedrock.fail("ValidationException", 400, "Input is too long for requested model.")
    response = post(chat())
    assert response.status == 400
    assert "Input is too long for requested model." in error_of(response)["message"]


@pytest.mark.parametrize(
    "fault",
    [
        lambda fake: fake.fail("ModelErrorException", 424, "The model failed."),
        lambda fake: fake.reply(converse_response(stop_reason="malformed_model_output")),
        lambda fake: fake.reply(converse_response(stop_reason="malformed_tool_use")),
    ],
)
@pytest.mark.row(11)
def test_model_failures_are_502s(bedrock: BedrockFake, fault: Callable[[BedrockFake], None]) -> None:
    fault(bedrock)
    response = post(chat())
    assert response.status == 502
    assert error_of(response)["code"] == "upstream_error"


@pytest.mark.row(5)
def test_a_context_window_stop_is_a_length_finish(bedrock: BedrockFake) -> None:
    bedrock.reply(converse_response("Partial", stop_reason="model_context_window_exceeded"))
    assert json.loads(post(chat()).body)["choices"][0]["finish_reason"] == "length"


def test_an_unexpected_crash_is_a_generic_500_that_names_no_content(
    bedrock: BedrockFake, monkeypatch: pytest.MonkeyPatch, logs: io.StringIO
) -> None:
    def explode(*_: Any, **__: Any) -> Any:
        raise RuntimeError("zebra-prompt-42 made this fail")

    monkeypatch.setattr(chat_service, "to_converse", explode)
    response = post(chat("zebra-prompt-42"))
    assert response.status == 500
    assert error_of(response)["type"] == "server_error"
    output = logs.getvalue()
    [crash] = [log for log in logs_in(output) if log["message"] == "chat request crashed"]
    assert crash["error_type"] == "RuntimeError"
    # Where it was raised, as file:line: a field of its own (Powertools' `location` is the logging call's).
    assert crash["error_location"] == f"test_chat_handler.py:{explode.__code__.co_firstlineno + 1}"
    assert "zebra-prompt-42" not in output
    assert "zebra-prompt-42" not in response.body


# --- hostile input (issue 13's chat reproducers) ------------------------------------------------------------

DEEP = "[" * 3000 + "]" * 3000
HOSTILE_BODIES = {
    "a lone surrogate in model": '{"model":"\\udfff","messages":[{"role":"user","content":"hi"}]}',
    "a lone surrogate in a metadata key": (
        '{"model":"gpt-oss-20b","metadata":{"\\ud800":"x"},"messages":[{"role":"user","content":"hi"}]}'
    ),
    "a lone surrogate in a part type": (
        '{"model":"gpt-oss-20b","messages":[{"role":"user","content":[{"type":"\\ud800","text":"x"}]}]}'
    ),
    "nesting 3,000 deep": f'{{"model":"gpt-oss-20b","messages":[{{"role":"user","content":"hi"}}],"metadata":{DEEP}}}',
    "an integer of 5,000 digits": (
        f'{{"model":"gpt-oss-20b","seed":{"9" * 5000},"messages":[{{"role":"user","content":"hi"}}]}}'
    ),
    "NaN in logit_bias": '{"model":"gpt-oss-20b","logit_bias":{"1":NaN},"messages":[{"role":"user","content":"hi"}]}',
    "Infinity in a tool schema": (
        '{"model":"gpt-oss-20b","tools":[{"type":"function","function":{"name":"f","parameters":'
        '{"type":"object","maximum":Infinity}}}],"messages":[{"role":"user","content":"hi"}]}'
    ),
    "a number too large for a float in logit_bias": (
        '{"model":"gpt-oss-20b","logit_bias":{"1":1e400},"messages":[{"role":"user","content":"hi"}]}'
    ),
    "a number too large for a float in tool arguments": json.dumps(
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"x": -2e308}'}}
                    ],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "r"},
            ],
        )
    ),
    "tool arguments 3,000 deep": json.dumps(
        chat(
            tools=[{"type": "function", "function": {"name": "f"}}],
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": DEEP}}],
                },
                {"role": "tool", "tool_call_id": "t1", "content": "r"},
            ],
        )
    ),
}


@pytest.mark.parametrize("body", list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_json_the_function_cannot_represent_is_a_400_that_never_reaches_bedrock(
    bedrock: BedrockFake, body: str, capfd: pytest.CaptureFixture[str], logs: io.StringIO
) -> None:
    response = post(body)
    assert response.status == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert bedrock.calls == []
    written = capfd.readouterr().out + logs.getvalue()
    assert "chat request crashed" not in written
    assert "9999999999" not in error["message"] and "[[[[" not in error["message"]


def test_a_user_message_followed_by_a_tool_message_is_bedrocks_to_judge_not_a_crash(bedrock: BedrockFake) -> None:
    bedrock.fail("ValidationException", 400, "The toolResult blocks must follow a toolUse.")
    body = chat(
        tools=[{"type": "function", "function": {"name": "f"}}],
        messages=[{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "t1", "content": "r"}],
    )
    response = post(body)
    assert response.status == 400
    [call] = bedrock.calls
    # Only the user's own text is guarded; the tool result stays a toolResult block of the same turn.
    assert call["messages"][0]["content"] == [
        {"guardContent": {"text": {"text": "hi"}}},
        {"toolResult": {"toolUseId": "t1", "content": [{"text": "r"}]}},
    ]


@pytest.mark.parametrize("header", ["x-amzn-request-context", "x-amzn-lambda-context"])
def test_a_caller_cannot_add_its_own_context_header(bedrock: BedrockFake, header: str) -> None:
    forged = json.dumps({"requestId": "forged", "identity": {"userArn": "arn:aws:iam::999999999999:user/someone"}})
    response = post(chat(), headers={header: forged})
    assert response.status == 400
    # Which of the two values is API Gateway's cannot be told, so not even its request id is echoed.
    error = json.loads(response.body)["error"]
    assert (error["param"], error["type"]) == (header, "invalid_request_error")
    assert "forged" not in response.body
    assert bedrock.calls == []


def test_a_rejected_request_logs_only_the_field_names_this_service_defines(
    bedrock: BedrockFake, capfd: pytest.CaptureFixture[str], logs: io.StringIO
) -> None:
    post({**chat(), "zebra-field-42": True})
    post(chat(metadata={"okapi-key-7": "not allowed!"}))
    post(chat(messages=[{"role": "robot", "content": "hi"}]))
    output = capfd.readouterr().out + logs.getvalue()
    rejected = [log["param"] for log in logs_in(output) if log["message"] == "chat request rejected"]
    assert rejected == ["?", "metadata.?", "messages[0].role"]
    assert "zebra-field-42" not in output and "okapi-key-7" not in output
