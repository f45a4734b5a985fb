"""Row 25 offline (c): the converter killed mid-run, then run again, as Step Functions' Retry or a redrive would.

A Lambda timeout kills the process between two writes. The re-run must end exactly where a clean run ends:
the same shard keys with the same bytes, nothing half-written left visible, nothing extra.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from batch import prepare, storage
from batch.names import run_id
from local.lambda_context import LocalLambdaContext
from shared import pipeline
from tests.functional.batch.harness import BUCKET, Aws

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")

PREFIXES = ("work/", "rejected/")


class Killed(BaseException):
    """What a timeout does to the function: no `except Exception` in the code under test can catch it."""


def _event(aws: Aws, key: str, body: str) -> dict[str, Any]:
    version = aws.put(key, body)
    return {"bucket": BUCKET, "key": key, "versionId": version, "runId": run_id(BUCKET, key, version)}


def _state(aws: Aws) -> dict[str, bytes]:
    return {key: value for prefix in PREFIXES for key, value in aws.snapshot(prefix).items()}


def _clear(aws: Aws) -> None:
    for key in [key for prefix in PREFIXES for key in aws.list_keys(prefix)]:
        aws.s3.delete_object(Bucket=BUCKET, Key=key)


@pytest.mark.row(25)
def test_a_converter_killed_mid_run_then_rerun_leaves_the_keys_and_bytes_of_a_clean_run(
    aws: Aws, lambda_context: LocalLambdaContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = "".join(json.dumps({"prompt": f"p{n}", "id": n}) + "\n" for n in range(13)) + '{"prompt": ""}\n'
    event = _event(aws, "inbox/killed.jsonl", body)
    clean_answer = prepare.lambda_handler(event, lambda_context)
    clean = _state(aws)
    assert len(clean_answer["shards"]) == 3  # the kill below lands between shards 0 and 2
    _clear(aws)

    # Killed while shard 1 is being written: shard 0 is complete, shard 1 is not, shard 2 never started.
    doomed = pipeline.shard_records_key(event["runId"], 1)
    real_write = storage.JsonlWriter.write

    def write_until_killed(self: storage.JsonlWriter, line: bytes) -> None:
        if self.key == doomed and self.lines == 2:
            raise Killed
        real_write(self, line)

    with monkeypatch.context() as patch:
        patch.setattr(storage.JsonlWriter, "write", write_until_killed)
        with pytest.raises(Killed):
            prepare.lambda_handler(event, lambda_context)
    partial = _state(aws)
    assert pipeline.shard_records_key(event["runId"], 0) in partial
    assert doomed not in partial
    # Whatever the killed run left is a finished object of the clean run, byte for byte.
    assert {key: clean.get(key) for key in partial} == partial

    rerun_answer = prepare.lambda_handler(event, lambda_context)

    assert rerun_answer == clean_answer
    assert _state(aws) == clean
    assert aws.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []
