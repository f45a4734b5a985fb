"""The local runner's command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from local.services import CHAT_API_PURPOSE, S3_ENDPOINT_PURPOSE, PortUnavailable, listening_socket

if TYPE_CHECKING:
    from local.chat_server import ChatApiOptions, RunningChatApi
    from local.system import RunningSystem, SystemOptions

ROOT = Path(__file__).resolve().parents[1]
CDK_OUT = ROOT / "cdk.out"
DEFAULT_PORT = 8000
DEFAULT_S3_PORT = 8001
# What the printed `aws s3` commands sign with (any keys do locally; the reader's own are never used).
LOCAL_AWS_KEYS = "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command."""
    parser = argparse.ArgumentParser(prog="python -m local", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    synth_command = commands.add_parser("synth", help="synthesize the app into cdk.out/ and print what it deploys")
    synth_command.add_argument("--outdir", type=Path, default=CDK_OUT)
    demo_command = commands.add_parser(
        "demo",
        help="run the whole system once, offline: a chat request and a folder of prompt files, then exit",
        description="Run what `up` runs, then ask the chat API a question with the openai SDK, drop local/samples/ "
        "into the bucket's inbox through the local S3 endpoint with boto3, wait for every run and print the "
        "summaries. Exit status 0 when everything worked.",
    )
    demo_command.add_argument(
        "--timeout",
        type=float,
        default=150.0,
        metavar="SECONDS",
        help="give up (exit status 1) after this long, synthesis included (default 150)",
    )
    _add_backend_arguments(demo_command)
    demo_command.set_defaults(port=0, s3_port=0)
    up_command = commands.add_parser(
        "up",
        help="run the chat API and the batch pipeline on 127.0.0.1 until Ctrl-C",
        description="Synthesize the app once (cdk-nag checks included), then serve the chat API from the real "
        "handler and the batch pipeline: a local S3 endpoint whose inbox/ starts runs of the synthesized state "
        "machine (moto). Runs until Ctrl-C (SIGINT) or SIGTERM.",
    )
    up_command.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"chat API; default {DEFAULT_PORT}, 0 picks")
    up_command.add_argument(
        "--s3-port", type=int, default=DEFAULT_S3_PORT, help=f"S3 endpoint; default {DEFAULT_S3_PORT}, 0 picks"
    )
    _add_backend_arguments(up_command)
    serve_command = commands.add_parser(
        "serve",
        help="serve the chat API on 127.0.0.1 from the real handler, with Bedrock stood in locally",
        description="Serve the chat API on 127.0.0.1 from the real chat app, configured as the synthesized "
        "template deploys it. Runs until Ctrl-C (SIGINT) or SIGTERM.",
    )
    serve_command.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks one")
    _add_backend_arguments(serve_command)
    serve_command.add_argument(
        "--template",
        type=Path,
        help="read the chat stack's template from this file instead of synthesizing the app "
        "(e.g. cdk.out/GptOssChat-dev.template.json after `python -m local synth`)",
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "synth":
        return synth(arguments.outdir)
    # Imported here, not at the top: `synth` needs none of the server's modules.
    from local.bedrock import BACKENDS

    if arguments.backend not in BACKENDS:
        parser.error(f"--backend (or GPTOSS_BACKEND) must be one of {', '.join(BACKENDS)}, not {arguments.backend!r}")
    # Powertools warns on every request that adds no metric (GET /v1/models); locally that is only noise.
    warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)
    if arguments.command == "serve":
        return serve(parser, arguments)
    return up(arguments) if arguments.command == "up" else demo(arguments)


def synth(outdir: Path) -> int:
    """Synthesize every stack (cdk-nag runs and fails the synth on any finding) and describe the result."""
    from local.templates import synthesize

    templates = synthesize(checks=True, outdir=outdir)
    print(f"Synthesized into {outdir} (cdk-nag AwsSolutions: no unacknowledged findings)\n")
    for name, template in templates.items():
        print(describe_stack(name, template))
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


