"""The cheaper log serialization and EMF blob write what Powertools' own ones write."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import sys

import pytest
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from shared.observability import EMFProvider, record_formatter

KEYS = {"service": "chat", "cold_start": False, "correlation_id": "c6af9ac6", "caller": "arn:aws:iam::1:role/x"}


def record(message: object, **extra: object) -> logging.LogRecord:
    """A record as the logger makes it: extras are attributes, an exception is attached by `exc_info`."""
    made = logging.LogRecord("chat", logging.INFO, "handler.py", 42, message, (), None, func="complete")
    made.__dict__.update(extra)
    return made


def failed_record() -> logging.LogRecord:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = record("crashed", error_type="RuntimeError")
        made.exc_info = sys.exc_info()
        return made


@pytest.mark.parametrize(
    "made",
    [
        record("chat completion finished", input_tokens=12, findings=["input:topicPolicy:x"], stream=False),
        record({"a": "dict message"}),
        record("with a None field", param=None),
        record("a reserved name as an extra", process="not the pid"),
        failed_record(),
    ],
)
def test_the_formatter_writes_what_powertools_writes(made: logging.LogRecord) -> None:
    ours, theirs = record_formatter(), LambdaPowertoolsFormatter()
    for formatter in (ours, theirs):
        formatter.append_keys(**KEYS)
        formatter.thread_safe_append_keys(thread_key="t")
    try:
        assert ours.format(made) == theirs.format(made)
    finally:
        theirs.thread_safe_clear_keys()


def test_a_reserved_key_that_is_not_a_format_is_refused_like_powertools_does() -> None:
    for formatter in (record_formatter(), LambdaPowertoolsFormatter()):
        formatter.append_keys(level=10)
        with pytest.raises(ValueError, match="need to be type 'str'"):
            formatter.format(record("x"))


def flushed(provider: AmazonCloudWatchEMFProvider) -> str:
    provider.set_timestamp(1_795_406_667_438)
    provider.add_metric(name="ChatCompletions", unit=MetricUnit.Count, value=1)
    provider.add_metric(name="InputTokens", unit=MetricUnit.Count, value=112)
    provider.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=812)
    provider.add_metric(name="ModelLatency", unit=MetricUnit.Milliseconds, value=0.25)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        provider.flush_metrics()
    return output.getvalue()


def test_the_emf_blob_is_the_one_powertools_prints() -> None:
    ours, theirs = EMFProvider(namespace="GptOssBedrock"), AmazonCloudWatchEMFProvider(namespace="GptOssBedrock")

    # Twice: a flush leaves nothing behind that changes the next blob.
    for _ in range(2):
        blob = flushed(ours)
        assert blob == flushed(theirs)
        assert json.loads(blob)["ModelLatency"] == [812.0, 0.25]


def test_at_the_size_limit_the_provider_flushes_like_powertools() -> None:
    outputs = []
    for provider in (EMFProvider(namespace="GptOssBedrock"), AmazonCloudWatchEMFProvider(namespace="GptOssBedrock")):
        provider.set_timestamp(1_795_406_667_438)
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            for point in range(250):
                provider.add_metric(name="InputTokens", unit=MetricUnit.Count, value=point)
                provider.add_metric(name=f"Metric{point % 120}", unit="Count", value=1)
            provider.flush_metrics()
        outputs.append(output.getvalue())

    ours, theirs = outputs
    assert [json.loads(line) for line in ours.splitlines()] == [json.loads(line) for line in theirs.splitlines()]
    assert len(ours.splitlines()) > 2


def test_without_metrics_the_provider_warns_like_powertools() -> None:
    with pytest.warns(UserWarning, match="No application metrics to publish"):
        EMFProvider(namespace="GptOssBedrock").flush_metrics()
