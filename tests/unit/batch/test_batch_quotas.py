"""Batch quotas from Service Quotas (matched by name and model) with settings as the fallback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.stub import Stubber

from batch import quotas
from batch.quotas import QuotaValue, default_quotas, load_quotas, match_quotas
from batch.settings import BatchSettings
from local.lambda_runtime import fresh_container

MODEL_120B = "openai.gpt-oss-120b-1:0"


def _row(name: str, value: float, code: str = "L-TEST0001", unit: str = "None") -> dict[str, Any]:
    return {
        "ServiceCode": "bedrock",
        "ServiceName": "Amazon Bedrock",
        "QuotaArn": f"arn:aws:servicequotas:us-east-1:123456789012:bedrock/{code}",
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value,
        "Unit": unit,
        "Adjustable": False,
        "GlobalQuota": False,
    }


# Names as Service Quotas lists them for gpt-oss (and neighbours that must not match).
ROWS = [
    _row("Minimum number of records per batch inference job for OpenAI GPT OSS 120b", 100.0, "L-4B244563"),
    _row("Records per batch inference job for OpenAI GPT OSS 120b", 50_000.0, "L-3C5D1B25"),
    _row("Records per input file per batch inference job for OpenAI GPT OSS 120b", 40_000.0, "L-9EF11C18"),
    _row("Batch inference input file size (in GB) for OpenAI GPT OSS 120b", 1.0, "L-AAAA0001"),
    _row("Batch inference job size (in GB) for OpenAI GPT OSS 120b", 5.0, "L-052AA08C"),
    _row(
        "Sum of in-progress and submitted batch inference jobs using a base model for OpenAI GPT OSS 120b", 20, "L-C1"
    ),
    _row(
        "Sum of in-progress and submitted batch inference jobs using a custom model for OpenAI GPT OSS 120b", 3, "L-C2"
    ),
    _row("Minimum number of records per batch inference job for OpenAI GPT OSS 20b", 1000.0, "L-5D07A961"),
    _row("Batch inference job size (in GB) for OpenAI GPT OSS 20b", 2.0, "L-5594A7BA"),
    _row("On-demand model inference tokens per minute for OpenAI GPT OSS 120B", 1_000_000.0, "L-TPM"),
    _row("Records per batch inference job for Claude 3 Haiku", 10.0, "L-CLAUDE"),
]


def test_the_model_s_batch_quotas_are_matched_by_name() -> None:
    found = match_quotas(ROWS, MODEL_120B)
    assert found == {
        "min_records_per_job": QuotaValue(value=100, source="service-quotas:L-4B244563"),
        "max_records_per_job": QuotaValue(value=50_000, source="service-quotas:L-3C5D1B25"),
        "max_records_per_file": QuotaValue(value=40_000, source="service-quotas:L-9EF11C18"),
        "max_file_bytes": QuotaValue(value=1_000_000_000, source="service-quotas:L-AAAA0001"),
        "max_job_bytes": QuotaValue(value=5_000_000_000, source="service-quotas:L-052AA08C"),
        "max_concurrent_jobs": QuotaValue(value=20, source="service-quotas:L-C1"),
    }


def test_the_20b_model_does_not_pick_up_120b_quotas() -> None:
    found = match_quotas(ROWS, "openai.gpt-oss-20b-1:0")
    assert found == {
        "min_records_per_job": QuotaValue(value=1000, source="service-quotas:L-5D07A961"),
        "max_job_bytes": QuotaValue(value=2_000_000_000, source="service-quotas:L-5594A7BA"),
    }


def test_units_duplicates_and_unusable_values() -> None:
    rows = [
        _row("Batch inference input file size for OpenAI GPT OSS 120b", 512, "L-MB", unit="Megabytes"),
        _row("Batch inference job size for OpenAI GPT OSS 120b", 3, "L-NOUNIT"),  # no unit anywhere: skipped
        _row("Records per batch inference job for OpenAI GPT OSS 120b", 0, "L-ZERO"),
        _row("Records per batch inference job for OpenAI GPT OSS 120b", 30_000, "L-LOW"),
        _row("Records per batch inference job for OpenAI GPT OSS 120b", 60_000, "L-HIGH"),
        _row("Minimum number of records per batch inference job for OpenAI GPT OSS 120b", 50, "L-MIN1"),
        _row("Minimum number of records per batch inference job for OpenAI GPT OSS 120b", 150, "L-MIN2"),
        {"QuotaName": "Records per batch inference job for OpenAI GPT OSS 120b", "Value": "many"},
    ]
    assert match_quotas(rows, MODEL_120B) == {
        "max_file_bytes": QuotaValue(value=512_000_000, source="service-quotas:L-MB"),
        "max_records_per_job": QuotaValue(value=30_000, source="service-quotas:L-LOW"),
        "min_records_per_job": QuotaValue(value=150, source="service-quotas:L-MIN2"),
    }


@pytest.fixture
def stubbed() -> Iterator[Stubber]:
    fresh_container()
    with Stubber(quotas.client()) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()
    fresh_container()


def test_settings_only_when_reading_is_off(stubbed: Stubber) -> None:
    settings = BatchSettings(READ_SERVICE_QUOTAS=False, MIN_RECORDS_PER_JOB=7)
    assert load_quotas(settings) == default_quotas(settings)
    assert load_quotas(settings).min_records_per_job == QuotaValue(value=7, source="settings")


def test_service_quotas_pages_are_read_and_gaps_filled_from_settings(stubbed: Stubber) -> None:
    expected = {"ServiceCode": "bedrock"}
    stubbed.add_response("list_service_quotas", {"Quotas": ROWS[:2], "NextToken": "page-2"}, expected)
    stubbed.add_response("list_service_quotas", {"Quotas": ROWS[2:4]}, {**expected, "NextToken": "page-2"})
    settings = BatchSettings(READ_SERVICE_QUOTAS=True, MODEL_ID=MODEL_120B, MAX_JOB_BYTES=123_456_789)
    found = load_quotas(settings)
    assert found.min_records_per_job.source == "service-quotas:L-4B244563"
    assert found.max_records_per_file == QuotaValue(value=40_000, source="service-quotas:L-9EF11C18")
    assert found.max_job_bytes == QuotaValue(value=123_456_789, source="settings")
    assert found.payload()["maxJobBytes"] == {"value": 123_456_789, "source": "settings"}
    assert set(found.payload()) == {
        "minRecordsPerJob",
        "maxRecordsPerJob",
        "maxRecordsPerFile",
        "maxFileBytes",
        "maxJobBytes",
        "maxConcurrentJobs",
    }


@pytest.mark.parametrize("code", ["AccessDeniedException", "NoSuchResourceException", "TooManyRequestsException"])
def test_any_error_falls_back_to_settings(stubbed: Stubber, code: str) -> None:
    stubbed.add_client_error("list_service_quotas", service_error_code=code, http_status_code=400)
    settings = BatchSettings(READ_SERVICE_QUOTAS=True)
    assert load_quotas(settings) == default_quotas(settings)
