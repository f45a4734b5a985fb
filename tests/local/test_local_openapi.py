"""docs/openapi.yaml is the chat app's own contract, and schemathesis fuzzes the local server with it.

The document is made from the function's pydantic models (local/openapi.py), so it cannot drift unseen; the
fuzzing sends generated requests, valid and invalid, to `python -m local up`'s chat API (the real app in its
own process behind the local API Gateway, the offline model answering at once, the batch pipeline behind its
Batch API) and holds every answer to: no
5xx, every error in OpenAI's envelope, every answer of the documented shape. Bounded: a fixed number of
examples per operation, derandomized, so the suite's time and outcome do not vary between runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.applications import Starlette
from starlette.routing import Route

from chat.app import app
from local.chat_server import ChatApiOptions, RunningChatApi
from local.openapi import DOCUMENT, document
from local.system import SystemOptions, running_system
from local.templates import Template
from tests.local.system_helpers import Lines

pytestmark = [pytest.mark.enable_socket]

EXAMPLES_PER_OPERATION = 60


def test_the_document_is_made_from_the_apps_own_models() -> None:
    on_disk = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    assert on_disk == document(), "docs/openapi.yaml is stale: run `uv run --frozen python -m local.openapi`"


def test_every_route_of_the_app_is_in_the_document() -> None:
    starlette_app = app.app
    assert isinstance(starlette_app, Starlette)
    routes = {
        (method, route.path.removeprefix("/v1").replace("{model:path}", "{model}"))
        for route in starlette_app.routes
        if isinstance(route, Route) and route.path != "/healthz"
        for method in route.methods or ()
        if method != "HEAD"
    }
    documented = {(method.upper(), path) for path, item in document()["paths"].items() for method in item}
    assert routes == documented


@pytest.fixture(scope="module")
def api(templates: dict[str, Template]) -> Iterator[RunningChatApi]:
    """The local chat API with the offline model answering at once, and the batch pipeline its Batch API uses."""
    options = SystemOptions(chat=ChatApiOptions(tokens_per_second=0))
    with running_system(templates, options, report=Lines()) as running:
        yield running.chat


# Invalid requests need something to make invalid: a body (any string is a valid model name).
OPERATIONS = [
    (path, method.upper(), mode)
    for path, item in document()["paths"].items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE or "requestBody" in operation
]


@pytest.mark.parametrize(("path", "method", "mode"), OPERATIONS)
def test_generated_requests_never_get_a_5xx_and_every_error_is_the_envelope(
    api: RunningChatApi, path: str, method: str, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_path(DOCUMENT)
    schema.config.update(base_url=api.url)
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def holds(case: schemathesis.Case[Any]) -> None:
        response = case.call(timeout=30)
        case.validate_response(
            response,
            checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
        )
        if response.status_code >= 400:
            body: Any = json.loads(response.content)
            assert set(body) == {"error"}, body
            # API Gateway's own errors (a body its validator refuses) also carry `request_id`.
            assert set(body["error"]) - {"request_id"} == {"message", "type", "param", "code"}, body
            # The function's errors name the request in x-request-id, API Gateway's in x-amzn-RequestId.
            assert response.headers.get("x-request-id") or response.headers.get("x-amzn-requestid"), response.headers

    holds()
