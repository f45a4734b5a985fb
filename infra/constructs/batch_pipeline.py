"""BatchPipeline: the drop bucket, its trigger, the batch functions, the roles and the state machine.

S3 (inbox/ only) -> EventBridge rule -> SQS (DLQ) -> starter -> Step Functions (Standard, one execution per
dropped object version) -> prepare -> batch jobs (Bedrock, via the SDK integration) or on-demand -> collect.
Bedrock's terminal job-state events (EventBridge rule on this stage's job-name prefix) -> job_events, which resumes
the shard waiting for that job (its task token stored under work/job-tokens/).
The definition is in batch_workflow.py; this module owns the resources and every IAM grant.
"""

from __future__ import annotations

import math

from aws_cdk import Acknowledgment, Arn, ArnFormat, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.config import DeploymentConfig
from infra.constructs.batch_workflow import (
    JOB_TOKENS_PREFIX,
    TERMINAL_JOB_STATUSES,
    TIMEOUT_WAVES,
    BatchWorkflow,
    JobTarget,
    run_timeout,
)
from infra.constructs.checkov import skip_checkov
from infra.constructs.guardrail import GuardrailReference
from infra.constructs.nag import wildcard_resource
from infra.constructs.python_function import log_retention, metrics_namespace, python_function

STARTER_HANDLER = "batch.starter.lambda_handler"
PREPARE_HANDLER = "batch.prepare.lambda_handler"
ON_DEMAND_HANDLER = "batch.on_demand.lambda_handler"
COLLECT_HANDLER = "batch.collect.lambda_handler"
JOB_EVENTS_HANDLER = "batch.job_events.lambda_handler"
# Construct ids of the functions: also their Powertools service names (the `service` metric dimension).
STARTER_ID = "StarterFunction"
PREPARE_ID = "PrepareFunction"
ON_DEMAND_ID = "OnDemandFunction"
COLLECT_ID = "CollectFunction"
JOB_EVENTS_ID = "JobEventsFunction"

# Bucket layout (functions/shared/pipeline.py spells the same prefixes).
INBOX_PREFIX = "inbox/"
WORK_PREFIX = "work/"
OUTPUT_PREFIX = "bedrock-output/"
RESULTS_PREFIX = "results/"
REJECTED_PREFIX = "rejected/"
# The Batch API's files and batch records (openai/<owner>/...); a batch's run reads its file under files/.
BATCH_API_PREFIX = "openai/"
BATCH_API_FILES = f"{BATCH_API_PREFIX}*/files/"

STARTER_TIMEOUT = Duration.seconds(60)
# Lambda's maximum: prepare converts and splits a whole file, collect joins every output line, on-demand
# answers records one Converse call at a time; all of them stream with bounded memory.
LONG_TASK_TIMEOUT = Duration.minutes(15)
# 1,769 MB is one full vCPU: prepare and collect parse JSON line by line, CPU-bound.
STREAMING_MEMORY_MB = 1769
# glibc raises its mmap threshold each time a large block is freed, after which the streaming functions'
# 5 MiB part buffers come from the heap, whose freed pages it keeps: peak memory then grows with the file
# (57 -> 75 MB from 10 MB to 1 GB in bench/batch.py). A fixed threshold (which turns that adjustment off)
# between the 1 MiB read chunks (kept on the heap, reused) and the part buffers (mapped, returned when freed)
# keeps it flat (58 -> 65 MB) for ~15 % more time; 128 KiB, glibc's default, would cost ~40 % in page faults.
STREAMING_MALLOC_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": str(3 * 512 * 1024)}
ON_DEMAND_MEMORY_MB = 1024
STARTER_MEMORY_MB = 256
# job_events reads one small object and makes one Step Functions call per event.
JOB_EVENTS_TIMEOUT = Duration.seconds(30)
JOB_EVENTS_MEMORY_MB = 256
# Bedrock's job-state events (streaming-and-apis.md, Batch): delivered best-effort; the reconciler covers a loss.
BEDROCK_EVENT_SOURCE = "aws.bedrock"
JOB_STATE_CHANGE = "Batch Inference Job State Change"
# AWS recommends a visibility timeout of at least six times the function timeout for SQS event sources.
QUEUE_VISIBILITY_FACTOR = 6
MAX_RECEIVE_COUNT = 5
# Few concurrent starters are plenty (each start is one API call) and spare the StartExecution quota.
STARTER_MAX_CONCURRENCY = 5
ACCESS_LOG_PREFIX = "pipeline-bucket/"
ACCESS_LOG_RETENTION = Duration.days(90)
NONCURRENT_VERSION_RETENTION = Duration.days(30)
INCOMPLETE_UPLOAD_RETENTION = Duration.days(7)


