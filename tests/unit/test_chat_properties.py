"""Property tests of the chat request path: whatever body arrives, validation and translation raise only the
project's typed errors (pydantic's ValidationError from the request model, ChatError from translation),
and whatever they accept is a Converse request botocore's service model accepts."""

from __future__ import annotations

from typing import Any

import botocore.session
import pytest
from botocore.model import StructureShape
from botocore.validate import validate_parameters
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from chat.errors import ChatError
from chat.models import ChatCompletionRequest
from chat.settings import ChatSettings
from chat.translate import resolve_model, to_converse
from tests.bedrock_fakes import CHAT_ENVIRONMENT, GPT_OSS_20B

_SHAPE = botocore.session.get_session().get_service_model("bedrock-runtime").operation_model("Converse").input_shape
assert isinstance(_SHAPE, StructureShape)
CONVERSE_INPUT: StructureShape = _SHAPE
SETTINGS = ChatSettings.model_validate(CHAT_ENVIRONMENT)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)

# Bodies shaped like chat requests: every field mostly valid, sometimes a near miss or junk, so that many
# examples get past the request model and exercise the translation, and the rest probe its refusals.
text = st.text(max_size=30)


def mostly(valid: st.SearchStrategy[Any], invalid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` about nine times in ten."""
    return st.integers(0, 9).flatmap(lambda roll: invalid if roll == 0 else valid)


parts = st.lists(
    st.fixed_dictionaries(
        {"type": mostly(st.just("text"), st.sampled_from(["image_url", "refusal", "x"])), "text": text}
    ),
    min_size=1,
    max_size=3,
)
content = mostly(text | parts, st.none() | json_values)
turn = st.fixed_dictionaries(
    {"role": mostly(st.sampled_from(["user", "assistant", "system", "developer"]), st.sampled_from(["tool", "robot"]))},
    optional={"content": content},
)
messages = mostly(
    st.tuples(st.fixed_dictionaries({"role": st.just("user"), "content": content}), st.lists(turn, max_size=4)).map(
        lambda pair: [pair[0], *pair[1]]
    ),
    st.lists(turn, max_size=3),
)
chat_bodies = st.fixed_dictionaries(
    {
        "model": mostly(st.sampled_from(["gpt-oss-20b", GPT_OSS_20B, "gpt-oss-120b"]), st.sampled_from(["gpt-4o", ""])),
        "messages": messages,
    },
    optional={
        "max_tokens": mostly(st.integers(1, 8192), st.none() | st.integers(-5, 0) | st.integers(8193) | text),
        "max_completion_tokens": mostly(st.integers(1, 8192), st.integers(-5, 0) | st.floats(allow_nan=False)),
        "temperature": mostly(st.floats(0, 1), st.floats(allow_nan=False) | text),
        "top_p": mostly(st.floats(0, 1), st.floats(allow_nan=False)),
        "n": mostly(st.just(1), st.integers()),
        "stop": mostly(st.none() | text | st.lists(text, max_size=4), st.lists(text, min_size=5)),
        "stream": mostly(st.booleans(), json_scalars),
        "reasoning_effort": mostly(st.sampled_from(["low", "medium", "high"]), text),
        "include_reasoning": st.booleans(),
        "user": text,
        "metadata": mostly(st.dictionaries(text, text, max_size=4), st.dictionaries(text, json_values, max_size=20)),
        "response_format": st.sampled_from([{"type": "text"}, {"type": "json_object"}, {"type": "xml"}]),
        "tools": st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.just("function"),
                    "function": st.fixed_dictionaries(
                        {"name": st.from_regex(r"[a-z_]{1,10}", fullmatch=True)}, optional={"parameters": json_values}
                    ),
                }
            ),
            max_size=2,
        ),
        "tool_choice": mostly(st.sampled_from(["auto", "none"]), st.sampled_from(["required", "sometimes"])),
    },
)


def _translate(body: Any) -> dict[str, Any] | None:
    """The handler's path for one body: None when it is refused with one of the project's typed errors."""
    try:
        request = ChatCompletionRequest.model_validate(body)
    except ValidationError:
        return None
    try:
        model_id = resolve_model(request.model, SETTINGS)
        return to_converse(request, SETTINGS, model_id=model_id, caller="arn:aws:sts::123456789012:assumed-role/r/s")
    except ChatError as error:
        assert 400 <= error.status < 500
        return None


@given(body=json_values)
def test_any_json_body_is_refused_with_a_typed_error_or_translated(body: Any) -> None:
    translated = _translate(body)
    if translated is not None:
        validate_parameters(translated, CONVERSE_INPUT)


@given(body=chat_bodies)
def test_any_chat_shaped_body_is_refused_with_a_typed_error_or_a_valid_converse_request(body: dict[str, Any]) -> None:
    translated = _translate(body)
    if translated is not None:
        validate_parameters(translated, CONVERSE_INPUT)
        assert translated["inferenceConfig"]["maxTokens"] >= 1
        assert translated["guardrailConfig"]["guardrailIdentifier"] == SETTINGS.GUARDRAIL_ID


@pytest.mark.parametrize("body", [{"model": "gpt-oss-20b", "messages": [{"role": "user", "content": "Hi"}]}])
def test_the_strategy_s_path_does_translate_a_valid_body(body: dict[str, Any]) -> None:
    # Guards the property above from passing only because everything is refused.
    assert _translate(body) is not None
