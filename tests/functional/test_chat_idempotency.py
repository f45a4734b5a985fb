"""Idempotency-Key on POST /v1/chat/completions (row 12): the chat handler with moto's DynamoDB and fake Bedrock."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws

from chat import idempotency
from chat.app import app
from chat.settings import ChatSettings
from local.apigw import CALLER_ARN, build_event
from local.lambda_runtime import fresh_container
from local.moto_patches import unmocked
from tests.apigw_bridge import BridgeResponse, chat_context, invoke_event
from tests.bedrock_fakes import BedrockFake, converse_response, converse_stream_events, http_response

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TABLE = "chat-idempotency"
TTL_SECONDS = 900
REMAINING_MS = 10_000
CRASHED_INVOCATION_MS = 4_000
OTHER_CALLER = "arn:aws:sts::123456789012:assumed-role/billing-service/billing-service"
REPO = Path(__file__).resolve().parents[2]

# A rejected request publishes no metric, which Powertools warns about.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def chat(content: str = "What is the capital of France?", **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": content}], **fields}


def post(
    body: dict[str, Any],
    key: str | None = None,
    *,
    caller: str = CALLER_ARN,
    headers: dict[str, str] | None = None,
    remaining_ms: int = REMAINING_MS,
    path: str = "/v1/chat/completions",
) -> BridgeResponse:
    sent = {
        "Content-Type": "application/json",
        **({"Idempotency-Key": key} if key is not None else {}),
        **(headers or {}),
    }
    event = build_event("POST", path, headers=sent, body=json.dumps(body), caller_arn=caller)
    return invoke_event(app, event, chat_context(remaining_ms=remaining_ms))


def error_of(response: BridgeResponse) -> dict[str, Any]:
    envelope = json.loads(response.body)
    assert set(envelope) == {"error"}
    assert response.headers["x-request-id"] in envelope["error"]["message"]
    error: dict[str, Any] = envelope["error"]
    return error


def items(dynamodb: DynamoDBClient) -> list[dict[str, Any]]:
    return dynamodb.scan(TableName=TABLE)["Items"]


class StoreCalls:
    """Every DynamoDB operation the idempotency store makes, by name."""

    def __init__(self) -> None:
        self.operations: list[str] = []

    def record(self, model: Any, **_: Any) -> None:
        self.operations.append(model.name)


@pytest.fixture
def store_calls(bedrock: BedrockFake, monkeypatch: pytest.MonkeyPatch) -> Iterator[StoreCalls]:
    """The chat function with an idempotency table in moto; every DynamoDB call of the function is recorded."""
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", TABLE)
    monkeypatch.setenv("IDEMPOTENCY_TTL_SECONDS", str(TTL_SECONDS))
    fresh_container()
    calls = StoreCalls()
    real_store = idempotency.persistence_store

    def recorded_store(table_name: str) -> Any:
        store = real_store(table_name)
        if not getattr(store, "_recorded", False):
            store.client.meta.events.register("before-call.dynamodb.*", calls.record)
            store._recorded = True  # type: ignore[attr-defined]
        return store

    monkeypatch.setattr(idempotency, "persistence_store", recorded_store)
    # moto has no Converse: the fake answers Bedrock, moto only DynamoDB.
    unmocked(bedrock.client)
    with mock_aws():
        yield calls


@pytest.fixture
def dynamodb(store_calls: StoreCalls) -> DynamoDBClient:
    """moto's DynamoDB with the table as the chat stack creates it (partition key `id`, TTL on `expiration`)."""
    client: DynamoDBClient = boto3.client("dynamodb")
    client.create_table(
        TableName=TABLE,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=TABLE, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expiration"}
    )
    return client


