"""What the infra tests synthesize: the app as app.py builds it, and a variant with every option on."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import App

from infra.app_builder import build_app

DEFAULT_STACK = "GptOssChat-dev"
VARIANT_STACK = "GptOssChat-prod"
DEFAULT_BATCH_STACK = "GptOssBatch-dev"
VARIANT_BATCH_STACK = "GptOssBatch-prod"
VPC_ENDPOINT_IDS = ["vpce-123", "vpce-0a1b2c3d4e5f67890"]
VARIANT_COST_TAGS = {"cost-center": "ml-4711", "team": "Research NLP", "project": "gpt-oss/eval:2026"}
WEB_ACL_ARN = "arn:aws:wafv2:us-east-1:123456789012:regional/webacl/chat/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
WEB_ADAPTER_LAYER_ARN = "arn:aws:lambda:eu-west-1:123456789012:layer:MyLambdaAdapterArm64:3"
# Every optional branch at once: private endpoint, API keys, an existing guardrail, the account's
# CloudWatch role, a web ACL and alarm e-mail, the chat function's reserved concurrency, the longest
# streaming integration timeout, the asynchronous guardrail on streams, our own web adapter layer and every
# on-demand service tier; batch answers guarded after the fact, quotas from settings only, cost tags on every job.
# Values arrive as text, as `cdk synth -c key=value` gives them.
VARIANT_CONTEXT: Mapping[str, str] = {
    "stage": "prod",
    "endpointType": "PRIVATE",
    "vpcEndpointIds": ",".join(VPC_ENDPOINT_IDS),
    "apiKeys": "true",
    "guardrailId": "abc123def456",
    "guardrailVersion": "3",
    "apiGatewayCloudWatchRole": "true",
    "webAclArn": WEB_ACL_ARN,
    "alarmEmail": "ops@example.com",
    "batchApplyGuardrail": "true",
    "batchReadServiceQuotas": "false",
    "chatReservedConcurrency": "20",
    "integrationTimeoutSeconds": "900",
    "guardrailStreamMode": "async",
    "streamKeepaliveSeconds": "30",
    "webAdapterLayerArn": WEB_ADAPTER_LAYER_ARN,
    "serviceTiers": "default,flex,priority",
    "batchCostTags": json.dumps(VARIANT_COST_TAGS),
}

RIG_STACK = "GptOssChat-loadtest"
RIG_BATCH_STACK = "GptOssBatch-loadtest"
FIS_EXTENSION_LAYER_ARN = "arn:aws:lambda:us-east-1:211125607513:layer:aws-fis-extension-arm64:9"
# The test-rig switches, which production stages refuse (so they cannot ride on the variant's `prod`): the
# chat model stand-in of load tests and AWS FIS on every function.
RIG_CONTEXT: Mapping[str, str] = {
    "stage": "loadtest",
    "chatModelStandIn": "true",
    "faultInjection": "true",
    "fisExtensionLayerArn": FIS_EXTENSION_LAYER_ARN,
}


@dataclass(frozen=True)
class Synthesized:
    """One synthesized app: the construct tree, the output folder and each stack's template."""

    app: App
    outdir: Path
    templates: Mapping[str, dict[str, Any]]


def synthesize(context: Mapping[str, Any], outdir: Path) -> Synthesized:
    """Build and synthesize the app; cdk-nag runs during synth, and any unacknowledged finding raises."""
    app = build_app(context, outdir=str(outdir))
    assembly = app.synth()
    templates = {stack.stack_name: stack.template for stack in assembly.stacks}
    return Synthesized(app=app, outdir=outdir, templates=templates)
