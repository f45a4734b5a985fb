"""The aws backend's model (`AmazonBedrock`) and the moto-detached client it calls through, offline.

Inside `mock_aws` (as under `up`), a detached client goes on to its real endpoint while an ordinary one is
answered by moto. Converse goes to a loopback stand-in; InvokeModel, which the stand-in does not serve, is
stubbed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import urllib3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws

from local import moto_patches
from local.bedrock import AmazonBedrock, BedrockStandIn, ModelError, build_model
from local.harness import MOTO_CONFIG
from local.services import serving
from shared.eventstream import CONTENT_TYPE, converse_stream_message
from shared.model_stand_in import wire_response

MODEL = "openai.gpt-oss-20b-1:0"
CONVERSE = {"modelId": MODEL, "messages": [{"role": "user", "content": [{"text": "Hello there"}]}]}


@pytest.fixture
def stand_in() -> Iterator[str]:
    model = build_model("offline", tokens_per_second=None)
    with serving(BedrockStandIn(model), "bedrock-stand-in") as server:
        yield server.url


def _client(endpoint_url: str | None = None) -> AmazonBedrock:
    return AmazonBedrock(boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=endpoint_url))


def test_a_detached_client_is_never_answered_by_moto() -> None:
    """Both clients call Bedrock's real endpoint; a later before-send hook stands in for the network."""
    canned = {
        "output": {"message": {"role": "assistant", "content": [{"text": "from the endpoint"}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
        "metrics": {"latencyMs": 1},
    }

    def network(request: AWSPreparedRequest, **_: object) -> Any:
        return wire_response(request.url, 200, json.dumps(canned).encode())

    moto_patches.install()
    with mock_aws(config=MOTO_CONFIG):
        detached, mocked = AmazonBedrock(moto_patches.unmocked(_client().client)), _client()
        for bedrock in (detached, mocked):
            bedrock.client.meta.events.register("before-send", network)
        real = detached.converse(CONVERSE)
        fake = mocked.converse(CONVERSE)
    assert real == canned  # Bedrock's response as it came, without botocore's ResponseMetadata
    assert fake["output"]["message"]["content"][-1]["text"].startswith("You asked: ")


@pytest.mark.enable_socket
def test_converse_and_its_errors_through_a_bedrock_endpoint(stand_in: str) -> None:
    bedrock = _client(stand_in)
    answer = bedrock.converse(CONVERSE)
    assert MODEL in answer["output"]["message"]["content"][-1]["text"]  # the offline model names its model id
    with pytest.raises(ModelError) as unknown_model:
        bedrock.converse({**CONVERSE, "modelId": "openai.gpt-oss-1t"})
    assert (unknown_model.value.code, unknown_model.value.status) == ("ValidationException", 400)
    with pytest.raises(ModelError) as unknown_guardrail:
        bedrock.apply_guardrail(
            {"guardrailIdentifier": "nope", "guardrailVersion": "1", "source": "INPUT", "content": []}
        )
    assert unknown_guardrail.value.code == "ResourceNotFoundException"
    with pytest.raises(ModelError) as invalid:
        bedrock.converse({**CONVERSE, "notAParameter": True})
    assert invalid.value.code == "ValidationException"


@pytest.mark.enable_socket
def test_converse_stream_passes_bedrocks_events_on_as_they_come(stand_in: str) -> None:
    bedrock = _client(stand_in)
    events = list(bedrock.converse_stream(CONVERSE))
    assert events == list(build_model("offline", tokens_per_second=None).converse_stream(CONVERSE))
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    failing = {
        **CONVERSE,
        "messages": [{"role": "user", "content": [{"text": "[stream-error throttlingException after 2]"}]}],
    }
    *head, failure = bedrock.converse_stream(failing)
    assert len(head) == 3
    assert failure == {
        "throttlingException": {"message": "The stream failed as asked ([stream-error throttlingException after 2])."}
    }
    with pytest.raises(ModelError) as unknown_model:
        bedrock.converse_stream({**CONVERSE, "modelId": "openai.gpt-oss-1t"})
    assert (unknown_model.value.code, unknown_model.value.status) == ("ValidationException", 400)


def test_a_converse_stream_that_breaks_part_way_ends_with_a_stream_error() -> None:
    bedrock = _client()
    head = [{"messageStart": {"role": "assistant"}}]

    class Broken:
        """A raw body that delivers one event, then loses the connection."""

        def stream(self, **_: Any) -> Iterator[bytes]:
            yield converse_stream_message(head[0])
            raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")

        def close(self) -> None:
            closed.append(True)

    closed: list[bool] = []

    def network(request: AWSPreparedRequest, **_: object) -> Any:
        headers = HTTPHeaders()
        headers["Content-Type"] = CONTENT_TYPE
        return AWSResponse(request.url, 200, headers, Broken())

    bedrock.client.meta.events.register("before-send.bedrock-runtime.ConverseStream", network)
    *events, failure = bedrock.converse_stream(CONVERSE)
    assert events == head
    assert "modelStreamErrorException" in failure
    assert closed == [True]


def test_a_batch_record_is_one_invoke_model_call_with_the_chat_body() -> None:
    bedrock = _client()
    completion = {"object": "chat.completion", "choices": [{"message": {"content": "Paris"}}]}
    payload = json.dumps(completion).encode()
    record = {"messages": [{"role": "user", "content": "Capital of France?"}], "max_completion_tokens": 100}
    with Stubber(bedrock.client) as stub:
        stub.add_response(
            "invoke_model",
            {"body": StreamingBody(io.BytesIO(payload), len(payload)), "contentType": "application/json"},
            {
                "modelId": MODEL,
                "body": json.dumps(record).encode(),
                "contentType": "application/json",
                "accept": "application/json",
            },
        )
        stub.add_client_error("invoke_model", "ThrottlingException", "Too many requests", http_status_code=429)
        assert bedrock.chat_completion(record, model_id=MODEL) == completion
        with pytest.raises(ModelError) as throttled:
            bedrock.chat_completion(record, model_id=MODEL)
    assert (throttled.value.code, throttled.value.message, throttled.value.status) == (
        "ThrottlingException",
        "Too many requests",
        429,
    )
    with pytest.raises(ModelError, match="model of the call"):
        bedrock.chat_completion(record)
