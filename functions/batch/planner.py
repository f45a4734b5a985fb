"""How a run's records are split into Bedrock batch jobs (pure).

One job reads one input file, so every shard must satisfy, at once: records per job, records per file,
file size and job size. Shards are balanced (sizes differ by at most one record), never padded, and
never below the minimum records per job. Shard bytes are bounded safely without per-record sizes: a
shard of `s` records holds at most `min(total_bytes, s * max_record_bytes)` bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from batch.quotas import Quotas

Path = Literal["batch", "on_demand", "empty"]
# Shard folders are numbered with five digits (names.shard_label).
MAX_SHARDS = 100_000


class InfeasiblePlan(Exception):
    """The records cannot be split into jobs that meet every quota (e.g. huge records, a high minimum)."""


class ShardRange(BaseModel):
    """Shard `index` holds records `start` .. `start + count - 1` (0-based, in source order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    start: int
    count: int


class Plan(BaseModel):
    """The path a run takes and, for batch, the size of each shard."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    shard_sizes: tuple[Annotated[int, Field(ge=1)], ...] = ()
    reason: str

    def shards(self) -> Iterator[ShardRange]:
        """The shards in order, with where each one starts."""
        start = 0
        for index, count in enumerate(self.shard_sizes):
            yield ShardRange(index=index, start=start, count=count)
            start += count


def plan(
    record_count: int, total_bytes: int, max_record_bytes: int, quotas: Quotas, *, max_jobs: int = MAX_SHARDS
) -> Plan:
    """Choose the path and the smallest number of balanced shards that respects every quota.

    `total_bytes` is the size of all records as written to the input files, `max_record_bytes` the
    largest single record line, `max_jobs` the most jobs one run may hold.

    Raises:
        InfeasiblePlan: no shard count meets the byte limits without going below the minimum, or the
            file needs more jobs than one run may hold.
        ValueError: the counts are inconsistent (negative, or a record larger than the total).
    """
    _check(record_count, total_bytes, max_record_bytes)
    minimum = quotas.min_records_per_job.value
    if record_count == 0:
        return Plan(path="empty", reason="no valid prompt in the file")
    if record_count < minimum:
        return Plan(
            path="on_demand",
            reason=f"{record_count} record(s), below the batch minimum of {minimum}: run on demand",
        )
    per_shard = min(quotas.max_records_per_job.value, quotas.max_records_per_file.value)
    byte_limit = min(quotas.max_file_bytes.value, quotas.max_job_bytes.value)
    if minimum > per_shard:
        raise InfeasiblePlan(f"the minimum records per job ({minimum}) exceeds the maximum ({per_shard})")
    shards = _ceil(record_count, per_shard)
    if total_bytes > byte_limit:
        fits = byte_limit // max_record_bytes
        if fits == 0:
            raise InfeasiblePlan(f"a record of {max_record_bytes} bytes exceeds the {byte_limit}-byte file limit")
        shards = max(shards, _ceil(record_count, fits))
    if record_count // shards < minimum or shards > MAX_SHARDS:
        raise InfeasiblePlan(
            f"{record_count} records of up to {max_record_bytes} bytes need {shards} shards to stay under "
            f"{byte_limit} bytes per file, which leaves fewer than {minimum} records per job"
        )
    if shards > max_jobs:
        raise InfeasiblePlan(
            f"{record_count} records need {shards} jobs, more than the {max_jobs} one run may hold: "
            "split the file into smaller ones"
        )
    small, extra = divmod(record_count, shards)
    sizes = tuple(small + 1 if index < extra else small for index in range(shards))
    return Plan(
        path="batch",
        shard_sizes=sizes,
        reason=f"{record_count} records in {shards} job(s) of {small}{'-' + str(small + 1) if extra else ''} records",
    )


def _check(record_count: int, total_bytes: int, max_record_bytes: int) -> None:
    if record_count < 0 or total_bytes < 0 or max_record_bytes < 0:
        raise ValueError("counts and sizes cannot be negative")
    if record_count and not 0 < max_record_bytes <= total_bytes:
        raise ValueError("records need a positive size no larger than the total")


def _ceil(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)
