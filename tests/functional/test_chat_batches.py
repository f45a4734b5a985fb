"""The Batch API (/v1/files, /v1/batches) of the chat handler, called with the openai SDK, against moto's S3, SSM,
Step Functions and the fake Bedrock's jobs. A batch's run here is an execution that stays RUNNING (a one-state
machine): what it becomes is the state machine's business (tests/local/test_local_batches.py runs the real one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
import openai
import pytest
from moto import mock_aws

from chat.app import app
from chat.batch_store import PipelineLocation
from chat.settings import ChatSettings
from local import moto_patches
from local.apigw import CALLER_ARN
from local.lambda_runtime import fresh_container
from shared import pipeline
from tests.apigw_bridge import handler_transport, invoke_handler

BUCKET = "pipeline-bucket"
PARAMETER = "/gpt-oss-bedrock/test/batch/pipeline"
OTHER_CALLER = "arn:aws:sts::123456789012:assumed-role/billing-service/billing-service"
# The same role in another session: the same owner.
SAME_ROLE_OTHER_SESSION = CALLER_ARN.rsplit("/", 1)[0] + "/another-session"
LINES = [
    {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": []}}
    for n in range(3)
]
JSONL = "".join(json.dumps(line) + "\n" for line in LINES).encode()

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


@dataclass
class Pipeline:
    """moto's side of the pipeline: its bucket, its state machine and its Bedrock."""

    state_machine_arn: str
    s3: Any
    sfn: Any

    def execution(self, run: str) -> dict[str, Any]:
        arn = PipelineLocation(bucket=BUCKET, stateMachineArn=self.state_machine_arn).execution_arn(run)
        described: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
        return described


@pytest.fixture
def batch_pipeline(chat_env: ChatSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    monkeypatch.setenv("BATCH_API_PARAMETER", PARAMETER)
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "4096")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fresh_container()  # chat_env read the environment before these two variables
    moto_patches.install()
    fresh_container()
    with mock_aws():
        s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        role = boto3.client("iam").create_role(RoleName="sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        machine = sfn.create_state_machine(
            name="BatchPipeline",
            definition=json.dumps({"StartAt": "Wait", "States": {"Wait": {"Type": "Pass", "End": True}}}),
            roleArn=role,
        )["stateMachineArn"]
        boto3.client("ssm").put_parameter(
            Name=PARAMETER, Type="String", Value=json.dumps({"bucket": BUCKET, "stateMachineArn": machine})
        )
        yield Pipeline(state_machine_arn=machine, s3=s3, sfn=sfn)
    fresh_container()


def sdk(caller: str | None = CALLER_ARN) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="https://chat.example.internal/v1",
        api_key="x",
        http_client=httpx.Client(transport=handler_transport(app, caller_arn=caller)),  # type: ignore[arg-type]
        max_retries=0,
    )


@pytest.fixture
def client(batch_pipeline: Pipeline) -> Iterator[openai.OpenAI]:
    with sdk() as client:
        yield client


def upload(client: openai.OpenAI, data: bytes = JSONL, name: str = "requests.jsonl") -> openai.types.FileObject:
    return client.files.create(file=(name, data), purpose="batch")


def create(client: openai.OpenAI, file_id: str, **fields: Any) -> openai.types.Batch:
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h", **fields
    )


# --- files ------------------------------------------------------------------------------------------------


