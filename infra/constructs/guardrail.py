"""Guardrail: the Bedrock guardrail every model call carries, pinned to a published version."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from aws_cdk import Acknowledgment, ArnFormat, CfnDeletionPolicy, Fn, Names, Stack, Validations
from aws_cdk import aws_bedrock as bedrock
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.config import GuardrailConfig, guardrail_parameter_names

# (filter type, input strength, output strength). Prompt attacks only exist on the input side, and
# Bedrock requires their output strength to be NONE. Misconduct is MEDIUM because at HIGH it also
# blocks ordinary questions about security, law and medicine.
CONTENT_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("HATE", "HIGH", "HIGH"),
    ("INSULTS", "HIGH", "HIGH"),
    ("SEXUAL", "HIGH", "HIGH"),
    ("VIOLENCE", "HIGH", "HIGH"),
    ("MISCONDUCT", "MEDIUM", "MEDIUM"),
    ("PROMPT_ATTACK", "HIGH", "NONE"),
)


@dataclasses.dataclass(frozen=True)
class GuardrailSpec:
    """Every property of the guardrail we create, as plain data: the one source of the resource and its digest."""

    name: str
    blocked_input_messaging: str
    blocked_outputs_messaging: str
    content_filters: tuple[tuple[str, str, str], ...] = CONTENT_FILTERS
    description: str = "Content policy of the gpt-oss chat API and batch pipeline"

    def digest(self) -> str:
        """A short, stable digest that changes exactly when a property changes."""
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


class Guardrail(Construct):
    """A Bedrock guardrail and its published version, or an existing guardrail version from config.

    Updates: a published version is immutable, so the version resource's description carries the
    digest of the guardrail's properties. When they change, CloudFormation first updates the guardrail
    (its working draft), then replaces the version resource (its description cannot change in place),
    which publishes a new number from the updated draft; everything that refers to `guardrail_version`
    (the function's environment, the IAM condition) moves to the new number. The replaced version is
    retained, not deleted: functions still running with the old number (the chat function until its
    update lands, the batch stack until its next deploy) keep working. Deleting the stack deletes the
    guardrail and every version with it. A rollback deletes the new version and keeps the old one.
    Unchanged properties publish nothing.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: GuardrailConfig) -> None:
        super().__init__(scope, construct_id)
        self.guardrail: bedrock.CfnGuardrail | None = None
        self.version: bedrock.CfnGuardrailVersion | None = None
        if config.existing_id is not None and config.existing_version is not None:
            self.guardrail_id: str = config.existing_id
            self.guardrail_version: str = config.existing_version
            self.guardrail_arn: str = Stack.of(self).format_arn(
                service="bedrock",
                resource="guardrail",
                resource_name=config.existing_id,
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
        else:
            spec = GuardrailSpec(
                # Guardrail names are unique per account and Region: derive one from the construct path.
                name=Names.unique_resource_name(self, max_length=50, separator="-"),
                blocked_input_messaging=config.blocked_input_message,
                blocked_outputs_messaging=config.blocked_output_message,
            )
            self.guardrail = _create_guardrail(self, spec)
            self.version = bedrock.CfnGuardrailVersion(
                self,
                "Version",
                guardrail_identifier=self.guardrail.attr_guardrail_id,
                description=version_description(spec),
            )
            self.version.cfn_options.update_replace_policy = CfnDeletionPolicy.RETAIN
            Validations.of(self.version).acknowledge(
                Acknowledgment(
                    id="CloudFormation-Validate::W3011",
                    reason="Replaced versions are kept for callers still on them; stack deletion removes the "
                    "guardrail and all its versions, so no DeletionPolicy is wanted",
                )
            )
            self.guardrail_id = self.guardrail.attr_guardrail_id
            self.guardrail_version = self.version.attr_version
            self.guardrail_arn = self.guardrail.attr_guardrail_arn
        # The value of the `bedrock:GuardrailIdentifier` condition key: the guardrail ARN plus ":<version>".
        self.versioned_arn: str = Fn.join(":", [self.guardrail_arn, self.guardrail_version])

    def publish(self, stage: str) -> None:
        """Write the guardrail id and pinned version to SSM, where the other stacks of the stage read them.

        Not a CloudFormation export: CloudFormation refuses to change an export another stack imports, so a
        new guardrail version could never deploy. A parameter can change; its readers resolve it on deploy.
        """
        names = guardrail_parameter_names(stage)
        for construct_id, name, value, what in (
            ("IdParameter", names.guardrail_id, self.guardrail_id, "id"),
            ("VersionParameter", names.guardrail_version, self.guardrail_version, "pinned version"),
        ):
            ssm.StringParameter(
                self,
                construct_id,
                parameter_name=name,
                string_value=value,
                description=f"The {what} of the guardrail every gpt-oss call of stage {stage} carries",
            )


@dataclasses.dataclass(frozen=True)
class GuardrailReference:
    """A guardrail owned by another stack: the same four values as `Guardrail` exposes."""

    guardrail_id: str
    guardrail_version: str
    guardrail_arn: str
    versioned_arn: str

    @classmethod
    def from_parameters(cls, scope: Construct, stage: str) -> GuardrailReference:
        """Read the stage's published guardrail on every deploy (CloudFormation SSM parameter types)."""
        names = guardrail_parameter_names(stage)
        guardrail_id = ssm.StringParameter.value_for_string_parameter(scope, names.guardrail_id)
        guardrail_version = ssm.StringParameter.value_for_string_parameter(scope, names.guardrail_version)
        guardrail_arn = Stack.of(scope).format_arn(
            service="bedrock",
            resource="guardrail",
            resource_name=guardrail_id,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        return cls(
            guardrail_id=guardrail_id,
            guardrail_version=guardrail_version,
            guardrail_arn=guardrail_arn,
            versioned_arn=Fn.join(":", [guardrail_arn, guardrail_version]),
        )


def version_description(spec: GuardrailSpec) -> str:
    """The published version's description; it names the configuration the version was published from."""
    return f"Published by CDK from guardrail configuration {spec.digest()}"


def _create_guardrail(scope: Construct, spec: GuardrailSpec) -> bedrock.CfnGuardrail:
    return bedrock.CfnGuardrail(
        scope,
        "Resource",
        name=spec.name,
        description=spec.description,
        blocked_input_messaging=spec.blocked_input_messaging,
        blocked_outputs_messaging=spec.blocked_outputs_messaging,
        content_policy_config=bedrock.CfnGuardrail.ContentPolicyConfigProperty(
            filters_config=[
                bedrock.CfnGuardrail.ContentFilterConfigProperty(
                    type=kind, input_strength=given, output_strength=answered
                )
                for kind, given, answered in spec.content_filters
            ]
        ),
    )
