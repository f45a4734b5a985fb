"""cfn-lint on every synthesized template: no errors; only the warnings listed here, for the reasons given."""

from __future__ import annotations

import json

from cfnlint.api import lint

from tests.infra.synth import Synthesized

REGIONS = ["us-east-1", "us-west-2"]
ALLOWED_WARNINGS = {
    # aws-cdk-lib's Function and StateMachine add DependsOn on their role (and the role's default policy)
    # although the Role property's GetAtt already orders them; harmless, and not ours to change.
    "W3005": "DependsOn that a GetAtt already implies (CDK's Lambda Function and StateMachine constructs)",
    # The guardrail version keeps its replaced numbers for running callers (UpdateReplacePolicy Retain) but is
    # deleted with its guardrail when the stack goes: a DeletionPolicy is deliberately absent.
    "W3011": "UpdateReplacePolicy without DeletionPolicy on the guardrail version, by design",
}


def test_templates_have_no_errors_and_no_unexplained_warnings(synthesized_apps: list[Synthesized]) -> None:
    linted = 0
    for synthesized in synthesized_apps:
        for stack_name, template in synthesized.templates.items():
            matches = lint(json.dumps(template), regions=REGIONS)
            findings = [(match.rule.id, str(match)) for match in matches]
            errors = [finding for finding in findings if not finding[0].startswith(("W", "I"))]
            assert errors == [], stack_name
            unexplained = [finding for finding in findings if finding[0] not in ALLOWED_WARNINGS]
            assert unexplained == [], stack_name
            linted += 1
    assert linted >= len(synthesized_apps)
