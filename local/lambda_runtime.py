"""Lambda in process: the batch functions' handlers, run where moto's Lambda would start a container.

`local.moto_patches` hands every invocation of a moto Lambda function to `invoke`, which runs the handler
registered for the function's name (`register_handler`) on this interpreter, with a context whose remaining time
counts down from the function's timeout. One invocation runs at a time (`INVOCATION_LOCK`). The environment is the
pipeline's, set once when it starts (local/harness.py `_environment`): no invocation changes `os.environ`. An
exception is a function error, answered as Lambda answers one (`errorType`, `errorMessage`, `stackTrace`, and the
`X-Amz-Function-Error` header), so Step Functions' Retry and Catch see its type as the error name.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import traceback
from collections.abc import Callable
from typing import Any

from local.lambda_context import LocalLambdaContext

Handler = Callable[[Any, Any], Any]

_handlers: dict[str, Handler] = {}
# Held for the whole of each invocation: the functions' module caches (settings, clients) are the process's,
# and each invocation starts from empty ones, as a fresh container does.
INVOCATION_LOCK = threading.RLock()


def register_handler(function_name: str, handler: Handler) -> None:
    """Run `handler(event, context)` when the moto Lambda function `function_name` is invoked."""
    _handlers[function_name] = handler


def clear_handlers() -> None:
    """Forget every registered handler."""
    _handlers.clear()


@dataclasses.dataclass(frozen=True)
class Invoked:
    """What an invocation answers: the response payload and, for a function error, `X-Amz-Function-Error`."""

    payload: bytes
    function_error: str | None = None


def invoke(function_name: str, memory_mb: int, timeout_seconds: int, payload: Any) -> Invoked:
    """Run the handler registered for `function_name` on `payload` (JSON text or bytes; empty: `{}`)."""
    raw = payload.decode() if isinstance(payload, bytes) else payload
    event = json.loads(raw) if raw else {}
    context = LocalLambdaContext.starting_now(function_name, timeout_seconds=timeout_seconds, memory_mb=memory_mb)
    with INVOCATION_LOCK:
        # Looked up under the lock: once `clear_handlers` ran, nothing runs or touches the environment.
        handler = _handlers.get(function_name)
        if handler is None:
            return _function_error("HandlerNotRegistered", f"no offline handler for {function_name}", [])
        # The environment is the pipeline's, set once (local/harness.py `_environment`): never swapped here.
        try:
            result = handler(event, context)
        except Exception as error:
            return _function_error(type(error).__name__, str(error), traceback.format_tb(error.__traceback__))
    return Invoked(json.dumps(result, default=str).encode())


def _function_error(error_type: str, message: str, stack: list[str]) -> Invoked:
    payload = {"errorMessage": message, "errorType": error_type, "stackTrace": stack}
    return Invoked(json.dumps(payload).encode(), function_error="Unhandled")
