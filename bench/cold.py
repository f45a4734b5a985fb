"""Cold start: the chat app imported with its clients in a fresh process, and the app started as deployed.

Import: each start is a new interpreter (`python -m bench.cold <side>`) that times itself from its first
import (`chat.app`) to the clients the first request needs (`chat.service.chat_settings()`,
`chat.service.converse_gateway()`, the bedrock-runtime client of a full budget), so interpreter start-up is
left out; beside it `import boto3` + a client the same way. The sides alternate and the median of the repeats
is reported, with X-Ray on and without .pyc as variants.

Deployed shape: the function's handler script as the web adapter runs it (`bash functions/chat/run.sh`, uvicorn
serving `chat.app:app` on a free loopback port, through local.chat_server.FunctionProcess) timed from process
start to GET /healthz answering 200 (what the adapter's readiness check waits for), then to the first byte of
the first POST /v1/chat/completions, answered by the loopback Bedrock stand-in (local/bedrock, offline model).
Its floor is a whole `python -c "import boto3; boto3.client(...)"` process, start to exit, in the same
interleaving. Also the size of the chat function's code asset.
"""

from __future__ import annotations

# Only what a bare interpreter has loaded anyway: the child times its imports, and a module this file
# loaded first would be free for both sides.
import contextlib
import json
import os
import sys
import time
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from bench.deployed import DeployedChat
    from bench.table import Row

FLOOR = "floor"
APP = "app"
# The app with X-Ray tracing on, as in Lambda (informational: no daemon here, nothing is sent at import). The
# chat app imports no Tracer, so this shows that turning tracing on loads nothing more at start.
TRACED = "traced"
# The app without bytecode caches, as deployed: the asset and the layer ship no __pycache__, and Lambda's
# read-only file system keeps none, so every cold start compiles every module it imports (informational).
UNCOMPILED = "uncompiled"
SIDES = (FLOOR, APP, TRACED, UNCOMPILED)
ASSET_LIMIT_BYTES = 300 * 1024


def start(side: str, *, no_network: bool = False) -> float:
    """In this (fresh) process: import and create what `side` needs, and return the seconds it took.

    `no_network` makes every socket other than a Unix socket raise first, so a network call at import fails.
    """
    if no_network:
        from pytest_socket import disable_socket

        disable_socket(allow_unix_socket=True)
    started = time.perf_counter()
    if side == FLOOR:
        import boto3

        boto3.client("bedrock-runtime", region_name=os.environ.get("AWS_REGION", "us-east-1"))
    else:  # APP, TRACED and UNCOMPILED differ only by their environment
        import chat.app
        import chat.service
        from shared.converse import read_timeout_for, runtime_client

        assert chat.app.app is not None
        settings = chat.service.chat_settings()
        chat.service.converse_gateway()
        # The client of the first request's read timeout: a full budget, as a fresh invocation has.
        budget = (settings.INTEGRATION_TIMEOUT_MS - settings.DEADLINE_MARGIN_MS) / 1000
        runtime_client(read_timeout_for(budget) or 1)
    return time.perf_counter() - started


def fresh_start(side: str, environment: Mapping[str, str], *, no_network: bool = False) -> float:
    """Seconds one fresh interpreter took to import and create what `side` needs (measured inside it)."""
    from bench.timing import child_report

    flags = ["--no-network"] if no_network else []
    return float(child_report("-m", "bench.cold", side, *flags, env=environment)["seconds"])


