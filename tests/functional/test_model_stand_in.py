"""The model stand-in of load-test stages (row 24): the chat function answers without calling Bedrock.

The switch is the MODEL_STAND_IN variable, read when the bedrock-runtime client is created: with it the
client answers Converse at before-send (botocore still serialises the request and parses the answer);
without it nothing is registered and the normal path is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest
from botocore.hooks import first_non_none_response

import shared.converse
from chat.app import app
from chat.settings import ChatSettings
from local.lambda_runtime import fresh_container
from shared import model_stand_in
from tests.apigw_bridge import BridgeResponse, chat_context, invoke_handler

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

SEND = "before-send.bedrock-runtime.Converse"
BODY = {"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}], "include_reasoning": True}


def post(body: dict[str, Any]) -> BridgeResponse:
    return invoke_handler(
        app,
        "POST",
        "/v1/chat/completions",
        {"Content-Type": "application/json"},
        json.dumps(body),
        context=chat_context(),
    )


@pytest.fixture
def fresh_clients(chat_env: ChatSettings) -> Iterator[None]:
    """Clients and gateways built anew for the test (the switch is read when a client is created)."""
    fresh_container()
    yield
    fresh_container()


@pytest.mark.row(24)
def test_a_stand_in_stage_answers_through_botocore_without_calling_bedrock(
    fresh_clients: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(model_stand_in.STAND_IN_VARIABLE, model_stand_in.CANNED)
    # Sockets are disabled in this suite: an answer proves no HTTP call was made.
    response = post(BODY)
    assert response.status == 200, response.body
    answer = json.loads(response.body)
    message = answer["choices"][0]["message"]
    assert message["content"] == model_stand_in.ANSWER
    assert message["reasoning_content"] == model_stand_in.REASONING
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"]["completion_tokens"] == 24


@pytest.mark.row(24)
def test_a_stand_in_stage_streams_through_botocore_without_calling_bedrock(
    fresh_clients: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(model_stand_in.STAND_IN_VARIABLE, model_stand_in.CANNED)
    response = post({**BODY, "stream": True, "stream_options": {"include_usage": True}})
    assert response.status == 200, response.body
    frames = [frame.removeprefix("data: ") for frame in response.body.split("\n\n") if frame.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1]]
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    assert "".join(delta.get("content", "") for delta in deltas) == model_stand_in.ANSWER
    assert "".join(delta.get("reasoning_content", "") for delta in deltas) == model_stand_in.REASONING
    # Word by word, as a real stream arrives: the load test measures the streaming path too.
    assert len([delta for delta in deltas if delta.get("content")]) == len(model_stand_in.ANSWER.split(" "))
    assert chunks[-1]["usage"]["completion_tokens"] == 24


def test_without_the_variable_no_stand_in_is_registered(fresh_clients: None, monkeypatch: pytest.MonkeyPatch) -> None:
    request = AWSRequest(
        method="POST", url="https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse"
    ).prepare()
    monkeypatch.delenv(model_stand_in.STAND_IN_VARIABLE, raising=False)
    plain = shared.converse.runtime_client(5)
    assert first_non_none_response(plain.meta.events.emit(SEND, request=request)) is None
    fresh_container()
    monkeypatch.setenv(model_stand_in.STAND_IN_VARIABLE, model_stand_in.CANNED)
    standing_in = shared.converse.runtime_client(5)
    answered = first_non_none_response(standing_in.meta.events.emit(SEND, request=request))
    assert answered is not None
    assert answered.status_code == 200


def test_any_other_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(model_stand_in.STAND_IN_VARIABLE, "true")
    with pytest.raises(model_stand_in.StandInMisconfigured, match="must be 'canned' or unset"):
        model_stand_in.requested()
