"""Converter, parser and planner rows: our batch code beside a raw line copy of the same bytes, same run.

Each measured step runs in a fresh interpreter (`python -m bench.batch <step> <args>`) that does only that
step, so its peak resident memory (VmHWM) is the step's own and its timing is not warmed by another. The
functions run their real code paths (prepare.prepare, collect.collect) with S3 replaced by local files at
the one seam the code has (`batch.storage.client`, see bench/local_s3.py): the bench measures our code,
not moto or the network.

The floor each rate is compared with is the raw line copy: read the same file line by line, write every
line, with the same chunk and part sizes the functions use (1 MiB reads, 8 MiB writes).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.table import Row

MB = 1_000_000
MIB = 1024 * 1024
FULL_SIZES = (10 * MB, 100 * MB, 1000 * MB)
QUICK_SIZES = (1 * MB, 5 * MB)
JOIN_RECORDS = 50_000
QUICK_JOIN_RECORDS = 5_000
PLAN_PROMPTS = 1_000_000
TARGET_RATIO = 0.5
# Copies (and the short join) are taken as the fastest of this many runs; the long steps run once.
FLOOR_RUNS = 3
TARGET_PEAK_MB = 128.0
# The peak varies by a few MB between identical runs (allocator, import order): "flat" allows this much.
PEAK_NOISE_MB = 8.0
# "Well inside the timeout" for a 1 GB prompt file: a quarter of it, room for a slower CPU than this machine's
# and for the S3 transfer these local-file runs leave out.
TIMEOUT_SHARE = 0.25
BUCKET = "bench"
SOURCE_KEY = "inbox/prompts.jsonl"
RUN_ID = "bench-0123456789abcdef01234567"
JOB_ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{index:05d}bench"
_CHILD_ENV = {"POWERTOOLS_LOG_LEVEL": "ERROR", "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_DISABLED": "1"}


@dataclass(frozen=True)
class Measure:
    """What one child process reports: seconds, bytes and records handled, and its peak memory."""

    seconds: float
    bytes: int
    records: int
    peak_mb: float

    @property
    def mb_per_s(self) -> float:
        """Throughput in MB/s (decimal)."""
        return self.bytes / MB / self.seconds

    @property
    def records_per_s(self) -> float:
        """Throughput in records/s."""
        return self.records / self.seconds


_VOCABULARY = (
    "summarise the following customer message and list the actions it asks for in order of urgency please "
    "translate into French keeping the tone explain why the build failed given this log extract classify "
    "sentiment as positive negative or neutral write a short product description for a waterproof jacket "
    "what are the risks of this contract clause answer in two sentences with one example each"
)
_WORDS = _VOCABULARY.split()


def _prompt_lines(rng: random.Random) -> list[bytes]:
    """A pool of distinct prompt lines in both accepted shapes, with realistic lengths (60 B to 4 kB)."""
    lines = []
    for number in range(997):
        text = " ".join(rng.choices(_WORDS, k=int(rng.lognormvariate(4.7, 0.7)) + 5))
        if number % 3:
            value: dict[str, Any] = {"prompt": text}
            if number % 5 == 0:
                value["system"] = "You are a careful assistant."
        else:
            value = {
                "messages": [{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": text}],
                "max_completion_tokens": 1024,
                "reasoning_effort": "low",
            }
        lines.append(json.dumps(value, ensure_ascii=False).encode()[1:])  # the id goes in front
    return lines


def write_prompts(path: Path, target_bytes: int) -> int:
    """A .jsonl prompt file of about `target_bytes` (every line with its own id); the number of lines."""
    pool = _prompt_lines(random.Random(7))  # noqa: S311 - deterministic test data
    written = count = 0
    with path.open("wb", buffering=8 * MIB) as out:
        while written < target_bytes:
            line = b'{"id":"p%d",%s\n' % (count, pool[count % len(pool)])
            out.write(line)
            written += len(line)
            count += 1
    return count


def _answers(rng: random.Random) -> list[bytes]:
    """A pool of modelOutput objects (chat completions with reasoning, as gpt-oss answers in a batch job)."""
    outputs = []
    for number in range(101):
        reasoning = " ".join(rng.choices(_WORDS, k=rng.randint(20, 80)))
        answer = " ".join(rng.choices(_WORDS, k=rng.randint(20, 120)))
        output = {
            "id": f"chatcmpl-{number:08x}",
            "object": "chat.completion",
            "created": 1_763_000_000,
            "model": "openai.gpt-oss-120b-1:0",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"<reasoning>{reasoning}</reasoning>{answer}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 120, "completion_tokens": 240, "total_tokens": 360},
        }
        outputs.append(json.dumps(output, separators=(",", ":")).encode())
    return outputs


def write_job_outputs(root: Path, prepared: dict[str, Any]) -> int:
    """What Bedrock writes for each shard of a prepared run (every record answered); the bytes written."""
    answers = _answers(random.Random(11))  # noqa: S311 - deterministic test data
    total = 0
    for shard in prepared["shards"]:
        index = shard["index"]
        records = root / BUCKET / f"work/{RUN_ID}/shard-{index:05d}/records.jsonl"
        job_id = JOB_ARN.format(index=index).rsplit("/", 1)[1]
        folder = root / BUCKET / f"bedrock-output/{RUN_ID}/shard-{index:05d}/{job_id}"
        folder.mkdir(parents=True, exist_ok=True)
        lines = 0
        with records.open("rb") as source, (folder / "records.jsonl.out").open("wb", buffering=8 * MIB) as out:
            for number, line in enumerate(source):
                out.write(line[:-2] + b',"modelOutput":' + answers[number % len(answers)] + b"}\n")
                lines += 1
            total += out.tell()
        manifest = {"totalRecordCount": lines, "processedRecordCount": lines, "successRecordCount": lines}
        (folder / "manifest.json.out").write_text(json.dumps({**manifest, "errorRecordCount": 0}))
    return total


def output_files(root: Path) -> list[Path]:
    """Every job output file of the bench run."""
    return sorted((root / BUCKET / f"bedrock-output/{RUN_ID}").rglob("*.jsonl.out"))


def line_copy(sources: list[Path], target: Path) -> tuple[int, int]:
    """The floor: every line of `sources` read and written, 1 MiB reads and 8 MiB writes; (bytes, lines)."""
    size = lines = 0
    with target.open("wb", buffering=8 * MIB) as out:
        for source in sources:
            with source.open("rb", buffering=MIB) as lines_in:
                for line in lines_in:
                    out.write(line)
                    size += len(line)
                    lines += 1
    return size, lines


# Not unittest.mock.patch: importing it would raise the peak memory of the steps that use this.
@contextmanager
def local_storage(root: Path) -> Iterator[None]:
    """batch.storage talking to `root` instead of S3."""
    from batch import storage
    from bench.local_s3 import LocalS3

    real = storage.client
    storage.client = lambda: LocalS3(root)  # type: ignore[assignment]
    try:
        yield
    finally:
        storage.client = real


def run_prepare(root: Path) -> dict[str, Any]:
    """Prepare (convert, plan, split) the bench source file; the Prepared payload."""
    from batch.prepare import prepare
    from batch.settings import BatchSettings
    from shared.pipeline import RunInput

    with local_storage(root):
        run = RunInput(bucket=BUCKET, key=SOURCE_KEY, versionId=None, runId=RUN_ID)
        return prepare(run, BatchSettings()).model_dump()


def run_collect(root: Path, prepared: dict[str, Any]) -> dict[str, Any]:
    """Collect the bench run from its job outputs; collect's result."""
    from batch.collect import collect
    from batch.models import CollectInput
    from batch.settings import BatchSettings

    outcomes = [
        {"index": shard["index"], "jobArn": JOB_ARN.format(index=shard["index"]), "status": "Completed"}
        for shard in prepared["shards"]
    ]
    request = CollectInput(prepared=prepared, shardOutcomes=outcomes, startedAt="2026-01-01T00:00:00Z")
    with local_storage(root):
        return collect(request, BatchSettings(), None).model_dump()


