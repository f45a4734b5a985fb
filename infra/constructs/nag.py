"""cdk-nag finding ids, built from what a policy grants rather than from CDK's generated names.

cdk-nag 3 matches an acknowledgement (`Validations.of(construct).acknowledge`) to a finding by its exact id,
`RuleId[Finding]`, on the flagged resource or any construct above it; it has no pattern form. A finding about
a policy resource or managed policy names that value as cdk-nag flattens it (`<Bucket1234ABCD.Arn>/inbox/*`).
Building the id from the same value the grant uses keeps the acknowledgement tied to that grant, with no
logical id, CDK child name or token rendering written by hand; tests/infra/test_cdk_nag.py fails on any
finding left unacknowledged.
"""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct


def wildcard_resource(scope: Construct, resource: str) -> str:
    """The AwsSolutions-IAM5 finding of a policy resource holding a wildcard, e.g. `bucket.arn_for_objects("x/*")`."""
    return f"AwsSolutions-IAM5[Resource::{_flatten(Stack.of(scope).resolve(resource))}]"


def aws_managed_policy(scope: Construct, policy: iam.IManagedPolicy) -> str:
    """The AwsSolutions-IAM4 finding of a role that uses this AWS managed policy."""
    return f"AwsSolutions-IAM4[Policy::{_flatten(Stack.of(scope).resolve(policy.managed_policy_arn))}]"


def _flatten(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag writes it into a finding (its utils/flatten-cfn-reference.ts):
    `${X}` and `{"Ref": X}` become `<X>`, `{"Fn::GetAtt": [X, Y]}` `<X.Y>`, joins are joined, anything else JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, dict):
        if value.get("Fn::Join"):
            separator, parts = value["Fn::Join"]
            return str(separator).join(_flatten(part) for part in parts)
        if value.get("Fn::Sub"):
            return _flatten(value["Fn::Sub"])
        if value.get("Fn::GetAtt"):
            resource, attribute = value["Fn::GetAtt"]
            return f"<{_flatten(resource)}.{_flatten(attribute)}>"
        if value.get("Fn::ImportValue"):
            return _flatten(value["Fn::ImportValue"])
        if value.get("Ref"):
            return f"<{_flatten(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
