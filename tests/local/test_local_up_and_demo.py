"""`python -m local demo` and `python -m local up` as a user runs them, each in a process of its own.

The demo must exit 0 having printed the chat answer and every run's summary. `up` must print where
everything is, turn a file dropped through its S3 endpoint into a reported run, and on SIGINT exit 0 within
seconds, leaving no process behind and its ports closed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import boto3
import httpx
import pytest

from local.cli import main

ROOT = Path(__file__).resolve().parents[2]
CHAT_URL = re.compile(r"Chat API on (http://127\.0\.0\.1:\d+/v1)")
S3_ENDPOINT = re.compile(r"S3 endpoint (http://127\.0\.0\.1:\d+), bucket (\S+)")
READY = "Runs are reported below as they go"


def _local(*arguments: str, stdout: IO[str] | int = subprocess.PIPE, stderr: IO[str]) -> subprocess.Popen[str]:
    # A session of its own: afterwards, any process left in its group would still be findable.
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "local", *arguments],
        cwd=ROOT,
        stdout=stdout,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )


def _group_is_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def _closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def _read_until(process: subprocess.Popen[str], text: str, lines: list[str], *, timeout: float) -> None:
    """Read stdout lines into `lines` until one contains `text` (the process is killed if it never comes)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return
    process.kill()
    raise AssertionError(f"{text!r} never printed:\n" + "".join(lines))


def test_demo_runs_the_whole_system_and_exits_0(tmp_path: Path) -> None:
    with (tmp_path / "stderr.txt").open("w+") as log:
        started = time.monotonic()
        demo = _local("demo", stderr=log)
        try:
            out, _ = demo.communicate(timeout=170)
        finally:
            if demo.poll() is None:
                demo.kill()
        seconds = time.monotonic() - started
        log.seek(0)
        err = log.read()
    assert demo.returncode == 0, f"{out}\n{err}"
    assert seconds < 150  # its own --timeout; well under 3 minutes
    assert "cdk-nag checks included" in out
    assert "== Chat API ==" in out
    assert re.search(r"  assistant: \S+", out)
    assert "(finish_reason stop," in out
    assert "\n== Batch results ==\n" in out
    # One run per sample file, each on its path, reported as it went and summarized at the end.
    assert re.search(r"\[batch\] questions-\w+: 150 prompt\(s\) accepted, 0 rejected -> batch path, 1 batch", out)
    # The job name starts with the stage's prefix (`<stage>.`), which the job-state event rule matches.
    job = r"job [a-z][a-z0-9-]*\.questions-\w+-00000"
    assert re.search(rf"\[batch\] questions-\w+: {job} Completed \(150 records: 150 ok", out)
    assert "SUCCEEDED, summary SUCCEEDED, path batch: 150 ok, 0 error, 0 missing, 0 rejected" in out
    assert "SUCCEEDED, summary SUCCEEDED, path on_demand: 5 ok" in out  # tickets.csv
    assert "SUCCEEDED, summary SUCCEEDED, path on_demand: 1 ok" in out  # note.txt
    assert "SUCCEEDED, summary PARTIAL, path on_demand: 4 ok, 0 error, 0 missing, 4 rejected" in out  # mixed.jsonl
    assert "rejected line 3: invalid JSON" in out
    assert "m-7 [ok]: " in out
    assert "(finish_reason content_filter)" in out  # the guardrail on the on-demand path
    # OpenAI batch lines, dropped in the inbox and sent through the Batch API (the same file both ways).
    assert "SUCCEEDED, summary PARTIAL, path on_demand: 3 ok, 0 error, 0 missing, 1 rejected" in out
    assert "rejected line 4: custom_id 'capital' duplicates line 1" in out
    assert "\n== Batch API ==\n" in out
    assert re.search(r"  batch_[0-9a-f]{24}: completed, 3 completed, 1 failed of 4\n", out)
    assert "  capital [error]: line 4: custom_id 'capital' duplicates line 1" in out
    assert "Demo finished in" in out
    assert "and the Batch API's batch completed." in out
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in err
    assert "PUT /" in err  # the drops went through the S3 endpoint
    assert "Traceback" not in err
    assert _group_is_gone(demo.pid)


@pytest.mark.enable_socket
def test_up_serves_chat_and_runs_dropped_files_until_sigint(tmp_path: Path) -> None:
    log = (tmp_path / "stderr.txt").open("w+")
    up = _local("up", "--port", "0", "--s3-port", "0", "--guardrail-word", "kumquat", stderr=log)
    printed: list[str] = []
    try:
        _read_until(up, READY, printed, timeout=90)
        banner = "".join(printed)
        chat_url = CHAT_URL.search(banner)
        endpoint = S3_ENDPOINT.search(banner)
        assert chat_url is not None
        assert endpoint is not None
        s3_url, bucket = endpoint.groups()
        assert f"aws s3 cp --endpoint-url {s3_url} questions.jsonl s3://{bucket}/inbox/" in banner
        assert f'boto3.client("s3", endpoint_url="{s3_url}"' in banner
        assert f"s3://{bucket}/results/<runId>/summary.json" in banner

        answer = httpx.post(
            f"{chat_url.group(1)}/chat/completions",
            json={"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Any kumquat facts?"}]},
            timeout=10,
        )
        assert answer.json()["choices"][0]["finish_reason"] == "content_filter"
        s3 = boto3.client(
            "s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
        )
        body = "".join(json.dumps({"prompt": f"Question {number}?"}) + "\n" for number in range(3))
        s3.put_object(Bucket=bucket, Key="inbox/mine.jsonl", Body=body.encode())
        _read_until(up, "SUCCEEDED, summary SUCCEEDED, path on_demand: 3 ok", printed, timeout=30)
        (summary,) = [
            item["Key"]
            for item in s3.list_objects_v2(Bucket=bucket, Prefix="results/")["Contents"]
            if item["Key"].endswith("summary.json")
        ]
        assert json.loads(s3.get_object(Bucket=bucket, Key=summary)["Body"].read())["status"] == "SUCCEEDED"
        s3.close()

        stopping = time.monotonic()
        up.send_signal(signal.SIGINT)
        up.wait(timeout=10)
        stopped_in = time.monotonic() - stopping
    finally:
        if up.poll() is None:
            up.kill()
        log.seek(0)
        err = log.read()
        log.close()
    assert up.stdout is not None
    out = "".join(printed) + up.stdout.read()
    up.stdout.close()
    assert up.returncode == 0, err
    assert stopped_in < 5
    assert "[batch] mine-" in out
    assert "SIGINT received: stopping." in out
    assert out.rstrip().endswith("Stopped.")
    assert "Traceback" not in err
    assert _group_is_gone(up.pid)
    assert _closed(s3_url)
    assert _closed(chat_url.group(1))


def test_up_refuses_what_cannot_run_locally(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "-c", "batchReadServiceQuotas=true"]) == 1
    assert "moto has no Service Quotas" in capsys.readouterr().err
    assert main(["up", "--backend", "aws"]) == 1
    assert "--guardrail-id" in capsys.readouterr().err
    assert main(["demo", "--backend", "openai"]) == 1
    assert "--openai-base-url" in capsys.readouterr().err