def run_plan(prompts: int, record_bytes: int) -> int:
    """Plan a run of `prompts` records of `record_bytes` each with the default quotas; the number of shards."""
    from batch.planner import plan
    from batch.quotas import load_quotas
    from batch.settings import BatchSettings

    chosen = plan(prompts, prompts * record_bytes, record_bytes, load_quotas(BatchSettings()), max_jobs=1_000)
    return sum(1 for _ in chosen.shards())


# What each step imports, loaded before its clock starts: imports are cold-start time, not throughput.
_STEP_MODULES = {
    "copy": (),
    "prepare": ("batch.prepare", "bench.local_s3"),
    "collect": ("batch.collect", "bench.local_s3"),
    "plan": ("batch.planner", "batch.quotas"),
}


def _child(step: str, args: dict[str, Any]) -> dict[str, Any]:
    root = Path(args["root"])
    for module in _STEP_MODULES[step]:
        importlib.import_module(module)
    started = time.perf_counter()
    size = records = 0
    extra: dict[str, Any] = {}
    if step == "copy":
        size, records = line_copy([Path(path) for path in args["sources"]], root / "copy.out")
    elif step == "prepare":
        extra = run_prepare(root)
        size, records = (root / BUCKET / SOURCE_KEY).stat().st_size, extra["recordCount"]
    elif step == "collect":
        extra = run_collect(root, args["prepared"])
        size, records = sum(path.stat().st_size for path in output_files(root)), extra["counts"]["ok"]
    else:
        extra = {"shards": run_plan(args["prompts"], args["record_bytes"])}
        records = args["prompts"]
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": size, "records": records, "peak_mb": peak_kib() * 1024 / MB, "extra": extra}


