"""The batch functions' one Bedrock runtime gateway (on-demand Converse and ApplyGuardrail over answers)."""

from __future__ import annotations

from functools import cache

from batch.settings import BatchSettings
from shared.converse import ConverseGateway
from shared.settings import load_settings


@cache
def gateway() -> ConverseGateway:
    """The container's Converse gateway, configured from the environment."""
    return ConverseGateway(max_attempts=load_settings(BatchSettings).BEDROCK_MAX_ATTEMPTS)
