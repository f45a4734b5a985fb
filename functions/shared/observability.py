"""The only Powertools Logger, Tracer and Metrics of the functions; service name from POWERTOOLS_SERVICE_NAME."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment
from pydantic_core import to_json

NAMESPACE = "GptOssBedrock"


class _NoSegment(BaseSegment):
    """A segment that records nothing."""

    def close(self, end_time: int | None = None) -> None:
        """Nothing to close."""

    def add_subsegment(self, subsegment: Any) -> None:
        """Nothing to add."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """Nothing to remove."""

    def put_annotation(self, key: str, value: Any) -> None:
        """Dropped."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Dropped."""

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        """Dropped."""


class NoTracing(BaseProvider):
    """The tracer's provider when tracing is off: no X-Ray SDK at all.

    Powertools' Tracer imports the X-Ray SDK even when tracing is disabled, and the SDK's recorder builds two
    botocore clients for its sampling rules as it loads (≈ 0.1 s of every cold start, a third of the handler's
    import); with tracing off nothing of it is ever used.
    """

    _segment = _NoSegment()

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        """A subsegment that records nothing."""
        yield self._segment

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        """A subsegment that records nothing."""
        yield self._segment

    def put_annotation(self, key: str, value: Any) -> None:
        """Dropped."""

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        """Dropped."""

    def patch(self, modules: Sequence[str]) -> None:
        """Nothing to patch."""

    def patch_all(self) -> None:
        """Nothing to patch."""


def _record_json(record: dict[str, Any]) -> str:
    """A log record as JSON: the bytes Powertools' json.dumps gives for what we log, in a sixth of the time."""
    return to_json(record, fallback=str).decode()


def _message_json(message: Any) -> Any:
    """Powertools logs a message that is JSON text as JSON; only text that opens like an object or a list is tried.

    Our messages are plain sentences, and json.loads failing on each one cost ≈ 3 µs a record.
    """
    if isinstance(message, str) and message[:1] in ("{", "["):
        return json.loads(message)
    raise ValueError("not JSON text")


logger = Logger(json_serializer=_record_json, json_deserializer=_message_json)
# Powertools' own rule (POWERTOOLS_TRACE_DISABLED, or not in Lambda) decides; only the provider differs.
tracer = Tracer(provider=NoTracing()) if Tracer._is_tracer_disabled() else Tracer()
# Every function publishes to one namespace; the variable wins so a stage can be told apart if needed.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE))

__all__ = ["NAMESPACE", "MetricUnit", "NoTracing", "logger", "metrics", "tracer"]
