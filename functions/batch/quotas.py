"""The per-model batch quotas a run is planned with: Service Quotas when readable, else settings.

This module is the only service-quotas call site. Quota names are matched, not hard-coded by code:
Service Quotas lists them as e.g. "Minimum number of records per batch inference job for OpenAI GPT OSS
120b" or "Batch inference input file size (in GB) for OpenAI GPT OSS 20b" (codes and exact wording vary
by model and Region and are not documented as stable), so a quota matches when its lowercase name
contains "batch", the model's short name once punctuation and spaces are removed ("gptoss120b"), and
one of the keywords below. Anything missing, unreadable or unusable keeps the settings value, and
every value says where it came from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict, Field

from batch.names import short_model_name
from batch.settings import BatchSettings
from shared.observability import logger

if TYPE_CHECKING:
    from botocore.client import BaseClient

QuotaField = Literal[
    "min_records_per_job",
    "max_records_per_job",
    "max_records_per_file",
    "max_file_bytes",
    "max_job_bytes",
    "max_concurrent_jobs",
]
SETTINGS_SOURCE = "settings"

# Most specific first: "minimum number of records per batch inference job" also contains
# "records per batch inference job".
_KEYWORDS: tuple[tuple[QuotaField, tuple[str, ...]], ...] = (
    ("min_records_per_job", ("minimum number of records",)),
    ("max_records_per_file", ("records per input file",)),
    ("max_records_per_job", ("records per batch inference job",)),
    ("max_file_bytes", ("input file size",)),
    ("max_job_bytes", ("job size",)),
    ("max_concurrent_jobs", ("in-progress and submitted", "in progress and submitted", "concurrent")),
)
_LOWER_BOUNDS: frozenset[QuotaField] = frozenset({"min_records_per_job"})
_SIZES: frozenset[QuotaField] = frozenset({"max_file_bytes", "max_job_bytes"})
# Decimal units: smaller than the binary ones, so the conservative reading of an ambiguous "GB".
_UNIT_BYTES = {"gigabytes": 10**9, "megabytes": 10**6, "kilobytes": 10**3, "bytes": 1}
_NAME_UNITS = (("gb", 10**9), ("mb", 10**6))
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


class QuotaValue(BaseModel):
    """One quota and where its value came from ("settings" or "service-quotas:<quota code>")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Annotated[int, Field(ge=1)]
    source: str


class Quotas(BaseModel):
    """The batch quotas of one model, as the planner uses them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_records_per_job: QuotaValue
    max_records_per_job: QuotaValue
    max_records_per_file: QuotaValue
    max_file_bytes: QuotaValue
    max_job_bytes: QuotaValue
    max_concurrent_jobs: QuotaValue

    def payload(self) -> dict[str, Any]:
        """The camelCase `quotaSource` object of the task payloads and the summary."""
        return {_camel(name): getattr(self, name).model_dump() for name in type(self).model_fields}


def default_quotas(settings: BatchSettings) -> Quotas:
    """The quotas from settings alone."""
    return Quotas(
        min_records_per_job=QuotaValue(value=settings.MIN_RECORDS_PER_JOB, source=SETTINGS_SOURCE),
        max_records_per_job=QuotaValue(value=settings.MAX_RECORDS_PER_JOB, source=SETTINGS_SOURCE),
        max_records_per_file=QuotaValue(value=settings.MAX_RECORDS_PER_FILE, source=SETTINGS_SOURCE),
        max_file_bytes=QuotaValue(value=settings.MAX_FILE_BYTES, source=SETTINGS_SOURCE),
        max_job_bytes=QuotaValue(value=settings.MAX_JOB_BYTES, source=SETTINGS_SOURCE),
        max_concurrent_jobs=QuotaValue(value=settings.MAX_CONCURRENT_JOBS, source=SETTINGS_SOURCE),
    )


def load_quotas(settings: BatchSettings) -> Quotas:
    """The quotas to plan with: Service Quotas values where found (if enabled), settings otherwise."""
    defaults = default_quotas(settings)
    if not settings.READ_SERVICE_QUOTAS:
        return defaults
    try:
        rows = list(_bedrock_quotas())
    except (ClientError, BotoCoreError) as error:
        code = error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""
        logger.warning("service quotas unreadable; using settings", error_code=code or type(error).__name__)
        return defaults
    found = match_quotas(rows, settings.MODEL_ID)
    logger.info("batch quotas read", matched=sorted(found), model_id=settings.MODEL_ID)
    update: dict[str, Any] = {str(name): value for name, value in found.items()}
    return defaults.model_copy(update=update)


def match_quotas(rows: Iterable[Mapping[str, Any]], model_id: str) -> dict[QuotaField, QuotaValue]:
    """Pick this model's batch quotas out of `ListServiceQuotas` rows (pure).

    When several rows match one quota, the most conservative value wins (the smallest maximum, the
    largest minimum). Rows with unusable values (zero, negative, an unknown size unit) are skipped.
    """
    model = _squash(short_model_name(model_id))
    found: dict[QuotaField, QuotaValue] = {}
    for row in rows:
        name = str(row.get("QuotaName", "")).lower()
        if "batch" not in name or "custom model" in name or model not in _squash(name):
            continue
        field = _field(name)
        value = _value(field, name, row) if field else None
        if field is None or value is None:
            continue
        current = found.get(field)
        if current is None or _stricter(field, value, current.value):
            found[field] = QuotaValue(value=value, source=f"service-quotas:{row.get('QuotaCode', 'unknown')}")
    return found


def _field(name: str) -> QuotaField | None:
    for field, keywords in _KEYWORDS:
        if any(keyword in name for keyword in keywords):
            return field
    return None


def _value(field: QuotaField, name: str, row: Mapping[str, Any]) -> int | None:
    raw = row.get("Value")
    if not isinstance(raw, int | float) or raw <= 0:
        return None
    if field not in _SIZES:
        return int(raw)
    unit = str(row.get("Unit", "")).lower()
    multiplier = _UNIT_BYTES.get(unit) or next(
        (bytes_ for label, bytes_ in _NAME_UNITS if re.search(rf"\b{label}\b", name)), None
    )
    return int(raw * multiplier) if multiplier else None


def _stricter(field: QuotaField, value: int, current: int) -> bool:
    return value > current if field in _LOWER_BOUNDS else value < current


def _squash(text: str) -> str:
    return _NOT_ALNUM.sub("", text.lower())


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@cache
def client() -> BaseClient:
    """The container's service-quotas client (AWS_ENDPOINT_URL* honoured: no endpoint_url is passed)."""
    service_quotas: BaseClient = boto3.client("service-quotas")
    return service_quotas


def _bedrock_quotas() -> Iterator[Mapping[str, Any]]:
    paginator = client().get_paginator("list_service_quotas")
    for page in paginator.paginate(ServiceCode="bedrock"):
        yield from page.get("Quotas", [])
