"""What a user would pick instead: LiteLLM's Bedrock Converse provider, beside the same bare boto3 floor.

Same model, same request (system + user, max_tokens, temperature, the guardrail), same canned Converse
answer: LiteLLM's socket layer is replaced by an httpx MockTransport (`litellm.sync_transport`), boto3's by
the before-send stand-in, so each side does all of its own work except the network. LiteLLM is in the
`bench` dependency group only; without it the row says so.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import statistics
from collections.abc import Callable
from unittest import mock

from bench.chat import CONVERSE_RESPONSE, MAX_TOKENS, MESSAGES, MODEL_ID, TEMPERATURE, CannedConverse, floor_request
from bench.cold import FLOOR, child_environment, fresh_start
from bench.deployed import REGION, deployed_chat
from bench.table import Row
from bench.timing import Contender, child_report, interleaved, ratio

# LiteLLM's model string for Bedrock's Converse API.
LITELLM_MODEL = f"bedrock/converse/{MODEL_ID}"
GUARDRAIL_CONFIG = {"guardrailIdentifier": "gr7benchguard", "guardrailVersion": "1", "trace": "enabled"}
# Loads LiteLLM without its network fetch of the model cost map (the bundled copy is used).
_LITELLM_IMPORT = (
    "import json, os, time\n"
    "os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'\n"
    "started = time.perf_counter()\n"
    "import litellm\n"
    "print(json.dumps({'seconds': time.perf_counter() - started}))\n"
)


def litellm_installed() -> bool:
    """Whether the bench dependency group (LiteLLM) is installed."""
    return importlib.util.find_spec("litellm") is not None


def litellm_contender() -> Contender:
    """LiteLLM's completion() for the bench request, its HTTP answered by an httpx MockTransport."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import httpx
    import litellm

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=CONVERSE_RESPONSE, headers={"Content-Type": "application/json"})

    litellm.sync_transport = httpx.MockTransport(answer)
    litellm.telemetry = False

    def call() -> Callable[[], object]:
        return lambda: litellm.completion(
            model=LITELLM_MODEL,
            messages=MESSAGES,
            max_tokens=MAX_TOKENS,
            temperature=TEMPERATURE,
            guardrailConfig=GUARDRAIL_CONFIG,
            aws_region_name=REGION,
        )

    answer_text = call()()
    if "KMS" not in str(answer_text):
        raise RuntimeError(f"LiteLLM did not return the canned answer: {str(answer_text)[:300]}")
    return call


def floor_contender() -> Contender:
    """The bare boto3 Converse call of bench.chat, with its before-send stand-in."""
    import boto3

    from local.apigw import CALLER_ARN

    client = boto3.client("bedrock-runtime", region_name=REGION)
    client.meta.events.register("before-send.bedrock-runtime.Converse", CannedConverse())
    request = floor_request(CALLER_ARN)
    return lambda: lambda: client.converse(**request)


def litellm_import_seconds(environment: dict[str, str]) -> float:
    """Seconds a fresh interpreter takes to `import litellm` (measured inside it)."""
    return float(child_report("-c", _LITELLM_IMPORT, env=environment)["seconds"])


def rows(*, quick: bool) -> list[Row]:
    """LiteLLM's per-request p50/p99 and cold import as ratios of the boto3 floor, measured here and now."""
    if not litellm_installed():
        why = "not installed: run with `--group bench`"
        return [Row("alternative", "LiteLLM (bedrock/converse)", why, "-", "-", "-", None)]
    environment = child_environment(deployed_chat(quick=quick).environment)
    requests, warmup, repeats = (100, 20, 1) if quick else (2000, 300, 5)
    with mock.patch.dict(os.environ, {name: value for name, value in environment.items() if name.startswith("AWS_")}):
        timings = interleaved(
            {"litellm": litellm_contender(), "floor": floor_contender()}, requests=requests, warmup=warmup
        )
    imports: dict[str, list[float]] = {"litellm": [], "floor": []}
    for _ in range(repeats):
        imports["litellm"].append(litellm_import_seconds(environment))
        imports["floor"].append(fresh_start(FLOOR, environment))
    cold = {name: statistics.median(values) for name, values in imports.items()}
    theirs, floor = timings["litellm"], timings["floor"]
    version = importlib.metadata.version("litellm")
    return [
        Row("alternative", f"LiteLLM {version} p50 per request (ms) vs bare boto3", f"{theirs.p50:.3f}",
            f"{floor.p50:.3f}", f"{ratio(theirs.p50, floor.p50):.2f}x", "-", None),
        Row("alternative", "LiteLLM p99 per request (ms) vs bare boto3", f"{theirs.p99:.3f}", f"{floor.p99:.3f}",
            f"{ratio(theirs.p99, floor.p99):.2f}x", "-", None),
        Row("alternative", "LiteLLM cold import (ms) vs import boto3 + client", f"{cold['litellm'] * 1000:.0f}",
            f"{cold['floor'] * 1000:.0f}", f"{ratio(cold['litellm'], cold['floor']):.2f}x", "-", None),
    ]  # fmt: skip
