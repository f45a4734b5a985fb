"""The chat function as a streaming web app: uvicorn started by functions/chat/run.sh under the AWS Lambda Web
Adapter, API Gateway integrations that stream, and the timeouts a stream may use.

The configured variants ride on the shared apps (tests/infra/synth.py): the default app has every default, the
variant app the longest integration timeout, the asynchronous guardrail on streams and its own adapter layer.
"""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from pydantic import ValidationError

from infra.config import (
    DEFAULT_INTEGRATION_TIMEOUT_SECONDS,
    LAMBDA_MAX_TIMEOUT_SECONDS,
    STREAMING_INTEGRATION_TIMEOUT_MAX_SECONDS,
    WEB_ADAPTER_LAYER_VERSION,
    DeploymentConfig,
)
from infra.constructs.chat_api import (
    CHAT_APP,
    CHAT_HANDLER,
    CHAT_PORT,
    CHAT_READINESS_PATH,
    MODEL_ROUTES_TIMEOUT_SECONDS,
)
from infra.constructs.python_function import FUNCTIONS_DIR
from infra.constructs.web_adapter import (
    EXEC_WRAPPER,
    EXEC_WRAPPER_VARIABLE,
    INVOKE_MODE_RESPONSE_STREAM,
    INVOKE_MODE_VARIABLE,
    PORT_VARIABLE,
    READINESS_CHECK_PATH_VARIABLE,
    web_adapter_layer_arn,
)
from tests.infra.cfn import render, resources
from tests.infra.synth import VARIANT_CONTEXT, WEB_ADAPTER_LAYER_ARN

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = FUNCTIONS_DIR / CHAT_HANDLER
CONFIG = DeploymentConfig()
VARIANT = DeploymentConfig.from_context(dict(VARIANT_CONTEXT))


def _aws_adapter_layer(version: int) -> str:
    """AWS's public arm64 adapter layer in the stack's Region (rendered: `${AWS::Region}`)."""
    return f"arn:aws:lambda:${{AWS::Region}}:753240598075:layer:LambdaAdapterLayerArm64:{version}"


