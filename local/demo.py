"""`python -m local demo`: the whole system once, end to end, as a user would drive it, then exit.

It runs what `up` runs (in this process), then, over real loopback HTTP:
1. asks the chat API a question with the official `openai` SDK and prints the answer as it streams in, then
   asks the Responses API a question with a function tool, runs the tool and prints the final answer;
2. drops the sample folder (`local/samples/`) into the bucket's inbox through the local S3 endpoint with
   boto3, which starts one run per file through S3 -> EventBridge -> SQS -> starter -> Step Functions:
   - `questions.jsonl`: 150 prompts, enough for a batch inference job (the default minimum is 100);
   - `tickets.csv`: a few rows of a CSV with `id`, `prompt` and `system` columns -> on-demand path;
   - `mixed.jsonl`: both JSONL shapes and lines the pipeline must reject (cut-off JSON, `n` > 1, another
     model, an empty prompt), and one prompt the guardrail stops -> on-demand path, summary PARTIAL;
   - `note.txt`: a whole file as one prompt -> on-demand path;
   - `openai-batch.jsonl`: OpenAI batch input lines, one with a duplicate `custom_id` -> on-demand path;
3. uploads `openai-batch.jsonl` with the `openai` SDK's `files.create` and starts a batch with
   `batches.create` (OpenAI's Batch API: another run of the same state machine);
4. waits for every run and the batch, and prints each summary, a few results and the batch's output file.

Exit status 0 when the chat answered and every run ended with a summary (none FAILED); 1 otherwise, or
when `--timeout` (for the whole demo, synthesis included) runs out.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import openai

from local.harness import Run
from local.system import RunningSystem, finished_line, wait_for_run

SAMPLES = Path(__file__).resolve().parent / "samples"
BATCH_SAMPLE = SAMPLES / "openai-batch.jsonl"
_BATCH_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
INBOX_FOLDER = "inbox/demo/"
RESULTS_SHOWN = 3
ANSWER_CHARACTERS = 100


class DemoFailed(Exception):
    """Something the demo checks did not happen (the message says what)."""


@dataclass(frozen=True)
class Dropped:
    """One sample file put into the inbox."""

    path: Path
    key: str
    version_id: str


def run_demo(system: RunningSystem, *, deadline: float, say: Callable[[str], None]) -> list[Run]:
    """Chat once, drop the samples, wait for their runs and print them; the runs.

    Raises:
        DemoFailed: the chat call failed, or a run failed or did not end before `deadline`.
    """
    chat(system, deadline=deadline, say=say)
    respond_with_a_tool(system, deadline=deadline, say=say)
    dropped = drop_samples(system, say=say)
    batch_id = start_batch(system, deadline=deadline, say=say)
    runs = []
    for item in dropped:
        try:
            runs.append(wait_for_run(system.pipeline, item.key, item.version_id, deadline=deadline))
        except TimeoutError as error:
            raise DemoFailed(f"timed out: {error}") from None
    system.monitor.poll()  # its report of the last run to end comes before the results
    say("\n== Batch results ==")
    for item, run in zip(dropped, runs, strict=True):
        show_run(item, run, system.bucket, say=say)
    failed = [
        f"{item.path.name}: {run.status}, summary {run.summary['status'] if run.summary else 'missing'}"
        for item, run in zip(dropped, runs, strict=True)
        if run.status != "SUCCEEDED" or run.summary is None or run.summary["status"] == "FAILED"
    ]
    if failed:
        raise DemoFailed("runs that failed: " + "; ".join(failed))
    finish_batch(system, batch_id, deadline=deadline, say=say)
    return runs


def chat(system: RunningSystem, *, deadline: float, say: Callable[[str], None]) -> str:
    """Ask the chat API one question with the openai SDK, streamed: each piece is written as it arrives; the answer.

    Raises:
        DemoFailed: the call failed, or came back without an answer.
    """
    settings = system.chat.settings
    model = next(iter(settings.MODEL_ALIASES), settings.MODEL_IDS[0])
    question = "In one sentence: what does Amazon Bedrock's batch inference do?"
    say(f"\n== Chat API ==\nPOST {system.chat.url}/chat/completions with the openai SDK (model {model}, streamed):")
    say(f"  user: {question}")
    pieces: list[str] = []
    finish, usage = None, None
    try:
        with _client(system, deadline) as client:
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": question}],
                reasoning_effort="low",
                stream=True,
                stream_options={"include_usage": True},
            )
            print("  assistant: ", end="", flush=True)
            for chunk in stream:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    finish = choice.finish_reason or finish
                    if choice.delta.content:
                        pieces.append(choice.delta.content)
                        print(choice.delta.content, end="", flush=True)
            print(flush=True)
    except openai.OpenAIError as error:
        raise DemoFailed(f"the chat API call failed: {error}") from None
    answer = "".join(pieces)
    if not answer:
        raise DemoFailed(f"the chat API answered without content (finish_reason {finish})")
    tokens = f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens" if usage else "no usage"
    say(f"  (finish_reason {finish}, {tokens})")
    return answer


def respond_with_a_tool(system: RunningSystem, *, deadline: float, say: Callable[[str], None]) -> str:
    """One function-calling round trip on POST /v1/responses, as an agent makes it; the final answer.

    Raises:
        DemoFailed: the calls failed, or the model did not call the tool or answer.
    """
    settings = system.chat.settings
    model = next(iter(settings.MODEL_ALIASES), settings.MODEL_IDS[0])
    question = "What is the weather in Lisbon?"
    tool: openai.types.responses.FunctionToolParam = {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
    say(f"\n== Responses API ==\nPOST {system.chat.url}/responses with a function tool (model {model}):")
    say(f"  user: {question}")
    try:
        with _client(system, deadline) as client:
            first = client.responses.create(model=model, input=question, tools=[tool])
            calls = [item for item in first.output if item.type == "function_call"]
            if not calls:
                raise DemoFailed(f"the model did not call the tool (status {first.status})")
            say(f"  function_call: {calls[0].name}({calls[0].arguments})")
            city = json.loads(calls[0].arguments).get("city", "the city")
            output = f"sunny, 21 C in {city}"
            say(f"  function_call_output: {output}")
            history: list[Any] = [
                {"role": "user", "content": question},
                *[item.model_dump(exclude_none=True) for item in first.output],
                {"type": "function_call_output", "call_id": calls[0].call_id, "output": output},
            ]
            final = client.responses.create(model=model, input=history, tools=[tool])
    except openai.OpenAIError as error:
        raise DemoFailed(f"the Responses API call failed: {error}") from None
    if not final.output_text:
        raise DemoFailed(f"the Responses API answered without text (status {final.status})")
    say(f"  assistant: {final.output_text}")
    return final.output_text


def start_batch(system: RunningSystem, *, deadline: float, say: Callable[[str], None]) -> str:
    """Upload the OpenAI batch sample with `files.create` and start a batch on it; the batch id.

    Raises:
        DemoFailed: either call failed.
    """
    say(f"\n== Batch API ==\nPOST {system.chat.url}/files and /batches with the openai SDK ({BATCH_SAMPLE.name}):")
    try:
        with _client(system, deadline) as client:
            uploaded = client.files.create(file=BATCH_SAMPLE, purpose="batch")
            batch = client.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
    except openai.OpenAIError as error:
        raise DemoFailed(f"the Batch API call failed: {error}") from None
    say(f"  file {uploaded.id} ({uploaded.bytes} bytes) -> batch {batch.id}: {batch.status}")
    return batch.id


def finish_batch(system: RunningSystem, batch_id: str, *, deadline: float, say: Callable[[str], None]) -> None:
    """Poll the batch to its end with `batches.retrieve`, then print its counts and output with `files.content`.

    Raises:
        DemoFailed: a call failed, or the batch did not complete before `deadline`.
    """
    say("\n== Batch API results ==")
    try:
        with _client(system, deadline) as client:
            while (batch := client.batches.retrieve(batch_id)).status not in _BATCH_ENDED:
                if time.monotonic() > deadline:
                    raise DemoFailed(f"timed out: batch {batch_id} still {batch.status}")
                time.sleep(0.2)
            counts = batch.request_counts
            say(
                f"  {batch_id}: {batch.status}, {counts.completed if counts else 0} completed, "
                f"{counts.failed if counts else 0} failed of {counts.total if counts else 0}"
            )
            if batch.status != "completed" or batch.output_file_id is None:
                raise DemoFailed(f"batch {batch_id} ended {batch.status}: {batch.errors}")
            for line in client.files.content(batch.output_file_id).text.splitlines():
                output = json.loads(line)
                message = output["response"]["body"]["choices"][0]["message"]
                say(f"  {output['custom_id']}: {_short(str(message.get('content') or ''))}")
            if batch.error_file_id is not None:
                for line in client.files.content(batch.error_file_id).text.splitlines():
                    error = json.loads(line)
                    say(f"  {error['custom_id']} [error]: {error['error']['message']}")
    except openai.OpenAIError as error:
        raise DemoFailed(f"the Batch API call failed: {error}") from None


def _client(system: RunningSystem, deadline: float) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=system.chat.url, api_key="local", max_retries=0, timeout=max(1.0, deadline - time.monotonic())
    )


def drop_samples(system: RunningSystem, *, say: Callable[[str], None]) -> list[Dropped]:
    """Upload every sample file under inbox/demo/ through the S3 endpoint, as `aws s3 cp` would."""
    s3 = boto3.client(
        "s3",
        endpoint_url=system.s3_url,
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the local endpoint checks no signature
    )
    inbox = f"s3://{system.bucket}/{INBOX_FOLDER}"
    say(f"\n== Batch pipeline ==\nDropping {_shown(SAMPLES)}/ into {inbox} through {system.s3_url}:")
    dropped = []
    try:
        for path in sorted(SAMPLES.iterdir()):
            key = f"{INBOX_FOLDER}{path.name}"
            s3.upload_file(str(path), system.bucket, key)
            version_id = s3.head_object(Bucket=system.bucket, Key=key)["VersionId"]
            say(f"  {path.name} -> s3://{system.bucket}/{key}")
            dropped.append(Dropped(path=path, key=key, version_id=version_id))
    finally:
        s3.close()
    return dropped


def show_run(item: Dropped, run: Run, bucket: str, *, say: Callable[[str], None]) -> None:
    """A run's outcome, a few of its results and its rejections."""
    say(f"{item.path.name}: run {run.run_id}")
    say(f"  {finished_line(run, bucket)}")
    for result in run.results[:RESULTS_SHOWN]:
        say(f"  {result.get('id') or result['recordId']} [{result['status']}]: {_answer(result)}")
    if len(run.results) > RESULTS_SHOWN:
        say(f"  ... {len(run.results) - RESULTS_SHOWN} more in results.jsonl")
    for rejection in run.rejected:
        say(f"  rejected line {rejection['line']}: {rejection['reason']}")


def _answer(result: Mapping[str, Any]) -> str:
    if result["status"] != "ok":
        return str(result.get("error"))
    suffix = f" (finish_reason {result['finish_reason']})" if result.get("finish_reason") != "stop" else ""
    return _short(str(result.get("answer") or "")) + suffix


def _short(answer: str) -> str:
    text = " ".join(answer.split())
    return text[:ANSWER_CHARACTERS] + ("..." if len(text) > ANSWER_CHARACTERS else "")


def fail(message: str) -> int:
    """Say why the demo failed, on stderr; the exit status."""
    print(f"demo FAILED: {message}", file=sys.stderr, flush=True)
    return 1


def _shown(path: Path) -> str:
    """A path as the user would type it from the current folder, when it is under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
