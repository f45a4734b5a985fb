"""The one deployment configuration: built in app.py from CDK context, frozen and validated."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GPT_OSS_20B = "openai.gpt-oss-20b-1:0"
GPT_OSS_120B = "openai.gpt-oss-120b-1:0"
GPT_OSS_MODELS = (GPT_OSS_20B, GPT_OSS_120B)

DEFAULT_ALIASES: Mapping[str, str] = {"gpt-oss-20b": GPT_OSS_20B, "gpt-oss-120b": GPT_OSS_120B}

# Bedrock's service tiers: every value of Converse's ServiceTier.type (Bedrock API reference, ServiceTier). The chat
# API may offer the on-demand ones; reserved needs a reservation made with the AWS account team, never offered here.
BEDROCK_SERVICE_TIERS = ("reserved", "priority", "default", "flex")
ServiceTier = Literal["default", "flex", "priority"]

# API Gateway REST integrations: a buffered answer must come within 29 s (more only with a raised account quota).
# A streaming integration (ResponseTransferMode STREAM: every method of the chat API) may be given up to 15 minutes
# with no quota request, and a stream lasts at most 15 minutes; between two chunks it may idle up to 5 minutes on
# REGIONAL and PRIVATE endpoints. Verified in the API Gateway developer guide, "Stream the integration response for
# your proxy integrations in API Gateway" (apigateway/latest/developerguide/response-transfer-mode.html).
BUFFERED_INTEGRATION_TIMEOUT_SECONDS = 29
STREAMING_INTEGRATION_TIMEOUT_MAX_SECONDS = 900
STREAM_IDLE_TIMEOUT_SECONDS = 300
# The default integration timeout is the OpenAI SDKs' default request timeout (10 minutes in the Python and Node
# SDKs): the API ends a request with its own 504, or a final error event on a stream, just before a default client
# would give up, and a generation up to maxTokensCeiling, reasoning included, fits in it.
DEFAULT_INTEGRATION_TIMEOUT_SECONDS = 600
# Lambda's maximum function timeout. The chat function's timeout sits this much above the integration timeout
# (capped at the maximum): the function's own deadline ends a request first, and an orphaned generation (the
# caller or API Gateway gone) is stopped soon after.
LAMBDA_MAX_TIMEOUT_SECONDS = 900
FUNCTION_TIMEOUT_MARGIN_SECONDS = 5
# AWS Lambda Web Adapter 1.0.x: the version of its public arm64 layer the chat function uses by default.
WEB_ADAPTER_LAYER_VERSION = 27

# Step Functions fails an execution whose history passes 25,000 events. Each shard's job is watched in its own
# child execution (a Distributed Map iteration), so the limit applies per shard; the lap limit keeps one shard
# within 80 % of it, and the rest is headroom for retried status checks.
HISTORY_EVENT_LIMIT = 25_000
HISTORY_EVENT_BUDGET = 20_000
# History events of one poll lap (a reconcile interval without the job's event): AwaitJob (entered, scheduled,
# started, submitted, timed out, exited), GetJob (entered, scheduled, started, succeeded, exited; it also counts
# the lap), JobStatus choice (entered, exited; it also tests the lap limit). tests/functional measures it on the
# executed definition.
EVENTS_PER_POLL_LAP = 13
# Events of one shard outside the poll loop, at most: execution start and end, the submit task with every
# retry it may make, the overdue report, the outcome states (tests/infra derives the actual bound).
SHARD_FIXED_EVENTS = 300
# Bedrock may take this long beyond the job timeout to validate, schedule, stop and write the output.
POLL_MARGIN_HOURS = 6

# Tags every Bedrock batch job carries (batch_workflow.py): its run id, the stage, and the SHA-256 (hex) of the
# source object's key, so spend can be grouped per input file without the key, which may be sensitive, in a tag.
# Configured cost tags (batchCostTags) come on top and may not override them.
JOB_TAG_RUN = "run"
JOB_TAG_STAGE = "stage"
JOB_TAG_SOURCE = "source"
RESERVED_JOB_TAG_KEYS = (JOB_TAG_RUN, JOB_TAG_STAGE, JOB_TAG_SOURCE)
# Tags per resource (AWS's limit, "Tagging Amazon Bedrock resources"; CreateModelInvocationJob's list takes up to 200,
# TagResource refuses more than 50 on a resource).
MAX_JOB_TAGS = 50
# Tag keys of 1-128 and values of 0-256 characters (botocore's bedrock model: shapes TagKey, TagValue). AWS tags allow
# Unicode letters, numbers and spaces plus _ . : / = + - @; Bedrock's API pattern narrows the letters and digits to
# ASCII ([a-zA-Z0-9\s._:/=+@-]) and IAM's whitespace to the space: the characters both accept.
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
_TAG_TEXT = re.compile(r"[A-Za-z0-9 _.:/=+\-@]*")
_TAG_CHARACTERS = "ASCII letters and digits, spaces and _ . : / = + - @"

# Root of the SSM parameters through which the stacks of a stage share values.
PARAMETER_ROOT = "/gpt-oss-bedrock"

_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_GUARDRAIL_ID = re.compile(r"^[a-z0-9]{1,64}$")
_GUARDRAIL_VERSION = re.compile(r"^[1-9][0-9]{0,7}$")
_VPC_ENDPOINT_ID = re.compile(r"^vpce-[0-9a-f]{1,17}$")
# Stages a load-test stand-in or fault injection may never reach: `prod`, `prd`, `production`, `live`, alone or
# as the first part of the name (`prod-eu`). Anything else is a stage one may break on purpose.
_PRODUCTION_STAGE = re.compile(r"^(prod|prd|production|live)(-|$)")
_LAYER_VERSION_ARN = re.compile(r"^arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:layer:[A-Za-z0-9_-]+:[0-9]+$")
_WEB_ACL_ARN = re.compile(r"^arn:aws[a-z-]*:wafv2:[a-z0-9-]+:[0-9]{12}:regional/webacl/[A-Za-z0-9_-]+/[0-9a-f-]+$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GuardrailConfig(_Frozen):
    """Which guardrail every model call carries: ours (created by the stack) or an existing one."""

    existing_id: str | None = None
    existing_version: str | None = None
    blocked_input_message: str = "Sorry, this request was blocked by the content policy."
    blocked_output_message: str = "Sorry, the answer was blocked by the content policy."

    @field_validator("existing_version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        # `-c guardrailVersion=3` (or a JSON number in cdk.json) arrives as a number.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _both_or_neither(self) -> GuardrailConfig:
        if (self.existing_id is None) != (self.existing_version is None):
            raise ValueError("guardrailId and guardrailVersion go together")
        if self.existing_id is not None and not _GUARDRAIL_ID.match(self.existing_id):
            raise ValueError("guardrailId must be a guardrail id (lowercase letters and digits), not an ARN or name")
        if self.existing_version is not None and not _GUARDRAIL_VERSION.match(self.existing_version):
            raise ValueError("guardrailVersion must be a published version number, never DRAFT")
        return self


class ChatConfig(_Frozen):
    """Limits and options of the chat API."""

    default_max_tokens: Annotated[int, Field(ge=1, le=128_000)] = 4096
    max_tokens_ceiling: Annotated[int, Field(ge=1, le=128_000)] = 16_384
    max_request_bytes: Annotated[int, Field(ge=1024, le=6_000_000)] = 1_048_576
    # API Gateway's integration timeout of POST /v1/chat/completions (see DEFAULT_INTEGRATION_TIMEOUT_SECONDS).
    integration_timeout_seconds: Annotated[int, Field(ge=1, le=STREAMING_INTEGRATION_TIMEOUT_MAX_SECONDS)] = (
        DEFAULT_INTEGRATION_TIMEOUT_SECONDS
    )
    # How long before the integration timeout the function answers with its own 504.
    deadline_margin_ms: Annotated[int, Field(ge=0, le=10_000)] = 1500
    bedrock_max_attempts: Annotated[int, Field(ge=1, le=5)] = 3
    # Full-jitter backoff between Bedrock attempts (first wait at most base, doubling up to max).
    bedrock_backoff_base_ms: Annotated[int, Field(ge=1, le=10_000)] = 250
    bedrock_backoff_max_ms: Annotated[int, Field(ge=1, le=30_000)] = 4000
    return_reasoning: bool = False
    memory_mb: Annotated[int, Field(ge=128, le=10_240)] = 1024
    endpoint_type: Literal["REGIONAL", "PRIVATE"] = "REGIONAL"
    vpc_endpoint_ids: tuple[str, ...] = ()
    api_keys: bool = False
    throttle_rate_limit: Annotated[float, Field(gt=0)] = 50.0
    throttle_burst_limit: Annotated[int, Field(gt=0)] = 100
    # Reserved concurrency of the chat function: a ceiling on its share of the account's Lambda concurrency
    # and a floor no other function can take. None (the default) reserves nothing: a reservation is taken
    # from the account's unreserved pool, and deploys fail on accounts whose quota leaves too little of it.
    reserved_concurrency: Annotated[int, Field(ge=1, le=10_000)] | None = None
    # API Gateway writes execution and access logs through one CloudWatch role per account and Region.
    # True: this stack creates one and sets it; False: the account is already set up
    # (`aws apigateway update-account`, path /cloudwatchRoleArn), or the stage cannot log.
    api_gateway_cloudwatch_role: bool = False
    # An existing regional AWS WAF web ACL to associate with the stage.
    web_acl_arn: str | None = None
    # Load tests only: the function answers from shared/model_stand_in.py instead of Bedrock (never in production).
    model_stand_in: bool = False
    # How long a finished answer is replayed for its Idempotency-Key (the record's DynamoDB TTL).
    idempotency_ttl_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 3600
    # The guardrail's streamProcessingMode on ConverseStream. `sync`: the guardrail checks buffered chunks before
    # they are sent (a little more latency per chunk). `async`: chunks are sent at once and checked in the
    # background, so blocked content can reach the caller before the intervention.
    guardrail_stream_mode: Literal["sync", "async"] = "sync"
    # How often an idle stream sends an SSE comment, below API Gateway's idle timeout of a stream.
    stream_keepalive_seconds: Annotated[int, Field(ge=1, lt=STREAM_IDLE_TIMEOUT_SECONDS)] = 15
    # The AWS Lambda Web Adapter layer: AWS's public arm64 layer of the stack's Region at this version, or any
    # layer version ARN (a Region or partition where AWS does not publish it, a copy in your account).
    web_adapter_layer_version: Annotated[int, Field(ge=1)] = WEB_ADAPTER_LAYER_VERSION
    web_adapter_layer_arn: str | None = None
    # The Bedrock service tiers callers may ask for (OpenAI's `service_tier`; `auto` always means default). Default
    # is what every request without a tier uses, so it is always allowed. Flex is cheaper than standard, so a caller
    # that can wait may save; priority costs a premium over standard, so only the deployer opts in to it. The
    # chat role's IAM denies every other tier (reserved always).
    service_tiers: tuple[ServiceTier, ...] = ("default", "flex")

    @property
    def function_timeout_seconds(self) -> int:
        """The chat function's timeout: the integration timeout plus a margin, at most Lambda's maximum."""
        return min(self.integration_timeout_seconds + FUNCTION_TIMEOUT_MARGIN_SECONDS, LAMBDA_MAX_TIMEOUT_SECONDS)

    @model_validator(mode="after")
    def _consistent(self) -> ChatConfig:
        if self.default_max_tokens > self.max_tokens_ceiling:
            raise ValueError("defaultMaxTokens must not exceed maxTokensCeiling")
        if self.bedrock_backoff_base_ms > self.bedrock_backoff_max_ms:
            raise ValueError("bedrockBackoffBaseMs must not exceed bedrockBackoffMaxMs")
        if self.deadline_margin_ms >= self.integration_timeout_seconds * 1000 // 2:
            raise ValueError("deadlineMarginMs must be less than half the integration timeout")
        bad_endpoints = [endpoint for endpoint in self.vpc_endpoint_ids if not _VPC_ENDPOINT_ID.match(endpoint)]
        if bad_endpoints:
            raise ValueError(f"vpcEndpointIds must look like vpce-0123456789abcdef0; got {bad_endpoints}")
        if self.web_acl_arn is not None and not _WEB_ACL_ARN.match(self.web_acl_arn):
            raise ValueError("webAclArn must be the ARN of a regional AWS WAF (v2) web ACL")
        if self.endpoint_type == "PRIVATE" and not self.vpc_endpoint_ids:
            raise ValueError("a PRIVATE endpoint needs vpcEndpointIds")
        if self.endpoint_type == "REGIONAL" and self.vpc_endpoint_ids:
            raise ValueError("vpcEndpointIds only apply to a PRIVATE endpoint")
        return self

    @field_validator("service_tiers")
    @classmethod
    def _tiers_with_default(cls, value: tuple[ServiceTier, ...]) -> tuple[ServiceTier, ...]:
        if "default" not in value:
            raise ValueError(f"serviceTiers must include default (what requests without a tier use); got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"serviceTiers must not repeat a tier; got {value}")
        return value

    @model_validator(mode="after")
    def _one_web_adapter_layer(self) -> ChatConfig:
        if self.web_adapter_layer_arn is None:
            return self
        if not _LAYER_VERSION_ARN.match(self.web_adapter_layer_arn):
            raise ValueError("webAdapterLayerArn must be a Lambda layer version ARN (…:layer:<name>:<version>)")
        if "web_adapter_layer_version" in self.model_fields_set:
            raise ValueError("webAdapterLayerVersion only applies without webAdapterLayerArn")
        return self


class BatchQuotas(_Frozen):
    """Per-model batch inference quotas: used when Service Quotas cannot be read (verify per Region)."""

    min_records_per_job: Annotated[int, Field(ge=1)] = 100
    max_records_per_job: Annotated[int, Field(ge=1)] = 50_000
    max_records_per_file: Annotated[int, Field(ge=1)] = 50_000
    max_file_bytes: Annotated[int, Field(ge=1)] = 1_000_000_000
    max_job_bytes: Annotated[int, Field(ge=1)] = 5_000_000_000
    max_concurrent_jobs: Annotated[int, Field(ge=1, le=40)] = 10

    @model_validator(mode="after")
    def _consistent(self) -> BatchQuotas:
        if self.min_records_per_job > min(self.max_records_per_job, self.max_records_per_file):
            raise ValueError("the minimum records per job exceeds the maximum")
        return self


class BatchConfig(_Frozen):
    """Options of the batch pipeline."""

    model_id: str = GPT_OSS_120B
    default_max_completion_tokens: Annotated[int, Field(ge=1, le=128_000)] = 4096
    job_timeout_hours: Annotated[int, Field(ge=24, le=168)] = 72
    # The reconcile interval: a shard waits this long for its job's state event before it checks the status
    # itself (events are best-effort); each check is a lap.
    poll_interval_seconds: Annotated[int, Field(ge=60, le=3600)] = 3600
    on_demand_concurrency: Annotated[int, Field(ge=1, le=32)] = 4
    apply_guardrail: bool = False
    return_reasoning: bool = True
    read_service_quotas: bool = True
    quotas: BatchQuotas = BatchQuotas()
    # Above the longest run (the state machine timeout, 13 days with the defaults): a run's id map, records and
    # task tokens under work/ must outlive it (BatchPipeline refuses a shorter one).
    work_retention_days: Annotated[int, Field(ge=1)] = 14
    output_retention_days: Annotated[int, Field(ge=1)] = 30
    # A run still open after this long raises the "run older than expected" alarm.
    expected_run_hours: Annotated[int, Field(ge=1)] = 30
    # Tags every batch job carries besides run, stage and source (activate them as cost allocation tags).
    cost_tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("model_id")
    @classmethod
    def _gpt_oss(cls, value: str) -> str:
        if value not in GPT_OSS_MODELS:
            raise ValueError(f"batchModelId must be one of {GPT_OSS_MODELS}")
        return value

    @field_validator("cost_tags", mode="before")
    @classmethod
    def _tags_as_object(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(
                f'batchCostTags must be a JSON object of tag keys to values, e.g. {{"team": "nlp"}}; got {value!r}'
            )
        return value

    @field_validator("cost_tags")
    @classmethod
    def _valid_tags(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [problem for key, text in value.items() if (problem := _tag_problem(key, text))]
        if problems:
            raise ValueError("batchCostTags: " + "; ".join(problems))
        allowed = MAX_JOB_TAGS - len(RESERVED_JOB_TAG_KEYS)
        if len(value) > allowed:
            raise ValueError(
                f"batchCostTags: {len(value)} tags, at most {allowed} (every job also carries "
                f"{', '.join(RESERVED_JOB_TAG_KEYS)}, and a job takes at most {MAX_JOB_TAGS} tags)"
            )
        return value

    @property
    def poll_lap_limit(self) -> int:
        """Status checks of one job before the run stops waiting: the job timeout plus a margin, in polls."""
        return math.ceil((self.job_timeout_hours + POLL_MARGIN_HOURS) * 3600 / self.poll_interval_seconds)

    @property
    def overdue_lap(self) -> int:
        """The status check at which a job has run for `expected_run_hours`: the run is reported overdue."""
        return math.ceil(self.expected_run_hours * 3600 / self.poll_interval_seconds)

    @model_validator(mode="after")
    def _poll_loop_fits(self) -> BatchConfig:
        events = self.poll_lap_limit * EVENTS_PER_POLL_LAP + SHARD_FIXED_EVENTS
        if events > HISTORY_EVENT_BUDGET:
            fastest = math.ceil(
                (self.job_timeout_hours + POLL_MARGIN_HOURS)
                * 3600
                * EVENTS_PER_POLL_LAP
                / (HISTORY_EVENT_BUDGET - SHARD_FIXED_EVENTS)
            )
            raise ValueError(
                f"polling a {self.job_timeout_hours} h job every {self.poll_interval_seconds} s takes up to {events} "
                f"history events, above the budget of {HISTORY_EVENT_BUDGET}; poll every {fastest} s or more"
            )
        if self.overdue_lap >= self.poll_lap_limit:
            raise ValueError(
                f"batchExpectedRunHours ({self.expected_run_hours}) must be less than the job timeout plus "
                f"{POLL_MARGIN_HOURS} h ({self.job_timeout_hours + POLL_MARGIN_HOURS})"
            )
        return self


def _tag_problem(key: str, value: str) -> str | None:
    """What is wrong with one configured cost tag (None: nothing)."""
    if key.lower() in RESERVED_JOB_TAG_KEYS:
        return f"{key!r} is set by the pipeline on every job ({', '.join(RESERVED_JOB_TAG_KEYS)}): choose another key"
    if key.lower().startswith("aws:"):
        return f"{key!r}: the aws: prefix is reserved for AWS"
    if not 1 <= len(key) <= MAX_TAG_KEY_LENGTH:
        return f"{key!r}: a key has 1 to {MAX_TAG_KEY_LENGTH} characters, not {len(key)}"
    if len(value) > MAX_TAG_VALUE_LENGTH:
        return f"{key!r}: a value has at most {MAX_TAG_VALUE_LENGTH} characters, not {len(value)}"
    for part, text in (("key", key), ("value", value)):
        if not _TAG_TEXT.fullmatch(text):
            bad = sorted({character for character in text if not _TAG_TEXT.fullmatch(character)})
            return f"{key!r}: the {part} may hold only {_TAG_CHARACTERS}, not {''.join(bad)!r}"
    return None


class FaultInjectionConfig(_Frozen):
    """AWS FIS on the pipeline functions (the streaming chat function cannot carry it): extension layer, experiments."""

    enabled: bool = False
    # The AWS FIS Lambda extension (arm64) of the Region: published per Region, e.g. by the public SSM parameter
    # /aws/service/fis/lambda-extension/AWS-FIS-extension-arm64/1.x.x.
    extension_layer_arn: str | None = None

    @model_validator(mode="after")
    def _layer_when_enabled(self) -> FaultInjectionConfig:
        if self.enabled and self.extension_layer_arn is None:
            raise ValueError("faultInjection needs fisExtensionLayerArn (the AWS FIS Lambda extension of the Region)")
        if not self.enabled and self.extension_layer_arn is not None:
            raise ValueError("fisExtensionLayerArn only applies with faultInjection=true")
        if self.extension_layer_arn is not None and not _LAYER_VERSION_ARN.match(self.extension_layer_arn):
            raise ValueError("fisExtensionLayerArn must be a Lambda layer version ARN (…:layer:<name>:<version>)")
        return self


def is_production_stage(stage: str) -> bool:
    """Whether a stage name is production's: no model stand-in and no fault injection may be deployed to it."""
    return bool(_PRODUCTION_STAGE.match(stage))


