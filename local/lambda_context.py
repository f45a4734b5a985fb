"""The Lambda context object of every local invocation (the runner's, the harness's, the tests' and the bench's): the
attributes handlers and Powertools read, and the time left, counting down as in Lambda or fixed for exact budgets."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from local.apigw import ACCOUNT_ID

REGION = "us-east-1"


@dataclass(frozen=True)
class LocalLambdaContext:
    """One invocation's context; its remaining time counts down to `deadline`, or stays `fixed_remaining_ms`."""

    function_name: str
    memory_limit_in_mb: int
    deadline: float  # time.monotonic() at which the invocation times out
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    fixed_remaining_ms: int | None = None

    @classmethod
    def starting_now(cls, function_name: str, *, timeout_seconds: float, memory_mb: int) -> LocalLambdaContext:
        """The context of an invocation that starts now and may run for `timeout_seconds`."""
        return cls(function_name, memory_mb, time.monotonic() + timeout_seconds)

    @classmethod
    def fixed(cls, function_name: str = "function", *, remaining_ms: int, memory_mb: int = 1024) -> LocalLambdaContext:
        """A context whose remaining time never changes: a test's budget is then exactly `remaining_ms`."""
        return cls(function_name, memory_mb, time.monotonic() + remaining_ms / 1000, fixed_remaining_ms=remaining_ms)

    @property
    def invoked_function_arn(self) -> str:
        """The function's ARN, in the local account and Region."""
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the invocation times out."""
        if self.fixed_remaining_ms is not None:
            return self.fixed_remaining_ms
        return max(0, int((self.deadline - time.monotonic()) * 1000))
