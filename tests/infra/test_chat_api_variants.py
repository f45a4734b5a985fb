"""The optional branches, all switched on in one variant app: private endpoint, API keys, existing guardrail,
the account's API Gateway CloudWatch role, a web ACL and alarm e-mail."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from tests.infra.cfn import as_list, only, render, resources
from tests.infra.synth import VPC_ENDPOINT_IDS, WEB_ACL_ARN

EXISTING_GUARDRAIL_ARN = "arn:${AWS::Partition}:bedrock:${AWS::Region}:${AWS::AccountId}:guardrail/abc123def456"


@pytest.mark.row(13)
def test_private_endpoint_only_through_the_configured_vpc_endpoints(variant: dict[str, Any]) -> None:
    _, api = only(variant, "AWS::ApiGateway::RestApi")
    assert api["Properties"]["EndpointConfiguration"]["Types"] == ["PRIVATE"]
    allow, deny = api["Properties"]["Policy"]["Statement"]
    assert allow["Effect"] == "Allow"
    assert allow["Action"] == "execute-api:Invoke"
    assert allow["Resource"] == "execute-api:/*"
    # The account (its identity policies still have to allow execute-api:Invoke), not "anyone".
    assert render(allow["Principal"]["AWS"]) == "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"
    assert allow["Condition"] == {"StringEquals": {"aws:SourceVpce": VPC_ENDPOINT_IDS}}
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == {"AWS": "*"}
    assert deny["Action"] == "execute-api:Invoke"
    assert deny["Resource"] == "execute-api:/*"
    assert deny["Condition"] == {"StringNotEquals": {"aws:SourceVpce": VPC_ENDPOINT_IDS}}


@pytest.mark.row(13)
def test_api_keys_are_required_on_top_of_iam(variant: dict[str, Any]) -> None:
    methods = resources(variant, "AWS::ApiGateway::Method").values()
    assert {(m["Properties"]["AuthorizationType"], m["Properties"]["ApiKeyRequired"]) for m in methods} == {
        ("AWS_IAM", True)
    }
    key_id, _ = only(variant, "AWS::ApiGateway::ApiKey")
    plan_id, plan = only(variant, "AWS::ApiGateway::UsagePlan")
    assert plan["Properties"]["Throttle"] == {"RateLimit": 50, "BurstLimit": 100}
    stage_id, _ = only(variant, "AWS::ApiGateway::Stage")
    (api_stage,) = plan["Properties"]["ApiStages"]
    assert api_stage["Stage"] == {"Ref": stage_id}
    _, plan_key = only(variant, "AWS::ApiGateway::UsagePlanKey")
    assert plan_key["Properties"] == {"KeyId": {"Ref": key_id}, "KeyType": "API_KEY", "UsagePlanId": {"Ref": plan_id}}
    assert variant["Outputs"]["ApiKeyId"]["Value"] == {"Ref": key_id}


def test_existing_guardrail_is_used_not_created(variant: dict[str, Any], variant_template: Template) -> None:
    variant_template.resource_count_is("AWS::Bedrock::Guardrail", 0)
    variant_template.resource_count_is("AWS::Bedrock::GuardrailVersion", 0)
    (function,) = resources(variant, "AWS::Lambda::Function").values()
    variables = function["Properties"]["Environment"]["Variables"]
    assert (variables["GUARDRAIL_ID"], variables["GUARDRAIL_VERSION"]) == ("abc123def456", "3")
    statements = [
        statement
        for policy in resources(variant, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    invoke = next(s for s in statements if "bedrock:InvokeModel" in as_list(s["Action"]) and s["Effect"] == "Allow")
    condition = invoke["Condition"]["StringEquals"]["bedrock:GuardrailIdentifier"]
    assert render(condition) == f"{EXISTING_GUARDRAIL_ARN}:3"
    apply = next(s for s in statements if s["Action"] == "bedrock:ApplyGuardrail")
    assert render(apply["Resource"]) == EXISTING_GUARDRAIL_ARN
    assert variant["Outputs"]["GuardrailId"]["Value"] == "abc123def456"
    assert variant["Outputs"]["GuardrailVersion"]["Value"] == "3"


def test_account_cloudwatch_role_is_set_and_kept(variant: dict[str, Any]) -> None:
    _, account = only(variant, "AWS::ApiGateway::Account")
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = resources(variant, "AWS::IAM::Role")[role_id]
    assert role["DeletionPolicy"] == "Retain"
    assert [render(arn) for arn in as_list(role["Properties"]["ManagedPolicyArns"])] == [
        "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
    ]


def test_web_acl_is_associated_with_the_stage(variant: dict[str, Any]) -> None:
    _, association = only(variant, "AWS::WAFv2::WebACLAssociation")
    api_id, _ = only(variant, "AWS::ApiGateway::RestApi")
    stage_id, _ = only(variant, "AWS::ApiGateway::Stage")
    assert association["Properties"]["WebACLArn"] == WEB_ACL_ARN
    assert render(association["Properties"]["ResourceArn"]) == (
        f"arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}::/restapis/${{{api_id}}}/stages/${{{stage_id}}}"
    )


def test_alarm_email_subscribes_to_the_topic(variant: dict[str, Any]) -> None:
    topic_id, _ = only(variant, "AWS::SNS::Topic")
    _, subscription = only(variant, "AWS::SNS::Subscription")
    assert subscription["Properties"] == {
        "Endpoint": "ops@example.com",
        "Protocol": "email",
        "TopicArn": {"Ref": topic_id},
    }


def test_default_app_has_none_of_the_optional_resources(chat_template: Template) -> None:
    for resource_type in (
        "AWS::ApiGateway::Account",
        "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan",
        "AWS::WAFv2::WebACLAssociation",
        "AWS::SNS::Subscription",
    ):
        chat_template.resource_count_is(resource_type, 0)