class DeploymentConfig(_Frozen):
    """Everything a stage varies: read once from context in app.py, passed down as typed props."""

    stage: str = "dev"
    model_ids: tuple[str, ...] = GPT_OSS_MODELS
    model_aliases: Mapping[str, str] = Field(default_factory=lambda: dict(DEFAULT_ALIASES))
    guardrail: GuardrailConfig = GuardrailConfig()
    chat: ChatConfig = ChatConfig()
    batch: BatchConfig = BatchConfig()
    log_retention_days: Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731] = 30
    alarm_email: str | None = None
    fault_injection: FaultInjectionConfig = FaultInjectionConfig()

    @field_validator("stage")
    @classmethod
    def _stage_shape(cls, value: str) -> str:
        if not _STAGE.match(value):
            raise ValueError("stage must be lowercase letters, digits and '-', starting with a letter, ≤ 20 chars")
        return value

    @field_validator("model_ids")
    @classmethod
    def _only_gpt_oss(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(GPT_OSS_MODELS))
        if unknown or not value:
            raise ValueError(f"model_ids must be a non-empty subset of {GPT_OSS_MODELS}; got {unknown or 'none'}")
        return value

    @model_validator(mode="before")
    @classmethod
    def _default_aliases(cls, data: Any) -> Any:
        """Without explicit aliases, offer the default aliases of the models that are deployed."""
        if isinstance(data, dict) and "model_aliases" not in data:
            deployed = data.get("model_ids", GPT_OSS_MODELS)
            deployed = (deployed,) if isinstance(deployed, str) else tuple(deployed)
            data = {**data, "model_aliases": {alias: m for alias, m in DEFAULT_ALIASES.items() if m in deployed}}
        return data

    @model_validator(mode="after")
    def _no_test_rig_in_production(self) -> DeploymentConfig:
        if not is_production_stage(self.stage):
            return self
        if self.chat.model_stand_in:
            raise ValueError(f"chatModelStandIn answers without any model: refused for stage {self.stage!r}")
        if self.fault_injection.enabled:
            raise ValueError(f"faultInjection breaks invocations on purpose: refused for stage {self.stage!r}")
        return self

    @model_validator(mode="after")
    def _aliases_point_at_models(self) -> DeploymentConfig:
        dangling = sorted(alias for alias, target in self.model_aliases.items() if target not in self.model_ids)
        if dangling:
            raise ValueError(f"model aliases point at models not deployed: {dangling}")
        return self

    @property
    def batch_job_name_prefix(self) -> str:
        """The start of every batch job name of this stage (`<stage>.`; a stage holds no '.', so no stage's
        prefix starts another's): the job-state event rule matches this stage's jobs by it."""
        return f"{self.stage}."

    @property
    def batch_job_tags(self) -> dict[str, str]:
        """The tags of every batch job known at synth (the workflow adds run and source): stage, then cost tags."""
        return {JOB_TAG_STAGE: self.stage, **self.batch.cost_tags}

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> DeploymentConfig:
        """Build the config from CDK context values (strings from `-c key=value` are accepted)."""
        return cls.model_validate(_normalise(dict(context)))


