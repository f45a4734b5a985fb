"""Small readers for synthesized CloudFormation templates (plain dicts)."""

from __future__ import annotations

from typing import Any

IAM_POLICY_TYPES = ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")


def render(value: Any) -> str:
    """Flatten Ref / GetAtt / Join into readable text: `${AWS::Region}`, `${Logical.Attr}`."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"${{{argument}}}"
        if function == "Fn::GetAtt":
            return f"${{{argument[0]}.{argument[1]}}}"
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(render(part) for part in parts)
    raise AssertionError(f"cannot render {value!r}")


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: dict[str, Any], resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of a type (fails if there are none or several)."""
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    ((logical_id, resource),) = found.items()
    return logical_id, resource


def as_list(value: Any) -> list[Any]:
    """IAM fields hold one value or a list of values."""
    return value if isinstance(value, list) else [value]


def iam_statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every statement of every identity policy (policies, managed policies, inline role policies)."""
    statements: list[tuple[str, dict[str, Any]]] = []
    for policy_type in IAM_POLICY_TYPES:
        for logical_id, resource in resources(template, policy_type).items():
            statements += [(logical_id, s) for s in resource["Properties"]["PolicyDocument"]["Statement"]]
    for logical_id, resource in resources(template, "AWS::IAM::Role").items():
        for policy in resource["Properties"].get("Policies", []):
            statements += [(logical_id, s) for s in policy["PolicyDocument"]["Statement"]]
    return statements


def role_statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """The statements of the policies attached to one role."""
    return [
        statement
        for policy_type in IAM_POLICY_TYPES
        for resource in resources(template, policy_type).values()
        if {"Ref": role_logical_id} in resource["Properties"].get("Roles", [])
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
