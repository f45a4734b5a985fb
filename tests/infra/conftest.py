"""Synthesize the app once per test session (as app.py does, and one variant) and share the results."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Template

from infra.app_builder import cli_context
from tests.infra.synth import (
    DEFAULT_BATCH_STACK,
    DEFAULT_STACK,
    RIG_CONTEXT,
    VARIANT_BATCH_STACK,
    VARIANT_CONTEXT,
    VARIANT_STACK,
    Synthesized,
    synthesize,
)


@pytest.fixture(scope="session")
def default_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app exactly as app.py (and `cdk synth`) synthesizes it."""
    return synthesize(cli_context(), tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def variant_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app with every optional feature switched on."""
    return synthesize({**cli_context(), **VARIANT_CONTEXT}, tmp_path_factory.mktemp("cdk-variant"))


@pytest.fixture(scope="session")
def rig_app(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """A load and fault test stage: the chat model stand-in and AWS FIS on (refused for production stages)."""
    return synthesize({**cli_context(), **RIG_CONTEXT}, tmp_path_factory.mktemp("cdk-rig"))


@pytest.fixture(scope="session")
def synthesized_apps(default_app: Synthesized, variant_app: Synthesized, rig_app: Synthesized) -> list[Synthesized]:
    """Every app (default, variant, test rig), for the checks every template must pass."""
    return [default_app, variant_app, rig_app]


@pytest.fixture(scope="session")
def chat(default_app: Synthesized) -> dict[str, Any]:
    """The chat stack's template as a dict."""
    return default_app.templates[DEFAULT_STACK]


@pytest.fixture(scope="session")
def chat_template(chat: dict[str, Any]) -> Template:
    """The chat stack's template for aws_cdk.assertions."""
    return Template.from_json(chat)


@pytest.fixture(scope="session")
def variant(variant_app: Synthesized) -> dict[str, Any]:
    """The variant chat stack's template as a dict."""
    return variant_app.templates[VARIANT_STACK]


@pytest.fixture(scope="session")
def variant_template(variant: dict[str, Any]) -> Template:
    """The variant chat stack's template for aws_cdk.assertions."""
    return Template.from_json(variant)


@pytest.fixture(scope="session")
def batch(default_app: Synthesized) -> dict[str, Any]:
    """The batch stack's template as a dict."""
    return default_app.templates[DEFAULT_BATCH_STACK]


@pytest.fixture(scope="session")
def batch_template(batch: dict[str, Any]) -> Template:
    """The batch stack's template for aws_cdk.assertions."""
    return Template.from_json(batch)


@pytest.fixture(scope="session")
def batch_variant(variant_app: Synthesized) -> dict[str, Any]:
    """The variant batch stack's template as a dict."""
    return variant_app.templates[VARIANT_BATCH_STACK]