class BatchPipeline(Construct):
    """Everything of the batch pipeline but its monitoring: bucket, trigger, functions, roles, state machine.

    Attributes: `bucket`, `key`, `queue`, `dead_letter_queue`, `state_machine`, `batch_role`, and the
    functions `starter`, `prepare`, `on_demand`, `collect`.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, guardrail: GuardrailReference
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._guardrail = guardrail
        self._acknowledged: set[tuple[str, str]] = set()
        stack = Stack.of(self)
        self._model_arn = stack.format_arn(
            service="bedrock",
            account="",
            resource="foundation-model",
            resource_name=config.batch.model_id,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        self.job_arns = stack.format_arn(
            service="bedrock",
            resource="model-invocation-job",
            resource_name="*",
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the batch pipeline's bucket and state machine logs",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # A key of their own for the queues: it holds transient events only, so it goes with the stack (the data
        # key stays with the retained bucket), and EventBridge's use of it stays off the data key's policy.
        self.queue_key = kms.Key(
            self,
            "QueueKey",
            description="Encrypts the batch pipeline's event queue and dead-letter queue",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self._check_work_retention(config)
        self.bucket = self._bucket(config)
        self.dead_letter_queue, self.queue = self._queues()
        self._trigger()
        environment = self._environment(config)
        streaming = {**environment, **STREAMING_MALLOC_ENVIRONMENT}
        self.prepare = self._function(PREPARE_ID, PREPARE_HANDLER, streaming, LONG_TASK_TIMEOUT, STREAMING_MEMORY_MB)
        self.on_demand = self._function(
            ON_DEMAND_ID, ON_DEMAND_HANDLER, environment, LONG_TASK_TIMEOUT, ON_DEMAND_MEMORY_MB
        )
        self.collect = self._function(COLLECT_ID, COLLECT_HANDLER, streaming, LONG_TASK_TIMEOUT, STREAMING_MEMORY_MB)
        self.batch_role = self._batch_role()
        self.log_group = self._state_machine_logs(config)
        workflow = BatchWorkflow(
            self,
            "Workflow",
            config=config.batch,
            metrics_namespace=metrics_namespace(config),
            prepare=self.prepare,
            on_demand=self.on_demand,
            collect=self.collect,
            target=JobTarget(
                role_arn=self.batch_role.role_arn,
                output_key_arn=self.key.key_arn,
                model_arn=self._model_arn,
                job_arns=self.job_arns,
                bucket_name=self.bucket.bucket_name,
            ),
            job_tags=config.batch_job_tags,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(workflow.definition),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=run_timeout(config.batch),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment="One run per dropped prompt file: prepare, batch jobs or on-demand, collect",
        )
        self.starter = self._function(
            STARTER_ID,
            STARTER_HANDLER,
            {**environment, "STATE_MACHINE_ARN": self.state_machine.state_machine_arn},
            STARTER_TIMEOUT,
            STARTER_MEMORY_MB,
        )
        self.state_machine.add_to_role_policy(workflow.overdue_statement)
        self.job_events = self._function(
            JOB_EVENTS_ID,
            JOB_EVENTS_HANDLER,
            {**environment, "BUCKET_NAME": self.bucket.bucket_name},
            JOB_EVENTS_TIMEOUT,
            JOB_EVENTS_MEMORY_MB,
        )
        self._job_state_events(config)
        self._grant()
        self._acknowledge()

    # --- Storage and trigger ----------------------------------------------------------------------

    @staticmethod
    def _check_work_retention(config: DeploymentConfig) -> None:
        """The work/ lifecycle must not expire a run's id map, records or task tokens before the run can end."""
        longest_days = math.ceil(run_timeout(config.batch).to_seconds() / 86_400)
        if config.batch.work_retention_days <= longest_days:
            raise ValueError(
                f"batchWorkRetentionDays ({config.batch.work_retention_days}) must be more than the longest run "
                f"({longest_days} days, the state machine timeout for these job timeouts and poll intervals): a "
                "run reads its work/ files, and each job's task token, until it ends"
            )

    def _bucket(self, config: DeploymentConfig) -> s3.Bucket:
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 server access logging cannot deliver to a bucket encrypted with a KMS key.
            encryption=s3.BucketEncryption.S3_MANAGED,
            versioned=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireAccessLogs",
                    expiration=ACCESS_LOG_RETENTION,
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_RETENTION,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        skip_checkov(
            access_logs,
            {
                "CKV_AWS_18": "This bucket is the server access log target of the pipeline bucket; logging its "
                "own accesses into itself would loop (the same reason as the AwsSolutions-S1 acknowledgement).",
            },
        )
        Validations.of(access_logs).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This bucket is the server access log target of the pipeline bucket; logging its own "
                "accesses into itself would loop, and into another bucket would need that bucket's logs too.",
            )
        )
        bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            versioned=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix=ACCESS_LOG_PREFIX,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireWork", prefix=WORK_PREFIX, expiration=Duration.days(config.batch.work_retention_days)
                ),
                s3.LifecycleRule(
                    id="ExpireBedrockOutput",
                    prefix=OUTPUT_PREFIX,
                    expiration=Duration.days(config.batch.output_retention_days),
                ),
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=INCOMPLETE_UPLOAD_RETENTION
                ),
                s3.LifecycleRule(
                    id="ExpireNoncurrentVersions",
                    noncurrent_version_expiration=NONCURRENT_VERSION_RETENTION,
                    expired_object_delete_marker=True,
                ),
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        # EventBridge delivery as the bucket's own CloudFormation property: `event_bridge_enabled=True` would
        # add CDK's notification custom resource (a Lambda with s3:PutBucketNotification on '*') for the
        # same single setting.
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
        return bucket

    def _queues(self) -> tuple[sqs.Queue, sqs.Queue]:
        dead_letters = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            "EventQueue",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.queue_key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(STARTER_TIMEOUT.to_seconds() * QUEUE_VISIBILITY_FACTOR),
            retention_period=Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=dead_letters),
        )
        return dead_letters, queue

    def _trigger(self) -> None:
        # Only objects created under inbox/: the pipeline's own writes (work/, results/, ...) never start a run.
        self.rule = events.Rule(
            self,
            "InboxObjectCreated",
            description="Prompt files created under inbox/ of the pipeline bucket",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.bucket.bucket_name]},
                    "object": {"key": [{"prefix": INBOX_PREFIX}]},
                },
            ),
        )
        # Events EventBridge cannot deliver (after its retries) land in the same dead-letter queue.
        self.rule.add_target(
            targets.SqsQueue(self.queue, dead_letter_queue=self.dead_letter_queue, max_event_age=Duration.hours(24))
        )
        # The target also grants EventBridge (events.amazonaws.com, this account only) the use of the queue key.

    def _job_state_events(self, config: DeploymentConfig) -> None:
        """Bedrock's terminal job-state events of this stage's jobs (by job-name prefix) -> job_events."""
        self.job_events_rule = events.Rule(
            self,
            "JobStateChanged",
            description="Terminal state changes of this stage's Bedrock batch jobs: resume the waiting shard",
            event_pattern=events.EventPattern(
                source=[BEDROCK_EVENT_SOURCE],
                detail_type=[JOB_STATE_CHANGE],
                detail={
                    "status": list(TERMINAL_JOB_STATUSES),
                    "batchJobName": [{"prefix": config.batch_job_name_prefix}],
                },
            ),
        )
        # An event EventBridge cannot deliver is lost to the reconciler's status check, not to a queue: the
        # shard's own status check is the retry.
        self.job_events_rule.add_target(
            targets.LambdaFunction(self.job_events, max_event_age=Duration.hours(1), retry_attempts=3)
        )

    def _state_machine_logs(self, config: DeploymentConfig) -> logs.LogGroup:
        region, account, partition = Aws.REGION, Aws.ACCOUNT_ID, Aws.PARTITION
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsEncryptsTheStateMachineLogs",
                principals=[iam.ServicePrincipal(f"logs.{region}.amazonaws.com")],
                actions=["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account}:log-group:*"
                    }
                },
            )
        )
        return logs.LogGroup(
            self,
            "StateMachineLogs",
            retention=log_retention(config),
            encryption_key=self.key,
            removal_policy=RemovalPolicy.DESTROY,
        )

    # --- Functions --------------------------------------------------------------------------------

    def _environment(self, config: DeploymentConfig) -> dict[str, str]:
        """Exactly the variables of functions/batch/settings.py (BatchSettings), but STATE_MACHINE_ARN."""
        batch, quotas = config.batch, config.batch.quotas
        return {
            "MODEL_ID": batch.model_id,
            "DEFAULT_MAX_COMPLETION_TOKENS": str(batch.default_max_completion_tokens),
            "MIN_RECORDS_PER_JOB": str(quotas.min_records_per_job),
            "MAX_RECORDS_PER_JOB": str(quotas.max_records_per_job),
            "MAX_RECORDS_PER_FILE": str(quotas.max_records_per_file),
            "MAX_FILE_BYTES": str(quotas.max_file_bytes),
            "MAX_JOB_BYTES": str(quotas.max_job_bytes),
            "MAX_CONCURRENT_JOBS": str(quotas.max_concurrent_jobs),
            "MAX_JOBS_PER_RUN": str(TIMEOUT_WAVES * quotas.max_concurrent_jobs),
            "READ_SERVICE_QUOTAS": _flag(batch.read_service_quotas),
            "ON_DEMAND_CONCURRENCY": str(batch.on_demand_concurrency),
            "RETURN_REASONING": _flag(batch.return_reasoning),
            "APPLY_GUARDRAIL": _flag(batch.apply_guardrail),
            "GUARDRAIL_ID": self._guardrail.guardrail_id,
            "GUARDRAIL_VERSION": self._guardrail.guardrail_version,
            "JOB_NAME_PREFIX": config.batch_job_name_prefix,
        }

    def _function(
        self, construct_id: str, handler: str, environment: dict[str, str], timeout: Duration, memory_mb: int
    ) -> lambda_.Function:
        return python_function(
            self,
            construct_id,
            handler=handler,
            config=self._config,
            environment=environment,
            timeout=timeout,
            memory_size=memory_mb,
        )

    # --- IAM --------------------------------------------------------------------------------------

    def _batch_role(self) -> iam.Role:
        """The role Bedrock assumes to run this stack's batch jobs: read work/, write bedrock-output/."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "BatchServiceRole",
            description="Assumed by Amazon Bedrock to run the batch pipeline's model invocation jobs",
            assumed_by=iam.ServicePrincipal(
                "bedrock.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {"aws:SourceArn": self.job_arns},
                },
            ),
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadJobInput",
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{WORK_PREFIX}*")],
                conditions={"StringEquals": {"aws:ResourceAccount": stack.account}},
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteJobOutput",
                actions=["s3:PutObject"],
                resources=[self.bucket.arn_for_objects(f"{OUTPUT_PREFIX}*")],
                conditions={"StringEquals": {"aws:ResourceAccount": stack.account}},
            )
        )
        role.add_to_policy(_list_statement(self.bucket, "ListJobFolders", WORK_PREFIX, OUTPUT_PREFIX))
        self.key.grant(role, "kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
        role.add_to_policy(
            iam.PolicyStatement(sid="InvokeBatchModel", actions=["bedrock:InvokeModel"], resources=[self._model_arn])
        )
        return role

    def _grant(self) -> None:
        bucket, key = self.bucket, self.key
        # starter: head the dropped object version, start the run.
        self._grant_objects(self.starter, ["s3:GetObject", "s3:GetObjectVersion"], INBOX_PREFIX)
        self.state_machine.grant_start_execution(self.starter)
        self.starter.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=10,
                report_batch_item_failures=True,
                max_concurrency=STARTER_MAX_CONCURRENCY,
            )
        )
        # prepare: read the dropped version, write (and re-read, to split) work/, write rejected/.
        self._grant_objects(self.prepare, ["s3:GetObject", "s3:GetObjectVersion"], INBOX_PREFIX, BATCH_API_FILES)
        self._grant_objects(self.prepare, ["s3:GetObject"], WORK_PREFIX)
        self._grant_objects(self.prepare, ["s3:PutObject", "s3:AbortMultipartUpload"], WORK_PREFIX, REJECTED_PREFIX)
        key.grant(self.prepare, "kms:Decrypt", "kms:GenerateDataKey")
        if self._config.batch.read_service_quotas:
            self.prepare.add_to_role_policy(
                iam.PolicyStatement(
                    sid="ReadBedrockQuotas", actions=["servicequotas:ListServiceQuotas"], resources=["*"]
                )
            )
            # The same finding as the factory's X-Ray acknowledgement on this role, for a second reason.
            assert self.prepare.role is not None
            Validations.of(self.prepare.role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::*]",
                    reason="servicequotas:ListServiceQuotas (read the Bedrock batch quotas before planning) "
                    "supports no resource-level permission; it only reads quota values.",
                )
            )
        # on_demand: read its records, write Bedrock-shaped output; Converse only with our guardrail.
        self._grant_objects(self.on_demand, ["s3:GetObject"], WORK_PREFIX)
        self._grant_objects(self.on_demand, ["s3:PutObject", "s3:AbortMultipartUpload"], OUTPUT_PREFIX)
        key.grant(self.on_demand, "kms:Decrypt", "kms:GenerateDataKey")
        self._grant_guarded_invoke(self.on_demand)
        self._grant_apply_guardrail(self.on_demand)
        # collect: read id maps, outputs and rejections, list output folders, write results.
        self._grant_objects(self.collect, ["s3:GetObject"], WORK_PREFIX, OUTPUT_PREFIX, REJECTED_PREFIX)
        self.collect.add_to_role_policy(_list_statement(bucket, "ListOutputFolders", OUTPUT_PREFIX))
        self._grant_objects(self.collect, ["s3:PutObject", "s3:AbortMultipartUpload"], RESULTS_PREFIX)
        key.grant(self.collect, "kms:Decrypt", "kms:GenerateDataKey")
        if self._config.batch.apply_guardrail:
            self._grant_apply_guardrail(self.collect)
        # The state machine (AwaitJob) stores task tokens, job_events reads them and resumes that task only.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="StoreJobTaskTokens",
                actions=["s3:PutObject"],
                resources=[bucket.arn_for_objects(f"{JOB_TOKENS_PREFIX}*")],
            )
        )
        key.grant(self.state_machine, "kms:GenerateDataKey")
        self._grant_objects(self.job_events, ["s3:GetObject"], JOB_TOKENS_PREFIX)
        key.grant(self.job_events, "kms:Decrypt")
        # SendTaskSuccess is authorised on the state machine whose execution holds the token (aws-cdk PR #8486); a
        # shard runs as a Distributed Map child, under `<state machine>/Shard`: both, nothing else.
        self.job_events.add_to_role_policy(
            iam.PolicyStatement(
                sid="ResumeWaitingShards",
                actions=["states:SendTaskSuccess"],
                resources=[self.state_machine.state_machine_arn, f"{self.state_machine.state_machine_arn}/*"],
            )
        )

    def _grant_objects(self, function: lambda_.Function, actions: list[str], *prefixes: str) -> None:
        """Object actions on some prefixes of the bucket only (every run's objects under each prefix)."""
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=actions, resources=[self.bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes]
            )
        )
        role = function.role
        assert role is not None
        for prefix in prefixes:
            finding = wildcard_resource(self, self.bucket.arn_for_objects(f"{prefix}*"))
            if (role.node.path, finding) in self._acknowledged:
                continue
            self._acknowledged.add((role.node.path, finding))
            where = {
                INBOX_PREFIX: f"Prompt files are dropped under any key below {prefix}",
                JOB_TOKENS_PREFIX: f"Task tokens are stored under {prefix}<job name>, known only at run time",
                BATCH_API_FILES: "Files uploaded through the Batch API live under openai/<owner hash>/files/",
            }.get(prefix, f"Objects of every run live under {prefix}<run id>/, known only at run time")
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=finding,
                    reason=f"{where}; the function may touch only the prefixes it is granted, nothing else.",
                )
            )

    def _grant_guarded_invoke(self, function: lambda_.Function) -> None:
        # Converse is authorised as bedrock:InvokeModel: only the batch model, only with our guardrail version.
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="InvokeBatchModelOnlyWithGuardrail",
                actions=["bedrock:InvokeModel"],
                resources=[self._model_arn],
                conditions={"StringEquals": {"bedrock:GuardrailIdentifier": self._guardrail.versioned_arn}},
            )
        )

    def _grant_apply_guardrail(self, function: lambda_.Function) -> None:
        function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ApplyOurGuardrail", actions=["bedrock:ApplyGuardrail"], resources=[self._guardrail.guardrail_arn]
            )
        )

    def _acknowledge(self) -> None:
        role = self.state_machine.role
        for function in (self.prepare, self.on_demand, self.collect):
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=wildcard_resource(self, f"{function.function_arn}:*"),
                    reason="CDK's Lambda task grant covers this one function's versions and aliases "
                    "(<function ARN>:*) next to the function ARN; no other function is invocable.",
                )
            )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions log delivery (logs:*LogDelivery, logs:*ResourcePolic*, "
                "logs:DescribeLogGroups), X-Ray tracing and cloudwatch:PutMetricData support no resource but '*'; "
                "PutMetricData is limited to our namespace by condition.",
            )
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(self, self.job_arns),
                reason="Job ARNs end in an id Bedrock assigns at creation; Create, Get and TagResource are "
                "scoped to this account's model-invocation-job/* (Create also to the one batch model).",
            )
        )
        # Acknowledged on the state machine, above the policy CDK adds for its Distributed Map: the map's child
        # executions and, for redrive, those of the map run labelled Shard (batch_workflow.py).
        machine_name = Arn.split(self.state_machine.state_machine_arn, ArnFormat.COLON_RESOURCE_NAME).resource_name
        for executions, actions in (
            (f"{machine_name}:*", "DescribeExecution/StopExecution"),
            (f"{machine_name}/Shard:*", "RedriveExecution"),
        ):
            Validations.of(self.state_machine).acknowledge(
                Acknowledgment(
                    id=wildcard_resource(
                        self,
                        Stack.of(self).format_arn(
                            service="states",
                            resource="execution",
                            resource_name=executions,
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        ),
                    ),
                    reason="The Distributed Map runs one child execution per shard, named by Step Functions at "
                    f"run time; {actions} is limited to executions of this state machine (CDK's policy).",
                )
            )
        assert self.job_events.role is not None
        Validations.of(self.job_events.role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(self, f"{self.state_machine.state_machine_arn}/*"),
                reason="A shard's task token belongs to its Distributed Map child execution (<state machine>/Shard); "
                "SendTaskSuccess is limited to this state machine and its map runs.",
            )
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(self, self.bucket.arn_for_objects(f"{JOB_TOKENS_PREFIX}*")),
                reason="AwaitJob stores each shard's task token under work/job-tokens/<job name> (job names are "
                "known only at run time); PutObject is limited to that prefix.",
            )
        )
        Validations.of(self.batch_role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(self, self.bucket.arn_for_objects(f"{WORK_PREFIX}*")),
                reason="Bedrock reads the shard input files of every run under work/ (run ids are not known "
                "at deploy time).",
            )
        )
        Validations.of(self.batch_role).acknowledge(
            Acknowledgment(
                id=wildcard_resource(self, self.bucket.arn_for_objects(f"{OUTPUT_PREFIX}*")),
                reason="Bedrock writes each job's output under bedrock-output/<run>/<shard>/<job id>/ "
                "(known only at run time).",
            )
        )


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _list_statement(bucket: s3.IBucket, sid: str, *prefixes: str) -> iam.PolicyStatement:
    """ListBucket, only for keys under some prefixes."""
    return iam.PolicyStatement(
        sid=sid,
        actions=["s3:ListBucket"],
        resources=[bucket.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}},
    )
