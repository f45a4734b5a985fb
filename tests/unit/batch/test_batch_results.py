"""Batch output parsing: joined on recordId, every prompt exactly once, damage counted not hidden."""

from __future__ import annotations

import json
import random
from itertools import chain
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.join import IdMap, join, leftovers
from batch.jsonl import Frame, iter_lines
from batch.names import record_id
from batch.records import IdEntry
from batch.results import (
    EMPTY_ANSWER_CODE,
    MALFORMED_CODE,
    Result,
    ResultError,
    Tally,
    Usage,
    missing_reason,
    parse_line,
    reconcile,
    run_status,
)

MISSING = ResultError("NotInOutput", "absent")


def _output(rid: str, content: Any = "<reasoning>think</reasoning>Answer", finish: Any = "stop") -> dict[str, Any]:
    return {
        "recordId": rid,
        "modelInput": {"messages": [{"role": "user", "content": "q"}], "max_completion_tokens": 100},
        "modelOutput": {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1754400000,
            "model": "openai.gpt-oss-120b-1:0",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 22, "total_tokens": 33},
            "future_field": {"x": 1},
        },
    }


def _error(rid: str, code: int = 400, message: str = "Malformed input request") -> dict[str, Any]:
    return {"recordId": rid, "modelInput": {}, "error": {"errorCode": code, "errorMessage": message}}


