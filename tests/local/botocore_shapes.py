"""Check a response body against botocore's service model, strictly: what boto3's parser lets pass, this does not."""

from __future__ import annotations

from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape

_SCALARS: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "long": int,
    "boolean": bool,
    "double": (int, float),
    "float": (int, float),
    "blob": str,
}


def output_problems(service: str, operation: str, body: Any) -> list[str]:
    """Where a JSON response body disagrees with the operation's output shape (empty: it conforms)."""
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).output_shape
    assert shape is not None
    return list(_problems(body, shape, operation))


def stream_event_problems(service: str, operation: str, event: Any) -> list[str]:
    """Where one event of an operation's event stream disagrees with its member of the stream union."""
    model = botocore.session.get_session().get_service_model(service)
    output = model.operation_model(operation).output_shape
    assert isinstance(output, StructureShape)
    [stream] = [member for member in output.members.values() if member.serialization.get("eventstream")]
    assert isinstance(stream, StructureShape)
    if not isinstance(event, dict) or len(event) != 1:
        return [f"{operation} event: expected exactly one member, got {event!r}"]
    [(name, value)] = event.items()
    if name not in stream.members:
        return [f"{operation} event: unknown member {name!r}"]
    return _problems(value, stream.members[name], f"{operation}.{name}")


def _problems(value: Any, shape: Shape, where: str) -> list[str]:
    if shape.metadata.get("document"):
        return []  # free-form JSON (e.g. a tool call's input)
    if isinstance(shape, StructureShape):
        return _structure_problems(value, shape, where)
    if isinstance(shape, ListShape):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [
            problem
            for index, item in enumerate(value)
            for problem in _problems(item, shape.member, f"{where}[{index}]")
        ]
    if isinstance(shape, MapShape):
        if not isinstance(value, dict):
            return [f"{where}: expected a map"]
        return [problem for key, item in value.items() for problem in _problems(item, shape.value, f"{where}.{key}")]
    expected = _SCALARS.get(shape.type_name)
    if expected is None:
        return []
    if not isinstance(value, expected) or (shape.type_name != "boolean" and isinstance(value, bool)):
        return [f"{where}: expected {shape.type_name}, got {value!r}"]
    enum = shape.metadata.get("enum")
    return [f"{where}: {value!r} is not one of {enum}"] if enum and value not in enum else []


def _structure_problems(value: Any, shape: StructureShape, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected a structure"]
    problems = [f"{where}: unknown member {name!r}" for name in value if name not in shape.members]
    problems += [f"{where}: missing required {name!r}" for name in shape.required_members if name not in value]
    if shape.metadata.get("union") and len(value) != 1:
        problems.append(f"{where}: a union needs exactly one member, got {sorted(value)}")
    for name, member in shape.members.items():
        if name in value:
            problems += _problems(value[name], member, f"{where}.{name}")
    return problems
