"""Shard planning: the smallest balanced split that respects every quota, never below the minimum."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.planner import InfeasiblePlan, Plan, ShardRange, plan
from batch.quotas import Quotas, QuotaValue

GB = 10**9


def _quotas(
    minimum: int = 100,
    per_job: int = 50_000,
    per_file: int = 50_000,
    file_bytes: int = GB,
    job_bytes: int = 5 * GB,
) -> Quotas:
    def value(number: int) -> QuotaValue:
        return QuotaValue(value=number, source="settings")

    return Quotas(
        min_records_per_job=value(minimum),
        max_records_per_job=value(per_job),
        max_records_per_file=value(per_file),
        max_file_bytes=value(file_bytes),
        max_job_bytes=value(job_bytes),
        max_concurrent_jobs=value(10),
    )


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def test_no_records_is_empty() -> None:
    assert plan(0, 0, 0, _quotas()) == Plan(path="empty", reason="no valid prompt in the file")


@pytest.mark.parametrize("count", [1, 5, 99])
@pytest.mark.row(19)
def test_below_the_minimum_runs_on_demand(count: int) -> None:
    chosen = plan(count, count * 300, 300, _quotas())
    assert chosen.path == "on_demand"
    assert chosen.shard_sizes == ()
    assert "below the batch minimum of 100" in chosen.reason


@pytest.mark.parametrize(
    ("count", "sizes"),
    [
        (100, (100,)),
        (101, (101,)),
        (50_000, (50_000,)),
        (50_001, (25_001, 25_000)),
        (100_001, (33_334, 33_334, 33_333)),
    ],
)
def test_records_per_job_balanced(count: int, sizes: tuple[int, ...]) -> None:
    assert plan(count, count * 1000, 1000, _quotas()).shard_sizes == sizes


def test_the_smaller_of_records_per_file_and_per_job_wins() -> None:
    assert plan(2_500, 2_500_000, 1000, _quotas(per_job=2_000, per_file=1_000)).shard_sizes == (834, 833, 833)


def test_bytes_split_further_using_the_largest_record() -> None:
    # 1,000 records of up to 3 MB, 1.5 GB in all, 1 GB per file: at most 333 records per shard -> 4 shards.
    assert plan(1_000, 1_500_000_000, 3_000_000, _quotas()).shard_sizes == (250, 250, 250, 250)


def test_total_under_the_byte_limit_needs_no_byte_split() -> None:
    assert plan(300, 900_000_000, 100_000_000, _quotas()).shard_sizes == (300,)


def test_job_size_counts_too() -> None:
    chosen = plan(400, 400 * 1000, 1000, _quotas(file_bytes=10**9, job_bytes=150_000))
    assert chosen.shard_sizes == (134, 133, 133)


def test_never_below_the_minimum_even_at_the_edge() -> None:
    # 199 records of 1,000 bytes and 100 KB per file: shards of at most 100 records, so 2 shards of 100 + 99.
    with pytest.raises(InfeasiblePlan, match="fewer than 100 records per job"):
        plan(199, 199_000, 1000, _quotas(file_bytes=100_000))
    assert plan(200, 200_000, 1000, _quotas(file_bytes=100_000)).shard_sizes == (100, 100)


def test_a_record_larger_than_the_file_limit_is_infeasible() -> None:
    with pytest.raises(InfeasiblePlan, match="exceeds the 1000-byte file limit"):
        plan(500, 500 * 2000, 2000, _quotas(minimum=1, file_bytes=1000))


def test_a_file_needing_more_jobs_than_a_run_holds_is_refused_with_a_reason() -> None:
    quotas = _quotas(minimum=1, per_job=10, per_file=10)
    assert len(plan(30, 30, 1, quotas, max_jobs=3).shard_sizes) == 3
    with pytest.raises(InfeasiblePlan, match="31 records need 4 jobs, more than the 3 one run may hold"):
        plan(31, 31, 1, quotas, max_jobs=3)


def test_a_minimum_above_the_maximum_is_infeasible() -> None:
    with pytest.raises(InfeasiblePlan, match="exceeds the maximum"):
        plan(500, 500, 1, _quotas(minimum=300, per_file=200))


@pytest.mark.parametrize(("count", "total", "largest"), [(-1, 0, 0), (1, 0, 0), (2, 10, 11), (0, -5, 0)])
def test_inconsistent_counts_are_refused(count: int, total: int, largest: int) -> None:
    with pytest.raises(ValueError, match=r"negative|positive size"):
        plan(count, total, largest, _quotas())


def test_shard_ranges_are_contiguous() -> None:
    chosen = plan(10, 100, 10, _quotas(minimum=3, per_job=4))
    assert list(chosen.shards()) == [
        ShardRange(index=0, start=0, count=4),
        ShardRange(index=1, start=4, count=3),
        ShardRange(index=2, start=7, count=3),
    ]


def test_a_million_records_plan_fast() -> None:
    started = time.perf_counter()
    chosen = plan(1_000_000, 1_000_000 * 2_000, 20_000, _quotas())
    assert time.perf_counter() - started < 0.5
    assert sum(chosen.shard_sizes) == 1_000_000
    # 50,000 per job by count; by bytes 50,000 records x 20 KB = 1 GB fits exactly.
    assert chosen.shard_sizes == (50_000,) * 20


def _fits(count: int, shards: int, total: int, largest: int, quotas: Quotas) -> bool:
    """Whether `shards` balanced shards satisfy every limit (the planner's safe byte bound)."""
    biggest, smallest = _ceil(count, shards), count // shards
    per_shard = min(quotas.max_records_per_job.value, quotas.max_records_per_file.value)
    byte_limit = min(quotas.max_file_bytes.value, quotas.max_job_bytes.value)
    return (
        smallest >= quotas.min_records_per_job.value
        and biggest <= per_shard
        and min(total, biggest * largest) <= byte_limit
    )


@given(
    count=st.integers(min_value=1, max_value=3_000),
    largest=st.integers(min_value=1, max_value=5_000),
    average_share=st.floats(min_value=0.01, max_value=1.0),
    minimum=st.integers(min_value=1, max_value=200),
    per_job=st.integers(min_value=1, max_value=2_000),
    per_file=st.integers(min_value=1, max_value=2_000),
    file_bytes=st.integers(min_value=1, max_value=2_000_000),
    job_bytes=st.integers(min_value=1, max_value=4_000_000),
)
@settings(max_examples=500)
@pytest.mark.row(20)
def test_any_plan_respects_every_limit_and_is_the_smallest(
    count: int,
    largest: int,
    average_share: float,
    minimum: int,
    per_job: int,
    per_file: int,
    file_bytes: int,
    job_bytes: int,
) -> None:
    total = max(largest, int(count * largest * average_share))
    quotas = _quotas(minimum, per_job, per_file, file_bytes, job_bytes)
    feasible = [k for k in range(1, count + 1) if _fits(count, k, total, largest, quotas)]
    try:
        chosen = plan(count, total, largest, quotas)
    except InfeasiblePlan:
        assert count >= minimum
        assert feasible == []
        return
    if count < minimum:
        assert chosen.path == "on_demand"
        return
    sizes = chosen.shard_sizes
    assert chosen.path == "batch"
    assert sum(sizes) == count
    assert max(sizes) - min(sizes) <= 1
    assert list(sizes) == sorted(sizes, reverse=True)
    assert _fits(count, len(sizes), total, largest, quotas)
    assert len(sizes) == feasible[0]
