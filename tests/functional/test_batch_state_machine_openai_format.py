"""A file in OpenAI's batch input format, through the synthesized state machine offline: its answers come back in
OpenAI's batch output file, its rejected lines (a bad url, a duplicate custom_id) in the error file, and the
summary's counts and file URIs agree with both."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from local.harness import OfflinePipeline

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics")


def request(custom_id: str, *, url: str = "/v1/chat/completions") -> str:
    body = {"model": "gpt-oss-120b", "messages": [{"role": "user", "content": f"What is {custom_id}?"}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})


def read_jsonl(pipeline: OfflinePipeline, uri: str) -> list[dict[str, Any]]:
    prefix = f"s3://{pipeline.bucket}/"
    assert uri.startswith(prefix)
    data = pipeline.s3.get_object(Bucket=pipeline.bucket, Key=uri.removeprefix(prefix))["Body"].read()
    return [json.loads(line) for line in data.splitlines()]


def test_an_openai_batch_file_comes_back_as_openai_output_and_error_files(pipeline: OfflinePipeline) -> None:
    good = [f"req-{number}" for number in range(1, 26)]  # 25 records: two jobs of at most 20
    lines = [request(custom_id) for custom_id in good[:10]]
    lines.append(request("embed-1", url="/v1/embeddings"))  # line 11
    lines.extend(request(custom_id) for custom_id in good[10:])
    lines.append(request("req-3"))  # line 27: a duplicate of line 3

    run = pipeline.run("inbox/openai-requests.jsonl", "".join(f"{line}\n" for line in lines))

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    assert run.summary is not None
    assert run.summary["path"] == "batch"
    assert len(run.jobs) == 2
    counts = run.summary["counts"]
    assert (counts["accepted"], counts["ok"], counts["rejected"]) == (25, 25, 2)
    assert {result["id"] for result in run.results} == set(good)

    output = read_jsonl(pipeline, run.summary["openaiOutput"])
    assert len(output) == counts["ok"]
    assert sorted(line["custom_id"] for line in output) == sorted(good)
    for line in output:
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        completion = ChatCompletion.model_validate(line["response"]["body"])
        assert completion.choices[0].finish_reason == "stop"
        assert completion.choices[0].message.content
    answers = {result["id"]: result["answer"] for result in run.results}
    assert {line["custom_id"]: line["response"]["body"]["choices"][0]["message"]["content"] for line in output} == (
        answers
    )

    errors = read_jsonl(pipeline, run.summary["openaiErrors"])
    assert len(errors) == counts["error"] + counts["missing"] + counts["rejected"]
    assert [(line["custom_id"], line["response"], line["error"]["code"]) for line in errors] == [
        ("embed-1", None, "invalid_request"),
        ("req-3", None, "invalid_request"),
    ]
    assert errors[0]["error"]["message"] == "line 11: url: only /v1/chat/completions is supported, got '/v1/embeddings'"
    assert errors[1]["error"]["message"] == "line 27: custom_id 'req-3' duplicates line 3"
    assert [(rejection["line"], rejection["id"]) for rejection in run.rejected] == [(11, "embed-1"), (27, "req-3")]
    ids = [line["id"] for line in output + errors]
    assert len(set(ids)) == len(ids)
