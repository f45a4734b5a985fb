"""Cold start: importing the chat handler and creating its clients in a fresh process, beside `import boto3` + a client.

Each start is a new interpreter (`python -m bench.cold <side>`) that times itself from its first import to
the clients the first request needs, so interpreter start-up is left out on both sides; the two sides
alternate and the median of the repeats is reported. Also the size of the chat function's code asset.
"""

from __future__ import annotations

# Only what a bare interpreter has loaded anyway: the child times its imports, and a module this file
# loaded first would be free for both sides.
import json
import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.table import Row

FLOOR = "floor"
HANDLER = "handler"
# The handler with X-Ray tracing on, as in Lambda (informational: no daemon here, nothing is sent at import).
TRACED = "traced"
# The handler without bytecode caches, as deployed: the asset and the layer ship no __pycache__, and Lambda's
# read-only file system keeps none, so every cold start compiles every module it imports (informational).
UNCOMPILED = "uncompiled"
SIDES = (FLOOR, HANDLER, TRACED, UNCOMPILED)
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
    else:  # HANDLER, TRACED and UNCOMPILED differ only by their environment
        import chat.handler
        from shared.converse import read_timeout_for, runtime_client

        settings = chat.handler.chat_settings()
        chat.handler.converse_gateway()
        # The client of the first request's read timeout: a full budget, as a fresh invocation has.
        budget = (settings.INTEGRATION_TIMEOUT_MS - settings.DEADLINE_MARGIN_MS) / 1000
        runtime_client(read_timeout_for(budget) or 1)
    return time.perf_counter() - started


def fresh_start(side: str, environment: dict[str, str], *, no_network: bool = False) -> float:
    """Seconds one fresh interpreter took to import and create what `side` needs (measured inside it).

    Raises:
        subprocess.CalledProcessError: the child failed (its stderr is in the exception).
    """
    import subprocess

    command = [sys.executable, "-m", "bench.cold", side, *(["--no-network"] if no_network else [])]
    done = subprocess.run(command, env=environment, check=True, capture_output=True, text=True)  # noqa: S603
    seconds: float = json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def measure(environment: dict[str, str], *, repeats: int) -> dict[str, float]:
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
        environments = {FLOOR: environment, HANDLER: environment, TRACED: traced, UNCOMPILED: uncompiled}
        for _ in range(repeats):
            for side in SIDES:
                taken[side].append(fresh_start(side, environments[side]))
    return {side: statistics.median(values) for side, values in taken.items()}


def child_environment(function_environment: dict[str, str]) -> dict[str, str]:
    """This process's environment with the function's on top (the interpreter and paths stay the same)."""
    from bench.deployed import UNSET

    merged = {name: value for name, value in os.environ.items() if name not in UNSET}
    return {**merged, **function_environment}


def rows(*, quick: bool) -> list[Row]:
    """Cold import + clients beside `import boto3` + a client, and the code asset's size."""
    from bench.deployed import deployed_chat
    from bench.table import Row
    from bench.timing import ratio

    deployed = deployed_chat(quick=quick)
    medians = measure(child_environment(dict(deployed.environment)), repeats=2 if quick else 7)
    ours, floor, traced, uncompiled = (medians[side] for side in (HANDLER, FLOOR, TRACED, UNCOMPILED))
    cold = ratio(ours, floor)
    zipped = deployed.asset_zipped_bytes()
    return [
        Row("cold start", "import handler + create clients (ms), fresh process, median",
            f"{ours * 1000:.0f}", f"{floor * 1000:.0f}", f"{cold:.2f}x", "<= 2.5x import boto3 + client", cold <= 2.5),
        Row("cold start", "the same with X-Ray tracing on, as in Lambda (ms; the X-Ray SDK loads)",
            f"{traced * 1000:.0f}", f"{floor * 1000:.0f}", f"{ratio(traced, floor):.2f}x", "-", None),
        Row("cold start", "the same without .pyc (ms; layer and asset ship none; upper bound: stdlib compiled too)",
            f"{uncompiled * 1000:.0f}", f"{floor * 1000:.0f}", f"{ratio(uncompiled, floor):.2f}x", "-", None),
        Row("cold start", f"chat code asset, zipped (KB; {deployed.asset_bytes / 1024:.0f} KB unzipped, "
            f"{len(deployed.asset_files)} files; {deployed.source})",
            f"{zipped / 1024:.0f}", "-", f"{zipped / 1024:.0f} KB", "<= 300 KB", zipped <= ASSET_LIMIT_BYTES),
    ]  # fmt: skip


if __name__ == "__main__":
    print(json.dumps({"seconds": start(sys.argv[1], no_network="--no-network" in sys.argv[2:])}))
