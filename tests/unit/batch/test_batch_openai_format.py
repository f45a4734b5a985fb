"""OpenAI's batch format: input lines (`custom_id`, `method`, `url`, `body`) become records, every bad field is
rejected by its name, a custom_id is taken once per file in bounded memory; results become OpenAI's batch
output objects (a body the openai SDK validates as a ChatCompletion, or an error)."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from batch.converter import Accepted, Item, Options, Rejected, convert
from batch.names import record_id
from batch.records import MAX_CUSTOM_IDS, CustomIds, IdEntry, InvalidPrompt, Rejection
from batch.results import OpenAIBatchOutput, Result, ResultError, Usage

MODEL = "openai.gpt-oss-120b-1:0"
OPTIONS = Options(model_id=MODEL, default_max_tokens=4096, max_record_bytes=4096)
RUN = "requests-0123456789abcdef01234567"
CREATED = 1_763_751_000


def _line(custom_id: Any = "req-1", **changes: Any) -> dict[str, Any]:
    body = {"model": "gpt-oss-120b", "messages": [{"role": "user", "content": "Hello?"}], "max_tokens": 100}
    line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}
    line.update(changes)
    return line


def _convert(*lines: dict[str, Any] | str, key: str = "inbox/requests.jsonl") -> list[Item]:
    if key.endswith(".json"):
        data = json.dumps(list(lines)).encode()
    else:
        data = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines).encode()
    return list(convert(key, [data[i : i + 7] for i in range(0, len(data), 7)], OPTIONS))


def _rejection(line: dict[str, Any]) -> Rejection:
    [item] = _convert(line)
    assert isinstance(item, Rejected), item
    return item.rejection


def test_an_openai_batch_line_becomes_a_record_with_its_custom_id() -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hello?"}],
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "reasoning_effort": "low",
    }
    [item] = _convert(_line(body=body))
    assert isinstance(item, Accepted)
    assert json.loads(item.line) == {
        "recordId": record_id(1),
        "modelInput": {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello?"}],
            "max_completion_tokens": 300,
            "temperature": 0.5,
            "reasoning_effort": "low",
        },
    }
    assert item.entry == IdEntry(recordId=record_id(1), id="req-1", line=1)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"method": "GET"}, "method: only POST is supported, got 'GET'"),
        ({"url": "/v1/embeddings"}, "url: only /v1/chat/completions is supported, got '/v1/embeddings'"),
        ({"url": 7}, "url: Input should be a valid string"),
        ({"metadata": {"a": "b"}}, "metadata: Extra inputs are not permitted"),
        ({"id": "mine"}, "id: Extra inputs are not permitted"),
        ({"body": None}, "body: Input should be a valid dictionary or instance of ChatBody"),
        ({"custom_id": 42}, "custom_id: Input should be a valid string"),
        ({"custom_id": ""}, "custom_id: String should have at least 1 character"),
        ({"custom_id": "x" * 65}, "custom_id: String should have at most 64 characters"),
    ],
)
def test_each_bad_top_level_field_is_rejected_by_its_name(changes: dict[str, Any], reason: str) -> None:
    assert _rejection(_line(**changes)).reason == reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"id": "x"}, "body.id: Extra inputs are not permitted"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "body.messages.0.role: Input should be"),
        ({"temperature": 3}, "body.temperature: Input should be less than or equal to 2"),
        ({"tools": []}, "body.tools: Extra inputs are not permitted"),
        ({"model": "gpt-4o"}, f"model 'gpt-4o' is not the model of this pipeline ({MODEL})"),
        ({"messages": [{"role": "user", "content": " "}]}, "empty prompt"),
    ],
)
def test_the_body_follows_the_rules_of_a_chat_body_and_names_its_fields(body: dict[str, Any], reason: str) -> None:
    line = _line()
    rejection = _rejection({**line, "body": {**line["body"], **body}})
    assert rejection.reason.startswith(reason)
    assert rejection.id == "req-1"  # the custom_id labels the rejection


def test_missing_fields_are_named() -> None:
    rejection = _rejection({"custom_id": "a", "body": _line()["body"]})
    assert rejection.reason == "method: Field required; url: Field required"
    assert _rejection({"method": "POST", "url": "/v1/chat/completions", "body": {}}).reason.startswith(
        "custom_id: Field required; body.messages: Field required"
    )


def test_a_64_character_custom_id_is_accepted_and_a_65_character_one_is_not() -> None:
    accepted, rejected = _convert(_line("a" * 64), _line("b" * 65))
    assert isinstance(accepted, Accepted)
    assert accepted.entry.id == "a" * 64
    assert isinstance(rejected, Rejected)
    assert rejected.rejection.reason == "custom_id: String should have at most 64 characters"
    assert rejected.rejection.id is None  # not a usable id


@pytest.mark.parametrize("key", ["inbox/requests.jsonl", "inbox/requests.json"])
def test_a_duplicate_custom_id_is_rejected_naming_the_line_that_gave_it_first(key: str) -> None:
    items = _convert(
        _line("a"),
        _line("b", url="/v1/responses"),  # rejected, yet its custom_id is taken
        _line("c"),
        _line("a"),
        _line("b"),
        {"prompt": "no custom_id", "id": "a"},  # our own shapes' ids are not custom_ids
        key=key,
    )
    outcomes = [item.entry.id if isinstance(item, Accepted) else item.rejection for item in items]
    assert outcomes == [
        "a",
        Rejection(line=2, reason="url: only /v1/chat/completions is supported, got '/v1/responses'", id="b"),
        "c",
        Rejection(line=4, reason="custom_id 'a' duplicates line 1", id="a"),
        Rejection(line=5, reason="custom_id 'b' duplicates line 2", id="b"),
        "a",
    ]


def test_custom_ids_are_counted_per_file() -> None:
    assert all(isinstance(item, Accepted) for item in _convert(_line("a")) + _convert(_line("a")))


def test_past_the_limit_a_custom_id_is_rejected_and_an_earlier_one_is_still_a_duplicate() -> None:
    ids = CustomIds(limit=2)
    ids.claim("a", 1)
    ids.claim("b", 2)
    with pytest.raises(InvalidPrompt, match="more than 2 custom_ids in one file"):
        ids.claim("c", 3)
    with pytest.raises(InvalidPrompt, match="custom_id 'a' duplicates line 1"):
        ids.claim("a", 4)


def test_the_custom_ids_of_a_file_stay_within_their_memory_bound() -> None:
    ids = CustomIds()
    tracemalloc.start()
    try:
        for number in range(MAX_CUSTOM_IDS):
            ids.claim(f"request-{number:09d}-{'x' * 40}", number + 1)
        with pytest.raises(InvalidPrompt, match="more than"):
            ids.claim("one more", MAX_CUSTOM_IDS + 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024  # the docstring says ~29 MB; prepare's whole budget is 128 MB


# --- OpenAI batch output objects ---------------------------------------------------------------------------

FORM = OpenAIBatchOutput(run_id=RUN, model=MODEL, created=CREATED, with_reasoning=True)


def _result(line: int = 1, **fields: Any) -> Result:
    entry = IdEntry(recordId=record_id(line), id=f"req-{line}", line=line)
    values: dict[str, Any] = {
        "status": "ok",
        "answer": "Hi there.",
        "reasoning": "Greet back.",
        "finish_reason": "stop",
        "usage": Usage(5, 7, 12),
    }
    return Result(entry=entry, source_key="inbox/requests.jsonl", **(values | fields))


def test_an_answer_is_an_output_object_whose_body_is_a_chat_completion() -> None:
    line = FORM.result(_result())
    assert line["id"].startswith("batch_req_")
    assert (line["custom_id"], line["error"]) == ("req-1", None)
    assert line["response"]["status_code"] == 200
    assert line["response"]["request_id"] == f"{RUN}/{record_id(1)}"
    completion = ChatCompletion.model_validate(line["response"]["body"])
    assert completion.id.startswith("chatcmpl-")
    assert (completion.object, completion.created, completion.model) == ("chat.completion", CREATED, MODEL)
    [choice] = completion.choices
    assert (choice.index, choice.finish_reason) == (0, "stop")
    assert (choice.message.role, choice.message.content) == ("assistant", "Hi there.")
    assert line["response"]["body"]["choices"][0]["message"]["reasoning_content"] == "Greet back."
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
    }


def test_reasoning_only_when_asked_for_and_never_after_a_guardrail() -> None:
    without = OpenAIBatchOutput(run_id=RUN, model=MODEL, created=CREATED, with_reasoning=False)
    assert "reasoning_content" not in without.result(_result())["response"]["body"]["choices"][0]["message"]
    guarded = FORM.result(_result().guarded("Sorry, I can't help with that."))
    choice = ChatCompletion.model_validate(guarded["response"]["body"]).choices[0]
    assert (choice.finish_reason, choice.message.content) == ("content_filter", "Sorry, I can't help with that.")
    assert "reasoning_content" not in guarded["response"]["body"]["choices"][0]["message"]


def test_failures_and_rejections_are_error_objects() -> None:
    failed = FORM.result(_result(2, status="error", answer=None, error=ResultError("400", "Malformed input")))
    missing = FORM.result(_result(3, status="missing", answer=None, error=ResultError("JobExpired", "expired")))
    rejected = FORM.rejection(Rejection(line=4, reason="custom_id 'req-1' duplicates line 1", id="req-1"))
    whole_file = FORM.rejection(Rejection(line=0, reason="unsupported file type .pdf"))
    assert failed | {"id": None} == {
        "id": None,
        "custom_id": "req-2",
        "response": None,
        "error": {"code": "400", "message": "Malformed input"},
    }
    assert missing["error"] == {"code": "JobExpired", "message": "expired"}
    assert rejected["custom_id"] == "req-1"
    assert rejected["error"] == {"code": "invalid_request", "message": "line 4: custom_id 'req-1' duplicates line 1"}
    assert (whole_file["custom_id"], whole_file["response"]) == (None, None)
    ids = [line["id"] for line in (failed, missing, rejected, whole_file, FORM.result(_result()))]
    assert len(set(ids)) == len(ids)
    assert all(identifier.startswith("batch_req_") for identifier in ids)


def test_ids_are_stable_per_run_and_record_and_differ_between_runs() -> None:
    other = OpenAIBatchOutput(
        run_id="other-0123456789abcdef01234567", model=MODEL, created=CREATED, with_reasoning=True
    )
    assert FORM.result(_result()) == FORM.result(_result())
    assert FORM.result(_result())["id"] != other.result(_result())["id"]