# Flat camelCase context keys (cdk.json or `-c key=value`) → (section, field) of the nested model.
_CONTEXT_FIELDS: Mapping[str, tuple[str | None, str]] = {
    "stage": (None, "stage"),
    "modelIds": (None, "model_ids"),
    "modelAliases": (None, "model_aliases"),
    "logRetentionDays": (None, "log_retention_days"),
    "alarmEmail": (None, "alarm_email"),
    "guardrailId": ("guardrail", "existing_id"),
    "guardrailVersion": ("guardrail", "existing_version"),
    "blockedInputMessage": ("guardrail", "blocked_input_message"),
    "blockedOutputMessage": ("guardrail", "blocked_output_message"),
    "defaultMaxTokens": ("chat", "default_max_tokens"),
    "maxTokensCeiling": ("chat", "max_tokens_ceiling"),
    "maxRequestBytes": ("chat", "max_request_bytes"),
    "integrationTimeoutSeconds": ("chat", "integration_timeout_seconds"),
    "deadlineMarginMs": ("chat", "deadline_margin_ms"),
    "bedrockMaxAttempts": ("chat", "bedrock_max_attempts"),
    "bedrockBackoffBaseMs": ("chat", "bedrock_backoff_base_ms"),
    "bedrockBackoffMaxMs": ("chat", "bedrock_backoff_max_ms"),
    "returnReasoning": ("chat", "return_reasoning"),
    "chatMemoryMb": ("chat", "memory_mb"),
    "endpointType": ("chat", "endpoint_type"),
    "vpcEndpointIds": ("chat", "vpc_endpoint_ids"),
    "apiKeys": ("chat", "api_keys"),
    "throttleRateLimit": ("chat", "throttle_rate_limit"),
    "throttleBurstLimit": ("chat", "throttle_burst_limit"),
    "chatReservedConcurrency": ("chat", "reserved_concurrency"),
    "apiGatewayCloudWatchRole": ("chat", "api_gateway_cloudwatch_role"),
    "webAclArn": ("chat", "web_acl_arn"),
    "chatModelStandIn": ("chat", "model_stand_in"),
    "faultInjection": ("fault_injection", "enabled"),
    "fisExtensionLayerArn": ("fault_injection", "extension_layer_arn"),
    "chatIdempotencyTtlSeconds": ("chat", "idempotency_ttl_seconds"),
    "guardrailStreamMode": ("chat", "guardrail_stream_mode"),
    "streamKeepaliveSeconds": ("chat", "stream_keepalive_seconds"),
    "webAdapterLayerVersion": ("chat", "web_adapter_layer_version"),
    "webAdapterLayerArn": ("chat", "web_adapter_layer_arn"),
    "serviceTiers": ("chat", "service_tiers"),
    "batchModelId": ("batch", "model_id"),
    "batchMaxCompletionTokens": ("batch", "default_max_completion_tokens"),
    "batchJobTimeoutHours": ("batch", "job_timeout_hours"),
    "batchPollIntervalSeconds": ("batch", "poll_interval_seconds"),
    "batchOnDemandConcurrency": ("batch", "on_demand_concurrency"),
    "batchApplyGuardrail": ("batch", "apply_guardrail"),
    "batchReturnReasoning": ("batch", "return_reasoning"),
    "batchReadServiceQuotas": ("batch", "read_service_quotas"),
    "batchQuotas": ("batch", "quotas"),
    "batchWorkRetentionDays": ("batch", "work_retention_days"),
    "batchOutputRetentionDays": ("batch", "output_retention_days"),
    "batchExpectedRunHours": ("batch", "expected_run_hours"),
    "batchCostTags": ("batch", "cost_tags"),
}
CONTEXT_KEYS = tuple(_CONTEXT_FIELDS)
# Keys whose value is a list: one plain value on the command line is a list of one.
_LIST_KEYS = frozenset({"modelIds", "vpcEndpointIds", "serviceTiers"})


