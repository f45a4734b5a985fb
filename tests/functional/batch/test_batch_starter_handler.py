"""The starter: one execution per object version, duplicates acknowledged, keys decoded, failures reported."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from batch import starter
from batch.names import run_id
from local.lambda_context import LocalLambdaContext
from tests.functional.batch.harness import BUCKET, Aws, emitted_metrics

Event = dict[str, Any]
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@pytest.fixture
def sqs_event(load_event: Callable[[str], Any]) -> Callable[..., Event]:
    """An SQS event wrapping EventBridge S3 events, built from the canonical file."""
    template = load_event("batch/sqs_object_created.json")["Records"][0]

    def build(*objects: tuple[str, str | None], detail_type: str = "Object Created") -> Event:
        records = []
        for number, (key, version_id) in enumerate(objects):
            record = copy.deepcopy(template)
            body = json.loads(record["body"])
            body["detail-type"] = detail_type
            body["detail"]["bucket"]["name"] = BUCKET
            body["detail"]["object"]["key"] = key
            if version_id is None:
                body["detail"]["object"].pop("version-id")
            else:
                body["detail"]["object"]["version-id"] = version_id
            record["body"] = json.dumps(body)
            record["messageId"] = f"message-{number}"
            records.append(record)
        return {"Records": records}

    return build


def _handle(event: Event, context: LocalLambdaContext) -> list[str]:
    response = starter.lambda_handler(event, context)
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def test_the_canonical_event_starts_one_run(
    aws: Aws,
    load_event: Callable[[str], Any],
    lambda_context: LocalLambdaContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("batch/sqs_object_created.json")
    body = json.loads(event["Records"][0]["body"])
    # The event spells the key as S3 notifications do: URL-encoded, space as '+'.
    key = "inbox/customer reviews 2026-11.jsonl"
    assert body["detail"]["object"]["key"] == "inbox/customer+reviews+2026-11.jsonl"
    version = aws.put(key, '{"prompt": "hello"}\n')
    body["detail"]["object"]["version-id"] = version
    event["Records"][0]["body"] = json.dumps(body)

    assert _handle(event, lambda_context) == []

    name = run_id(BUCKET, key, version)
    assert aws.executions() == [
        {"name": name, "input": {"bucket": BUCKET, "key": key, "versionId": version, "runId": name}}
    ]
    assert emitted_metrics(capsys.readouterr().out) == {"RunsStarted": 1.0}


@pytest.mark.row(16)
def test_duplicate_events_start_one_run(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    version = aws.put("inbox/a.jsonl", '{"prompt": "x"}\n')
    assert _handle(sqs_event(("inbox/a.jsonl", version), ("inbox/a.jsonl", version)), lambda_context) == []
    assert _handle(sqs_event(("inbox/a.jsonl", version)), lambda_context) == []
    assert [item["name"] for item in aws.executions()] == [run_id(BUCKET, "inbox/a.jsonl", version)]


@pytest.mark.row(16)
def test_a_new_version_is_a_new_run(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    first = aws.put("inbox/a.jsonl", '{"prompt": "x"}\n')
    second = aws.put("inbox/a.jsonl", '{"prompt": "y"}\n')
    assert _handle(sqs_event(("inbox/a.jsonl", first), ("inbox/a.jsonl", second)), lambda_context) == []
    names = sorted(item["name"] for item in aws.executions())
    assert names == sorted([run_id(BUCKET, "inbox/a.jsonl", first), run_id(BUCKET, "inbox/a.jsonl", second)])
    assert names[0] != names[1]


@pytest.mark.parametrize(
    ("key", "spelled"),
    [
        ("inbox/a b.jsonl", "inbox/a+b.jsonl"),
        ("inbox/a b.jsonl", "inbox/a%20b.jsonl"),
        ("inbox/a+b.jsonl", "inbox/a%2Bb.jsonl"),
        ("inbox/a+b.jsonl", "inbox/a+b.jsonl"),
        ("inbox/100%.txt", "inbox/100%25.txt"),
        ("inbox/résumé 🚀/q&a.csv", quote_plus("inbox/résumé 🚀/q&a.csv", safe="/")),
        ("inbox/plain.json", "inbox/plain.json"),
    ],
)
@pytest.mark.row(17)
def test_keys_are_resolved_however_they_are_spelled(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext, key: str, spelled: str
) -> None:
    version = aws.put(key, "x")
    assert _handle(sqs_event((spelled, version)), lambda_context) == []
    [execution] = aws.executions()
    assert execution["input"]["key"] == key
    assert execution["name"] == run_id(BUCKET, key, version)


def test_the_version_decides_between_two_spellings_that_both_exist(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    aws.put("inbox/a+b.jsonl", "literal plus")
    spaced = aws.put("inbox/a b.jsonl", "space")
    assert _handle(sqs_event(("inbox/a+b.jsonl", spaced)), lambda_context) == []
    assert [item["input"]["key"] for item in aws.executions()] == ["inbox/a b.jsonl"]


@pytest.mark.parametrize(
    "key",
    [
        "inbox/",
        "inbox/sub/",
        "inbox/.keep",
        "inbox/.drafts/p.jsonl",
        "work/run/records.jsonl",
        "results/run/summary.json",
        "bedrock-output/run/shard-00000/abc/records.jsonl.out",
        "prompts.jsonl",
    ],
)
def test_non_prompt_keys_are_ignored(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext, key: str
) -> None:
    version = aws.put(key, "x")
    assert _handle(sqs_event((key, version)), lambda_context) == []
    assert aws.executions() == []


def test_other_event_types_are_ignored(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    version = aws.put("inbox/a.jsonl", "x")
    assert _handle(sqs_event(("inbox/a.jsonl", version), detail_type="Object Deleted"), lambda_context) == []
    assert aws.executions() == []


def test_a_deleted_object_is_acknowledged_without_a_run(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    version = aws.put("inbox/gone.jsonl", "x")
    aws.s3.delete_object(Bucket=BUCKET, Key="inbox/gone.jsonl", VersionId=version)
    assert _handle(sqs_event(("inbox/gone.jsonl", version), ("inbox/never.jsonl", None)), lambda_context) == []
    assert aws.executions() == []


def test_an_empty_file_and_an_unversioned_event_still_start_runs(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    version = aws.put("inbox/empty.txt", b"")
    assert _handle(sqs_event(("inbox/empty.txt", None)), lambda_context) == []
    [execution] = aws.executions()
    # Without a version id in the event, the run is pinned to the version that exists now.
    assert execution["input"]["versionId"] == version


def test_bad_messages_are_reported_and_the_rest_start(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext
) -> None:
    version = aws.put("inbox/a.jsonl", "x")
    event = sqs_event(("inbox/a.jsonl", version), ("inbox/b.jsonl", None))
    event["Records"][1]["body"] = "not json"
    extra = copy.deepcopy(event["Records"][0])
    extra["messageId"] = "message-2"
    extra["body"] = json.dumps({"detail-type": "Object Created", "source": "aws.s3", "detail": {}})
    event["Records"].append(extra)
    assert _handle(event, lambda_context) == ["message-1", "message-2"]
    assert len(aws.executions()) == 1


def test_a_failed_start_is_reported_for_retry(
    aws: Aws,
    sqs_event: Callable[..., Event],
    lambda_context: LocalLambdaContext,
    batch_env: Callable[..., Any],
) -> None:
    batch_env(STATE_MACHINE_ARN="arn:aws:states:us-east-1:123456789012:stateMachine:Missing")
    version = aws.put("inbox/a.jsonl", "x")
    ignored = aws.put("inbox/.keep", "")
    assert _handle(sqs_event(("inbox/a.jsonl", version), ("inbox/.keep", ignored)), lambda_context) == ["message-0"]


def test_a_missing_state_machine_setting_fails_every_message(
    aws: Aws, sqs_event: Callable[..., Event], lambda_context: LocalLambdaContext, batch_env: Callable[..., Any]
) -> None:
    batch_env(STATE_MACHINE_ARN="")
    version = aws.put("inbox/a.jsonl", "x")
    with pytest.raises(BatchProcessingError):
        _handle(sqs_event(("inbox/a.jsonl", version)), lambda_context)
