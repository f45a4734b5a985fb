"""The Lambda context object of a local invocation: the attributes Powertools reads, and a real countdown."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from local.apigw import ACCOUNT_ID

REGION = "us-east-1"


@dataclass(frozen=True)
class LocalLambdaContext:
    """One invocation's context; its remaining time counts down from the function's timeout, as in Lambda."""

    function_name: str
    memory_limit_in_mb: int
    deadline: float  # time.monotonic() at which the invocation times out
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def starting_now(cls, function_name: str, *, timeout_seconds: float, memory_mb: int) -> LocalLambdaContext:
        """The context of an invocation that starts now and may run for `timeout_seconds`."""
        return cls(function_name, memory_mb, time.monotonic() + timeout_seconds)

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN, in the local account and Region."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        """The log group Lambda would write to."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name in Lambda's format."""
        return f"{time.strftime('%Y/%m/%d')}/[{self.function_version}]local"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out."""
        return max(0, int((self.deadline - time.monotonic()) * 1000))
