"""The test-rig switches (rows 24 and 25): the chat model stand-in and AWS FIS, off by default, refused in
production, loud when on, and least-privilege where they add rights. AWS FIS covers the pipeline functions: the
chat function streams through the AWS Lambda Web Adapter, which the FIS extension cannot serve.

The rig app (tests/infra/synth.py, RIG_CONTEXT) also goes through cdk-nag, cfn-lint, checkov and the IAM
checks with the other apps (the `synthesized_apps` fixture).
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from infra.config import DeploymentConfig, is_production_stage
from infra.constructs.chat_api import CHAT_HANDLER
from infra.constructs.web_adapter import EXEC_WRAPPER, EXEC_WRAPPER_VARIABLE
from tests.infra.cfn import as_list, render, resources, role_statements
from tests.infra.synth import FIS_EXTENSION_LAYER_ARN, RIG_BATCH_STACK, RIG_CONTEXT, RIG_STACK, Synthesized

FIS_BUCKET = "FaultInjectionConfig05045809"
FIS_VARIABLES = {"AWS_LAMBDA_EXEC_WRAPPER", "AWS_FIS_CONFIGURATION_LOCATION", "AWS_FIS_POLL_MAX_WAIT_MILLISECONDS"}


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The app's own functions (not CDK's helper functions), by logical id."""
    return {
        logical_id: function["Properties"]
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if function["Properties"].get("Handler") == CHAT_HANDLER
        or str(function["Properties"].get("Handler", "")).startswith("batch.")
    }


@pytest.mark.parametrize("stage", ["prod", "prd", "production", "live", "prod-eu", "live-2"])
@pytest.mark.parametrize(
    "switch",
    [{"chatModelStandIn": "true"}, {"faultInjection": "true", "fisExtensionLayerArn": FIS_EXTENSION_LAYER_ARN}],
)
@pytest.mark.row(24, 25)
def test_production_stages_refuse_the_stand_in_and_fault_injection(stage: str, switch: dict[str, str]) -> None:
    assert is_production_stage(stage)
    with pytest.raises(ValidationError, match="refused for stage"):
        DeploymentConfig.from_context({"stage": stage, **switch})


@pytest.mark.row(24, 25)
def test_other_stages_accept_them_and_fault_injection_needs_its_layer() -> None:
    assert not any(is_production_stage(stage) for stage in ("loadtest", "dev", "staging", "product-demo", "prodx"))
    config = DeploymentConfig.from_context(dict(RIG_CONTEXT))
    assert config.chat.model_stand_in
    assert config.fault_injection.extension_layer_arn == FIS_EXTENSION_LAYER_ARN
    with pytest.raises(ValidationError, match="needs fisExtensionLayerArn"):
        DeploymentConfig.from_context({"stage": "loadtest", "faultInjection": "true"})
    with pytest.raises(ValidationError, match="only applies with faultInjection"):
        DeploymentConfig.from_context({"stage": "loadtest", "fisExtensionLayerArn": FIS_EXTENSION_LAYER_ARN})
    with pytest.raises(ValidationError, match="layer version ARN"):
        DeploymentConfig.from_context({"stage": "loadtest", "faultInjection": "true", "fisExtensionLayerArn": "x"})


@pytest.mark.row(24, 25)
def test_the_default_and_variant_apps_have_neither(default_app: Synthesized, variant_app: Synthesized) -> None:
    for app in (default_app, variant_app):
        for template in app.templates.values():
            assert not resources(template, "AWS::FIS::ExperimentTemplate")
            assert not any(
                name.startswith("Fis") or name == "ThrottleRateLimit" for name in template.get("Outputs", {})
            )
            for properties in _functions(template).values():
                variables = properties["Environment"]["Variables"]
                assert "MODEL_STAND_IN" not in variables
                assert not (FIS_VARIABLES - {EXEC_WRAPPER_VARIABLE}) & set(variables)
                assert variables.get(EXEC_WRAPPER_VARIABLE, EXEC_WRAPPER) == EXEC_WRAPPER
                # The dependency layer, and the chat function's web adapter.
                assert len(properties["Layers"]) == (2 if properties["Handler"] == CHAT_HANDLER else 1)


@pytest.mark.row(24)
def test_the_stand_in_is_on_the_chat_function_only_and_says_so(rig_app: Synthesized) -> None:
    chat, batch = rig_app.templates[RIG_STACK], rig_app.templates[RIG_BATCH_STACK]
    [chat_function] = _functions(chat).values()
    assert chat_function["Environment"]["Variables"]["MODEL_STAND_IN"] == "canned"
    assert all("MODEL_STAND_IN" not in f["Environment"]["Variables"] for f in _functions(batch).values())
    assert "[MODEL STAND-IN" in chat["Description"]
    assert {"Key": "model-stand-in", "Value": "true"} in chat_function["Tags"]
    outputs = chat["Outputs"]
    assert (outputs["ThrottleRateLimit"]["Value"], outputs["ThrottleBurstLimit"]["Value"]) == ("50.0", "100")
    assert {"ChatFunctionName", "ChatFunctionErrorsAlarmName", "ChatApi5xxAlarmName"} <= set(outputs)


