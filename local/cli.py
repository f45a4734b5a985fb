"""The local runner's command line."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from local.chat_server import ChatApiOptions, RunningChatApi

ROOT = Path(__file__).resolve().parents[1]
CDK_OUT = ROOT / "cdk.out"
DEFAULT_PORT = 8000


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    synth_command = commands.add_parser("synth", help="synthesize the app into cdk.out/ and print what it deploys")
    synth_command.add_argument("--outdir", type=Path, default=CDK_OUT)
    _add_serve_arguments(
        commands.add_parser(
            "serve",
            help="serve the chat API on 127.0.0.1 from the real handler, with Bedrock stood in locally",
            description="Serve the chat API on 127.0.0.1 from the real chat handler, configured as the synthesized "
            "template deploys it. Runs until Ctrl-C (SIGINT) or SIGTERM.",
        )
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "synth":
        return synth(arguments.outdir)
    if arguments.command == "serve":
        return serve(parser, arguments)
    return 2  # argparse already refused anything else


def synth(outdir: Path) -> int:
    """Synthesize every stack (cdk-nag runs and fails the synth on any finding) and describe the result."""
    # jsii prints a Node.js end-of-life banner on Node 20 unless told not to; it reads this when aws_cdk loads.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from infra.app_builder import build_app, cli_context

    assembly = build_app(cli_context(), outdir=str(outdir)).synth()
    print(f"Synthesized into {outdir} (cdk-nag AwsSolutions: no unacknowledged findings)\n")
    for stack in assembly.stacks:
        print(describe_stack(stack.stack_name, stack.template))
    print("Deploy with: npx --yes aws-cdk@2 deploy --all   (needs AWS credentials; see README 'Deploy')")
    return 0


def describe_stack(name: str, template: dict[str, Any]) -> str:
    """A short, readable account of one template: its resources by type and its outputs."""
    resources: dict[str, Any] = template.get("Resources", {})
    counts = Counter(resource["Type"] for resource in resources.values())
    lines = [f"{name}: {len(resources)} resources"]
    lines += [f"  {count:3d} x {kind}" for kind, count in sorted(counts.items())]
    outputs: dict[str, Any] = template.get("Outputs", {})
    if outputs:
        lines.append("  outputs: " + ", ".join(sorted(outputs)))
    return "\n".join(lines) + "\n"


def _add_serve_arguments(serve_command: argparse.ArgumentParser) -> None:
    environ = os.environ.get
    serve_command.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one")
    serve_command.add_argument(
        "--backend",
        default=environ("GPTOSS_BACKEND", "offline"),
        help="who answers: offline (a deterministic local model, the default), openai (an OpenAI-compatible "
        "server) or aws (Amazon Bedrock, with your credentials); env GPTOSS_BACKEND",
    )
    serve_command.add_argument(
        "--openai-base-url",
        default=environ("GPTOSS_OPENAI_BASE_URL"),
        help="the OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 (Ollama); env GPTOSS_OPENAI_BASE_URL",
    )
    serve_command.add_argument(
        "--openai-model",
        action="append",
        default=[model for model in [environ("GPTOSS_OPENAI_MODEL")] if model],
        metavar="NAME | MODEL_ID=NAME",
        help="the upstream model for every Bedrock model id, or for one (repeatable; default: the Bedrock id "
        "itself), e.g. gpt-oss:20b; env GPTOSS_OPENAI_MODEL",
    )
    serve_command.add_argument(
        "--openai-api-key",
        default=environ("GPTOSS_OPENAI_API_KEY"),
        help="sent as a bearer token, if the server wants one; env GPTOSS_OPENAI_API_KEY",
    )
    serve_command.add_argument(
        "--guardrail-word",
        action="append",
        dest="guardrail_words",
        metavar="WORD",
        help="a word that makes the local guardrail intervene, in a prompt or an answer (repeatable; "
        "default: forbidden)",
    )
    serve_command.add_argument("--guardrail-id", help="the guardrail every call carries (needed with --backend aws)")
    serve_command.add_argument("--guardrail-version", help="its published version (needed with --backend aws)")
    serve_command.add_argument(
        "--template",
        type=Path,
        help="read the chat stack's template from this file instead of synthesizing the app "
        "(e.g. cdk.out/GptOssChat-dev.template.json after `python -m local synth`)",
    )
    serve_command.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context value for the synthesis, as `cdk synth -c` takes it (repeatable)",
    )


def serve(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    """Serve the chat API until SIGINT or SIGTERM; 0 after a clean shutdown."""
    # Imported here, not at the top: `synth` needs none of the server's modules.
    from local.bedrock import BACKENDS

    if arguments.backend not in BACKENDS:
        parser.error(f"--backend (or GPTOSS_BACKEND) must be one of {', '.join(BACKENDS)}, not {arguments.backend!r}")
    if arguments.template is not None and arguments.context:
        parser.error("-c applies to the synthesis; with --template nothing is synthesized")
    from local.chat_server import running_chat_api
    from local.services import wait_for_stop_signal

    # Powertools warns on every request that adds no metric (GET /v1/models); locally that is only noise.
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    try:
        options = _chat_options(arguments)
        template = _chat_template(arguments)
        with running_chat_api(template, options) as api:
            print(banner(api, options), flush=True)
            received = wait_for_stop_signal()
            print(f"\n{received.name} received: stopping.", flush=True)
    except (ValueError, OSError, RuntimeError) as error:
        # Configuration, port and synthesis problems: the message says what to change.
        print(f"serve: {error}", file=sys.stderr)
        return 1
    print("Stopped.", flush=True)
    return 0


def _chat_options(arguments: argparse.Namespace) -> ChatApiOptions:
    from local.bedrock import DEFAULT_TRIGGER_WORDS, Backend, OpenAIServer
    from local.chat_server import ChatApiOptions

    backend = cast(Backend, arguments.backend)
    openai = None
    if backend == "openai":
        if not arguments.openai_base_url:
            raise ValueError("the openai backend needs --openai-base-url (or GPTOSS_OPENAI_BASE_URL)")
        default, models = _upstream_models(arguments.openai_model)
        openai = OpenAIServer(arguments.openai_base_url, api_key=arguments.openai_api_key, model=default, models=models)
    return ChatApiOptions(
        backend=backend,
        port=arguments.port,
        openai=openai,
        trigger_words=tuple(arguments.guardrail_words or DEFAULT_TRIGGER_WORDS),
        guardrail_id=arguments.guardrail_id,
        guardrail_version=arguments.guardrail_version,
    )


def _upstream_models(entries: Sequence[str]) -> tuple[str | None, dict[str, str]]:
    """`NAME` (for every model id) and `MODEL_ID=NAME` entries, as (default, mapping)."""
    pairs = [entry.partition("=") for entry in entries]
    defaults = [name for name, separator, _ in pairs if not separator]
    if len(defaults) > 1:
        raise ValueError(f"--openai-model names more than one model for every id: {defaults}")
    return (defaults[0] if defaults else None), {key: value for key, separator, value in pairs if separator}


def _chat_template(arguments: argparse.Namespace) -> dict[str, Any]:
    from local.templates import chat_template, load_template, synthesize

    if arguments.template is not None:
        return load_template(arguments.template)
    context = {}
    for entry in arguments.context:
        key, separator, value = entry.partition("=")
        if not separator:
            raise ValueError(f"-c takes KEY=VALUE, not {entry!r}")
        context[key] = value
    print("Synthesizing the app (as cdk synth does) to read the chat function's configuration...", flush=True)
    return chat_template(synthesize(context))


def banner(api: RunningChatApi, options: ChatApiOptions) -> str:
    """What `serve` prints once it listens: where, what answers, and two ways to try it."""
    settings = api.settings
    names = [*settings.MODEL_IDS, *settings.MODEL_ALIASES]
    model = next(iter(settings.MODEL_ALIASES), settings.MODEL_IDS[0])
    guardrail = api.guardrail
    answers = {
        "offline": f"the offline model (deterministic, no network), behind a Bedrock stand-in on {api.bedrock_url}",
        "openai": f"{options.openai.base_url if options.openai else ''} (OpenAI-compatible), "
        f"behind a Bedrock stand-in on {api.bedrock_url}",
        "aws": "Amazon Bedrock, with your AWS credentials",
    }[options.backend]
    blocks = (
        "Amazon Bedrock applies it"
        if options.backend == "aws"
        else "blocks prompts and answers containing " + ", ".join(repr(word) for word in guardrail.trigger_words)
    )
    request = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "What is Amazon Bedrock?"}}]}}'
    return "\n".join(
        [
            f"Chat API on {api.url}   (the real chat handler, configured as the template deploys it; no SigV4 here)",
            f"  models:    {', '.join(names)}",
            f"  answers:   {answers}",
            f"  guardrail: {guardrail.guardrail_id} version {guardrail.guardrail_version}: {blocks}",
            "",
            "Try it with curl:",
            f"  curl -s {api.url}/chat/completions -H 'Content-Type: application/json' -d '{request}'",
            "",
            "or with the OpenAI SDK:",
            "uv run --frozen python - <<'EOF'",
            "import openai",
            f'client = openai.OpenAI(base_url="{api.url}", api_key="local")',
            'messages = [{"role": "user", "content": "Hello!"}]',
            f'answer = client.chat.completions.create(model="{model}", messages=messages)',
            "print(answer.choices[0].message.content)",
            "EOF",
            "",
            "Stop with Ctrl-C.",
        ]
    )