@pytest.mark.row(12)
def test_a_concurrent_duplicate_gets_409_while_the_first_is_answered(
    bedrock: BedrockFake, dynamodb: DynamoDBClient
) -> None:
    second_answered = threading.Event()
    in_progress: list[dict[str, Any]] = []

    def slow_model(request: AWSPreparedRequest, attempt: int) -> AWSResponse:
        # The first request waits inside Bedrock until the duplicate has its answer: the order is fixed.
        in_progress.extend(items(dynamodb))
        assert second_answered.wait(timeout=30)
        return http_response(request, 200, converse_response("Paris."))

    bedrock.on_send(slow_model)
    first: list[BridgeResponse] = []
    thread = threading.Thread(target=lambda: first.append(post(chat(), "order-42")))
    started = time.time()
    thread.start()
    deadline = time.monotonic() + 30
    while not bedrock.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    second = post(chat(), "order-42")
    second_answered.set()
    thread.join(timeout=30)

    assert second.status == 409
    error = error_of(second)
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "idempotency_request_in_progress",
        "Idempotency-Key",
    )
    assert second.headers["Retry-After"] == "2"
    assert [response.status for response in first] == [200]
    assert json.loads(first[0].body)["choices"][0]["message"]["content"] == "Paris."
    assert bedrock.sent == 1
    # While it ran, the record said so, and would expire with the invocation (a crashed container frees the key).
    [record] = in_progress
    assert record["status"] == {"S": "INPROGRESS"}
    expires_ms = int(record["in_progress_expiration"]["N"])
    assert started * 1000 < expires_ms <= (time.time() + REMAINING_MS / 1000) * 1000


@pytest.mark.row(12)
def test_a_completed_request_is_replayed_without_a_second_model_call(
    bedrock: BedrockFake, dynamodb: DynamoDBClient, store_calls: StoreCalls
) -> None:
    bedrock.reply(converse_response("Paris."))
    first = post(chat(), "order-42")
    replay = post(chat(), "order-42")

    assert (first.status, replay.status) == (200, 200)
    assert replay.body == first.body
    assert replay.headers["Content-Type"] == "application/json"
    assert replay.headers["x-request-id"] != first.headers["x-request-id"]
    assert len(bedrock.calls) == 1
    [record] = items(dynamodb)
    assert record["status"] == {"S": "COMPLETED"}
    assert abs(int(record["expiration"]["N"]) - (time.time() + TTL_SECONDS)) < 60
    # The answer is stored, the prompt, the caller and the key only as hashes.
    assert json.loads(record["data"]["S"]) == json.loads(first.body)
    stored = json.dumps(record)
    for secret in ("capital of France", CALLER_ARN, "order-42"):
        assert secret not in stored
    assert store_calls.operations == ["PutItem", "UpdateItem", "PutItem"]


@pytest.mark.row(12)
def test_the_same_key_with_a_different_body_is_422(bedrock: BedrockFake, dynamodb: DynamoDBClient) -> None:
    bedrock.reply(converse_response("Paris."))
    assert post(chat(), "order-42").status == 200
    for changed in (chat("What is the capital of Spain?"), chat(temperature=0.5), chat(stream=True)):
        response = post(changed, "order-42")
        assert response.status == 422
        error = error_of(response)
        assert (error["type"], error["code"], error["param"]) == (
            "invalid_request_error",
            "idempotency_key_reused",
            "Idempotency-Key",
        )
    assert len(bedrock.calls) == 1


@pytest.mark.row(12)
def test_without_the_header_nothing_is_cached_and_dynamodb_is_never_called(
    bedrock: BedrockFake, dynamodb: DynamoDBClient, store_calls: StoreCalls
) -> None:
    bedrock.reply(converse_response("Paris."))
    bedrock.reply(converse_response("Paris."))
    assert [post(chat()).status, post(chat()).status] == [200, 200]
    assert len(bedrock.calls) == 2
    assert store_calls.operations == []
    assert items(dynamodb) == []


@pytest.mark.row(12)
def test_callers_never_share_a_key(bedrock: BedrockFake, dynamodb: DynamoDBClient) -> None:
    bedrock.reply(converse_response("Paris."))
    bedrock.reply(converse_response("Madrid."))
    ours = post(chat(), "order-42")
    theirs = post(chat(), "order-42", caller=OTHER_CALLER)
    assert (ours.status, theirs.status) == (200, 200)
    assert json.loads(theirs.body)["choices"][0]["message"]["content"] == "Madrid."
    assert len(bedrock.calls) == 2
    assert len(items(dynamodb)) == 2
    assert post(chat(), "order-42").body == ours.body