def _add_backend_arguments(command: argparse.ArgumentParser) -> None:
    """Who answers, the guardrail, and the synthesis context: the same for serve, up and demo."""
    environ = os.environ.get
    command.add_argument(
        "--backend",
        default=environ("GPTOSS_BACKEND", "offline"),
        help="who answers: offline (a deterministic local model, the default), openai (an OpenAI-compatible "
        "server) or aws (Amazon Bedrock, with your credentials); env GPTOSS_BACKEND",
    )
    command.add_argument(
        "--openai-base-url",
        default=environ("GPTOSS_OPENAI_BASE_URL"),
        help="the OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1 (Ollama); env GPTOSS_OPENAI_BASE_URL",
    )
    command.add_argument(
        "--openai-model",
        action="append",
        default=[model for model in [environ("GPTOSS_OPENAI_MODEL")] if model],
        metavar="NAME | MODEL_ID=NAME",
        help="the upstream model for every Bedrock model id, or for one (repeatable; default: the Bedrock id "
        "itself), e.g. gpt-oss:20b; env GPTOSS_OPENAI_MODEL",
    )
    command.add_argument(
        "--openai-api-key",
        default=environ("GPTOSS_OPENAI_API_KEY"),
        help="sent as a bearer token, if the server wants one; env GPTOSS_OPENAI_API_KEY",
    )
    command.add_argument(
        "--guardrail-word",
        action="append",
        dest="guardrail_words",
        metavar="WORD",
        help="a word that makes the local guardrail intervene, in a prompt or an answer (repeatable; "
        "default: forbidden)",
    )
    command.add_argument(
        "--tokens-per-second",
        type=_pace,
        default=environ("GPTOSS_TOKENS_PER_SECOND", "40"),  # argparse applies `type` to a string default
        metavar="N",
        help="how fast the offline model streams (ConverseStream, i.e. `stream: true` chat requests), in output "
        "tokens a second: the default 40 is a pace a person can watch, 0 streams at once; whole answers and "
        "the other backends are never slowed; env GPTOSS_TOKENS_PER_SECOND",
    )
    command.add_argument("--guardrail-id", help="the guardrail every call carries (needed with --backend aws)")
    command.add_argument("--guardrail-version", help="its published version (needed with --backend aws)")
    command.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context value for the synthesis, as `cdk synth -c` takes it (repeatable)",
    )


def _pace(value: str) -> float:
    """A --tokens-per-second value: a number, 0 or more."""
    try:
        pace = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens a second, not {value!r}") from None
    if not pace >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 (no pause) or more, not {value}")
    return pace


def serve(parser: argparse.ArgumentParser, arguments: argparse.Namespace) -> int:
    """Serve the chat API until SIGINT or SIGTERM; 0 after a clean shutdown."""
    if arguments.template is not None and arguments.context:
        parser.error("-c applies to the synthesis; with --template nothing is synthesized")
    from local.chat_server import running_chat_api
    from local.services import wait_for_stop_signal

    try:
        options = _chat_options(arguments)
        _check_ports(arguments)
        template = _chat_template(arguments)
        with running_chat_api(template, options) as api:
            print(banner(api, options), flush=True)
            received = wait_for_stop_signal()
            print(f"\n{received.name} received: stopping.", flush=True)
    except (ValueError, OSError, RuntimeError) as error:
        # Configuration, port and synthesis problems: the message says what to change.
        print(f"serve: {_explained(error, arguments)}", file=sys.stderr)
        return 1
    print("Stopped.", flush=True)
    return 0


def up(arguments: argparse.Namespace) -> int:
    """Serve the chat API and the batch pipeline until SIGINT or SIGTERM; 0 after a clean shutdown."""
    from local.services import wait_for_stop_signal
    from local.system import running_system

    started = time.monotonic()
    try:
        options, templates = _synthesize_for_local_run(arguments)
        with _function_logs_to_stderr(), running_system(templates, options, report=say) as system:
            say(up_banner(system, options, seconds=time.monotonic() - started))
            received = wait_for_stop_signal()
            say(f"\n{received.name} received: stopping.")
    except (ValueError, OSError, RuntimeError) as error:
        print(f"up: {_explained(error, arguments)}", file=sys.stderr, flush=True)
        return 1
    say("Stopped.")
    return 0


