"""CDK context for the offline runs of the tests and the bench: small quotas, so a few prompts go far."""

from __future__ import annotations

import json
from collections.abc import Mapping

# Small quotas so that a few dozen prompts exercise every path (5..20 records per job, 20 kB per file).
SMALL_QUOTAS: Mapping[str, int] = {
    "min_records_per_job": 5,
    "max_records_per_job": 20,
    "max_records_per_file": 20,
    "max_file_bytes": 20_000,
    "max_job_bytes": 100_000,
    "max_concurrent_jobs": 2,
}


def small_run_context(stage: str) -> dict[str, str]:
    """CDK context of a batch stack whose runs take every path with a few dozen prompts (tests, bench).

    SMALL_QUOTAS, and hourly status checks of a 24 h job: a lap limit of 30, and a run is overdue at the
    second check.
    """
    return {
        "stage": stage,
        "batchQuotas": json.dumps(SMALL_QUOTAS),
        "batchPollIntervalSeconds": "3600",
        "batchJobTimeoutHours": "24",
        "batchExpectedRunHours": "2",
        # moto has no Service Quotas for bedrock.
        "batchReadServiceQuotas": "false",
    }