class ContainerDied(BaseException):
    """The execution environment going away mid-request: no handler of ours (or Powertools') runs after it."""


@pytest.mark.row(12)
# 4 s: a Bedrock call needs 2 s left (a connect and a read timeout of a second each), and the first keyed request
# of a test spends up to a second before it (loading the idempotency machinery, moto's DynamoDB) on a loaded
# machine: with 2.1 s, it sometimes had too little left to call Bedrock at all and answered 504 instead.
@pytest.mark.parametrize(("remaining_ms", "retry_status"), [(CRASHED_INVOCATION_MS, 200), (REMAINING_MS, 409)])
def test_a_crashed_request_frees_its_key_when_the_invocation_would_have_timed_out(
    bedrock: BedrockFake,
    dynamodb: DynamoDBClient,
    monkeypatch: pytest.MonkeyPatch,
    remaining_ms: int,
    retry_status: int,
) -> None:
    # No margin, so the short invocation still calls Bedrock.
    monkeypatch.setenv("DEADLINE_MARGIN_MS", "0")
    fresh_container()

    def crash(request: AWSPreparedRequest, attempt: int) -> AWSResponse:
        if attempt == 1:
            raise ContainerDied
        return http_response(request, 200, converse_response("Paris."))

    bedrock.on_send(crash)
    with pytest.raises(ContainerDied):
        post(chat(), "order-42", remaining_ms=remaining_ms)
    [record] = items(dynamodb)
    assert record["status"] == {"S": "INPROGRESS"}
    time.sleep(CRASHED_INVOCATION_MS / 1000 + 0.2)
    # The record's in-progress deadline was the crashed invocation's: past it, the key runs again.
    assert post(chat(), "order-42").status == retry_status
    assert bedrock.sent == (2 if retry_status == 200 else 1)


@pytest.mark.row(12)
def test_a_failed_request_is_not_cached(bedrock: BedrockFake, dynamodb: DynamoDBClient) -> None:
    bedrock.fail("AccessDeniedException", 403)
    failed = post(chat(), "order-42")
    assert failed.status == 500
    assert error_of(failed)["code"] == "internal_error"
    assert items(dynamodb) == []
    bedrock.reply(converse_response("Paris."))
    retried = post(chat(), "order-42")
    assert retried.status == 200
    assert len(bedrock.calls) == 2


@pytest.mark.row(12)
@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Idempotency-Key": ""}, "empty"),
        ({"Idempotency-Key": "k" * 256}, "too long"),
        ({"Idempotency-Key": "clé-42"}, "not ASCII"),
        ({"Idempotency-Key": "tab\there"}, "a control character"),
        ({"Idempotency-Key": " padded"}, "a leading blank"),
    ],
)
def test_an_invalid_key_is_400_naming_the_header(
    bedrock: BedrockFake, dynamodb: DynamoDBClient, store_calls: StoreCalls, headers: dict[str, str], why: str
) -> None:
    response = post(chat(), headers=headers)
    assert response.status == 400, why
    error = error_of(response)
    assert (error["type"], error["param"]) == ("invalid_request_error", "Idempotency-Key")
    assert bedrock.calls == []
    assert store_calls.operations == []


@pytest.mark.row(12)
def test_a_key_given_twice_is_400(bedrock: BedrockFake, dynamodb: DynamoDBClient, store_calls: StoreCalls) -> None:
    event = build_event(
        "POST",
        "/v1/chat/completions",
        headers={"Content-Type": "application/json", "Idempotency-Key": "b"},
        body=json.dumps(chat()),
    )
    event["multiValueHeaders"]["Idempotency-Key"] = ["a", "b"]
    response = invoke_event(app, event, chat_context(remaining_ms=REMAINING_MS))
    assert response.status == 400
    assert error_of(response)["param"] == "Idempotency-Key"
    assert (bedrock.calls, store_calls.operations) == ([], [])


