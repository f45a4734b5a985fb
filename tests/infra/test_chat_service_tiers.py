"""Bedrock service tiers: the config's allow-list, the chat function's SERVICE_TIERS and its role's deny of the rest.

The default app offers default and flex; the variant app (tests/infra/synth.py) every on-demand tier.
"""

from __future__ import annotations

from typing import Any, get_args

import botocore.session
import pytest
from botocore.model import StringShape, StructureShape
from pydantic import ValidationError

from infra.config import BEDROCK_SERVICE_TIERS, ChatConfig, DeploymentConfig, ServiceTier
from infra.constructs.chat_api import CHAT_HANDLER
from tests.infra.cfn import as_list, resources, role_statements


def _function_and_role_statements(template: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    [function] = [
        resource
        for resource in resources(template, "AWS::Lambda::Function").values()
        if resource["Properties"]["Handler"] == CHAT_HANDLER
    ]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return function, role_statements(template, role_id)


def _denied_tiers(template: dict[str, Any]) -> list[str]:
    """The tiers the chat role's deny names, checked against the tiers the function offers."""
    function, statements = _function_and_role_statements(template)
    [deny] = [statement for statement in statements if statement.get("Sid") == "DenyServiceTiersNotAllowed"]
    [allow] = [statement for statement in statements if statement.get("Sid") == "InvokeGptOssOnlyWithGuardrail"]
    assert deny["Effect"] == "Deny"
    assert deny["Action"] == ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
    # The models the role may invoke, no other resource.
    assert deny["Resource"] == allow["Resource"]
    assert list(deny["Condition"]) == ["StringEquals"]
    denied = sorted(as_list(deny["Condition"]["StringEquals"]["bedrock:ServiceTier"]))
    # Every Bedrock tier is either offered (SERVICE_TIERS) or denied, never both.
    offered = function["Properties"]["Environment"]["Variables"]["SERVICE_TIERS"].split(",")
    assert sorted(denied + offered) == sorted(BEDROCK_SERVICE_TIERS)
    return denied


def test_the_default_offers_default_and_flex_and_denies_priority_and_reserved(chat: dict[str, Any]) -> None:
    assert ChatConfig().service_tiers == ("default", "flex")
    function, _ = _function_and_role_statements(chat)
    assert function["Properties"]["Environment"]["Variables"]["SERVICE_TIERS"] == "default,flex"
    assert _denied_tiers(chat) == ["priority", "reserved"]


def test_a_deployer_may_offer_priority_and_reserved_stays_denied(variant: dict[str, Any]) -> None:
    function, _ = _function_and_role_statements(variant)
    assert function["Properties"]["Environment"]["Variables"]["SERVICE_TIERS"] == "default,flex,priority"
    assert _denied_tiers(variant) == ["reserved"]


def test_the_tiers_denied_or_offered_are_bedrocks() -> None:
    # Every value of ServiceTier.type in botocore's bedrock-runtime model: a tier Bedrock adds is noticed here.
    shape = botocore.session.get_session().get_service_model("bedrock-runtime").shape_for("ServiceTier")
    assert isinstance(shape, StructureShape)
    tier_type = shape.members["type"]
    assert isinstance(tier_type, StringShape)
    assert sorted(BEDROCK_SERVICE_TIERS) == sorted(tier_type.enum)
    assert set(get_args(ServiceTier)) == set(BEDROCK_SERVICE_TIERS) - {"reserved"}


@pytest.mark.parametrize(
    ("text", "tiers"),
    [
        ("default,flex,priority", ("default", "flex", "priority")),
        (" default , priority ", ("default", "priority")),
        # One plain value is a list of one.
        ("default", ("default",)),
        ('["default", "flex"]', ("default", "flex")),
    ],
)
def test_service_tiers_from_the_command_line(text: str, tiers: tuple[str, ...]) -> None:
    assert DeploymentConfig.from_context({"serviceTiers": text}).chat.service_tiers == tiers


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("flex,priority", "serviceTiers must include default"),
        ("default,flex,default", "serviceTiers must not repeat a tier"),
        ("default,scale", "service_tiers"),
        ("default,reserved", "service_tiers"),
        ("default,auto", "service_tiers"),
    ],
)
def test_service_tiers_without_default_repeated_or_unknown_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        DeploymentConfig.from_context({"serviceTiers": text})