def demo(arguments: argparse.Namespace) -> int:
    """Run the system, chat once, drop the samples and wait for their runs; 0 when everything worked."""
    from local.demo import DemoFailed, fail, run_demo
    from local.system import running_system

    started = time.monotonic()
    deadline = started + arguments.timeout
    try:
        options, templates = _synthesize_for_local_run(arguments)
        if time.monotonic() > deadline:
            return fail(f"timed out: the synthesis alone took longer than --timeout {arguments.timeout:g} s")
        with _function_logs_to_stderr(), running_system(templates, options, report=say) as system:
            say(f"Running: chat API on {system.chat.url}, S3 endpoint on {system.s3_url}; answers: {system.answers}")
            runs = run_demo(system, deadline=deadline, say=say)
    except DemoFailed as error:
        return fail(str(error))
    except (ValueError, OSError, RuntimeError) as error:
        return fail(_explained(error, arguments))
    say(
        f"\nDemo finished in {time.monotonic() - started:.1f} s: the chat API answered, {len(runs)} runs ended with "
        "their summaries and the Batch API's batch completed.\n"
        "Keep it running and try your own files: python -m local up"
    )
    return 0


def say(line: str) -> None:
    """Print a line for the user at once (threads report runs through it too)."""
    with _SAY:
        print(line, flush=True)


_SAY = threading.Lock()


# The command-line options that choose a port: (attribute, flag, what listens there, as the server names it).
_PORT_OPTIONS = (("port", "--port", CHAT_API_PURPOSE), ("s3_port", "--s3-port", S3_ENDPOINT_PURPOSE))


def _check_ports(arguments: argparse.Namespace) -> None:
    """Fail now, before the synthesis, when a port of the command line cannot be listened on (0 always can).

    Raises:
        ValueError: two options name the same port.
        PortUnavailable: a port is in use or not allowed.
    """
    chosen = [
        (flag, purpose, getattr(arguments, attribute, 0))
        for attribute, flag, purpose in _PORT_OPTIONS
        if getattr(arguments, attribute, 0)
    ]
    for port in {port for _, _, port in chosen}:
        flags = [flag for flag, _, taken in chosen if taken == port]
        if len(flags) > 1:
            raise ValueError(f"{' and '.join(flags)} both name port {port}: give each its own (0 picks a free one)")
    for _, purpose, port in chosen:
        listening_socket(port, purpose).close()


def _explained(error: Exception, arguments: argparse.Namespace) -> str:
    """What to tell the user about a failure; for a port, also the option that changes it."""
    if isinstance(error, PortUnavailable):
        for attribute, flag, _ in _PORT_OPTIONS:
            if getattr(arguments, attribute, None) == error.port:
                return f"{error}. Stop what uses it, or choose another port with {flag} N ({flag} 0 picks a free one)."
    return str(error)


@contextmanager
def _function_logs_to_stderr() -> Iterator[None]:
    """The functions' JSON logs go to stderr (with the HTTP access logs), so stdout is what up and demo say."""
    from shared.observability import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(sys.stderr)
    try:
        yield
    finally:
        if previous is not None:
            handler.setStream(previous)


def _synthesize_for_local_run(arguments: argparse.Namespace) -> tuple[SystemOptions, dict[str, Any]]:
    """The system's options and the app's templates (the backend and the ports are checked before synthesizing)."""
    from local.system import LOCAL_CONTEXT, SystemOptions, check_backend, local_context
    from local.templates import synthesize

    options = SystemOptions(chat=_chat_options(arguments), s3_port=arguments.s3_port)
    context = local_context(_context(arguments))
    check_backend(options.chat, context)
    _check_ports(arguments)  # seconds before a synthesis that takes many
    overrides = ", ".join(f"{key}={value}" for key, value in LOCAL_CONTEXT.items())
    say(f"Synthesizing the app as cdk synth does, cdk-nag checks included ({overrides}: moto has no Service Quotas)...")
    return options, synthesize(context, checks=True)


