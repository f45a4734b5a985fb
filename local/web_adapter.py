"""The AWS Lambda Web Adapter's side of an invocation: an API Gateway proxy event as the HTTP request the app gets.

The adapter forwards the event's method, path, query, headers and body, and adds API Gateway's request context
(`x-amzn-request-context`) and the invocation's context (`x-amzn-lambda-context`) as JSON headers (its docs,
"Request & Lambda Context"). The local runner and the tests reach the chat app through this one function.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

REQUEST_CONTEXT_HEADER = "x-amzn-request-context"
LAMBDA_CONTEXT_HEADER = "x-amzn-lambda-context"


class InvocationContext(Protocol):
    """What the adapter reads of a Lambda context (local/lambda_context.py and the tests' fakes have it)."""

    @property
    def aws_request_id(self) -> str:
        """The invocation's id."""
        ...

    @property
    def function_name(self) -> str:
        """The function's name."""
        ...

    @property
    def function_version(self) -> str:
        """The function's version."""
        ...

    @property
    def memory_limit_in_mb(self) -> int:
        """The function's memory."""
        ...

    @property
    def invoked_function_arn(self) -> str:
        """The ARN the function was invoked by."""
        ...

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds the invocation has left."""
        ...


def forwarded_headers(event: Mapping[str, Any], context: InvocationContext) -> list[tuple[str, str]]:
    """The request headers the app gets for `event`: the caller's, then the adapter's two context headers.

    The caller's own copies of the context headers are passed on too, so the app sees two values and refuses
    the request, as it must if the adapter ever forwarded them.
    """
    multi: Mapping[str, list[str]] = event.get("multiValueHeaders") or {
        name: [value] for name, value in (event.get("headers") or {}).items()
    }
    headers = [(name, str(value)) for name, values in multi.items() for value in values]
    deadline_ms = int(time.time() * 1000) + context.get_remaining_time_in_millis()
    invocation = {
        "request_id": context.aws_request_id,
        "deadline": deadline_ms,
        "invoked_function_arn": context.invoked_function_arn,
        "xray_trace_id": None,
        "client_context": None,
        "identity": None,
        "env_config": {
            "function_name": context.function_name,
            "memory": context.memory_limit_in_mb,
            "version": context.function_version,
        },
    }
    headers.append((REQUEST_CONTEXT_HEADER, json.dumps(event.get("requestContext") or {})))
    headers.append((LAMBDA_CONTEXT_HEADER, json.dumps(invocation)))
    return headers
