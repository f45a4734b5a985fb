"""The chat function as `cdk synth` deploys it: its environment, its settings and its code asset.

The bench runs the handler with exactly the environment the synthesized template gives it, so a setting
that makes production slower makes the bench slower too. A full run synthesizes the app (in a child
process, ≈ 10 s: aws_cdk and its Node.js runtime never load into the measuring process); a quick run
reads the configuration defaults instead and measures the asset from `functions/` with the factory's
exclusions. The streaming rows serve the chat API from the synthesized template (`chat_api_template`), so
they synthesize in quick runs too, once per process.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from local.templates import ChatFunction, Template, chat_template, load_template

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
# The guardrail's id and version are filled in by CloudFormation at deploy time.
GUARDRAIL = {"GUARDRAIL_ID": "gr7benchguard", "GUARDRAIL_VERSION": "1"}
REGION = "us-east-1"
# Ambient settings that would send boto3 to a profile of this machine instead of the function's credentials.
UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")
# cdk.json's defaults as infra/constructs/chat_api.py writes them, for quick (smoke) runs only.
_QUICK_ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "ChatFunction",
    "POWERTOOLS_METRICS_NAMESPACE": "GptOssBedrock/dev",
    "STAGE": "dev",
    "MODEL_IDS": "openai.gpt-oss-20b-1:0,openai.gpt-oss-120b-1:0",
    "MODEL_ALIASES": json.dumps({"gpt-oss-120b": "openai.gpt-oss-120b-1:0", "gpt-oss-20b": "openai.gpt-oss-20b-1:0"}),
    "DEFAULT_MAX_TOKENS": "4096",
    "MAX_TOKENS_CEILING": "16384",
    "MAX_REQUEST_BYTES": "1048576",
    "INTEGRATION_TIMEOUT_MS": "29000",
    "DEADLINE_MARGIN_MS": "1500",
    "BEDROCK_MAX_ATTEMPTS": "3",
    "BEDROCK_BACKOFF_BASE_MS": "250",
    "BEDROCK_BACKOFF_MAX_MS": "4000",
    "RETURN_REASONING": "false",
}
_SYNTH = (
    "import sys\n"
    "from infra.app_builder import build_app, cli_context\n"
    "build_app(cli_context(), outdir=sys.argv[1]).synth(skip_validation=True)\n"
)


@dataclass(frozen=True)
class DeployedChat:
    """What the bench needs of the deployed chat function."""

    environment: Mapping[str, str]  # the template's variables (guardrail filled in) and what Lambda adds
    timeout_seconds: int
    memory_mb: int
    asset_files: Mapping[str, bytes]  # the code asset: path inside the zip -> content
    source: str  # where these came from, for the table

    @property
    def asset_bytes(self) -> int:
        """The asset's size unzipped."""
        return sum(len(content) for content in self.asset_files.values())

    def asset_zipped_bytes(self) -> int:
        """The asset's size as a deflated zip, as CDK uploads it."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in sorted(self.asset_files.items()):
                archive.writestr(name, content)
        return len(buffer.getvalue())


@cache
def deployed_chat(*, quick: bool) -> DeployedChat:
    """The chat function of a fresh synthesis (quick: the configuration defaults and `functions/`)."""
    if quick:
        return DeployedChat(
            environment={**_QUICK_ENVIRONMENT, **GUARDRAIL, **_lambda_runtime("ChatFunction", 1024)},
            timeout_seconds=30,
            memory_mb=1024,
            asset_files=_files(FUNCTIONS_DIR),
            source="cdk.json defaults (quick)",
        )
    template, asset_files = _synthesized()
    function = ChatFunction.from_template(template)
    return DeployedChat(
        environment={**function.environment, **GUARDRAIL, **_lambda_runtime(function.logical_id, function.memory_mb)},
        timeout_seconds=function.timeout_seconds,
        memory_mb=function.memory_mb,
        asset_files=asset_files,
        source="synthesized template",
    )


def chat_api_template() -> Template:
    """The chat stack's template of a fresh synthesis (what `running_chat_api` serves), quick runs included."""
    return _synthesized()[0]


@cache
def _synthesized() -> tuple[Template, dict[str, bytes]]:
    """The chat stack's template and its function's code asset, synthesized once per process in a child."""
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as outdir:
        subprocess.run(  # noqa: S603 - our own interpreter running our own app
            [sys.executable, "-c", _SYNTH, outdir],
            cwd=ROOT,
            env={**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"},
            check=True,
            capture_output=True,
        )
        out = Path(outdir)
        templates = {path.name: load_template(path) for path in out.glob("*.template.json")}
        template = chat_template(templates)
        function = ChatFunction.from_template(template)
        resource = template["Resources"][function.logical_id]
        return template, _files(out / resource["Metadata"]["aws:asset:path"])


def _lambda_runtime(function_name: str, memory_mb: int) -> dict[str, str]:
    """What the Lambda runtime adds to a function's environment (fixed credentials: nothing leaves the process)."""
    return {
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        "AWS_ACCESS_KEY_ID": "ASIABENCHEXAMPLE0000",
        "AWS_SECRET_ACCESS_KEY": "bench-secret-access-key",
        "AWS_SESSION_TOKEN": "bench-session-token",
        # No X-Ray daemon here: tracing is off the way Powertools turns it off outside Lambda.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


def _files(root: Path) -> dict[str, bytes]:
    # The factory's asset exclusions: bytecode is compiled on the function, never shipped.
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }
