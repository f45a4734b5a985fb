"""Lambda in process: the batch functions' handlers, run where moto's Lambda would start a container.

`local.moto_patches` hands every invocation of a moto Lambda function to `invoke`, which runs the handler
registered for the function's name (`register_handler`, the handler `import_handler` loads as Lambda does) on this
interpreter, in a fresh container (`fresh_container`), with a context whose remaining time counts down from the
function's timeout. One invocation runs at a time (`INVOCATION_LOCK`). The environment is the
pipeline's, set once when it starts (local/harness.py `_environment`): no invocation changes `os.environ`. An
exception is a function error, answered as Lambda answers one (`errorType`, `errorMessage`, `stackTrace`, and the
`X-Amz-Function-Error` header), so Step Functions' Retry and Catch see its type as the error name.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from local.lambda_context import LocalLambdaContext

Handler = Callable[[Any, Any], Any]
# The packages of the functions' code (the asset root functions/): what a container's caches belong to.
FUNCTION_PACKAGES = ("batch", "shared", "chat")

_handlers: dict[str, Handler] = {}
# Held for the whole of each invocation: the functions' module caches (settings, clients) are the process's,
# and each invocation starts from empty ones, as a fresh container does.
INVOCATION_LOCK = threading.RLock()


def import_handler(dotted: str) -> Handler:
    """What Lambda does with a function's `Handler`: import `module.path` and take the attribute."""
    module_name, _, attribute = dotted.rpartition(".")
    handler: Handler = getattr(importlib.import_module(module_name), attribute)
    return handler


def fresh_container() -> None:
    """Empty what a new execution environment starts without: every module-level cache of the functions' code
    (settings, clients, gateways: each `functools.cache` defined in a function package), the keys appended to
    their loggers, and Powertools' parameter cache. The runner, the harness, the tests and the bench call this
    one function whenever they need a container's state gone (the functions share this process)."""
    from aws_lambda_powertools import Logger

    for name, module in list(sys.modules.items()):
        if module is None or name.split(".", 1)[0] not in FUNCTION_PACKAGES:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Logger):
                value.clear_state()
            elif callable(value) and hasattr(value, "cache_clear") and getattr(value, "__module__", None) == name:
                value.cache_clear()
    parameters = sys.modules.get("aws_lambda_powertools.utilities.parameters")
    if parameters is not None:
        parameters.clear_caches()


def register_handler(function_name: str, handler: Handler) -> None:
    """Run `handler(event, context)`, in a fresh container, when the moto Lambda function `function_name` is invoked."""
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
    event = json.loads(payload) if payload else {}
    context = LocalLambdaContext.starting_now(function_name, timeout_seconds=timeout_seconds, memory_mb=memory_mb)
    with INVOCATION_LOCK:
        # Looked up under the lock: once `clear_handlers` ran, nothing runs or touches the environment.
        handler = _handlers.get(function_name)
        if handler is None:
            return _function_error("HandlerNotRegistered", f"no offline handler for {function_name}", [])
        fresh_container()
        try:
            result = handler(event, context)
        except Exception as error:
            return _function_error(type(error).__name__, str(error), traceback.format_tb(error.__traceback__))
    return Invoked(json.dumps(result, default=str).encode())


def _function_error(error_type: str, message: str, stack: list[str]) -> Invoked:
    payload = {"errorMessage": message, "errorType": error_type, "stackTrace": stack}
    return Invoked(json.dumps(payload).encode(), function_error="Unhandled")