def _bytes(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def _entries(count: int) -> IdMap:
    return {record_id(n): (f"id-{n}", n) for n in range(1, count + 1)}


def _all(entries: IdMap, lines: list[bytes], tally: Tally) -> list[Result]:
    frames = iter_lines([b"\n".join(lines)], max_bytes=10_000)
    found = join(entries, frames, source_key="inbox/p.jsonl", tally=tally)
    results = list(chain(found, leftovers(entries, source_key="inbox/p.jsonl", missing=MISSING, tally=tally)))
    for result in results:
        tally.count(result)
    return results


def test_a_success_line_splits_reasoning_and_keeps_usage_and_finish_reason() -> None:
    line = parse_line(_bytes(_output("R1")))
    assert line is not None
    assert (line.record_id, line.answer, line.reasoning, line.finish_reason) == ("R1", "Answer", "think", "stop")
    assert line.usage == Usage(prompt_tokens=11, completion_tokens=22, total_tokens=33)
    assert line.succeeded and line.error is None


def test_several_reasoning_blocks_and_content_parts() -> None:
    parts = [
        {"type": "text", "text": "<reasoning>a</reasoning><reasoning>b</reasoning>"},
        {"type": "text", "text": "B"},
    ]
    line = parse_line(_bytes(_output("R1", content=parts)))
    assert line is not None
    assert (line.reasoning, line.answer) == ("a\n\nb", "B")


def test_an_error_line_keeps_bedrock_s_code_and_message() -> None:
    line = parse_line(_bytes(_error("R2", 429, "Too many requests")))
    assert line is not None
    assert not line.succeeded
    assert line.error == ResultError("429", "Too many requests")


def test_an_empty_answer_cut_by_the_token_limit_is_an_error() -> None:
    line = parse_line(_bytes(_output("R3", content="<reasoning>long thoughts", finish="length")))
    assert line is not None
    assert line.error is not None
    assert line.error.code == EMPTY_ANSWER_CODE
    assert line.reasoning == "long thoughts"
    stopped = parse_line(_bytes(_output("R3", content="", finish="stop")))
    assert stopped is not None
    assert stopped.error is None
    assert stopped.answer == ""


@pytest.mark.parametrize(
    "value",
    [
        {"recordId": "R4", "modelOutput": {"choices": []}},
        {"recordId": "R4", "modelOutput": {"choices": [{"message": {"content": None}}]}},
        {"recordId": "R4", "modelOutput": {"choices": [{"message": {"content": [1, 2]}}]}},
        {"recordId": "R4", "modelOutput": {"choices": ["x"]}},
        {"recordId": "R4"},
    ],
)
def test_unusable_model_output_is_an_error(value: dict[str, Any]) -> None:
    line = parse_line(_bytes(value))
    assert line is not None
    assert line.error is not None
    assert line.error.code == MALFORMED_CODE


@pytest.mark.parametrize("data", [b'{"recordId": "R5", "modelOutput": {"cho', b"[]", b'{"recordId": 5}', b"\xff"])
def test_unreadable_lines(data: bytes) -> None:
    assert parse_line(data) is None


@pytest.mark.row(23)
def test_join_on_record_id_with_damage_counted() -> None:
    entries = _entries(6)
    lines = [
        _bytes(_output(record_id(3))),
        _bytes(_error(record_id(1))),
        _bytes(_output(record_id(3), content="second copy")),  # duplicate: ignored
        _bytes(_output("R99999999999")),  # not in the map
        b"",
        _bytes(_output(record_id(5), content="<reasoning>x", finish="length")),
        _bytes(_output(record_id(6)))[:40],  # truncated last line
    ]
    tally = Tally()
    results = _all(entries, lines, tally)
    by_id = {result.entry.recordId: result for result in results}
    assert [result.entry.recordId for result in results] == [record_id(n) for n in (3, 1, 5, 2, 4, 6)]
    assert by_id[record_id(3)].answer == "Answer"
    assert by_id[record_id(1)].status == "error"
    assert by_id[record_id(5)].status == "error"
    assert {by_id[record_id(n)].status for n in (2, 4, 6)} == {"missing"}
    assert by_id[record_id(2)].error == MISSING
    assert (tally.ok, tally.error, tally.missing) == (1, 2, 3)
    assert (tally.duplicates, tally.unknown, tally.unreadable) == (1, 1, 1)
    assert (tally.success_lines, tally.error_lines) == (4, 1)
    assert (tally.input_tokens, tally.output_tokens) == (22, 44)


def test_a_too_long_output_line_counts_as_unreadable() -> None:
    tally = Tally()
    results = list(join(_entries(1), [Frame(1, b"", too_long=True)], source_key="k", tally=tally))
    assert results == []
    assert tally.unreadable == 1


@given(
    count=st.integers(min_value=0, max_value=40),
    seed=st.integers(),
    answered=st.floats(min_value=0, max_value=1),
    duplicates=st.integers(min_value=0, max_value=5),
    unknown=st.integers(min_value=0, max_value=5),
    truncated=st.booleans(),
)
@settings(max_examples=200)
@pytest.mark.row(23)
def test_every_prompt_exactly_once_whatever_the_output(
    count: int, seed: int, answered: float, duplicates: int, unknown: int, truncated: bool
) -> None:
    rng = random.Random(seed)
    entries = _entries(count)
    answered_ids = [rid for rid in entries if rng.random() < answered]
    lines = [_bytes(_output(rid) if rng.random() < 0.7 else _error(rid)) for rid in answered_ids]
    lines += [_bytes(_output(rng.choice(answered_ids))) for _ in range(duplicates if answered_ids else 0)]
    lines += [_bytes(_output(f"X{n}")) for n in range(unknown)]
    rng.shuffle(lines)
    if truncated:
        lines.append(_bytes(_output(record_id(count + 1)))[:25])
    tally = Tally()
    results = _all(entries, lines, tally)
    assert sorted(result.entry.recordId for result in results) == sorted(entries)
    assert tally.ok + tally.error + tally.missing == count
    assert tally.missing == count - len(answered_ids)
    assert tally.duplicates == (duplicates if answered_ids else 0)
    assert tally.unknown == unknown
    assert tally.unreadable == int(truncated)


@pytest.mark.row(23)
def test_manifest_reconciliation() -> None:
    tally = Tally(success_lines=8, error_lines=1)
    manifest = {
        "totalRecordCount": 10,
        "processedRecordCount": 9,
        "successRecordCount": 8,
        "errorRecordCount": 1,
        "inputTokenCount": 1,
    }
    assert reconcile(manifest, 10, tally) == []
    assert reconcile({**manifest, "successRecordCount": 9, "totalRecordCount": "10"}, 11, tally) == [
        "successRecordCount is 9, the output has 8"
    ]
    assert reconcile(manifest, 11, tally) == ["totalRecordCount is 10, the output has 11"]


@pytest.mark.parametrize(
    ("accepted", "rejected", "ok", "status"),
    [
        (3, 0, 3, "SUCCEEDED"),
        (3, 1, 3, "PARTIAL"),
        (3, 0, 2, "PARTIAL"),
        (3, 0, 0, "FAILED"),
        (0, 4, 0, "FAILED"),
        (0, 0, 0, "FAILED"),
    ],
)
def test_run_status(accepted: int, rejected: int, ok: int, status: str) -> None:
    assert run_status(accepted, rejected, ok) == status


def test_missing_reasons_name_the_job_outcome() -> None:
    assert missing_reason("Failed", "Bad input").message == "the batch job failed: Bad input"
    assert missing_reason("Expired", None).code == "JobExpired"
    assert missing_reason("SubmitFailed", "quota").code == "SubmitFailed"
    assert missing_reason("PollLimit", None).code == "PollLimit"
    assert missing_reason(None, None, "States.Timeout").message.endswith(": States.Timeout")
    assert len(missing_reason("Failed", "x" * 5000).message) == 1000


def test_result_lines_carry_reasoning_only_when_asked() -> None:
    entry = IdEntry(recordId=record_id(4), id="a", line=4)
    result = Result(entry, "inbox/p.csv", "ok", "A", "R", "stop", Usage(1, 2, 3))
    assert result.to_json(with_reasoning=True) == {
        "id": "a",
        "recordId": record_id(4),
        "source": {"key": "inbox/p.csv", "line": 4},
        "status": "ok",
        "answer": "A",
        "reasoning": "R",
        "finish_reason": "stop",
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        "error": None,
    }
    assert "reasoning" not in result.to_json(with_reasoning=False)
    guarded = result.guarded("blocked").to_json(with_reasoning=True)
    assert (guarded["answer"], guarded["reasoning"], guarded["finish_reason"]) == ("blocked", None, "content_filter")
    withheld = result.withheld(ResultError("GuardrailUnavailable", "x")).to_json(with_reasoning=True)
    assert (withheld["status"], withheld["answer"], withheld["reasoning"]) == ("error", None, None)
