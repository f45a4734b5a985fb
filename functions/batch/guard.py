"""The guardrail over batch answers: ApplyGuardrail (source OUTPUT), which Bedrock batch jobs do not apply.

An intervention keeps status ok with finish_reason content_filter and the guardrail's text as the answer (the
reasoning dropped); an answer that could not be checked (no guardrail configured, no time left, the call failed)
is withheld: status error, no answer. On-demand answers already went through Converse with the guardrail and
are not checked twice (collect passes no guard for them).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from batch.results import Result, ResultError
from batch.settings import BatchSettings
from shared.converse import ConverseGateway
from shared.errors import BedrockError

GUARD_CALL_SECONDS = 30.0


class Guard:
    """ApplyGuardrail (source OUTPUT) over batch answers, concurrently, within the function's time."""

    def __init__(self, settings: BatchSettings, converse: ConverseGateway, deadline: float) -> None:
        self.guardrail = (settings.GUARDRAIL_ID, settings.GUARDRAIL_VERSION)
        self.concurrency = settings.ON_DEMAND_CONCURRENCY
        self.with_reasoning = settings.RETURN_REASONING
        self.converse = converse
        self.deadline = deadline
        self.interventions = 0

    def check(self, results: list[Result]) -> list[Result]:
        """The results as they may be shown."""
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._one, results))

    def _one(self, result: Result) -> Result:
        if not all(self.guardrail):
            return result.withheld(ResultError("GuardrailNotConfigured", "APPLY_GUARDRAIL is set without a guardrail"))
        if time.monotonic() + 1 >= self.deadline:
            return result.withheld(ResultError("GuardrailNotApplied", "no time was left to apply the guardrail"))
        texts = [result.answer or ""]
        if self.with_reasoning and result.reasoning:
            texts.append(result.reasoning)
        try:
            verdict = self.converse.apply_guardrail(
                guardrail_id=self.guardrail[0],
                guardrail_version=self.guardrail[1],
                source="OUTPUT",
                texts=texts,
                deadline=min(time.monotonic() + GUARD_CALL_SECONDS, self.deadline),
            )
        except BedrockError as error:
            return result.withheld(
                ResultError("GuardrailUnavailable", f"the guardrail could not be applied ({error.code})")
            )
        if not verdict.intervened:
            return result
        self.interventions += 1
        return result.guarded(verdict.outputs[0].text if verdict.outputs else "")
