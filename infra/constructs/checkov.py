"""checkov skips, written into the template next to the resource they are about, each with its reason."""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import IConstruct


def skip_checkov(construct: IConstruct, skips: dict[str, str]) -> None:
    """Mark checkov check ids (id -> why it does not apply) as skipped on the construct's CloudFormation resource.

    checkov reads `Metadata.checkov.skip`; tests/infra/test_security_checkov.py pins every skip of the app.
    """
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    assert isinstance(resource, CfnResource), f"{construct.node.path} has no CloudFormation resource"
    existing = resource.get_metadata("checkov") or {"skip": []}
    existing["skip"].extend({"id": check_id, "comment": comment} for check_id, comment in skips.items())
    resource.add_metadata("checkov", existing)