def _normalise(context: dict[str, Any]) -> dict[str, Any]:
    """Nest the flat context keys; an unknown key is an error, so a typo never passes silently."""
    unknown = sorted(set(context) - set(_CONTEXT_FIELDS))
    if unknown:
        raise ValueError(f"unknown context keys: {unknown}; known: {sorted(_CONTEXT_FIELDS)}")
    result: dict[str, Any] = {}
    for key, value in context.items():
        section, field = _CONTEXT_FIELDS[key]
        target = result.setdefault(section, {}) if section else result
        target[field] = _parse(value, as_list=key in _LIST_KEYS)
    return result


def _parse(value: Any, *, as_list: bool = False) -> Any:
    """Context given on the command line arrives as text: read JSON-looking text and comma lists."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text[:1] in "[{" or text in ("true", "false") or re.fullmatch(r"-?\d+(\.\d+)?", text):
        return json.loads(text)
    if "," in text or as_list:
        return tuple(part.strip() for part in text.split(",") if part.strip())
    return value


class GuardrailParameterNames(_Frozen):
    """Where the chat stack publishes its guardrail for the other stacks of a stage (SSM parameter names)."""

    guardrail_id: str
    guardrail_version: str


def guardrail_parameter_names(stage: str) -> GuardrailParameterNames:
    """The SSM parameter names of a stage's guardrail (fixed names: they are the contract between stacks)."""
    root = f"{PARAMETER_ROOT}/{stage}/guardrail"
    return GuardrailParameterNames(guardrail_id=f"{root}/id", guardrail_version=f"{root}/version")


def chat_role_parameter_name(stage: str) -> str:
    """Where the chat stack publishes its function's role ARN: the batch stack grants that role the Batch API's
    access to the pipeline (a fixed name: the contract between the stacks)."""
    return f"{PARAMETER_ROOT}/{stage}/chat/function-role-arn"


def batch_api_parameter_name(stage: str) -> str:
    """Where the batch stack publishes `{"bucket", "stateMachineArn"}` for the chat function's Batch API."""
    return f"{PARAMETER_ROOT}/{stage}/batch/pipeline"