def test_an_uploaded_file_comes_back_as_it_was_sent(client: openai.OpenAI, batch_pipeline: Pipeline) -> None:
    stored = upload(client, name="Prüfung 1.jsonl")
    assert (stored.object, stored.purpose, stored.bytes, stored.filename) == (
        "file",
        "batch",
        len(JSONL),
        "Prüfung 1.jsonl",
    )
    assert stored.id.startswith("file-")
    assert client.files.retrieve(stored.id) == stored
    assert client.files.content(stored.id).content == JSONL
    # Outside inbox/: an upload starts no run.
    (key,) = [o["Key"] for o in batch_pipeline.s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert key.startswith(pipeline.BATCH_API_PREFIX) and not key.startswith(pipeline.INBOX_PREFIX)
    assert batch_pipeline.sfn.list_executions(stateMachineArn=batch_pipeline.state_machine_arn)["executions"] == []


@pytest.mark.parametrize(
    ("name", "data", "purpose", "status", "param"),
    [
        ("requests.jsonl", JSONL, "fine-tune", 400, "purpose"),
        ("requests.csv", JSONL, "batch", 400, "file"),
        ("requests.jsonl", b"", "batch", 400, "file"),
        ("requests.jsonl", b"x" * 4097, "batch", 413, "file"),
    ],
)
def test_an_upload_that_cannot_be_a_batch_input_names_the_field(
    client: openai.OpenAI, name: str, data: bytes, purpose: Any, status: int, param: str
) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        client.files.create(file=(name, data), purpose=purpose)
    assert raised.value.status_code == status
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["param"] == param


def test_an_upload_that_is_not_multipart_is_refused(batch_pipeline: Pipeline) -> None:
    answer = invoke_handler(app, "POST", "/v1/files", {"Content-Type": "application/json"}, '{"purpose": "batch"}')
    assert answer.status == 415


# --- batches ----------------------------------------------------------------------------------------------


def test_a_batch_is_one_run_of_the_state_machine_on_its_file(client: openai.OpenAI, batch_pipeline: Pipeline) -> None:
    stored = upload(client)
    batch = create(client, stored.id, metadata={"team": "search"})
    assert (batch.object, batch.status, batch.input_file_id, batch.metadata) == (
        "batch",
        "validating",
        stored.id,
        {"team": "search"},
    )
    run = "batch-" + batch.id.removeprefix("batch_")
    execution = batch_pipeline.execution(run)
    assert execution["status"] == "RUNNING"
    run_input = json.loads(execution["input"])
    assert run_input["bucket"] == BUCKET and run_input["runId"] == run and run_input["versionId"]
    assert run_input["key"].endswith(f"/files/{stored.id}.jsonl")
    assert client.batches.retrieve(batch.id) == batch


def test_a_batch_in_progress_then_finalizing(client: openai.OpenAI, batch_pipeline: Pipeline) -> None:
    batch = create(client, upload(client).id)
    run = "batch-" + batch.id.removeprefix("batch_")
    batch_pipeline.s3.put_object(Bucket=BUCKET, Key=pipeline.all_records_key(run), Body=b"{}\n")
    progressed = client.batches.retrieve(batch.id)
    assert progressed.status == "in_progress" and progressed.in_progress_at is not None
    batch_pipeline.s3.put_object(Bucket=BUCKET, Key=pipeline.summary_key(run), Body=b"{}")
    assert client.batches.retrieve(batch.id).status == "finalizing"


def test_a_cancelled_batch_stops_its_run_and_its_jobs(client: openai.OpenAI, batch_pipeline: Pipeline) -> None:
    batch = create(client, upload(client).id)
    digest = batch.id.removeprefix("batch_")
    bedrock = moto_patches.fake_bedrock("123456789012", "us-east-1")
    batch_pipeline.s3.put_object(Bucket=BUCKET, Key="work/x/records.jsonl", Body=b"")
    job = bedrock.create(
        {
            "jobName": f"test.batch-{digest}-00000",
            "modelId": "openai.gpt-oss-120b-1:0",
            "roleArn": "arn:aws:iam::123456789012:role/batch",
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": f"s3://{BUCKET}/work/x/records.jsonl"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": f"s3://{BUCKET}/bedrock-output/x/"}},
        }
    )
    cancelling = client.batches.cancel(batch.id)
    # Its run has stopped; its job was running when the cancel came, so the batch is cancelled once it has ended.
    assert (cancelling.status, cancelling.cancelled_at) == ("cancelling", None)
    assert cancelling.cancelling_at is not None
    assert batch_pipeline.execution("batch-" + digest)["status"] == "ABORTED"
    assert bedrock.get(job)["status"] == "Stopped"
    cancelled = client.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    # Cancelling again changes nothing.
    assert client.batches.cancel(batch.id).status == "cancelled"


def test_batches_are_listed_newest_first_page_by_page(client: openai.OpenAI) -> None:
    stored = upload(client)
    created = [create(client, stored.id).id for _ in range(3)]
    page = client.batches.list(limit=2)
    assert [batch.id for batch in page.data] == created[::-1][:2]
    assert page.has_more
    assert [batch.id for batch in client.batches.list(limit=2)] == created[::-1]  # the SDK pages with `after`


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"endpoint": "/v1/embeddings"}, "endpoint"),
        ({"completion_window": "48h"}, "completion_window"),
        ({"metadata": {f"k{n}": "v" for n in range(17)}}, "metadata"),
        ({"output_expires_after": {"anchor": "created_at", "seconds": 3600}}, "output_expires_after"),
    ],
)
def test_a_batch_request_that_cannot_be_honoured_names_the_field(
    client: openai.OpenAI, fields: dict[str, Any], param: str
) -> None:
    body = {
        "input_file_id": upload(client).id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        **fields,
    }
    with pytest.raises(openai.BadRequestError) as raised:
        client.post("/batches", body=body, cast_to=openai.types.Batch)
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["param"] == param


def test_a_caller_sees_and_cancels_only_its_own(client: openai.OpenAI, batch_pipeline: Pipeline) -> None:
    stored = upload(client)
    batch = create(client, stored.id)
    with sdk(OTHER_CALLER) as other:
        for attempt in (
            lambda: other.files.retrieve(stored.id),
            lambda: other.files.content(stored.id),
            lambda: create(other, stored.id),
            lambda: other.batches.retrieve(batch.id),
            lambda: other.batches.cancel(batch.id),
        ):
            with pytest.raises(openai.NotFoundError):
                attempt()
        assert other.batches.list().data == []
    assert batch_pipeline.execution("batch-" + batch.id.removeprefix("batch_"))["status"] == "RUNNING"
    # The same role in another session is the same owner.
    with sdk(SAME_ROLE_OTHER_SESSION) as same:
        assert same.batches.retrieve(batch.id).id == batch.id


def test_an_unsigned_request_has_no_files(batch_pipeline: Pipeline) -> None:
    with sdk(None) as anonymous, pytest.raises(openai.PermissionDeniedError):
        anonymous.batches.list()


def test_without_a_deployed_pipeline_the_batch_api_is_unavailable(
    chat_env: ChatSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_API_PARAMETER", PARAMETER)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    fresh_container()
    with mock_aws(), sdk() as client, pytest.raises(openai.APIStatusError) as raised:
        client.batches.list()
    assert raised.value.status_code == 503
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["code"] == "batch_pipeline_unavailable"
