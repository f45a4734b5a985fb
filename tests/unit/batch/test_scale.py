"""Row 20 at scale: a 200,000-prompt file, generated as a stream, through the converter, the planner and the
output parser, as prepare and collect use them, with peak memory under a fixed bound and every prompt
accounted for exactly once.

The stream is never held: the converter's records go to a spool file (as prepare writes `work/`), only
their counts and sizes stay in memory; the planner splits them into shards; each shard's id map is read
back from the spool and joined with a generated, reordered Bedrock output (some records answered with an
error, some missing, one duplicated, one unknown, a truncated last line), as collect does per shard.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from itertools import chain, islice
from pathlib import Path

import pytest

from batch.converter import Accepted, Options, Rejected, convert
from batch.join import IdMap, id_map, join, leftovers
from batch.jsonl import iter_lines
from batch.planner import plan
from batch.quotas import Quotas, QuotaValue
from batch.records import IdEntry
from batch.results import ResultError, Tally

PROMPTS = 200_000
MODEL = "openai.gpt-oss-120b-1:0"
MEMORY_BOUND = 64 * 1024 * 1024
CHUNK = 1024 * 1024
INVALID_EVERY = 10_007  # these lines are not prompts: they must end up rejected, not lost
ERROR_EVERY = 997  # these records are answered with an error line
MISSING_EVERY = 1_009  # these records are absent from the output
MISSING = ResultError("NotInOutput", "absent")
SOURCE = "inbox/scale.jsonl"


def quotas() -> Quotas:
    def value(number: int) -> QuotaValue:
        return QuotaValue(value=number, source="settings")

    # Small enough that the byte limit, not the record limit, decides the number of shards.
    return Quotas(
        min_records_per_job=value(100),
        max_records_per_job=value(50_000),
        max_records_per_file=value(50_000),
        max_file_bytes=value(2_000_000),
        max_job_bytes=value(5_000_000),
        max_concurrent_jobs=value(10),
    )


def prompt_file() -> Iterator[bytes]:
    """The 200,000-line prompt file in 1 MiB chunks, made on the fly."""
    chunk = bytearray()
    for number in range(1, PROMPTS + 1):
        if number % INVALID_EVERY == 0:
            chunk += b'{"prompt": 42}\n'
        else:
            chunk += b'{"id": "q%d", "prompt": "What is %d squared?"}\n' % (number, number)
        if len(chunk) >= CHUNK:
            yield bytes(chunk)
            chunk.clear()
    yield bytes(chunk)


def output_lines(entries: IdMap) -> Iterator[bytes]:
    """What a Bedrock job writes for one shard: reordered, with errors, gaps, a duplicate, an unknown id and a
    truncated last line (the whole output in memory is one shard's, as collect reads one file at a time)."""
    ids = list(entries)
    order = ids[1::2] + ids[0::2]  # a reordering: results are joined on recordId, never on position
    for record_id in order:
        _, line = entries[record_id]
        if line % MISSING_EVERY == 0:
            continue
        if line % ERROR_EVERY == 0:
            yield b'{"recordId":"%s","modelInput":{},"error":{"errorCode":400,"errorMessage":"bad"}}\n' % (
                record_id.encode()
            )
        else:
            yield (
                b'{"recordId":"%s","modelInput":{},"modelOutput":{"choices":[{"index":0,"message":{"role":'
                b'"assistant","content":"<reasoning>r</reasoning>%d"},"finish_reason":"stop"}],"usage":'
                b'{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}}\n' % (record_id.encode(), line * line)
            )
    yield b'{"recordId":"%s","modelInput":{},"error":{"errorCode":500,"errorMessage":"again"}}\n' % ids[0].encode()
    yield b'{"recordId":"UNKNOWN","modelInput":{},"error":{"errorCode":500,"errorMessage":"who"}}\n'
    yield b'{"recordId":"' + ids[-1].encode()[:3]  # the job was cut off mid-line


@pytest.mark.row(20, 23)
def test_a_200k_prompt_file_streams_through_convert_plan_and_parse_in_bounded_memory(
    tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    options = Options(model_id=MODEL, default_max_tokens=4096, max_record_bytes=64 * 1024)
    spool = tmp_path / "ids.jsonl"
    accounted = bytearray(PROMPTS + 1)  # per source line: how many outcomes it got (must end up exactly 1)
    records = total_bytes = largest = rejected = 0
    counts = {"ok": 0, "error": 0, "missing": 0, "duplicates": 0, "unknown": 0, "unreadable": 0}

    tracemalloc.start()
    try:
        # Pass 1 (prepare): convert the stream; records leave memory at once.
        with spool.open("wb") as ids:
            for item in convert(SOURCE, prompt_file(), options):
                if isinstance(item, Accepted):
                    ids.write(item.entry.model_dump_json().encode() + b"\n")
                    records += 1
                    total_bytes += len(item.line)
                    largest = max(largest, len(item.line))
                else:
                    assert isinstance(item, Rejected)
                    assert item.rejection.line is not None
                    accounted[item.rejection.line] += 1
                    rejected += 1
        chosen = plan(records, total_bytes, largest, quotas())
        assert chosen.path == "batch"
        # Pass 2 (collect), shard by shard: its id map from the spool, joined with its output.
        with spool.open("rb") as ids:
            for shard in chosen.shards():
                assert shard.count * largest <= quotas().max_file_bytes.value
                entries = id_map(IdEntry.model_validate_json(line) for line in islice(ids, shard.count))
                assert len(entries) == shard.count
                tally = Tally()
                frames = iter_lines(output_lines(entries), max_bytes=64 * 1024)
                found = join(entries, frames, source_key=SOURCE, tally=tally)
                for result in chain(found, leftovers(entries, source_key=SOURCE, missing=MISSING, tally=tally)):
                    tally.count(result)
                    accounted[result.entry.line] += 1
                for name in counts:
                    counts[name] += getattr(tally, name)
            assert ids.read() == b""  # the shards cover every record
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    shards = len(chosen.shard_sizes)
    for name, value in {"records": records, "rejected": rejected, "shards": shards, "peak_bytes": peak}.items():
        record_property(name, value)
    invalid = PROMPTS // INVALID_EVERY
    assert (records, rejected) == (PROMPTS - invalid, invalid)
    assert accounted[0] == 0
    assert accounted[1:] == b"\x01" * PROMPTS  # every line of the file: exactly one result or one rejection
    assert counts["ok"] + counts["error"] + counts["missing"] == records
    assert counts["missing"] > 0
    assert counts["error"] > 0
    assert counts["duplicates"] == counts["unknown"] == counts["unreadable"] == len(chosen.shard_sizes)
    assert peak < MEMORY_BOUND, f"peak {peak} bytes"


def test_the_generated_file_is_what_the_test_says() -> None:
    head = b"".join(islice(prompt_file(), 1)).split(b"\n", 2)[:2]
    assert [json.loads(line) for line in head] == [
        {"id": "q1", "prompt": "What is 1 squared?"},
        {"id": "q2", "prompt": "What is 2 squared?"},
    ]
