"""Amazon Bedrock itself as the local runner's model: the `aws` backend of `python -m local up`.

The local pipeline's bucket is emulated, and a real batch job can only read real S3; so with this backend
the job lifecycle stays emulated and each record is answered by the real model through InvokeModel (what a
batch job runs for each record, billed on demand), while Converse and ApplyGuardrail (the chat API, the
pipeline's on-demand path) are Amazon Bedrock's own answers, with the real guardrail. ConverseStream events
are passed on as Bedrock sends them, each as it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import urllib3
from botocore.exceptions import BotoCoreError, ClientError, EventStreamError, ParamValidationError

from local.bedrock.model import close_if_closable
from local.bedrock.shapes import ModelError
from shared.eventstream import CONVERSE_STREAM_EXCEPTIONS

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient


class AmazonBedrock:
    """`Model` answered by Amazon Bedrock through one bedrock-runtime client (its credentials and Region)."""

    def __init__(self, client: BedrockRuntimeClient) -> None:
        self.client = client

    def converse(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Bedrock's Converse response to the request (`modelId` included).

        Raises:
            ModelError: Bedrock refused or failed the call (its error code and message).
        """
        return _call(self.client.converse, **request)

    def converse_stream(self, request: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Bedrock's ConverseStream events for the request, each as it arrives; closing the iterator ends the call.

        Raises:
            ModelError: Bedrock refused or failed the call before its stream started.
        """
        response = _call(self.client.converse_stream, **request)
        return _events(response["stream"])

    def apply_guardrail(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Bedrock's ApplyGuardrail response (`guardrailIdentifier` and `guardrailVersion` included).

        Raises:
            ModelError: Bedrock refused or failed the call.
        """
        return _call(self.client.apply_guardrail, **request)

    def chat_completion(self, body: Mapping[str, Any], *, model_id: str | None = None) -> dict[str, Any]:
        """InvokeModel with an OpenAI chat body: the chat.completion a batch job writes for that record.

        Raises:
            ModelError: no model named, or Bedrock refused or failed the call.
        """
        model = model_id or body.get("model")
        if not model:
            raise ModelError("ValidationException", "The model of the call is missing.")
        response = _call(
            self.client.invoke_model,
            modelId=str(model),
            body=json.dumps(dict(body)).encode(),
            contentType="application/json",
            accept="application/json",
        )
        completion: dict[str, Any] = json.loads(response["body"].read())
        return completion

    def close(self) -> None:
        """Release the client's connections."""
        self.client.close()


def _events(stream: Iterable[Mapping[str, Any]]) -> Iterator[dict[str, Any]]:
    """The events of a ConverseStream response; an error part-way becomes the stream's exception event."""
    try:
        yield from (dict(event) for event in stream)
    except EventStreamError as error:
        details = error.response.get("Error", {})
        member = str(details.get("Code", ""))
        message = str(details.get("Message", ""))
        yield {member if member in CONVERSE_STREAM_EXCEPTIONS else "internalServerException": {"message": message}}
    except (BotoCoreError, urllib3.exceptions.HTTPError) as error:
        # The connection broke or timed out mid-stream (botocore lets urllib3's errors through while a stream
        # is read): what Bedrock calls a model stream error.
        yield {"modelStreamErrorException": {"message": f"The stream from Amazon Bedrock broke: {error}"}}
    finally:
        close_if_closable(stream)


def _call(operation: Callable[..., Mapping[str, Any]], /, **arguments: Any) -> dict[str, Any]:
    try:
        response = dict(operation(**arguments))
    except ClientError as error:
        details = error.response.get("Error", {})
        raise ModelError(str(details.get("Code", "InternalServerException")), str(details.get("Message", ""))) from None
    except ParamValidationError as error:
        raise ModelError("ValidationException", str(error)) from None
    except BotoCoreError as error:
        raise ModelError("ServiceUnavailableException", f"Amazon Bedrock could not be reached: {error}") from None
    response.pop("ResponseMetadata", None)
    return response
