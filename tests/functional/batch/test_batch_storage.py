"""The only S3 call site: streaming reads, single-PUT or multipart writes, paginated listings, endpoints."""

from __future__ import annotations

import pytest

from batch import executions, quotas, storage
from local.lambda_runtime import fresh_container
from tests.functional.batch.harness import BUCKET, Aws

MIB = 1024 * 1024


def test_small_content_is_one_put(aws: Aws) -> None:
    with storage.JsonlWriter(BUCKET, "work/r/small.jsonl") as writer:
        writer.write(b'{"a":1}\n')
        writer.write(b'{"b":2}\n')
    assert (writer.lines, writer.bytes) == (2, 16)
    head = aws.s3.head_object(Bucket=BUCKET, Key="work/r/small.jsonl")
    assert head["ContentType"] == "application/jsonl"
    assert "-" not in head["ETag"]  # not a multipart ETag
    assert aws.get("work/r/small.jsonl") == b'{"a":1}\n{"b":2}\n'


def test_large_content_goes_out_in_parts_of_at_least_5_mib(aws: Aws) -> None:
    line = b'{"x":"' + b"y" * 1000 + b'"}\n'
    count = (12 * MIB) // len(line)
    with storage.JsonlWriter(BUCKET, "work/r/large.jsonl", part_size=5 * MIB) as writer:
        for _ in range(count):
            writer.write(line)
    assert aws.get("work/r/large.jsonl") == line * count
    assert aws.s3.head_object(Bucket=BUCKET, Key="work/r/large.jsonl")["ETag"].strip('"').endswith("-3")
    assert aws.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_failure_leaves_no_object_and_no_open_upload(aws: Aws) -> None:
    line = b"z" * MIB + b"\n"
    with (
        pytest.raises(RuntimeError, match="boom"),
        storage.JsonlWriter(BUCKET, "work/r/x.jsonl", part_size=5 * MIB) as w,
    ):
        for _ in range(7):
            w.write(line)
        raise RuntimeError("boom")
    assert aws.list_keys("work/r/") == []
    assert aws.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_empty_writers(aws: Aws) -> None:
    with storage.JsonlWriter(BUCKET, "work/r/empty.jsonl"):
        pass
    with storage.JsonlWriter(BUCKET, "work/r/skipped.jsonl", skip_empty=True):
        pass
    assert aws.list_keys("work/r/") == ["work/r/empty.jsonl"]
    assert aws.get("work/r/empty.jsonl") == b""


def test_parts_below_the_s3_minimum_are_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        storage.JsonlWriter(BUCKET, "k", part_size=MIB)


def test_reads_by_version_and_missing_objects(aws: Aws) -> None:
    first = aws.put("inbox/v.jsonl", "one\n")
    aws.put("inbox/v.jsonl", "two\n")
    assert b"".join(storage.iter_chunks(BUCKET, "inbox/v.jsonl", first)) == b"one\n"
    assert b"".join(storage.iter_chunks(BUCKET, "inbox/v.jsonl", chunk_size=2)) == b"two\n"
    info = storage.head(BUCKET, "inbox/v.jsonl", first)
    assert info is not None
    assert (info.size, info.version_id) == (4, first)
    assert storage.head(BUCKET, "inbox/none.jsonl") is None
    with pytest.raises(storage.ObjectMissing):
        list(storage.iter_chunks(BUCKET, "inbox/none.jsonl"))
    assert list(storage.iter_object_lines(BUCKET, "inbox/none.jsonl", 100)) == []
    assert storage.get_json(BUCKET, "results/none.json") is None
    storage.put_json(BUCKET, "results/s.json", {"é": [1]})
    assert storage.get_json(BUCKET, "results/s.json") == {"é": [1]}


def test_listing_follows_every_page(aws: Aws) -> None:
    keys = [f"bedrock-output/r/shard-00000/job/part-{n:04d}.jsonl.out" for n in range(1_005)]
    for key in keys:
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"")
    aws.put("bedrock-output/other/x", b"")
    assert list(storage.list_keys(BUCKET, "bedrock-output/r/")) == keys


def test_clients_honour_the_standard_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SFN", "http://127.0.0.1:8083")
    fresh_container()
    try:
        assert storage.client().meta.endpoint_url == "http://127.0.0.1:5000"
        assert quotas.client().meta.endpoint_url == "http://127.0.0.1:5000"
        assert executions.client().meta.endpoint_url == "http://127.0.0.1:8083"
    finally:
        fresh_container()