@pytest.mark.row(12)
def test_the_longest_key_and_any_header_case_are_accepted(bedrock: BedrockFake, dynamodb: DynamoDBClient) -> None:
    bedrock.reply(converse_response("Paris."))
    key = "~" + "k" * 253 + "!"
    first = post(chat(), headers={"idempotency-key": key})
    assert first.status == 200
    assert post(chat(), headers={"IDEMPOTENCY-KEY": key}).body == first.body
    assert len(bedrock.calls) == 1


@pytest.mark.row(12)
def test_a_streaming_request_is_replayed_as_server_sent_events(bedrock: BedrockFake, dynamodb: DynamoDBClient) -> None:
    bedrock.reply_stream(converse_stream_events("The capital of France is Paris.", reasoning="Easy."))
    body = chat(stream=True, stream_options={"include_usage": True})
    first = post(body, "stream-7")
    replay = post(body, "stream-7")
    assert (first.status, replay.status) == (200, 200)
    assert replay.headers["Content-Type"] == first.headers["Content-Type"]
    assert first.headers["Content-Type"].startswith("text/event-stream")
    assert replay.body.endswith("data: [DONE]\n\n")
    # The first streamed live, piece by piece; the replay renders the stored completion: the same answer.
    assert _streamed(replay) == _streamed(first)
    assert len(_data(first)) > len(_data(replay))
    [record] = items(dynamodb)
    assert record["status"] == {"S": "COMPLETED"}
    assert len(bedrock.calls) == 1


@pytest.mark.row(12)
def test_a_response_is_replayed_whole_and_streamed_under_its_own_record(
    bedrock: BedrockFake, dynamodb: DynamoDBClient
) -> None:
    bedrock.reply(converse_response("Paris."))
    body = {"model": "gpt-oss-20b", "input": "What is the capital of France?"}
    first = post(body, "resp-1", path="/v1/responses")
    replay = post(body, "resp-1", path="/v1/responses")
    assert (first.status, replay.status) == (200, 200)
    assert replay.body == first.body
    assert json.loads(first.body)["object"] == "response"
    # The same key on the other API is another record: a chat completion is not a response.
    bedrock.reply(converse_response("Paris."))
    assert post(chat(), "resp-1").status == 200
    assert len(items(dynamodb)) == 2
    assert len(bedrock.calls) == 2


@pytest.mark.row(12)
def test_a_streamed_response_is_replayed_as_its_events(bedrock: BedrockFake, dynamodb: DynamoDBClient) -> None:
    bedrock.reply_stream(converse_stream_events("The capital of France is Paris."))
    body = {"model": "gpt-oss-20b", "input": "What is the capital of France?", "stream": True}
    streamed = post(body, "resp-2", path="/v1/responses")
    streamed_replay = post(body, "resp-2", path="/v1/responses")
    assert streamed_replay.headers["Content-Type"].startswith("text/event-stream")
    replayed = [json.loads(frame.split("data: ", 1)[1]) for frame in streamed_replay.body.split("\n\n") if frame]
    final = [json.loads(frame.split("data: ", 1)[1]) for frame in streamed.body.split("\n\n") if frame][-1]
    assert [event["sequence_number"] for event in replayed] == list(range(len(replayed)))
    # The stored response, under its own id, after the same items whole: one model call.
    assert replayed[-1] == {**final, "sequence_number": replayed[-1]["sequence_number"]}
    assert {event["response"]["id"] for event in replayed if "response" in event} == {final["response"]["id"]}
    assert len(bedrock.calls) == 1


def _data(response: BridgeResponse) -> list[dict[str, Any]]:
    frames = [frame.removeprefix("data: ") for frame in response.body.split("\n\n") if frame.startswith("data: ")]
    return [json.loads(frame) for frame in frames if frame != "[DONE]"]


def _streamed(response: BridgeResponse) -> tuple[str, str | None, dict[str, Any]]:
    chunks = _data(response)
    content = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks if chunk["choices"])
    finish = next(
        chunk["choices"][0]["finish_reason"]
        for chunk in chunks
        if chunk["choices"] and chunk["choices"][0]["finish_reason"]
    )
    return content, finish, chunks[-1]["usage"]


