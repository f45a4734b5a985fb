"""Helpers of the tests that run the whole system in-process."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import closing
from typing import TYPE_CHECKING, Any

import boto3

from local.system import RunningSystem

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class Lines:
    """What the system reports, collected from its threads."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)

    def matching(self, text: str) -> list[str]:
        with self._lock:
            return [line for line in self.lines if text in line]


def closed(url: str) -> bool:
    """Whether nothing listens at a URL's host and port any more."""
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    with socket.socket() as probe:
        return probe.connect_ex((host, int(port))) != 0


def s3_client(system: RunningSystem) -> S3Client:
    """A client of the system's S3 endpoint, as any user would make one (any credentials do)."""
    return boto3.client(
        "s3",
        endpoint_url=system.s3_url,
        region_name="us-east-1",
        aws_access_key_id="someone",
        aws_secret_access_key="else",
    )


def summary_over_http(system: RunningSystem, *, timeout: float = 30.0) -> tuple[str, dict[str, Any]]:
    """Wait for a results/<runId>/summary.json to appear, listing the bucket through the endpoint."""
    deadline = time.monotonic() + timeout
    with closing(s3_client(system)) as s3:
        while time.monotonic() < deadline:
            listed = s3.list_objects_v2(Bucket=system.bucket, Prefix="results/").get("Contents", [])
            summaries = [item["Key"] for item in listed if item["Key"].endswith("/summary.json")]
            if summaries:
                (key,) = summaries
                summary: dict[str, Any] = json.loads(s3.get_object(Bucket=system.bucket, Key=key)["Body"].read())
                return key, summary
            time.sleep(0.1)
    raise AssertionError(f"no summary.json appeared within {timeout} s")