@pytest.mark.row(25)
def test_every_pipeline_function_carries_the_fis_extension_and_reads_only_its_configurations(
    rig_app: Synthesized,
) -> None:
    checked = 0
    for template in rig_app.templates.values():
        # The stack's own key (log groups, alarm topic, FIS configurations), not the batch data keys.
        [key_id] = [
            logical_id for logical_id in resources(template, "AWS::KMS::Key") if logical_id.startswith("StackKey")
        ]
        for logical_id, properties in _functions(template).items():
            if properties["Handler"] == CHAT_HANDLER:
                continue
            checked += 1
            assert FIS_EXTENSION_LAYER_ARN in properties["Layers"], logical_id
            variables = properties["Environment"]["Variables"]
            assert variables["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/aws-fis/bootstrap"
            assert render(variables["AWS_FIS_CONFIGURATION_LOCATION"]) == f"${{{FIS_BUCKET}.Arn}}/FisConfigs/"
            role_id = properties["Role"]["Fn::GetAtt"][0]
            fis = {s["Sid"]: s for s in role_statements(template, role_id) if s.get("Sid", "").startswith("FisExt")}
            assert set(fis) == {
                "FisExtensionListsItsConfigurations",
                "FisExtensionReadsItsConfigurations",
                "FisExtensionDecryptsItsConfigurations",
            }
            listing = fis["FisExtensionListsItsConfigurations"]
            assert (listing["Action"], render(listing["Resource"])) == ("s3:ListBucket", f"${{{FIS_BUCKET}.Arn}}")
            assert listing["Condition"] == {"StringLike": {"s3:prefix": ["FisConfigs/*"]}}
            reading = fis["FisExtensionReadsItsConfigurations"]
            assert (reading["Action"], render(reading["Resource"])) == (
                "s3:GetObject",
                f"${{{FIS_BUCKET}.Arn}}/FisConfigs/*",
            )
            decrypting = fis["FisExtensionDecryptsItsConfigurations"]
            assert (decrypting["Action"], decrypting["Resource"]) == ("kms:Decrypt", {"Fn::GetAtt": [key_id, "Arn"]})
    assert checked == 5  # starter, prepare, on-demand, collect, job events


@pytest.mark.row(25)
def test_the_streaming_chat_function_keeps_its_web_adapter_and_gets_no_fis(rig_app: Synthesized) -> None:
    """The FIS extension cannot serve a function that streams (it turns streaming off even with no fault active),
    and it would take the exec wrapper the web adapter needs: on a faultInjection stage the chat stack is unchanged."""
    chat = rig_app.templates[RIG_STACK]
    [(logical_id, properties)] = _functions(chat).items()
    assert properties["Handler"] == CHAT_HANDLER
    variables = properties["Environment"]["Variables"]
    assert variables[EXEC_WRAPPER_VARIABLE] == EXEC_WRAPPER
    assert not (FIS_VARIABLES - {EXEC_WRAPPER_VARIABLE}) & set(variables)
    assert FIS_EXTENSION_LAYER_ARN not in properties["Layers"]
    role_id = properties["Role"]["Fn::GetAtt"][0]
    assert not [s for s in role_statements(chat, role_id) if s.get("Sid", "").startswith("FisExt")], logical_id
    for method in resources(chat, "AWS::ApiGateway::Method").values():
        assert method["Properties"]["Integration"]["ResponseTransferMode"] == "STREAM"
    for resource_type in ("AWS::FIS::ExperimentTemplate", "AWS::S3::Bucket"):
        assert not resources(chat, resource_type), resource_type
    assert not [name for name in chat["Outputs"] if name.startswith("Fis")]


@pytest.mark.row(25)
def test_the_fis_role_and_experiments_are_scoped_and_stop_on_an_alarm(rig_app: Synthesized) -> None:
    expected = {
        RIG_BATCH_STACK: ({"PipelineInvocationError", "PipelineInvocationDelay"}, "DeadLetters", 5),
    }
    for stack, (names, stop_alarm, targets) in expected.items():
        template = rig_app.templates[stack]
        role_id, role = _fis_role(template)
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"] == {"Service": "fis.amazonaws.com"}
        assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
        assert render(trust["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(":experiment/*")
        grants = {action: s for s in role_statements(template, role_id) for action in as_list(s["Action"])}
        assert set(grants) == {"s3:PutObject", "s3:DeleteObject", "lambda:GetFunction", "tag:GetResources"} | {
            "kms:GenerateDataKey"
        }
        assert render(grants["s3:PutObject"]["Resource"]) == f"${{{FIS_BUCKET}.Arn}}/FisConfigs/*"
        functions = sorted(_functions(template))
        assert sorted(r["Fn::GetAtt"][0] for r in as_list(grants["lambda:GetFunction"]["Resource"])) == functions
        assert len(functions) == targets
        experiments = resources(template, "AWS::FIS::ExperimentTemplate")
        assert {logical_id.removeprefix("FaultInjection")[:-8] for logical_id in experiments} == names
        alarms = resources(template, "AWS::CloudWatch::Alarm")
        (alarm_id,) = [a for a in alarms if a.startswith(f"BatchPipelineAlarms{stop_alarm}")]
        for experiment in experiments.values():
            properties = experiment["Properties"]
            assert properties["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
            assert properties["StopConditions"] == [
                {"Source": "aws:cloudwatch:alarm", "Value": {"Fn::GetAtt": [alarm_id, "Arn"]}}
            ]
            (target,) = properties["Targets"].values()
            assert target["ResourceType"] == "aws:lambda:function"
            assert sorted(r["Fn::GetAtt"][0] for r in target["ResourceArns"]) == functions
            (action,) = properties["Actions"].values()
            assert action["ActionId"] in ("aws:lambda:invocation-error", "aws:lambda:invocation-add-delay")
            assert action["Parameters"]["duration"] == "PT5M"
        assert {f"Fis{name}TemplateId" for name in names} <= set(template["Outputs"])


def _fis_role(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (found,) = [
        (logical_id, role)
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "fis.amazonaws.com"}
    ]
    return found
