"""`Idempotency-Key` on POST /v1/chat/completions and /v1/responses: one answer per caller and key, from DynamoDB.

Powertools' idempotency utility keeps one record per (signing principal, header value):
- IN_PROGRESS while the first request runs: a duplicate gets 409. The record also carries the Lambda
  deadline, so when the container dies mid-request the key becomes usable again once the function's
  timeout has passed.
- COMPLETED with the chat.completion (or response object) for IDEMPOTENCY_TTL_SECONDS: a duplicate gets it back
  (as JSON or, with `stream: true`, as server-sent events) without a model call.
- deleted when the request fails, so a failed request can be retried with the same key.

The record id hashes the caller's ARN with the key, so one caller can never read another's answer; the
whole validated request body is hashed too, so the same key with another body is a 422. The prompt is
never stored, only its hash; the answer is (in a table encrypted with the stack's KMS key).

Requests without the header never come here: Powertools' idempotency package (and boto3's DynamoDB client)
load on the first request that carries one. A streamed request's completion is stored when its stream ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pydantic import BaseModel

from chat.edge import IDEMPOTENCY_HEADER, Call
from chat.errors import (
    IdempotencyInProgress,
    IdempotencyKeyReused,
    IdempotencyStoreUnavailable,
    ServiceMisconfigured,
)
from chat.models import ChatCompletion
from chat.responses_models import Response
from chat.settings import ChatSettings
from shared.observability import logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from aws_lambda_powertools.utilities.typing import LambdaContext

# The record ids' prefixes, per kind of answer: fixed, so records do not depend on the function's (generated) name.
# Chat completions keep the prefix they always had, so records written before responses existed still match.
_RECORD_PREFIXES: dict[type[BaseModel], str] = {ChatCompletion: "chat.completions", Response: "responses"}
AnswerT = TypeVar("AnswerT", bound=BaseModel)


@dataclass(frozen=True)
class _TimeLeft:
    """What Powertools reads of a Lambda context: the time the request has left (its in-progress expiry)."""

    call: Call[Any]

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds before this request's deadline."""
        return self.call.remaining_ms()


def answer_once(
    call: Call[Any], *, settings: ChatSettings, answer: Callable[[], AnswerT], kind: type[AnswerT]
) -> tuple[AnswerT, bool]:
    """`answer()` at most once per caller and key while its record lives, and whether this was a replay.

    Raises:
        IdempotencyInProgress: the first request with this key is still running (409).
        IdempotencyKeyReused: the key was used with another request body (422).
        IdempotencyStoreUnavailable: the store failed before an answer existed (503).
        ServiceMisconfigured: no table is configured, or the request carries no caller to scope the key to.
        ChatError, BedrockError: whatever `answer()` raised (nothing is stored then).
    """
    from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
    from aws_lambda_powertools.utilities.idempotency.exceptions import (
        IdempotencyAlreadyInProgressError,
        IdempotencyInconsistentStateError,
        IdempotencyPersistenceLayerError,
        IdempotencyValidationError,
    )
    from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

    if settings.IDEMPOTENCY_TABLE_NAME is None or call.caller is None or call.body is None:
        # Deployed, every request is SigV4-signed and the stack sets the table: this is a wiring fault.
        raise ServiceMisconfigured(f"This deployment cannot honour the {IDEMPOTENCY_HEADER} header.")
    config = IdempotencyConfig(
        event_key_jmespath="[caller, key]",
        payload_validation_jmespath="request",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=settings.IDEMPOTENCY_TTL_SECONDS,
        # Record ids must not collide across callers, whatever keys they choose.
        hash_function="sha256",
    )
    # The in-progress record expires with this request's deadline, so a key is free again if the function dies.
    config.register_lambda_context(cast("LambdaContext", _TimeLeft(call)))
    produced: list[AnswerT] = []
    failed: list[Exception] = []

    # Powertools leaves the decorator's return type unannotated; `run` keeps its own.
    @idempotent_function(  # type: ignore[untyped-decorator]
        data_keyword_argument="payload",
        persistence_store=persistence_store(settings.IDEMPOTENCY_TABLE_NAME),
        config=config,
        output_serializer=PydanticSerializer(kind),
        key_prefix=_RECORD_PREFIXES[kind],
    )
    def run(payload: dict[str, Any]) -> AnswerT:
        try:
            completion = answer()
        except Exception as error:
            failed.append(error)
            raise
        produced.append(completion)
        return completion

    payload = {"caller": call.caller, "key": call.idempotency_key, "request": call.body.model_dump(mode="json")}
    try:
        result = run(payload=payload)
    except IdempotencyAlreadyInProgressError:
        raise IdempotencyInProgress(
            f"A request with this {IDEMPOTENCY_HEADER} is still in progress; retry after it has finished.",
            param=IDEMPOTENCY_HEADER,
        ) from None
    except IdempotencyValidationError:
        raise IdempotencyKeyReused(
            f"This {IDEMPOTENCY_HEADER} was already used with a different request body; use a new key for a new "
            "request.",
            param=IDEMPOTENCY_HEADER,
        ) from None
    except (IdempotencyPersistenceLayerError, IdempotencyInconsistentStateError) as error:
        return _after_store_failure(error, produced=produced, failed=failed), False
    if not isinstance(result, kind):
        raise IdempotencyStoreUnavailable("The stored answer for this key could not be read; please retry.")
    if not produced:
        logger.info("chat completion replayed", idempotency="replayed")
    return result, not produced


def _after_store_failure(error: Exception, *, produced: list[AnswerT], failed: list[Exception]) -> AnswerT:
    # After a failed answer write or cleanup, the record stays IN_PROGRESS until this invocation's deadline:
    # a retry before then gets 409, after it a new run.
    logger.warning("idempotency store failed", error_type=type(error).__name__, answered=bool(produced))
    if produced:
        # The model already answered (and was paid for): the caller gets it, it just cannot be replayed.
        return produced[0]
    if failed:
        # Powertools reports the failed cleanup; the caller needs the request's own error.
        raise failed[0]
    raise IdempotencyStoreUnavailable(f"The {IDEMPOTENCY_HEADER} store is unavailable; please retry.") from None


@cache
def persistence_store(table_name: str) -> DynamoDBPersistenceLayer:
    """The container's DynamoDB persistence layer for `table_name` (its client is built on first use)."""
    import boto3
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
    from botocore.config import Config

    # DynamoDB answers in milliseconds; these keep a sick endpoint from eating the request's whole budget.
    config = Config(connect_timeout=2, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})
    # boto3's default session, as the Bedrock client's: its loaded endpoint data halves the client's creation
    # time (≈ 90 ms instead of ≈ 170). One invocation at a time per container, so no creation runs concurrently.
    client = boto3.client("dynamodb", config=config)
    return DynamoDBPersistenceLayer(table_name=table_name, boto3_client=client)
