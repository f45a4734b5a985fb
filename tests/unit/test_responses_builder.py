"""ResponseBuilder: any answer's events reassemble into exactly the response object they end with.

Answers are generated (reasoning, text, tool calls, every stop reason, any chunking), translated by the one
ChunkTranslator, folded by the builder, and every event is read by the `openai` SDK's own types.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response as SdkResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from chat.responses import ResponseBuilder
from chat.responses_models import ResponsesRequest
from chat.streaming import ChunkTranslator
from shared.converse import StreamEvent
from tests.bedrock_fakes import converse_stream_events

STREAM_EVENT = TypeAdapter[Any](ResponseStreamEvent)
words = st.text(alphabet="abc <>/\n", min_size=1, max_size=12)
calls = st.lists(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["f", "g"]), "input": st.dictionaries(st.sampled_from("xyz"), st.integers())}
    ),
    max_size=2,
)


def fold(events: list[dict[str, Any]], *, reasoning: bool) -> tuple[list[dict[str, Any]], Any]:
    request = ResponsesRequest.model_validate({"model": "m", "input": "q"})
    translator = ChunkTranslator(
        completion_id="chatcmpl-1", created=1, model="m", include_reasoning=reasoning, tools_offered=True
    )
    builder = ResponseBuilder(request, response_id="resp_1", created_at=1, model="m", service_tier="default")
    out = builder.opening()
    for event in events:
        for chunk in translator.feed(StreamEvent.model_validate(event)):
            out += builder.feed(chunk)
    closing, response = builder.finish(translator.completion(), reasoning_tokens=0)
    return out + closing, response


@settings(max_examples=150, deadline=None)
@given(
    text=words,
    reasoning=st.one_of(st.none(), words),
    tool_calls=calls,
    stop=st.sampled_from([None, "max_tokens", "guardrail_intervened"]),
    returned=st.booleans(),
)
def test_the_events_reassemble_into_the_response_they_end_with(
    text: str, reasoning: str | None, tool_calls: list[dict[str, Any]], stop: str | None, returned: bool
) -> None:
    calls_with_ids = [{"toolUseId": f"t{index}", **call} for index, call in enumerate(tool_calls)]
    stream = converse_stream_events(text, reasoning=reasoning, tool_calls=calls_with_ids, stop_reason=stop)
    events, response = fold(stream, reasoning=returned)
    for event in events:
        STREAM_EVENT.validate_python(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert events[-1]["response"] == response.model_dump(mode="json")
    SdkResponse.model_validate(events[-1]["response"])
    done = {event["item"]["id"]: event["item"] for event in events if event["type"] == "response.output_item.done"}
    added = [event["item"]["id"] for event in events if event["type"] == "response.output_item.added"]
    assert added == list(done), "every item added is done, in the same order"
    for item_id, item in done.items():
        pieces = "".join(str(event.get("delta", "")) for event in events if event.get("item_id") == item_id)
        if item["type"] == "function_call":
            assert pieces == item["arguments"]
            json.loads(pieces)
        else:
            assert pieces == "".join(part["text"] for part in item["content"])
    final_items = response.model_dump(mode="json")["output"]
    if stop == "guardrail_intervened":
        # Only the guardrail's message stands: no reasoning, no tool call.
        assert {item["type"] for item in final_items} <= {"message"}
    else:
        assert final_items == list(done.values())
    assert any(item["type"] == "reasoning" for item in final_items) == (
        returned and bool(reasoning) and stop != "guardrail_intervened"
    )
