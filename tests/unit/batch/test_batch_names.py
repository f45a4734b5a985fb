"""Run ids, job names, idempotency tokens and record ids: shapes the AWS APIs accept, stable, distinct."""

from __future__ import annotations

import re

import botocore.session
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.names import (
    MAX_JOB_NAME_LENGTH,
    client_request_token,
    job_name,
    record_id,
    run_id,
    short_model_name,
)

_BEDROCK = botocore.session.get_session().get_service_model("bedrock")
_CREATE_JOB_SHAPE = _BEDROCK.operation_model("CreateModelInvocationJob").input_shape
assert _CREATE_JOB_SHAPE is not None
_CREATE_JOB = _CREATE_JOB_SHAPE.members
# The installed botocore model is the authority on what CreateModelInvocationJob accepts.
JOB_NAME = _CREATE_JOB["jobName"].metadata
TOKEN = _CREATE_JOB["clientRequestToken"].metadata
_START = botocore.session.get_session().get_service_model("stepfunctions").operation_model("StartExecution")
assert _START.input_shape is not None
EXECUTION_NAME_MAX = _START.input_shape.members["name"].metadata["max"]
# What we promise for run ids (a subset of what Step Functions allows in execution names) and record ids.
RUN_ID_CHARS = re.compile(r"[A-Za-z0-9_-]+")
RECORD_ID = re.compile(r"R[0-9]{11}")

keys = st.text(min_size=1, max_size=300).filter(lambda key: len(key.encode("utf-8", "surrogatepass")) <= 1024)
versions = st.none() | st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._", max_size=32)
buckets = st.from_regex(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", fullmatch=True)


def _valid_run_id(value: str) -> bool:
    return bool(RUN_ID_CHARS.fullmatch(value)) and 1 <= len(value) <= EXECUTION_NAME_MAX


@given(bucket=buckets, key=keys, version=versions)
@settings(max_examples=300)
@pytest.mark.row(17)
def test_run_id_is_a_valid_stable_execution_name(bucket: str, key: str, version: str | None) -> None:
    name = run_id(bucket, key, version)
    assert _valid_run_id(name)
    assert name == run_id(bucket, key, version)


@given(bucket=buckets, key=keys, first=versions, second=versions)
def test_every_version_gets_its_own_run(bucket: str, key: str, first: str | None, second: str | None) -> None:
    same = (first or "null") == (second or "null")
    assert (run_id(bucket, key, first) == run_id(bucket, key, second)) is same


@given(bucket=buckets, first=keys, second=keys)
def test_different_keys_get_different_runs(bucket: str, first: str, second: str) -> None:
    if first != second:
        assert run_id(bucket, first, "v1") != run_id(bucket, second, "v1")


@pytest.mark.parametrize(
    ("key", "stem"),
    [
        ("inbox/My Prompts (v2).jsonl", "My-Prompts-v2"),
        ("inbox/a+b%20c.csv", "a-b-20c"),
        ("inbox/café_résumé.txt", "cafe-resume"),
        ("inbox/🚀🔥.json", "run"),
        ("inbox/.keep", "keep"),
        ("inbox/" + "x" * 1017 + ".txt", "x" * 40),
    ],
)
def test_run_id_keeps_a_readable_stem(key: str, stem: str) -> None:
    name = run_id("drop-bucket", key, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    assert name.rsplit("-", 1)[0] == stem
    assert _valid_run_id(name)


@pytest.mark.row(17)
def test_a_1024_byte_key_still_fits() -> None:
    key = "inbox/" + "é" * 509
    assert len(key.encode()) == 1024
    assert _valid_run_id(run_id("b", key, None))


@given(key=keys, shard=st.integers(min_value=0, max_value=99_999))
def test_job_names_and_tokens_match_the_bedrock_model(key: str, shard: int) -> None:
    run = run_id("drop-bucket", key, "v")
    name, token = job_name(run, shard), client_request_token(run, shard)
    assert re.fullmatch(JOB_NAME["pattern"], name)
    assert JOB_NAME["min"] <= len(name) <= min(JOB_NAME["max"], MAX_JOB_NAME_LENGTH)
    assert re.fullmatch(TOKEN["pattern"], token)
    assert TOKEN["min"] <= len(token) <= TOKEN["max"]


@given(
    key=keys,
    shard=st.integers(min_value=0, max_value=99_999),
    stage=st.from_regex(r"[a-z][a-z0-9-]{0,19}", fullmatch=True),
)
def test_job_names_start_with_the_stages_prefix_and_match_the_bedrock_model(key: str, shard: int, stage: str) -> None:
    # The job-state event rule matches `<stage>.`: a stage holds no '.', so no other stage's prefix matches.
    run = run_id("drop-bucket", key, "v")
    name = job_name(run, shard, f"{stage}.")
    assert name.startswith(f"{stage}.")
    assert re.fullmatch(JOB_NAME["pattern"], name)
    assert len(name) <= min(JOB_NAME["max"], MAX_JOB_NAME_LENGTH)
    assert name.endswith(job_name(run, shard).rsplit("-", 2)[1] + f"-{shard:05d}")


def test_a_malformed_prefix_is_refused() -> None:
    run = run_id("b", "inbox/a.jsonl", None)
    for prefix in ("dev", "Dev.", "dev.x.", "-dev."):
        with pytest.raises(ValueError, match="prefix"):
            job_name(run, 0, prefix)


def test_job_names_and_tokens_are_unique_per_run_and_shard() -> None:
    runs = [run_id("b", f"inbox/file-{n}.jsonl", None) for n in range(50)] + [run_id("b", "inbox/x.jsonl", "v2")]
    names = {job_name(run, shard) for run in runs for shard in range(20)}
    tokens = {client_request_token(run, shard) for run in runs for shard in range(20)}
    assert len(names) == len(tokens) == len(runs) * 20
    assert job_name(runs[0], 3) == job_name(runs[0], 3)


def test_shard_index_and_run_id_are_checked() -> None:
    with pytest.raises(ValueError, match="shard index"):
        job_name(run_id("b", "inbox/a.jsonl", None), 100_000)
    with pytest.raises(ValueError, match="not a run id"):
        client_request_token("not a run id!", 0)


@given(line=st.integers(min_value=1, max_value=99_999_999_999))
def test_record_ids_are_alphanumeric_fixed_width_and_ordered(line: int) -> None:
    value = record_id(line)
    assert RECORD_ID.fullmatch(value)
    assert value.isalnum()
    assert record_id(line + 1) > value if line < 99_999_999_999 else True


def test_record_ids_are_unique_and_bounded() -> None:
    assert len({record_id(line) for line in range(1, 10_001)}) == 10_000
    for bad in (0, -1, 100_000_000_000):
        with pytest.raises(ValueError):
            record_id(bad)


@pytest.mark.parametrize(
    ("model_id", "short"),
    [
        ("openai.gpt-oss-120b-1:0", "gpt-oss-120b"),
        ("openai.gpt-oss-20b-1:0", "gpt-oss-20b"),
        ("us.openai.gpt-oss-120b-1:0", "gpt-oss-120b"),
        ("gpt-oss-20b", "gpt-oss-20b"),
    ],
)
def test_short_model_name(model_id: str, short: str) -> None:
    assert short_model_name(model_id) == short
