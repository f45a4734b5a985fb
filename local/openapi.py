"""The chat API's OpenAPI document, made from the chat function's own pydantic models (docs/openapi.yaml).

`python -m local.openapi` rewrites docs/openapi.yaml; tests/local/test_local_openapi.py fails when the file and
the models disagree, and fuzzes the local server with schemathesis from the same document.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from chat.batch_models import Batch, BatchList, CreateBatchRequest, FileObject
from chat.models import ChatCompletion, ChatCompletionRequest, ErrorEnvelope, ModelCard, ModelList
from chat.responses_models import Response, ResponsesRequest

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "openapi.yaml"
_REQUESTS: tuple[type[BaseModel], ...] = (ChatCompletionRequest, ResponsesRequest, CreateBatchRequest)
_RESPONSES: tuple[type[BaseModel], ...] = (
    ChatCompletion,
    Response,
    ModelList,
    ModelCard,
    ErrorEnvelope,
    FileObject,
    Batch,
    BatchList,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _answer(request: type[BaseModel], answer: type[BaseModel], summary: str) -> dict[str, Any]:
    return _operation(
        summary,
        {**_json(answer), "text/event-stream": {"schema": {"type": "string"}}},
        method="post",
        body=_json(request),
        description="The answer; with `stream: true`, server-sent events as it is generated.",
    )


def _operation(
    summary: str,
    answer: dict[str, Any],
    *parameters: dict[str, Any],
    method: str = "get",
    body: dict[str, Any] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """One operation: its parameters or request body, its answer's content (described by `description`, else by
    `summary`) and the error envelope."""
    return {
        method: {
            "summary": summary,
            **({"parameters": list(parameters)} if parameters else {}),
            **({"requestBody": {"required": True, "content": body}} if body else {}),
            "responses": {"200": {"description": description or summary, "content": answer}, "default": _error()},
        }
    }


def _path_id(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _batch_api() -> dict[str, Any]:
    """The Batch API's operations (files and batches of the batch pipeline)."""
    upload = {
        "type": "object",
        "required": ["file", "purpose"],
        "properties": {"file": {"type": "string", "format": "binary"}, "purpose": {"type": "string"}},
    }
    return {
        "/files": _operation(
            "Upload a batch input file (JSONL, OpenAI batch lines)",
            _json(FileObject),
            method="post",
            body={"multipart/form-data": {"schema": upload}},
            description="The file.",
        ),
        "/files/{file_id}": _operation("One file", _json(FileObject), _path_id("file_id")),
        "/files/{file_id}/content": _operation(
            "A file's bytes",
            {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            _path_id("file_id"),
        ),
        "/batches": {
            **_operation(
                "Create a batch: one run of the batch pipeline on an uploaded file",
                _json(Batch),
                method="post",
                body=_json(CreateBatchRequest),
                description="The batch.",
            ),
            **_operation(
                "The caller's batches, newest first",
                _json(BatchList),
                {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
            ),
        },
        "/batches/{batch_id}": _operation("One batch", _json(Batch), _path_id("batch_id")),
        "/batches/{batch_id}/cancel": _operation("Cancel a batch", _json(Batch), _path_id("batch_id"), method="post"),
    }


def _error() -> dict[str, Any]:
    return {"description": "An error, in OpenAI's envelope.", "content": _json(ErrorEnvelope)}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the chat API's routes, request bodies, answers and errors."""
    _, schemas = models_json_schema(
        [(model, "validation") for model in _REQUESTS] + [(model, "serialization") for model in _RESPONSES],
        ref_template="#/components/schemas/{model}",
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "gpt-oss on Amazon Bedrock: the chat API",
            "version": "1",
            "description": "OpenAI-compatible chat completions and responses for gpt-oss, through a Bedrock guardrail. "
            "Generated from the chat function's models by `python -m local.openapi`; the README says what each field "
            "does. Deployed, every request is signed with SigV4 (service execute-api).",
        },
        "servers": [{"url": "http://127.0.0.1:8000/v1", "description": "python -m local serve"}],
        "paths": {
            "/chat/completions": _answer(ChatCompletionRequest, ChatCompletion, "A chat completion"),
            "/responses": _answer(ResponsesRequest, Response, "A response (stateless)"),
            "/models": _operation("The deployed models and their aliases", _json(ModelList), description="The models."),
            **_batch_api(),
            "/models/{model}": _operation("One model", _json(ModelCard), _path_id("model"), description="The model."),
        },
        "components": {"schemas": schemas["$defs"]},
    }


def render() -> str:
    """The document as YAML text."""
    text: str = yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=120)
    return text


def main() -> int:
    """Rewrite docs/openapi.yaml from the models."""
    DOCUMENT.write_text(render(), encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
