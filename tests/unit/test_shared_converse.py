"""The Converse gateway: client configuration, error classification, deadline-bounded retries."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ParamValidationError,
    ReadTimeoutError,
)

import shared.converse
from local.lambda_runtime import fresh_container
from shared.converse import (
    CONNECT_TIMEOUT_SECONDS,
    ConverseGateway,
    ConverseReply,
    classify,
    guardrail_findings,
    read_timeout_for,
    runtime_client,
)
from shared.errors import (
    BedrockAccessDenied,
    BedrockError,
    BedrockModelError,
    BedrockModelNotReady,
    BedrockNotFound,
    BedrockServerError,
    BedrockThrottled,
    BedrockTimeout,
    BedrockUnavailable,
    BedrockValidation,
)
from tests.bedrock_fakes import (
    GPT_OSS_20B,
    GUARDRAIL_ID,
    GUARDRAIL_VERSION,
    BedrockFake,
    converse_response,
    error_response,
    http_response,
    read_timeout,
)

REQUEST: dict[str, Any] = {
    "modelId": GPT_OSS_20B,
    "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
    "inferenceConfig": {"maxTokens": 64},
}


@pytest.fixture(autouse=True)
def fresh_clients() -> Iterator[None]:
    fresh_container()
    yield
    fresh_container()


@pytest.fixture
def bedrock() -> BedrockFake:
    return BedrockFake(runtime_client(5))


@pytest.fixture
def gateway(bedrock: BedrockFake) -> ConverseGateway:
    return ConverseGateway(max_attempts=3, backoff_base=0.01, backoff_cap=0.02, clients=bedrock.client_for)


def in_seconds(seconds: float) -> float:
    return time.monotonic() + seconds


def client_error(code: str, status: int, **headers: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {
                "RequestId": "8c1f0b52-0000-4000-8000-000000000000",
                "HostId": "",
                "HTTPStatusCode": status,
                "HTTPHeaders": headers,
                "RetryAttempts": 0,
            },
        },
        "Converse",
    )


# --- clients ----------------------------------------------------------------------------------------


def test_clients_make_one_attempt_with_the_given_read_timeout() -> None:
    client = runtime_client(7)
    config: Any = client.meta.config  # botocore's stubs do not declare Config's option attributes
    assert (config.read_timeout, config.connect_timeout) == (7, CONNECT_TIMEOUT_SECONDS)
    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    assert runtime_client(7) is client
    assert runtime_client(8) is not client


def test_clients_honour_the_standard_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "http://127.0.0.1:4010")
    assert runtime_client(3).meta.endpoint_url == "http://127.0.0.1:4010"


@pytest.mark.parametrize(
    ("remaining", "read_timeout"), [(27.5, 26), (10.0, 9), (2.0, 1), (1.99, None), (0.0, None), (-3.0, None)]
)
def test_read_timeout_is_cut_from_the_remaining_time(remaining: float, read_timeout: int | None) -> None:
    assert read_timeout_for(remaining) == read_timeout


# --- classification -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 429, BedrockThrottled),
        ("ServiceQuotaExceededException", 429, BedrockThrottled),
        ("ModelNotReadyException", 429, BedrockModelNotReady),
        ("ServiceUnavailableException", 503, BedrockUnavailable),
        ("InternalServerException", 500, BedrockServerError),
        ("ModelTimeoutException", 408, BedrockTimeout),
        ("ValidationException", 400, BedrockValidation),
        ("AccessDeniedException", 403, BedrockAccessDenied),
        ("ResourceNotFoundException", 404, BedrockNotFound),
        ("ModelErrorException", 424, BedrockModelError),
        ("SomeNew5xx", 502, BedrockServerError),
        ("SomeNewLimit", 429, BedrockThrottled),
        ("SomeNew4xx", 409, BedrockError),
    ],
)
def test_client_errors_are_classified_by_code_then_status(code: str, status: int, kind: type[BedrockError]) -> None:
    error = classify(client_error(code, status))
    assert type(error) is kind
    assert error.code == code


def test_retry_after_from_bedrock_is_kept() -> None:
    error = classify(client_error("ThrottlingException", 429, **{"retry-after": "9"}))
    assert isinstance(error, BedrockThrottled)
    assert error.retry_after == 9
    assert classify(client_error("ThrottlingException", 429)).retry_after is None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("failure", "kind", "retryable"),
    [
        (ReadTimeoutError(endpoint_url="https://bedrock"), BedrockTimeout, True),
        (ConnectTimeoutError(endpoint_url="https://bedrock"), BedrockUnavailable, True),
        (EndpointConnectionError(endpoint_url="https://bedrock"), BedrockUnavailable, True),
        (ParamValidationError(report="bad"), BedrockError, False),
    ],
)
def test_transport_failures_are_classified(failure: Exception, kind: type[BedrockError], retryable: bool) -> None:
    error = classify(failure)  # type: ignore[arg-type]
    assert type(error) is kind
    assert error.retryable is retryable


# --- calls and retries --------------------------------------------------------------------------------


def test_converse_returns_the_parsed_reply(bedrock: BedrockFake, gateway: ConverseGateway) -> None:
    bedrock.reply(converse_response("Paris.", reasoning="thinking"), expected_params=REQUEST)
    reply = gateway.converse(REQUEST, deadline=in_seconds(10.5))
    assert reply.stop_reason == "end_turn"
    assert [block.text for block in reply.content] == [None, "Paris."]
    assert reply.usage.output_tokens == 7
    assert reply.latency_ms == 321
    assert bedrock.read_timeouts == [9]


def test_throttling_is_retried_with_backoff_until_it_succeeds(bedrock: BedrockFake, gateway: ConverseGateway) -> None:
    def respond(request: AWSPreparedRequest, attempt: int) -> AWSResponse:
        if attempt == 1:
            return error_response(request, 429, "ThrottlingException")
        return http_response(request, 200, converse_response())

    bedrock.on_send(respond)
    assert gateway.converse(REQUEST, deadline=in_seconds(10)).stop_reason == "end_turn"
    assert bedrock.sent == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "ServiceUnavailableException"), (500, "InternalServerException"), (429, "ModelNotReadyException")],
)
@pytest.mark.row(8)
def test_transient_failures_are_retried(bedrock: BedrockFake, gateway: ConverseGateway, status: int, code: str) -> None:
    bedrock.on_send(
        lambda request, attempt: (
            error_response(request, status, code) if attempt == 1 else http_response(request, 200, converse_response())
        )
    )
    gateway.converse(REQUEST, deadline=in_seconds(10))
    assert bedrock.sent == 2


@pytest.mark.row(7)
def test_attempts_are_bounded_and_the_last_throttle_says_when_to_retry(
    bedrock: BedrockFake, gateway: ConverseGateway
) -> None:
    bedrock.on_send(lambda request, _: error_response(request, 429, "ThrottlingException"))
    with pytest.raises(BedrockThrottled) as raised:
        gateway.converse(REQUEST, deadline=in_seconds(10))
    assert bedrock.sent == 3
    assert raised.value.retry_after is not None
    assert raised.value.retry_after >= 1


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "ValidationException", BedrockValidation),
        (403, "AccessDeniedException", BedrockAccessDenied),
        (404, "ResourceNotFoundException", BedrockNotFound),
        (424, "ModelErrorException", BedrockModelError),
    ],
)
def test_errors_a_retry_cannot_fix_are_not_retried(
    bedrock: BedrockFake, gateway: ConverseGateway, status: int, code: str, kind: type[BedrockError]
) -> None:
    bedrock.on_send(lambda request, _: error_response(request, status, code, "arn:aws:iam::123456789012:role/x"))
    with pytest.raises(kind):
        gateway.converse(REQUEST, deadline=in_seconds(10))
    assert bedrock.sent == 1


def test_no_call_starts_when_the_deadline_leaves_no_time(bedrock: BedrockFake, gateway: ConverseGateway) -> None:
    bedrock.on_send(lambda request, _: http_response(request, 200, converse_response()))
    with pytest.raises(BedrockTimeout) as raised:
        gateway.converse(REQUEST, deadline=in_seconds(1.5))
    assert raised.value.code == "DeadlineExceeded"
    assert bedrock.sent == 0


def test_a_retry_the_deadline_cannot_hold_is_not_made(bedrock: BedrockFake, gateway: ConverseGateway) -> None:
    def slow_unavailable(request: AWSPreparedRequest, _: int) -> AWSResponse:
        time.sleep(0.5)
        return error_response(request, 503, "ServiceUnavailableException")

    bedrock.on_send(slow_unavailable)
    with pytest.raises(BedrockUnavailable):
        gateway.converse(REQUEST, deadline=in_seconds(2.3))
    assert bedrock.sent == 1


def test_a_quick_read_timeout_is_retried_when_time_allows(bedrock: BedrockFake, gateway: ConverseGateway) -> None:
    def respond(request: AWSPreparedRequest, attempt: int) -> AWSResponse:
        if attempt == 1:
            raise read_timeout(request)
        return http_response(request, 200, converse_response())

    bedrock.on_send(respond)
    gateway.converse(REQUEST, deadline=in_seconds(10))
    assert bedrock.sent == 2


@pytest.mark.row(9)
def test_a_timed_out_generation_is_not_retried_without_time_for_another(
    bedrock: BedrockFake, gateway: ConverseGateway
) -> None:
    def slow_timeout(request: AWSPreparedRequest, _: int) -> AWSResponse:
        time.sleep(0.6)
        raise read_timeout(request)

    bedrock.on_send(slow_timeout)
    with pytest.raises(BedrockTimeout) as raised:
        gateway.converse(REQUEST, deadline=in_seconds(2.5))
    assert raised.value.code == "ReadTimeout"
    assert bedrock.sent == 1
    assert bedrock.read_timeouts == [1]


def test_backoff_is_exponential_full_jitter_and_capped(bedrock: BedrockFake, monkeypatch: pytest.MonkeyPatch) -> None:
    ceilings: list[float] = []

    class Highest:
        def uniform(self, low: float, high: float) -> float:
            assert low == 0
            ceilings.append(high)
            return 0.0

    monkeypatch.setattr(shared.converse, "_jitter", Highest())
    gateway = ConverseGateway(max_attempts=5, backoff_base=0.1, backoff_cap=0.3, clients=bedrock.client_for)
    bedrock.on_send(lambda request, _: error_response(request, 429, "ThrottlingException"))
    with pytest.raises(BedrockThrottled) as raised:
        gateway.converse(REQUEST, deadline=in_seconds(20))
    assert ceilings == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert raised.value.retry_after == 1


@pytest.mark.parametrize(
    "body",
    [
        {"output": {}, "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2}},
        {"output": {"message": {"role": "assistant", "content": [{"text": "x"}]}}, "stopReason": "end_turn"},
    ],
)
def test_an_unreadable_response_is_a_model_error(
    bedrock: BedrockFake, gateway: ConverseGateway, body: dict[str, Any]
) -> None:
    bedrock.on_send(lambda request, _: http_response(request, 200, body))
    with pytest.raises(BedrockModelError) as raised:
        gateway.converse(REQUEST, deadline=in_seconds(10))
    assert raised.value.code == "Unreadable"
    assert bedrock.sent == 1


# --- guardrails ---------------------------------------------------------------------------------------


def test_apply_guardrail_checks_texts_against_the_version(bedrock: BedrockFake, gateway: ConverseGateway) -> None:
    response = {
        "usage": {
            "topicPolicyUnits": 0,
            "contentPolicyUnits": 1,
            "wordPolicyUnits": 0,
            "sensitiveInformationPolicyUnits": 1,
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0,
        },
        "action": "GUARDRAIL_INTERVENED",
        "actionReason": "Guardrail masked.",
        "outputs": [{"text": "Call me at {PHONE}."}],
        "assessments": [
            {
                "sensitiveInformationPolicy": {
                    "piiEntities": [{"match": "555-0100", "type": "PHONE", "action": "ANONYMIZED", "detected": True}],
                    "regexes": [],
                }
            }
        ],
    }
    bedrock.stubber.add_response(
        "apply_guardrail",
        response,
        {
            "guardrailIdentifier": GUARDRAIL_ID,
            "guardrailVersion": GUARDRAIL_VERSION,
            "source": "OUTPUT",
            "content": [{"text": {"text": "Call me at 555-0100."}}],
        },
    )
    bedrock.stubber.activate()
    verdict = gateway.apply_guardrail(
        guardrail_id=GUARDRAIL_ID,
        guardrail_version=GUARDRAIL_VERSION,
        source="OUTPUT",
        texts=["Call me at 555-0100."],
        deadline=in_seconds(5),
    )
    assert verdict.intervened
    assert [output.text for output in verdict.outputs] == ["Call me at {PHONE}."]
    assert verdict.findings() == ("sensitiveInformationPolicy:PHONE",)


def test_guardrail_findings_name_policies_never_matches(load_event: Any) -> None:
    reply = ConverseReply.model_validate(load_event("converse_guardrail_intervened.json"))
    assert reply.guardrail_findings() == ("input:contentPolicy:VIOLENCE", "input:wordPolicy:custom")
    assert "pipe bomb" not in repr(reply.guardrail_findings())


def test_guardrail_findings_cover_every_policy() -> None:
    assessment = {
        "topicPolicy": {"topics": [{"name": "Investment advice", "type": "DENY", "action": "BLOCKED"}]},
        "contentPolicy": {"filters": [{"type": "HATE", "confidence": "LOW", "action": "NONE"}]},
        "wordPolicy": {
            "customWords": [],
            "managedWordLists": [{"match": "x", "type": "PROFANITY", "action": "BLOCKED"}],
        },
        "sensitiveInformationPolicy": {
            "piiEntities": [],
            "regexes": [{"name": "account-number", "match": "ACC-1", "regex": "ACC-\\d", "action": "BLOCKED"}],
        },
        "contextualGroundingPolicy": {
            "filters": [{"type": "GROUNDING", "threshold": 0.7, "score": 0.2, "action": "BLOCKED"}]
        },
        "automatedReasoningPolicy": {"findings": [{"invalid": {}}, {"valid": {}}]},
    }
    assert guardrail_findings(assessment) == [
        "topicPolicy:Investment advice",
        "wordPolicy:PROFANITY",
        "sensitiveInformationPolicy:account-number",
        "contextualGroundingPolicy:GROUNDING",
        "automatedReasoningPolicy:invalid",
    ]


def test_output_assessments_are_reported_as_output() -> None:
    body = converse_response("Blocked answer.", stop_reason="guardrail_intervened")
    body["trace"] = {
        "guardrail": {
            "outputAssessments": {
                GUARDRAIL_ID: [{"contentPolicy": {"filters": [{"type": "MISCONDUCT", "action": "BLOCKED"}]}}]
            }
        }
    }
    assert ConverseReply.model_validate(body).guardrail_findings() == ("output:contentPolicy:MISCONDUCT",)
