"""The batch functions' environment, as set by infra/constructs/batch_pipeline.py."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class BatchSettings(BaseModel):
    """Environment variables of the batch pipeline's functions; names are the variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    MODEL_ID: str = "openai.gpt-oss-120b-1:0"
    DEFAULT_MAX_COMPLETION_TOKENS: Annotated[int, Field(ge=1)] = 4096
    # Per-model batch quotas: the defaults used when Service Quotas cannot be read.
    MIN_RECORDS_PER_JOB: Annotated[int, Field(ge=1)] = 100
    MAX_RECORDS_PER_JOB: Annotated[int, Field(ge=1)] = 50_000
    MAX_RECORDS_PER_FILE: Annotated[int, Field(ge=1)] = 50_000
    MAX_FILE_BYTES: Annotated[int, Field(ge=1)] = 1_000_000_000
    MAX_JOB_BYTES: Annotated[int, Field(ge=1)] = 5_000_000_000
    MAX_CONCURRENT_JOBS: Annotated[int, Field(ge=1)] = 10
    # The state machine's timeout covers this many jobs per run (waves of MAX_CONCURRENT_JOBS): a file that
    # needs more is refused with a reason rather than left to time out half done.
    MAX_JOBS_PER_RUN: Annotated[int, Field(ge=1)] = 30
    READ_SERVICE_QUOTAS: bool = False
    ON_DEMAND_CONCURRENCY: Annotated[int, Field(ge=1)] = 4
    RETURN_REASONING: bool = True
    APPLY_GUARDRAIL: bool = False
    GUARDRAIL_ID: str = ""
    GUARDRAIL_VERSION: str = ""
    STATE_MACHINE_ARN: str = ""
    # Every job name starts with it (`<stage>.`): the job-state event rule matches this pipeline's jobs by it.
    JOB_NAME_PREFIX: str = ""
    # The pipeline bucket (job_events reads the task tokens the shards store there).
    BUCKET_NAME: str = ""
    # Added by the batch functions (defaults only; infra may leave them unset).
    # Largest prompt line / item / row / .txt file, and largest encoded record: bounds memory per record.
    MAX_RECORD_BYTES: Annotated[int, Field(ge=1024)] = 1_048_576
    # Largest prompt file prepare accepts (it must convert the file within one Lambda run).
    MAX_SOURCE_BYTES: Annotated[int, Field(ge=1)] = 2_000_000_000
    # Time budget of one on-demand Converse call (retries included).
    ON_DEMAND_RECORD_TIMEOUT_SECONDS: Annotated[int, Field(ge=5, le=900)] = 300
    # Attempts per Converse / ApplyGuardrail call (the gateway retries only while time remains).
    BEDROCK_MAX_ATTEMPTS: Annotated[int, Field(ge=1, le=5)] = 3