def measure(environment: Mapping[str, str], *, repeats: int) -> dict[str, float]:
    """Median seconds of each side over `repeats` fresh processes, the sides alternating."""
    import statistics
    import tempfile

    from bench.deployed import FUNCTIONS_DIR

    traced = {name: value for name, value in environment.items() if name != "POWERTOOLS_TRACE_DISABLED"}
    # Powertools traces only inside Lambda, which it recognises by this variable.
    traced["LAMBDA_TASK_ROOT"] = str(FUNCTIONS_DIR)
    taken: dict[str, list[float]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="bench-no-pyc-") as empty:
        # Bytecode is looked up (and never written) in an empty folder: every import compiles its source.
        uncompiled = {**environment, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
        environments = {FLOOR: environment, APP: environment, TRACED: traced, UNCOMPILED: uncompiled}
        for _ in range(repeats):
            for side in SIDES:
                taken[side].append(fresh_start(side, environments[side]))
    return {side: statistics.median(values) for side, values in taken.items()}


# The chat function's handler in the template (infra/constructs/chat_api.py CHAT_HANDLER), under functions/.
RUN_SCRIPT = "chat/run.sh"
# The floor of a deployed-shape start: a whole interpreter that imports boto3 and creates the client, then exits.
_FLOOR_PROCESS = "import boto3\nboto3.client('bedrock-runtime')\n"


class DeployedStart(NamedTuple):
    """Seconds from starting the handler script to the app's readiness, and to the first byte of its first answer."""

    ready: float
    first_byte: float


@contextlib.contextmanager
def quiet_children() -> Iterator[None]:
    """Drop the logs of a function process started inside (and the local gateway's access log, on stderr too).

    local.chat_server.FunctionProcess hands the function's stdout (its JSON logs and EMF) to `sys.stderr`:
    that is pointed at /dev/null, and file descriptor 1 too, which a child would otherwise inherit.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as sink:  # noqa: PTH123 - a text stream, as stderr is
        os.dup2(sink.fileno(), 1)
        previous, sys.stderr = sys.stderr, sink
        try:
            yield
        finally:
            sys.stderr = previous
            os.dup2(saved, 1)
            os.close(saved)


def deployed_start(deployed: DeployedChat, bedrock_url: str) -> DeployedStart:
    """One start of the app as the web adapter runs it: `bash chat/run.sh`, GET /healthz 200, the first answer.

    The process is local.chat_server.FunctionProcess (the function's environment, the adapter's port, the task
    root and this interpreter first on PATH), whose readiness check polls GET /healthz every 50 ms, so `ready`
    may be up to that much late. The POST is the request bench.chat sends, as the adapter forwards it; its
    first byte is the response's status line and headers.

    Raises:
        RuntimeError: the app did not start or did not answer 200.
    """
    import httpx

    from bench.chat import PATH, REQUEST_BODY, adapter_headers
    from bench.deployed import UNSET
    from local.chat_server import FunctionProcess

    process = FunctionProcess({**deployed.environment, "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock_url}, unset=UNSET)
    headers = adapter_headers(deployed)
    request = httpx.Request("POST", f"{process.url}{PATH}", headers=headers, content=REQUEST_BODY.encode())
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        try:
            with quiet_children():
                process.start(RUN_SCRIPT)
            ready = time.perf_counter() - started
            response = client.send(request, stream=True)
            first_byte = time.perf_counter() - started
            response.read()
        finally:
            process.stop()
    if response.status_code != 200 or "chat.completion" not in response.text:
        raise RuntimeError(f"the started app did not answer 200: {response.status_code} {response.text[:500]}")
    return DeployedStart(ready=ready, first_byte=first_byte)


def floor_process_seconds(environment: Mapping[str, str]) -> float:
    """Wall seconds of a whole `python -c "import boto3; boto3.client('bedrock-runtime')"` process, start to exit."""
    import subprocess

    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", _FLOOR_PROCESS], env=environment, check=True, capture_output=True)  # noqa: S603
    return time.perf_counter() - started


def measure_deployed(deployed: DeployedChat, *, repeats: int) -> tuple[DeployedStart, float]:
    """Medians of `repeats` deployed-shape starts and of as many floor processes, alternating.

    Bedrock is the local stand-in (offline model, the function's guardrail id) on a loopback port, served
    from this process for the whole measurement.
    """
    import statistics

    from bench.deployed import GUARDRAIL
    from local.bedrock import BedrockStandIn, WordGuardrail, build_model
    from local.services import serving

    guardrail = WordGuardrail(guardrail_id=GUARDRAIL["GUARDRAIL_ID"], guardrail_version=GUARDRAIL["GUARDRAIL_VERSION"])
    model_ids = [name.strip() for name in deployed.environment["MODEL_IDS"].split(",") if name.strip()]
    model = build_model("offline", guardrail=guardrail, model_ids=model_ids)
    environment = child_environment(deployed.environment)
    starts: list[DeployedStart] = []
    floors: list[float] = []
    with contextlib.closing(model), serving(BedrockStandIn(model), "bench-bedrock-stand-in") as stand_in:
        for _ in range(repeats):
            starts.append(deployed_start(deployed, stand_in.url))
            floors.append(floor_process_seconds(environment))
    ready = statistics.median(start.ready for start in starts)
    first_byte = statistics.median(start.first_byte for start in starts)
    return DeployedStart(ready=ready, first_byte=first_byte), statistics.median(floors)


def child_environment(function_environment: Mapping[str, str]) -> dict[str, str]:
    """This process's environment with the function's on top (the interpreter and paths stay the same)."""
    from bench.deployed import UNSET

    merged = {name: value for name, value in os.environ.items() if name not in UNSET}
    return {**merged, **function_environment}


def rows(*, quick: bool) -> list[Row]:
    """Cold import + clients beside `import boto3` + a client, the deployed-shape start, and the code asset's size."""
    from bench.deployed import deployed_chat
    from bench.table import Row
    from bench.timing import ratio

    deployed = deployed_chat(quick=quick)
    medians = measure(child_environment(deployed.environment), repeats=2 if quick else 7)
    ours, floor, traced, uncompiled = (medians[side] for side in (APP, FLOOR, TRACED, UNCOMPILED))
    cold = ratio(ours, floor)
    shaped, floor_process = measure_deployed(deployed, repeats=2 if quick else 7)
    zipped = deployed.asset_zipped_bytes()
    process_floor = f"{floor_process * 1000:.0f} python process: boto3 + client"
    return [
        Row("cold start", "import chat.app + create clients (ms), fresh process, median",
            f"{ours * 1000:.0f}", f"{floor * 1000:.0f}", f"{cold:.2f}x", "<= 2.5x import boto3 + client", cold <= 2.5),
        Row("cold start", "the same with X-Ray tracing on, as in Lambda (ms; the app imports no Tracer)",
            f"{traced * 1000:.0f}", f"{floor * 1000:.0f}", f"{ratio(traced, floor):.2f}x", "-", None),
        Row("cold start", "the same without .pyc (ms; layer and asset ship none; upper bound: stdlib compiled too)",
            f"{uncompiled * 1000:.0f}", f"{floor * 1000:.0f}", f"{ratio(uncompiled, floor):.2f}x", "-", None),
        Row("cold start", "deployed shape: bash chat/run.sh until GET /healthz answers 200 (ms; polled every 50 ms), "
            "median",
            f"{shaped.ready * 1000:.0f}", process_floor, f"{ratio(shaped.ready, floor_process):.2f}x", "-", None),
        Row("cold start", "deployed shape: until the first byte of the first chat completion (ms; loopback Bedrock), "
            "median",
            f"{shaped.first_byte * 1000:.0f}", process_floor, f"{ratio(shaped.first_byte, floor_process):.2f}x", "-",
            None),
        Row("cold start", f"chat code asset, zipped (KB; {deployed.asset_bytes / 1024:.0f} KB unzipped, "
            f"{len(deployed.asset_files)} files; {deployed.source})",
            f"{zipped / 1024:.0f}", "-", f"{zipped / 1024:.0f} KB", "<= 300 KB", zipped <= ASSET_LIMIT_BYTES),
    ]  # fmt: skip


if __name__ == "__main__":
    print(json.dumps({"seconds": start(sys.argv[1], no_network="--no-network" in sys.argv[2:])}))
