"""The AWS Lambda Web Adapter (LWA): a web app served by its own server inside a function on the managed runtime.

The adapter is AWS's public layer. Its `/opt/bootstrap` (the runtime's exec wrapper) starts the adapter and then
runs the function's handler, a shell script that starts the web server on 127.0.0.1 at the adapter's port (for
chat: functions/chat/run.sh). The adapter waits until the readiness path answers, then turns every invocation into
an HTTP request to the app; in `response_stream` invoke mode it streams the app's response back as Lambda's
streaming response, which API Gateway's STREAM integrations read.

The variable names and values are the contract with the adapter (docs/guide "Environment Variables" of
awslabs/aws-lambda-web-adapter 1.0); tests and the local runner import them from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack
from constructs import Construct

# AWS publishes the adapter's layers from this account in the commercial Regions (arm64: LambdaAdapterLayerArm64,
# the architecture of every function of this app); elsewhere, configure a layer ARN (webAdapterLayerArn).
LAYER_ACCOUNT = "753240598075"
LAYER_NAME = "LambdaAdapterLayerArm64"
LAYER_PARTITION = "aws"

EXEC_WRAPPER_VARIABLE = "AWS_LAMBDA_EXEC_WRAPPER"
EXEC_WRAPPER = "/opt/bootstrap"
INVOKE_MODE_VARIABLE = "AWS_LWA_INVOKE_MODE"
INVOKE_MODE_RESPONSE_STREAM = "response_stream"
PORT_VARIABLE = "AWS_LWA_PORT"
READINESS_CHECK_PATH_VARIABLE = "AWS_LWA_READINESS_CHECK_PATH"


@dataclass(frozen=True)
class WebAdapter:
    """A function run by the adapter: its layer, the port its server listens on and the path that says it is ready.

    The invoke mode is always `response_stream`: the app's API Gateway integrations stream (ResponseTransferMode
    STREAM), and they expect a streamed response from every route.
    """

    layer_arn: str
    port: int
    readiness_check_path: str

    def environment(self) -> dict[str, str]:
        """The variables the adapter reads (set by the Lambda factory)."""
        return {
            EXEC_WRAPPER_VARIABLE: EXEC_WRAPPER,
            INVOKE_MODE_VARIABLE: INVOKE_MODE_RESPONSE_STREAM,
            PORT_VARIABLE: str(self.port),
            READINESS_CHECK_PATH_VARIABLE: self.readiness_check_path,
        }


def web_adapter_layer_arn(scope: Construct, *, version: int, override: str | None) -> str:
    """The configured layer ARN, or AWS's public arm64 layer at `version` in the Region of `scope`'s stack.

    The stacks are environment-agnostic, so the Region is `AWS::Region`, resolved at deploy time.
    """
    if override is not None:
        return override
    return Stack.of(scope).format_arn(
        partition=LAYER_PARTITION,
        service="lambda",
        account=LAYER_ACCOUNT,
        resource="layer",
        resource_name=f"{LAYER_NAME}:{version}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )
