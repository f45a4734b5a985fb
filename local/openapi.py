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
    return {
        "post": {
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {
                "200": {
                    "description": "The answer; with `stream: true`, server-sent events as it is generated.",
                    "content": {
                        "application/json": {"schema": _ref(answer)},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "default": _error(),
            },
        }
    }


def _read(summary: str, answer: dict[str, Any], *parameters: dict[str, Any], method: str = "get") -> dict[str, Any]:
    """An operation without a JSON body: its parameters, its answer's content and the error envelope."""
    return {
        method: {
            "summary": summary,
            **({"parameters": list(parameters)} if parameters else {}),
            "responses": {"200": {"description": summary, "content": answer}, "default": _error()},
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
        "/files": {
            "post": {
                "summary": "Upload a batch input file (JSONL, OpenAI batch lines)",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": upload}}},
                "responses": {"200": {"description": "The file.", "content": _json(FileObject)}, "default": _error()},
            }
        },
        "/files/{file_id}": _read("One file", _json(FileObject), _path_id("file_id")),
        "/files/{file_id}/content": _read(
            "A file's bytes",
            {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            _path_id("file_id"),
        ),
        "/batches": {
            "post": {
                "summary": "Create a batch: one run of the batch pipeline on an uploaded file",
                "requestBody": {"required": True, "content": _json(CreateBatchRequest)},
                "responses": {"200": {"description": "The batch.", "content": _json(Batch)}, "default": _error()},
            },
            **_read(
                "The caller's batches, newest first",
                _json(BatchList),
                {"name": "after", "in": "query", "required": False, "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "required": False, "schema": {"type": "integer"}},
            ),
        },
        "/batches/{batch_id}": _read("One batch", _json(Batch), _path_id("batch_id")),
        "/batches/{batch_id}/cancel": _read("Cancel a batch", _json(Batch), _path_id("batch_id"), method="post"),
    }


def _error() -> dict[str, Any]:
    return {
        "description": "An error, in OpenAI's envelope.",
        "content": {"application/json": {"schema": _ref(ErrorEnvelope)}},
    }


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
            "/models": {
                "get": {
                    "summary": "The deployed models and their aliases",
                    "responses": {
                        "200": {
                            "description": "The models.",
                            "content": {"application/json": {"schema": _ref(ModelList)}},
                        },
                        "default": _error(),
                    },
                }
            },
            **_batch_api(),
            "/models/{model}": {
                "get": {
                    "summary": "One model",
                    "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {
                            "description": "The model.",
                            "content": {"application/json": {"schema": _ref(ModelCard)}},
                        },
                        "default": _error(),
                    },
                }
            },
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