def up_banner(system: RunningSystem, options: SystemOptions, *, seconds: float) -> str:
    """What `up` prints once everything listens: the chat API and the pipeline, and how to use each."""
    chat = banner(system.chat, options.chat).removesuffix("Stop with Ctrl-C.").rstrip()
    s3, bucket = system.s3_url, system.bucket
    # Signed with placeholder keys, set for the one command: the endpoint checks no signature, but refuses an
    # unsigned request for an existing object (a download, an overwrite), as S3 does unless its ACL is public.
    aws_s3 = f"{LOCAL_AWS_KEYS} aws s3"
    return "\n".join(
        [
            f"Up in {seconds:.1f} s. Every model call goes to {system.answers}.",
            "",
            chat,
            "",
            f"Batch pipeline: S3 endpoint {s3}, bucket {bucket}   (moto; the synthesized state machine runs in "
            "moto's Step Functions interpreter, its functions in this process)",
            f"  Drop prompt files under s3://{bucket}/inbox/ (.jsonl, .json, .csv, .txt); each file is one run "
            "(any keys sign for this endpoint):",
            f"  {aws_s3} cp --endpoint-url {s3} questions.jsonl s3://{bucket}/inbox/questions.jsonl",
            f"  {aws_s3} cp --endpoint-url {s3} --recursive local/samples/ s3://{bucket}/inbox/samples/",
            "",
            "or with boto3:",
            "uv run --frozen python - <<'EOF'",
            "import boto3",
            f's3 = boto3.client("s3", endpoint_url="{s3}", region_name="us-east-1",',
            '                  aws_access_key_id="local", aws_secret_access_key="local")',
            f's3.upload_file("local/samples/tickets.csv", "{bucket}", "inbox/tickets.csv")',
            "EOF",
            "",
            f"  Results: s3://{bucket}/results/<runId>/summary.json and results.jsonl "
            f"(rejected lines: s3://{bucket}/rejected/<runId>/rejected.jsonl)",
            f"  {aws_s3} ls --endpoint-url {s3} --recursive s3://{bucket}/results/",
            f"  {aws_s3} cp --endpoint-url {s3} s3://{bucket}/results/<runId>/summary.json -",
            "",
            "OpenAI's Batch API runs the same pipeline (the API key names the caller, whose batches they are):",
            "uv run --frozen python - <<'EOF'",
            "import time, openai",
            f'client = openai.OpenAI(base_url="{system.chat.url}", api_key="local")',
            'batch_input = client.files.create(file=open("local/samples/openai-batch.jsonl", "rb"), purpose="batch")',
            "batch = client.batches.create(",
            '    input_file_id=batch_input.id, endpoint="/v1/chat/completions", completion_window="24h"',
            ")",
            'while (batch := client.batches.retrieve(batch.id)).status not in ("completed", "failed", "cancelled"):',
            "    time.sleep(1)",
            "print(batch.status, batch.request_counts)",
            "print(client.files.content(batch.output_file_id).text)",
            "EOF",
            "",
            "Runs are reported below as they go; logs go to stderr. Stop with Ctrl-C.",
        ]
    )


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
        tokens_per_second=arguments.tokens_per_second,
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
    context = _context(arguments)
    print("Synthesizing the app (as cdk synth does) to read the chat function's configuration...", flush=True)
    return chat_template(synthesize(context))


def _context(arguments: argparse.Namespace) -> dict[str, str]:
    context = {}
    for entry in arguments.context:
        key, separator, value = entry.partition("=")
        if not separator:
            raise ValueError(f"-c takes KEY=VALUE, not {entry!r}")
        context[key] = value
    return context


def banner(api: RunningChatApi, options: ChatApiOptions) -> str:
    """What `serve` prints once it listens: where, what answers, and two ways to try it."""
    from local.bedrock import pace_words

    settings = api.settings
    names = [*settings.MODEL_IDS, *settings.MODEL_ALIASES]
    model = next(iter(settings.MODEL_ALIASES), settings.MODEL_IDS[0])
    guardrail = api.guardrail
    answers = {
        "offline": f"the offline model (deterministic, no network; streams {pace_words(options.tokens_per_second)}), "
        f"behind a Bedrock stand-in on {api.bedrock_url}",
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
    responses_request = f'{{"model": "{model}", "input": "What is Amazon Bedrock?"}}'
    return "\n".join(
        [
            f"Chat API on {api.url}   (the real chat app, configured as the template deploys it; no SigV4 here)",
            f"  models:    {', '.join(names)}",
            f"  answers:   {answers}",
            f"  guardrail: {guardrail.guardrail_id} version {guardrail.guardrail_version}: {blocks}",
            "",
            "Try it with curl:",
            f"  curl -s {api.url}/chat/completions -H 'Content-Type: application/json' -d '{request}'",
            f"  curl -s {api.url}/responses -H 'Content-Type: application/json' -d '{responses_request}'",
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
