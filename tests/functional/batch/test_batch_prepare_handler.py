"""Prepare: every format, rejects written, balanced shards under every limit, identical bytes on re-run."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest

from batch import prepare, storage
from batch.names import record_id, run_id
from batch.planner import InfeasiblePlan
from batch.settings import BatchSettings
from local.lambda_context import LocalLambdaContext
from tests.functional.batch.harness import BUCKET, Aws

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

_JOB = botocore.session.get_session().get_service_model("bedrock").operation_model("CreateModelInvocationJob")
_JOB_MEMBERS = _JOB.input_shape.members if _JOB.input_shape is not None else {}
JOB_NAME_PATTERN = _JOB_MEMBERS["jobName"].metadata["pattern"]
TOKEN_PATTERN = _JOB_MEMBERS["clientRequestToken"].metadata["pattern"]

FORMATS = ".jsonl, .json, .csv, .txt"
PROMPTS = [{"prompt": f"Question {n}?", "id": f"q-{n}"} for n in range(1, 3)]


def _jsonl(prompts: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(prompt) + "\n" for prompt in prompts)


def _csv(prompts: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "prompt"])
    writer.writerows([[prompt["id"], prompt["prompt"]] for prompt in prompts])
    return out.getvalue()


def _run(aws: Aws, key: str, body: bytes | str, context: LocalLambdaContext) -> dict[str, Any]:
    version = aws.put(key, body)
    event = {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}
    result: dict[str, Any] = prepare.lambda_handler(event, context)
    return result


@pytest.mark.parametrize(
    ("key", "body"),
    [
        ("inbox/p.jsonl", _jsonl(PROMPTS)),
        ("inbox/p.json", json.dumps(PROMPTS, indent=2)),
        ("inbox/p.csv", _csv(PROMPTS)),
    ],
)
def test_each_format_gives_the_same_on_demand_records(
    aws: Aws, lambda_context: LocalLambdaContext, key: str, body: str
) -> None:
    prepared = _run(aws, key, body, lambda_context)
    run = prepared["runId"]
    assert prepared == {
        "runId": run,
        "bucket": BUCKET,
        "sourceKey": key,
        "sourceVersionId": prepared["sourceVersionId"],
        "modelId": "openai.gpt-oss-120b-1:0",
        "path": "on_demand",
        "recordCount": 2,
        "rejectedCount": 0,
        "quotaSource": prepared["quotaSource"],
        "shards": [],
    }
    assert prepared["quotaSource"]["minRecordsPerJob"] == {"value": 3, "source": "settings"}
    records = aws.jsonl(f"work/{run}/on-demand/records.jsonl")
    assert [record["modelInput"] for record in records] == [
        {"messages": [{"role": "user", "content": f"Question {n}?"}], "max_completion_tokens": 256} for n in (1, 2)
    ]
    ids = aws.jsonl(f"work/{run}/idmap/on-demand.jsonl")
    assert [entry["id"] for entry in ids] == ["q-1", "q-2"]
    assert [entry["recordId"] for entry in ids] == [record["recordId"] for record in records]
    assert f"rejected/{run}/rejected.jsonl" not in aws.list_keys()


def test_a_txt_file_is_one_prompt(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prepared = _run(aws, "inbox/essay.txt", "Summarise:\nlong text\n", lambda_context)
    [record] = aws.jsonl(f"work/{prepared['runId']}/on-demand/records.jsonl")
    assert record == {
        "recordId": record_id(1),
        "modelInput": {
            "messages": [{"role": "user", "content": "Summarise:\nlong text\n"}],
            "max_completion_tokens": 256,
        },
    }


@pytest.mark.row(20)
def test_batch_shards_are_balanced_under_every_limit(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prompts = [{"prompt": f"Prompt number {n}"} for n in range(1, 15)]
    body = _jsonl(prompts[:7]) + "{broken\n\n" + _jsonl(prompts[7:])
    prepared = _run(aws, "inbox/many prompts.jsonl", body, lambda_context)
    run = prepared["runId"]
    assert (prepared["path"], prepared["recordCount"], prepared["rejectedCount"]) == ("batch", 14, 1)
    assert [shard["recordCount"] for shard in prepared["shards"]] == [5, 5, 4]
    seen: list[str] = []
    for shard in prepared["shards"]:
        index = shard["index"]
        assert shard["inputUri"] == f"s3://{BUCKET}/work/{run}/shard-{index:05d}/records.jsonl"
        assert shard["outputUri"] == f"s3://{BUCKET}/bedrock-output/{run}/shard-{index:05d}/"
        assert re.fullmatch(JOB_NAME_PATTERN, shard["jobName"]) and len(shard["jobName"]) <= 63
        assert re.fullmatch(TOKEN_PATTERN, shard["clientRequestToken"])
        records = aws.jsonl(f"work/{run}/shard-{index:05d}/records.jsonl")
        ids = aws.jsonl(f"work/{run}/idmap/shard-{index:05d}.jsonl")
        assert len(records) == len(ids) == shard["recordCount"] <= 6
        assert [record["recordId"] for record in records] == [entry["recordId"] for entry in ids]
        seen += [record["recordId"] for record in records]
        # Nothing but the input file in the folder Bedrock reads.
        assert aws.list_keys(f"work/{run}/shard-{index:05d}/") == [f"work/{run}/shard-{index:05d}/records.jsonl"]
    assert seen == [record_id(n) for n in [*range(1, 8), *range(10, 17)]]
    assert len({shard["jobName"] for shard in prepared["shards"]}) == 3
    assert aws.jsonl(f"rejected/{run}/rejected.jsonl") == [
        {"line": 8, "reason": "invalid JSON at column 2: an object key must be a string in double quotes"}
    ]
    assert len(json.dumps(prepared)) < 1024 + 512 * len(prepared["shards"])


def test_byte_limits_split_further(
    aws: Aws, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(MAX_RECORDS_PER_JOB="100", MAX_RECORDS_PER_FILE="100", MAX_FILE_BYTES="800")
    prompts = [{"prompt": f"{n:03d} " + "words " * 10} for n in range(12)]
    prepared = _run(aws, "inbox/bytes.jsonl", _jsonl(prompts), lambda_context)
    assert prepared["path"] == "batch"
    sizes = [
        len(aws.get(f"work/{prepared['runId']}/shard-{n:05d}/records.jsonl")) for n in range(len(prepared["shards"]))
    ]
    assert len(sizes) == 3
    assert all(size <= 800 for size in sizes)
    assert all(shard["recordCount"] >= 3 for shard in prepared["shards"])


def test_byte_limits_that_leave_jobs_below_the_minimum_fail_clearly(
    aws: Aws, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(MAX_FILE_BYTES="300")
    prompts = [{"prompt": "x" * 100} for _ in range(8)]
    with pytest.raises(InfeasiblePlan, match="fewer than 3 records per job"):
        _run(aws, "inbox/big.jsonl", _jsonl(prompts), lambda_context)


@pytest.mark.row(20)
def test_a_rerun_writes_identical_keys_and_bytes(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    prompts = [{"prompt": f"p{n}", "id": n} for n in range(13)]
    body = _jsonl(prompts) + '{"prompt": ""}\n'
    key = "inbox/again.jsonl"
    version = aws.put(key, body)
    event = {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}
    first = prepare.lambda_handler(event, lambda_context)
    before = {**aws.snapshot("work/"), **aws.snapshot("rejected/")}
    second = prepare.lambda_handler(event, lambda_context)
    assert first == second
    assert {**aws.snapshot("work/"), **aws.snapshot("rejected/")} == before
    assert len(before) == 2 + 1 + 3 * 2  # all records + id map, rejected, 3 shards x (records + id map)


def test_the_run_reads_its_own_version_not_the_latest(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    key = "inbox/versioned.jsonl"
    old = aws.put(key, _jsonl([{"prompt": "old"}]))
    aws.put(key, _jsonl([{"prompt": "new"}, {"prompt": "newer"}]))
    event = {"bucket": BUCKET, "key": key, "versionId": old, "runId": run_id(BUCKET, key, old)}
    prepared = prepare.lambda_handler(event, lambda_context)
    assert prepared["recordCount"] == 1
    [record] = aws.jsonl(f"work/{prepared['runId']}/on-demand/records.jsonl")
    assert record["modelInput"]["messages"][0]["content"] == "old"


@pytest.mark.parametrize(
    ("key", "body", "rejected"),
    [
        ("inbox/empty.jsonl", b"", []),
        ("inbox/blank.csv", b"\r\n\r\n", []),
        (
            "inbox/deck.pptx",
            b"PK\x03\x04",
            [{"line": 0, "reason": "unsupported file type .pptx; supported: .jsonl, .json, .csv, .txt"}],
        ),
        (
            "inbox/bad.jsonl",
            b"\x00\x01\x02\n\xff\xfe\n",
            [
                {
                    "line": 1,
                    "reason": "a NUL byte at byte 0 (binary data, or UTF-16 without a BOM?); "
                    "save the file as UTF-8 text",
                },
                {"line": 2, "reason": "invalid UTF-8 at byte 0; save the file as UTF-8"},
            ],
        ),
    ],
)
def test_files_without_a_valid_prompt_end_empty(
    aws: Aws, lambda_context: LocalLambdaContext, key: str, body: bytes, rejected: list[dict[str, Any]]
) -> None:
    prepared = _run(aws, key, body, lambda_context)
    assert (prepared["path"], prepared["recordCount"], prepared["rejectedCount"]) == ("empty", 0, len(rejected))
    assert prepared["shards"] == []
    written = aws.snapshot(f"rejected/{prepared['runId']}/")
    assert [json.loads(line) for blob in written.values() for line in blob.splitlines()] == rejected


def test_an_over_sized_file_is_refused_whole(
    aws: Aws, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(MAX_SOURCE_BYTES="100")
    prepared = _run(aws, "inbox/huge.jsonl", _jsonl([{"prompt": "x" * 200}]), lambda_context)
    assert (prepared["path"], prepared["rejectedCount"]) == ("empty", 1)
    assert aws.jsonl(f"rejected/{prepared['runId']}/rejected.jsonl") == [
        {"line": 0, "reason": "the file has 215 bytes; at most 100 are accepted"}
    ]


def test_a_deleted_source_fails_with_a_named_error(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    key = "inbox/gone.jsonl"
    version = aws.put(key, "x")
    aws.s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
    with pytest.raises(prepare.SourceMissing):
        prepare.lambda_handler(
            {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}, lambda_context
        )


def test_unknown_input_fields_are_refused(aws: Aws, lambda_context: LocalLambdaContext) -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        prepare.lambda_handler({"bucket": BUCKET, "key": "k", "runId": "r-0", "extra": 1}, lambda_context)


def test_large_files_stream_through_multipart_uploads(
    aws: Aws, lambda_context: LocalLambdaContext, batch_env: Callable[..., BatchSettings]
) -> None:
    batch_env(
        MAX_RECORDS_PER_JOB="5000", MAX_RECORDS_PER_FILE="5000", MAX_FILE_BYTES="1000000000", MAX_JOB_BYTES="1000000000"
    )
    prompt = "lorem ipsum " * 150
    body = "".join(json.dumps({"prompt": f"{n} {prompt}"}) + "\n" for n in range(6_000))
    prepared = _run(aws, "inbox/large.jsonl", body, lambda_context)
    run = prepared["runId"]
    assert [shard["recordCount"] for shard in prepared["shards"]] == [3000, 3000]
    everything = aws.get(f"work/{run}/records.jsonl")
    assert len(everything) > 10 * 1024 * 1024  # more than one 8 MiB part
    shards = [aws.get(f"work/{run}/shard-{n:05d}/records.jsonl") for n in range(2)]
    assert b"".join(shards) == everything
    assert aws.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_source_deleted_while_being_read_fails_with_the_same_error(
    aws: Aws, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "inbox/racing.jsonl"
    version = aws.put(key, _jsonl(PROMPTS))
    found = storage.head(BUCKET, key, version)
    aws.s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)
    monkeypatch.setattr(storage, "head", lambda *_: found)  # it still existed when prepare looked
    with pytest.raises(prepare.SourceMissing):
        prepare.lambda_handler(
            {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}, lambda_context
        )
    assert aws.list_keys("work/") == []
