"""A word-list guardrail in Bedrock's shapes: ApplyGuardrail responses and the guardrail part of Converse(Stream).

The deployed guardrail filters content by category with a model; offline, a configured list of trigger
words stands in for it, so a demo or a test can make it intervene on purpose.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from local.bedrock.shapes import ModelError

LOCAL_GUARDRAIL_ID = "localguardrail"
LOCAL_GUARDRAIL_VERSION = "1"
DEFAULT_TRIGGER_WORDS = ("forbidden",)
# Guardrails bill and count text in units of up to 1,000 characters.
_TEXT_UNIT_CHARACTERS = 1000


@dataclass(frozen=True)
class Verdict:
    """What the guardrail found in some texts: the trigger words matched, and how much text it read."""

    matches: tuple[str, ...]
    characters: int

    @property
    def intervened(self) -> bool:
        """Whether the guardrail blocks the content."""
        return bool(self.matches)


@dataclass(frozen=True)
class WordGuardrail:
    """One guardrail version that blocks any text containing one of its trigger words (whole words, any case)."""

    guardrail_id: str = LOCAL_GUARDRAIL_ID
    guardrail_version: str = LOCAL_GUARDRAIL_VERSION
    trigger_words: tuple[str, ...] = DEFAULT_TRIGGER_WORDS
    blocked_input_message: str = "Sorry, this request was blocked by the content policy."
    blocked_output_message: str = "Sorry, the answer was blocked by the content policy."

    def check(self, texts: Sequence[str]) -> Verdict:
        """Which trigger words occur in the texts."""
        joined = "\n".join(texts)
        found = tuple(
            word for word in self.trigger_words if re.search(rf"(?<!\w){re.escape(word)}(?!\w)", joined, re.IGNORECASE)
        )
        return Verdict(matches=found, characters=sum(len(text) for text in texts))

    def is_version(self, identifier: str, version: str) -> bool:
        """Whether an id (or ARN) and version name this guardrail version."""
        return identifier.rsplit("/", 1)[-1] == self.guardrail_id and version == self.guardrail_version

    def apply(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """An ApplyGuardrail response for an ApplyGuardrail request (with its URI's id and version).

        Raises:
            ModelError: the guardrail version does not exist, or the request is not valid.
        """
        if not self.is_version(str(request.get("guardrailIdentifier")), str(request.get("guardrailVersion"))):
            raise ModelError("ResourceNotFoundException", "The guardrail identifier or version was not found.")
        source = request.get("source")
        if source not in ("INPUT", "OUTPUT"):
            raise ModelError("ValidationException", "source must be INPUT or OUTPUT.")
        texts = [str(block["text"]["text"]) for block in request.get("content", ()) if "text" in block]
        verdict = self.check(texts)
        blocked = self.blocked_input_message if source == "INPUT" else self.blocked_output_message
        return {
            "usage": self.usage(verdict),
            "action": "GUARDRAIL_INTERVENED" if verdict.intervened else "NONE",
            "actionReason": "Guardrail blocked." if verdict.intervened else "No action.",
            "outputs": [{"text": blocked}] if verdict.intervened else [],
            "assessments": [self.assessment(verdict)],
            "guardrailCoverage": self.coverage(verdict),
        }

    def assessment(self, verdict: Verdict) -> dict[str, Any]:
        """A GuardrailAssessment: the word policy's matches and the invocation metrics."""
        assessment: dict[str, Any] = {
            "invocationMetrics": {
                "guardrailProcessingLatency": 1 + verdict.characters // 10_000,
                "usage": self.usage(verdict),
                "guardrailCoverage": self.coverage(verdict),
            }
        }
        if verdict.intervened:
            words = [{"match": word, "action": "BLOCKED", "detected": True} for word in verdict.matches]
            assessment["wordPolicy"] = {"customWords": words, "managedWordLists": []}
        return assessment

    def converse_trace(self, *, input_verdict: Verdict, output_verdict: Verdict | None) -> dict[str, Any]:
        """The `trace.guardrail` of a Converse response."""
        trace: dict[str, Any] = {"inputAssessment": {self.guardrail_id: self.assessment(input_verdict)}}
        if output_verdict is not None:
            trace["outputAssessments"] = {self.guardrail_id: [self.assessment(output_verdict)]}
        if input_verdict.intervened or (output_verdict is not None and output_verdict.intervened):
            trace["actionReason"] = "Guardrail blocked."
        return trace

    def stream_window(self, text: str) -> tuple[int, int]:
        """For a text still being written: how much of it can be judged now, and how much sent once that is clean.

        Judged: all but a last word that may still go on (one not yet followed by whitespace), since more
        letters can make or unmake a trigger word. Sent: the judged text less the last words that a trigger
        phrase of several words could still begin with.
        """
        words = [match.span() for match in re.finditer(r"\S+", text)]
        judged = words.pop()[0] if words and words[-1][1] == len(text) else len(text)
        phrase_words = max((len(word.split()) for word in self.trigger_words), default=1)
        held = words[len(words) - (phrase_words - 1) :] if phrase_words > 1 else []
        return judged, (held[0][0] if held else judged)

    @staticmethod
    def usage(verdict: Verdict) -> dict[str, int]:
        """GuardrailUsage: text units read by the word policy (the only policy emulated)."""
        units = math.ceil(verdict.characters / _TEXT_UNIT_CHARACTERS)
        return {
            "topicPolicyUnits": 0,
            "contentPolicyUnits": 0,
            "wordPolicyUnits": units,
            "sensitiveInformationPolicyUnits": 0,
            "sensitiveInformationPolicyFreeUnits": 0,
            "contextualGroundingPolicyUnits": 0,
        }

    @staticmethod
    def coverage(verdict: Verdict) -> dict[str, Any]:
        """GuardrailCoverage: every character given was guarded."""
        return {"textCharacters": {"guarded": verdict.characters, "total": verdict.characters}}


class StreamGuard:
    """The guardrail over one streamed answer: which text may be sent when, and whether it intervened.

    `sync` (Bedrock's default): text is judged before it is sent, and held back while it could still turn
    out to be (part of) a trigger word, so nothing of the trigger reaches the caller. `async`: each piece is
    sent at once and judged right after, so the piece with the trigger word gets through before the
    intervention (the trade-off Bedrock documents for that mode).
    """

    def __init__(
        self, guardrail: WordGuardrail, *, input_verdict: Verdict, mode: str = "sync", trace: bool = False
    ) -> None:
        if mode not in ("sync", "async"):
            raise ModelError("ValidationException", "streamProcessingMode must be sync or async.")
        self.guardrail = guardrail
        self.input_verdict = input_verdict
        self.mode = mode
        self.output_verdict: Verdict | None = None
        self._trace = trace
        self._answer = ""
        self._sent = 0
        self._judged = -1

    @property
    def blocked(self) -> bool:
        """Whether the guardrail intervened on the answer: nothing more of it may be sent."""
        return self.output_verdict is not None and self.output_verdict.intervened

    def text(self, piece: str) -> str:
        """Take the answer's next piece; give the text to send now (empty while held back, or once blocked)."""
        self._answer += piece
        judged, releasable = self.guardrail.stream_window(self._answer)
        if self.mode == "async":
            release, self._sent = self._answer[self._sent :], len(self._answer)
            self._judge(judged)
            return release
        self._judge(judged)
        if self.blocked:
            return ""
        release, self._sent = self._answer[self._sent : releasable], max(self._sent, releasable)
        return release

    def finish(self) -> str:
        """The answer is complete: judge all of it; give the text still held back (empty if blocked)."""
        self._judge(len(self._answer))
        if self.blocked:
            return ""
        release, self._sent = self._answer[self._sent :], len(self._answer)
        return release

    def trace(self) -> dict[str, Any] | None:
        """The `trace` of the stream's metadata event when the request asked for one, else None."""
        if not self._trace:
            return None
        trace = self.guardrail.converse_trace(input_verdict=self.input_verdict, output_verdict=self.output_verdict)
        return {"guardrail": trace}

    def _judge(self, length: int) -> None:
        if length != self._judged:
            self.output_verdict = self.guardrail.check([self._answer[:length]])
            self._judged = length