def _chat_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    [(logical_id, function)] = [
        (logical_id, function["Properties"])
        for logical_id, function in resources(template, "AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == CHAT_HANDLER
    ]
    return logical_id, function


def _integrations(template: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Each method's integration, by (HTTP method, the method's resource's last path part)."""
    paths = {
        logical_id: resource["Properties"]["PathPart"]
        for logical_id, resource in resources(template, "AWS::ApiGateway::Resource").items()
    }
    return {
        (method["Properties"]["HttpMethod"], paths[method["Properties"]["ResourceId"]["Ref"]]): method["Properties"][
            "Integration"
        ]
        for method in resources(template, "AWS::ApiGateway::Method").values()
    }


def _template(which: str, chat: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    return {"default": chat, "variant": variant}[which]


# --- API Gateway ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "variant"])
def test_every_method_streams_from_the_response_streaming_invocations_uri(
    which: str, chat: dict[str, Any], variant: dict[str, Any]
) -> None:
    template = _template(which, chat, variant)
    function_id, _ = _chat_function(template)
    integrations = _integrations(template)
    assert set(integrations) == {
        ("POST", "completions"),
        ("POST", "responses"),
        ("GET", "models"),
        ("GET", "{model}"),
        ("POST", "files"),
        ("GET", "{file_id}"),
        ("GET", "content"),
        ("POST", "batches"),
        ("GET", "batches"),
        ("GET", "{batch_id}"),
        ("POST", "cancel"),
    }
    for integration in integrations.values():
        assert integration["Type"] == "AWS_PROXY"
        assert integration["ResponseTransferMode"] == "STREAM"
        # InvokeWithResponseStream, not the 2015-03-31 .../invocations of a buffered Lambda proxy integration.
        assert render(integration["Uri"]) == (
            "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2021-11-15/functions/"
            f"${{{function_id}.Arn}}/response-streaming-invocations"
        )


@pytest.mark.parametrize(
    ("which", "integration_seconds", "function_seconds"),
    [("default", 600, 605), ("variant", 900, 900)],
)
def test_the_function_outlives_the_completions_integration_within_lambdas_maximum(
    which: str, integration_seconds: int, function_seconds: int, chat: dict[str, Any], variant: dict[str, Any]
) -> None:
    template = _template(which, chat, variant)
    assert integration_seconds == {"default": CONFIG, "variant": VARIANT}[which].chat.integration_timeout_seconds
    integrations = _integrations(template)
    assert integrations[("POST", "completions")]["TimeoutInMillis"] == integration_seconds * 1000
    assert integrations[("POST", "responses")]["TimeoutInMillis"] == integration_seconds * 1000
    # The model routes answer from the configuration.
    assert integrations[("GET", "models")]["TimeoutInMillis"] == MODEL_ROUTES_TIMEOUT_SECONDS * 1000
    assert integrations[("GET", "{model}")]["TimeoutInMillis"] == MODEL_ROUTES_TIMEOUT_SECONDS * 1000
    _, function = _chat_function(template)
    assert function["Timeout"] == function_seconds
    assert integration_seconds <= function["Timeout"] <= LAMBDA_MAX_TIMEOUT_SECONDS
    assert function["Environment"]["Variables"]["INTEGRATION_TIMEOUT_MS"] == str(integration_seconds * 1000)


# --- Configuration ----------------------------------------------------------------------------------------------


def test_the_default_integration_timeout_is_the_openai_sdks_and_a_stream_may_use_fifteen_minutes() -> None:
    assert CONFIG.chat.integration_timeout_seconds == DEFAULT_INTEGRATION_TIMEOUT_SECONDS == 600
    assert STREAMING_INTEGRATION_TIMEOUT_MAX_SECONDS == LAMBDA_MAX_TIMEOUT_SECONDS == 900


@pytest.mark.parametrize(
    ("integration_seconds", "function_seconds"),
    [(1, 6), (29, 34), (600, 605), (894, 899), (895, 900), (899, 900), (900, 900)],
)
def test_the_function_timeout_is_the_integration_timeout_plus_five_seconds_at_most_900(
    integration_seconds: int, function_seconds: int
) -> None:
    config = DeploymentConfig.from_context(
        {"integrationTimeoutSeconds": str(integration_seconds), "deadlineMarginMs": "0"}
    )
    assert config.chat.integration_timeout_seconds == integration_seconds
    assert config.chat.function_timeout_seconds == function_seconds


@pytest.mark.parametrize(
    ("context", "field"),
    [
        ({"integrationTimeoutSeconds": "0"}, "integration_timeout_seconds"),
        ({"integrationTimeoutSeconds": "901"}, "integration_timeout_seconds"),
        ({"guardrailStreamMode": "off"}, "guardrail_stream_mode"),
        ({"streamKeepaliveSeconds": "0"}, "stream_keepalive_seconds"),
        # At API Gateway's idle timeout of a stream (5 minutes), the keepalive comes too late.
        ({"streamKeepaliveSeconds": "300"}, "stream_keepalive_seconds"),
        ({"webAdapterLayerVersion": "0"}, "web_adapter_layer_version"),
        ({"webAdapterLayerArn": "LambdaAdapterLayerArm64"}, "webAdapterLayerArn must be a Lambda layer version ARN"),
        (
            {"webAdapterLayerArn": WEB_ADAPTER_LAYER_ARN, "webAdapterLayerVersion": "27"},
            "webAdapterLayerVersion only applies without webAdapterLayerArn",
        ),
    ],
)
def test_streaming_settings_out_of_range_are_refused(context: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        DeploymentConfig.from_context(context)


def test_the_streaming_settings_are_context_keys() -> None:
    assert (CONFIG.chat.guardrail_stream_mode, CONFIG.chat.stream_keepalive_seconds) == ("sync", 15)
    assert (VARIANT.chat.guardrail_stream_mode, VARIANT.chat.stream_keepalive_seconds) == ("async", 30)
    assert (CONFIG.chat.web_adapter_layer_version, CONFIG.chat.web_adapter_layer_arn) == (27, None)
    assert WEB_ADAPTER_LAYER_VERSION == 27
    assert DeploymentConfig.from_context({"webAdapterLayerVersion": "30"}).chat.web_adapter_layer_version == 30
    assert VARIANT.chat.web_adapter_layer_arn == WEB_ADAPTER_LAYER_ARN


# --- The chat function under the web adapter --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "adapter_layer"),
    [("default", _aws_adapter_layer(27)), ("variant", WEB_ADAPTER_LAYER_ARN)],
)
def test_the_chat_function_runs_run_sh_under_the_web_adapter_layer(
    which: str, adapter_layer: str, chat: dict[str, Any], variant: dict[str, Any]
) -> None:
    _, function = _chat_function(_template(which, chat, variant))
    assert function["Handler"] == CHAT_HANDLER == "chat/run.sh"
    layers = [layer if isinstance(layer, str) else render(layer) for layer in function["Layers"]]
    # The adapter (AWS's public layer in the stack's Region, resolved at deploy time; or the configured ARN) and
    # the dependency layer (uvicorn, starlette, ...).
    assert adapter_layer in layers
    assert len(layers) == 2
    assert [layer for layer in layers if layer.startswith("${DependencyLayer")]
    variables = function["Environment"]["Variables"]
    assert {
        name: variables[name]
        for name in (EXEC_WRAPPER_VARIABLE, INVOKE_MODE_VARIABLE, PORT_VARIABLE, READINESS_CHECK_PATH_VARIABLE)
    } == {
        "AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap",
        "AWS_LWA_INVOKE_MODE": "response_stream",
        "AWS_LWA_PORT": "8080",
        "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
    }
    assert (EXEC_WRAPPER, INVOKE_MODE_RESPONSE_STREAM, CHAT_PORT, CHAT_READINESS_PATH) == (
        "/opt/bootstrap",
        "response_stream",
        8080,
        "/healthz",
    )


def test_the_default_layer_is_built_for_the_configured_version_in_the_stack_region() -> None:
    stack = Stack(App(), "LayerArn")
    arn = web_adapter_layer_arn(stack, version=30, override=None)
    assert render(stack.resolve(arn)) == _aws_adapter_layer(30)
    assert web_adapter_layer_arn(stack, version=30, override=WEB_ADAPTER_LAYER_ARN) == WEB_ADAPTER_LAYER_ARN


@pytest.mark.parametrize(("which", "mode", "keepalive"), [("default", "sync", "15"), ("variant", "async", "30")])
def test_the_guardrail_stream_mode_and_keepalive_follow_the_config(
    which: str, mode: str, keepalive: str, chat: dict[str, Any], variant: dict[str, Any]
) -> None:
    _, function = _chat_function(_template(which, chat, variant))
    variables = function["Environment"]["Variables"]
    assert (variables["GUARDRAIL_STREAM_MODE"], variables["STREAM_KEEPALIVE_SECONDS"]) == (mode, keepalive)
    # No X-Ray SDK in the adapter's child process (it never sees the invocation's trace id); Lambda still traces.
    assert variables["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert function["TracingConfig"] == {"Mode": "Active"}


# --- functions/chat/run.sh --------------------------------------------------------------------------------------


def test_run_sh_is_an_executable_bash_script_with_lf_endings() -> None:
    assert RUN_SH.is_file()
    assert os.access(RUN_SH, os.X_OK)
    staged = subprocess.run(  # noqa: S603 - fixed argv
        ["git", "ls-files", "--stage", "--", str(RUN_SH.relative_to(ROOT))],  # noqa: S607 - git from PATH
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert staged.split()[0] == "100755", staged
    content = RUN_SH.read_bytes()
    assert b"\r" not in content
    text = content.decode()
    assert text.startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in text
    assert f"exec python -m uvicorn {CHAT_APP}" in text
    subprocess.run(["bash", "-n", str(RUN_SH)], check=True)  # noqa: S603, S607 - fixed argv, bash from PATH


def test_uvicorn_and_starlette_ship_in_the_dependency_layer() -> None:
    """run.sh starts uvicorn from the layer (/opt/python), which holds the lock file's runtime group."""
    runtime = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]["runtime"]
    assert {requirement.split("==")[0] for requirement in runtime} >= {"uvicorn", "starlette"}


def _run_with_fake_python(tmp_path: Path, environment: dict[str, str]) -> list[str]:
    """Run run.sh as Lambda's bootstrap does (the script itself), with a `python` that reports how it was run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "python"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "parent=$PPID" "PYTHONPATH=$PYTHONPATH" "$@"\n')
    fake.chmod(0o755)
    result = subprocess.run(  # noqa: S603 - the script under test
        [str(RUN_SH)],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.splitlines()


def test_run_sh_execs_uvicorn_serving_the_chat_app_on_loopback_at_the_adapter_port(tmp_path: Path) -> None:
    lines = _run_with_fake_python(
        tmp_path, {"LAMBDA_TASK_ROOT": "/var/task", "AWS_LWA_PORT": "9123", "PYTHONPATH": "/var/runtime"}
    )
    # exec: python replaces the shell, so its parent is whoever started the script (the adapter, on Lambda).
    assert lines[0] == f"parent={os.getpid()}"
    # The asset root, then the dependency layer, then what the runtime had set.
    assert lines[1] == "PYTHONPATH=/var/task:/opt/python:/var/runtime"
    arguments = lines[2:]
    assert arguments[:3] == ["-m", "uvicorn", CHAT_APP]
    assert arguments[arguments.index("--host") + 1] == "127.0.0.1"
    assert arguments[arguments.index("--port") + 1] == "9123"


def test_run_sh_defaults_to_the_adapters_port_and_its_own_asset_root(tmp_path: Path) -> None:
    lines = _run_with_fake_python(tmp_path, {})
    task_root, layer = lines[1].removeprefix("PYTHONPATH=").split(":")
    assert (Path(task_root).resolve(), layer) == (FUNCTIONS_DIR, "/opt/python")
    arguments = lines[2:]
    assert arguments[arguments.index("--port") + 1] == str(CHAT_PORT)
