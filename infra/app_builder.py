"""Build the CDK app from context: what app.py synthesizes, and what the infra tests synthesize."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.config import CONTEXT_KEYS, DeploymentConfig
from infra.stacks.batch_pipeline_stack import BatchPipelineStack
from infra.stacks.chat_api_stack import ChatApiStack

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"
# What the CDK CLI (2.1148) adds to the context by default: path and asset metadata, version reporting.
CLI_DEFAULT_CONTEXT: Mapping[str, Any] = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": True,
    "aws:cdk:bundling-stacks": ["**"],
}
# Our context keys are camelCase words; CDK's own keys contain ':', '@' or '-' (feature flags, lookups).
_OUR_KEY_SHAPE = re.compile(r"^[a-z][A-Za-z0-9]*$")


def build_app(context: Mapping[str, Any], *, outdir: str | None = None) -> App:
    """Create the app with its stacks and cdk-nag (AwsSolutions) registered; `app.synth()` runs the checks.

    `context` is added to the app's context (the CDK CLI adds cdk.json's and `-c key=value` itself).
    The stacks are environment-agnostic: nothing here needs an account or a Region at synth time.
    """
    app = App(context=dict(context), outdir=outdir)
    config = DeploymentConfig.from_context(read_context(app))
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    chat = ChatApiStack(
        app,
        f"GptOssChat-{config.stage}",
        config=config,
        description=f"gpt-oss chat API on Amazon Bedrock ({config.stage})"
        + (" [MODEL STAND-IN: answers without any model, for load tests]" if config.chat.model_stand_in else ""),
    )
    BatchPipelineStack(
        app,
        f"GptOssBatch-{config.stage}",
        config=config,
        guardrail_publisher=chat,
        description=f"gpt-oss batch pipeline on Amazon Bedrock ({config.stage})",
    )
    return app


def read_context(app: App) -> dict[str, Any]:
    """The app's configuration context; a camelCase key that is not ours is a typo and an error."""
    typos = sorted(key for key in app.node.get_all_context() if _OUR_KEY_SHAPE.match(key) and key not in CONTEXT_KEYS)
    if typos:
        raise ValueError(f"unknown context keys: {typos}; known: {sorted(CONTEXT_KEYS)}")
    return {key: value for key in CONTEXT_KEYS if (value := app.node.try_get_context(key)) is not None}


def cli_context() -> dict[str, Any]:
    """The context `cdk synth` gives the app: the CLI's defaults, then cdk.json's (configuration, feature flags).

    With it, `python app.py` and the tests synthesize the very templates `cdk synth` / `cdk deploy` do.
    """
    cdk_json: dict[str, Any] = json.loads(CDK_JSON.read_text())["context"]
    return {**CLI_DEFAULT_CONTEXT, **cdk_json}