def peak_kib() -> int:
    """This process's peak resident memory in KiB: VmHWM, the high-water mark of its own address space.

    Not ru_maxrss: Linux carries that across fork and exec, so a child would report its parent's peak
    whenever the parent (the bench runner, which loads aws_cdk) was the larger.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # without /proc: the inherited figure, in KiB


def measure(step: str, **args: Any) -> tuple[Measure, dict[str, Any]]:
    """Run one step in a fresh interpreter; its measure and what it returned.

    The functions' steps run with the allocator settings their Lambda functions are deployed with; the line
    copy, the floor, runs with the same, so the two differ in our code only.
    """
    from bench.timing import child_report
    from infra.constructs.batch_pipeline import STREAMING_MALLOC_ENVIRONMENT  # aws_cdk: loaded once, here

    environment = {**os.environ, **_CHILD_ENV, **STREAMING_MALLOC_ENVIRONMENT}
    report = child_report("-m", "bench.batch", step, json.dumps(args), env=environment)
    extra = report.pop("extra")
    return Measure(**report), extra


def fastest(step: str, **args: Any) -> tuple[Measure, dict[str, Any]]:
    """The fastest of FLOOR_RUNS runs of one step: a single copy of a file in the page cache swings 5-10x here."""
    measured = [measure(step, **args) for _ in range(FLOOR_RUNS)]
    return min(measured, key=lambda pair: pair[0].seconds)


def _label(size: int) -> str:
    return f"{size // 1000 // MB} GB" if size >= 1000 * MB else f"{size // MB} MB"


def _rate_row(area: str, label: str, ours: Measure, floor: Measure) -> Row:
    ratio = ours.mb_per_s / floor.mb_per_s
    return Row(
        area,
        f"{label}: MB/s (records/s)",
        f"{ours.mb_per_s:.1f} ({ours.records_per_s:,.0f})",
        f"{floor.mb_per_s:.1f} ({floor.records_per_s:,.0f}) line copy",
        f"{ratio:.2f}x",
        f">= {TARGET_RATIO}x line copy",
        ratio >= TARGET_RATIO,
    )


def _peak_row(area: str, label: str, ours: Measure, smallest: Measure | None, floor: Measure) -> Row:
    flat = smallest is None or ours.peak_mb <= smallest.peak_mb + PEAK_NOISE_MB
    baseline = f"{floor.peak_mb:.0f} line copy" + ("" if smallest is None else f", {smallest.peak_mb:.0f} smallest")
    return Row(
        area,
        f"{label}: peak RSS (MB)",
        f"{ours.peak_mb:.0f}",
        baseline,
        f"{ours.peak_mb - floor.peak_mb:+.0f} MB",
        f"<= {TARGET_PEAK_MB:.0f} MB, flat",
        ours.peak_mb <= TARGET_PEAK_MB and flat,
    )


def _size_rows(root: Path, size: int, first: dict[str, Measure], last: dict[str, Measure]) -> list[Row]:
    """Converter and parser rows of one input size; `first` keeps the smallest size's measures, `last` this one's."""
    label = _label(size)
    inbox = root / BUCKET / SOURCE_KEY
    inbox.parent.mkdir(parents=True, exist_ok=True)
    write_prompts(inbox, size)
    copy_in, _ = fastest("copy", root=str(root), sources=[str(inbox)])
    convert, prepared = measure("prepare", root=str(root))
    write_job_outputs(root, prepared)
    copy_out, _ = fastest("copy", root=str(root), sources=[str(path) for path in output_files(root)])
    parse, _ = measure("collect", root=str(root), prepared=prepared)
    first.setdefault("convert", convert)
    first.setdefault("parse", parse)
    last.update(convert=convert, parse=parse)
    rows = [
        _rate_row("converter", label, convert, copy_in),
        _peak_row("converter", label, convert, None if first["convert"] is convert else first["convert"], copy_in),
        _rate_row("parser", f"{label} prompts' output ({_label(copy_out.bytes)})", parse, copy_out),
        _peak_row("parser", label, parse, None if first["parse"] is parse else first["parse"], copy_out),
    ]
    _clear(root)
    return rows


def _timeout_rows(convert: Measure, parse: Measure) -> list[Row]:
    """How long 1 GB of prompts takes to prepare and to collect, scaled linearly from a measured file (per source
    byte: collect reads that file's job output), beside the timeout prepare and collect share."""
    from infra.constructs.batch_pipeline import LONG_TASK_TIMEOUT

    timeout = LONG_TASK_TIMEOUT.to_seconds()
    rows = []
    for area, done, measured in (("converter", "prepared", convert), ("parser", "collected", parse)):
        seconds = measured.seconds * 1000 * MB / convert.bytes
        rows.append(
            Row(
                area,
                f"1 GB of prompts {done}: s (scaled from the {convert.bytes / MB:,.0f} MB file)",
                f"{seconds:.0f}",
                f"{timeout:.0f} s function timeout",
                f"{seconds / timeout:.2f}x",
                f"<= {TIMEOUT_SHARE}x timeout",
                seconds <= TIMEOUT_SHARE * timeout,
            )
        )
    return rows


def _join_row(root: Path, records: int) -> Row:
    """One job's output of `records` records, parsed and joined (collect), beside its line copy."""
    inbox = root / BUCKET / SOURCE_KEY
    inbox.parent.mkdir(parents=True, exist_ok=True)
    lines = 0
    size = 600 * records
    while lines < records:  # the file size that gives exactly `records` prompts, found by growing it
        lines = write_prompts(inbox, size)
        size = int(size * records / lines) + 1000
    _, prepared = measure("prepare", root=str(root))
    write_job_outputs(root, prepared)
    copy_out, _ = fastest("copy", root=str(root), sources=[str(path) for path in output_files(root)])
    # Short enough to take the fastest of a few as well (collect rewrites the same keys each time).
    parse, _ = fastest("collect", root=str(root), prepared=prepared)
    ratio = parse.mb_per_s / copy_out.mb_per_s
    _clear(root)
    return Row(
        "parser",
        f"{prepared['recordCount']:,}-record job output joined: records/s",
        f"{parse.records_per_s:,.0f}",
        f"{copy_out.records_per_s:,.0f} line copy",
        f"{ratio:.2f}x",
        f">= {TARGET_RATIO}x line copy",
        ratio >= TARGET_RATIO,
    )


def _plan_row(root: Path) -> Row:
    """The planner on 1,000,000 prompts, beside the time a line copy of them takes (at a 20 MB file's rate)."""
    inbox = root / "plan.jsonl"
    write_prompts(inbox, 20 * MB)
    copied, _ = measure("copy", root=str(root), sources=[str(inbox)])
    planned, extra = measure("plan", root=str(root), prompts=PLAN_PROMPTS, record_bytes=1000)
    copy_seconds = PLAN_PROMPTS / copied.records_per_s
    return Row(
        "planner",
        f"plan {PLAN_PROMPTS:,} prompts ({extra['shards']} shards): ms",
        f"{planned.seconds * 1000:.2f}",
        f"{copy_seconds * 1000:,.0f} line copy of them",
        f"{planned.seconds / copy_seconds:.5f}x",
        "-",
        None,
    )


def _clear(root: Path) -> None:
    for child in root.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def rows(*, quick: bool) -> list[Row]:
    """Converter, parser and planner rows (quick: ~1 and ~5 MB files and a 5,000-record join)."""
    sizes = QUICK_SIZES if quick else FULL_SIZES
    first: dict[str, Measure] = {}
    last: dict[str, Measure] = {}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as directory:
        root = Path(directory)
        measured: list[Row] = []
        for size in sizes:
            measured.extend(_size_rows(root, size, first, last))
        measured.extend(_timeout_rows(last["convert"], last["parse"]))
        measured.append(_join_row(root, QUICK_JOIN_RECORDS if quick else JOIN_RECORDS))
        measured.append(_plan_row(root))
    return measured


if __name__ == "__main__":  # `python -m bench.batch <step> <json args>`: one JSON report line
    print(json.dumps(_child(sys.argv[1], json.loads(sys.argv[2]))))