@pytest.mark.row(12)
def test_an_unavailable_store_is_503_before_any_model_call(bedrock: BedrockFake, store_calls: StoreCalls) -> None:
    # No table: the store fails on its first write, and the caller asked for at-most-once, so nothing runs.
    response = post(chat(), "order-42")
    assert response.status == 503
    assert error_of(response)["code"] == "idempotency_store_unavailable"
    assert bedrock.calls == []
    assert store_calls.operations == ["PutItem"]


def _failing(operation: str) -> None:
    """Make the function's store fail every `operation` (a DynamoDB API name), as an outage would."""

    def fail(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalServerError", "Message": "outage"}}, operation)

    idempotency.persistence_store(TABLE).client.meta.events.register(f"before-call.dynamodb.{operation}", fail)


@pytest.mark.row(12)
def test_an_answer_the_store_cannot_keep_still_reaches_the_caller(
    bedrock: BedrockFake, dynamodb: DynamoDBClient
) -> None:
    bedrock.reply(converse_response("Paris."))
    _failing("UpdateItem")
    answered = post(chat(), "order-42")
    assert answered.status == 200
    assert json.loads(answered.body)["choices"][0]["message"]["content"] == "Paris."
    # Not replayable: the key stays in progress until the invocation's deadline, then runs again.
    [record] = items(dynamodb)
    assert record["status"] == {"S": "INPROGRESS"}
    assert post(chat(), "order-42").status == 409
    assert len(bedrock.calls) == 1


@pytest.mark.row(12)
def test_a_failed_request_whose_record_cannot_be_cleared_keeps_its_own_error(
    bedrock: BedrockFake, dynamodb: DynamoDBClient
) -> None:
    bedrock.fail("ValidationException", 400, "prompt rejected")
    _failing("DeleteItem")
    failed = post(chat(), "order-42")
    assert failed.status == 400
    assert error_of(failed)["code"] == "invalid_request"


def test_the_idempotency_machinery_is_not_loaded_by_requests_without_the_header() -> None:
    # Cold start and per-request cost: Powertools' idempotency package and a DynamoDB client only with the header;
    # its parameters utility (the Batch API's, which loads a DynamoDB provider) only on a Batch API request.
    script = """
import json, sys
from tests.bedrock_fakes import CHAT_ENVIRONMENT
import os
os.environ.update(CHAT_ENVIRONMENT, IDEMPOTENCY_TABLE_NAME="chat-idempotency")
import chat.app
lazy = ("aws_lambda_powertools.utilities.idempotency", "aws_lambda_powertools.utilities.parameters",
        "boto3.dynamodb", "chat.idempotency.")
print(json.dumps(sorted(name for name in sys.modules if name.startswith(lazy))))
"""
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{REPO}/functions:{REPO}", "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run(  # noqa: S603 (our own interpreter, a fixed script)
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environment, cwd=REPO
    )
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_settings_default_to_an_hour(chat_env: ChatSettings) -> None:
    assert chat_env.IDEMPOTENCY_TTL_SECONDS == 3600
    assert chat_env.IDEMPOTENCY_TABLE_NAME is None


@pytest.mark.row(12)
def test_keyed_requests_keep_prompts_answers_and_keys_out_of_logs_and_metrics(
    bedrock: BedrockFake,
    dynamodb: DynamoDBClient,
    capfd: pytest.CaptureFixture[str],
    logs: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # INFO: the level the function runs at (botocore's DEBUG log would print every request body).
    caplog.set_level(logging.INFO)
    bedrock.reply(converse_response("okapi-answer-17", reasoning="pangolin-thought-5"))
    body = chat("zebra-prompt-42", include_reasoning=True)
    responses = [post(body, "key-lynx-9"), post(body, "key-lynx-9"), post(chat("zebra-prompt-43"), "key-lynx-9")]
    assert [response.status for response in responses] == [200, 200, 422]
    assert "okapi-answer-17" in responses[1].body
    captured = capfd.readouterr()
    records = "\n".join(f"{record.name} {record.getMessage()} {record.args!r}" for record in caplog.records)
    written = "\n".join([captured.out, captured.err, logs.getvalue(), records])
    assert "chat completion replayed" in written
    for secret in ("zebra-prompt-4", "okapi-answer-17", "pangolin-thought-5", "key-lynx-9"):
        assert secret not in written
