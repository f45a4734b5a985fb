"""Everything `python -m local up` prints for people to paste works when pasted, against the running system.

The `aws s3` lines run with the AWS CLI when it is installed; without it, each is carried out with boto3 exactly
as the CLI would sign it (unsigned for `--no-sign-request`, else with the keys the line sets, and none other:
a printed line must not depend on the reader's own credentials). The curl lines run with curl, the Python
snippets with this interpreter (the heredoc `uv run --frozen python -` feeds them to).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from local.chat_server import ChatApiOptions
from local.cli import up_banner
from local.system import RunningSystem, SystemOptions, running_system
from local.templates import Template
from tests.local.system_helpers import Lines, s3_client

pytestmark = [pytest.mark.enable_socket, pytest.mark.filterwarnings("ignore:No application metrics")]

ROOT = Path(__file__).resolve().parents[2]
# The shell a reader pastes into (bash: the banner prints heredocs).
BASH = shutil.which("bash") or "/bin/bash"
HEREDOC = re.compile(r"^uv run --frozen python - <<'EOF'\n(.*?)^EOF$", re.MULTILINE | re.DOTALL)
# Only what the banner prints: the credentials a line may set for itself.
_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@pytest.fixture(scope="module")
def system(templates: dict[str, Template]) -> Iterator[RunningSystem]:
    with running_system(templates, SystemOptions(chat=ChatApiOptions(tokens_per_second=0)), report=Lines()) as running:
        yield running


@pytest.fixture(scope="module")
def banner(system: RunningSystem) -> str:
    return up_banner(system, SystemOptions(chat=ChatApiOptions(tokens_per_second=0)), seconds=1.0)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where the reader pastes: a questions.jsonl and a local/samples/ of their own."""
    (tmp_path / "questions.jsonl").write_text(
        "".join(json.dumps({"id": f"q{number}", "prompt": f"Question {number}?"}) + "\n" for number in range(3))
    )
    (tmp_path / "local" / "samples").mkdir(parents=True)
    for sample in ("tickets.csv", "openai-batch.jsonl"):
        shutil.copy(ROOT / "local" / "samples" / sample, tmp_path / "local" / "samples" / sample)
    return tmp_path


def _aws_s3_lines(banner: str) -> list[str]:
    return [line.strip() for line in banner.splitlines() if re.match(r"\s*(\w+=\S+ )*aws s3 ", line)]


def _paste(line: str, cwd: Path) -> str:
    """Run one printed `aws s3` line as a reader would; its standard output."""
    if shutil.which("aws"):
        # A clean home: no profile or config of whoever runs the tests.
        home = cwd / "home"
        home.mkdir(exist_ok=True)
        environment = {"PATH": os.environ["PATH"], "HOME": str(home)}
        done = subprocess.run(  # noqa: S603 - the banner's own line, on loopback
            [BASH, "-c", line], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        return done.stdout
    return _as_the_cli_would(line, cwd)


def _as_the_cli_would(line: str, cwd: Path) -> str:
    """`aws s3 cp|ls` of one printed line, carried out with boto3 as the CLI signs it."""
    words = shlex.split(line)
    settings = {}
    while "=" in words[0]:
        name, _, value = words.pop(0).partition("=")
        settings[name] = value
    assert words[:2] == ["aws", "s3"], line
    command, arguments = words[2], words[3:]
    endpoint = arguments.pop(arguments.index("--endpoint-url") + 1)
    arguments.remove("--endpoint-url")
    unsigned = "--no-sign-request" in arguments
    recursive = "--recursive" in arguments
    paths = [argument for argument in arguments if not argument.startswith("--")]
    if unsigned:
        client: Any = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(signature_version=UNSIGNED)
        )
    else:
        assert set(_KEYS) <= set(settings), f"the line relies on the reader's own credentials: {line}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=settings["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=settings["AWS_SECRET_ACCESS_KEY"],
        )

    def bucket_and_key(url: str) -> tuple[str, str]:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        return bucket, key

    if command == "ls":
        bucket, prefix = bucket_and_key(paths[0])
        listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        return "".join(f"{item['LastModified']} {item['Size']} {item['Key']}\n" for item in listed)
    assert command == "cp", line
    source, target = paths
    if source.startswith("s3://"):
        assert target == "-", line
        bucket, key = bucket_and_key(source)
        return str(client.get_object(Bucket=bucket, Key=key)["Body"].read().decode())
    bucket, key = bucket_and_key(target)
    files = sorted(path for path in (cwd / source).rglob("*") if path.is_file()) if recursive else [cwd / source]
    for path in files:
        name = f"{key}{path.relative_to(cwd / source).as_posix()}" if recursive else key
        client.upload_file(str(path), bucket, name)
    return ""


def _summary_key(system: RunningSystem, source_key: str, *, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    s3 = s3_client(system)
    while time.monotonic() < deadline:
        for item in s3.list_objects_v2(Bucket=system.bucket, Prefix="results/").get("Contents", []):
            if item["Key"].endswith("/summary.json"):
                summary = json.loads(s3.get_object(Bucket=system.bucket, Key=item["Key"])["Body"].read())
                if summary["source"]["key"] == source_key:
                    return str(item["Key"])
        time.sleep(0.2)
    raise AssertionError(f"no summary for {source_key} within {timeout} s")


def test_every_printed_aws_s3_line_works_when_pasted(system: RunningSystem, banner: str, workdir: Path) -> None:
    lines = _aws_s3_lines(banner)
    assert len(lines) == 4, banner
    upload, upload_samples, listing, download = lines
    _paste(upload, workdir)
    _paste(upload_samples, workdir)
    _paste(upload, workdir)  # a second drop of the same name: an overwrite, which is a new run
    key = _summary_key(system, "inbox/questions.jsonl")
    assert key in _paste(listing, workdir)
    run_id = key.split("/")[1]
    summary = json.loads(_paste(download.replace("<runId>", run_id), workdir))
    assert summary["runId"] == run_id
    assert summary["status"] == "SUCCEEDED"


def test_the_printed_python_snippets_work_when_pasted(system: RunningSystem, banner: str, workdir: Path) -> None:
    snippets = HEREDOC.findall(banner)
    assert len(snippets) == 3, banner  # the OpenAI SDK's (chat, then the Batch API) and boto3's
    outputs = []
    for snippet in snippets:
        done = subprocess.run(
            [sys.executable, "-"], input=snippet, cwd=workdir, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{snippet}\n{done.stderr}"
        outputs.append(done.stdout)
    assert _summary_key(system, "inbox/tickets.csv")
    # The batch completed, and its output file is OpenAI's batch output lines.
    assert "completed BatchRequestCounts(completed=3, failed=1, total=4)" in outputs[-1]
    assert '"custom_id":"capital"' in outputs[-1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_printed_curl_lines_work_when_pasted(banner: str, workdir: Path) -> None:
    lines = [line.strip() for line in banner.splitlines() if line.strip().startswith("curl ")]
    assert len(lines) == 2, banner
    for line in lines:
        done = subprocess.run(  # noqa: S603 - the banner's own line, on loopback
            [BASH, "-c", line], cwd=workdir, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        answer = json.loads(done.stdout)
        assert answer.get("error") is None, answer
